//! Chapter 14: the block size's trade-off on the chapter's workload: rows left empty in
//! last blocks and prompt rows copied, against the length of the block tables.
extern crate attention;
// ANCHOR: example
use attention::AttnError;
use attention::serving::paged::Workload;

fn main() -> Result<(), AttnError> {
    let workload = Workload { n_sequences: 32, prompt_len: 300, max_own: 1748, seed: 14 };
    let own = workload.own_lengths();
    let distinct = 300 + own.iter().sum::<usize>(); // the prompt counted once
    println!(
        "block  blocks    rows  unused rows  blocks copied  rows copied  table length"
    );
    for block_size in [1, 4, 16, 64, 256] {
        let usage = workload.run(block_size, true)?; // the prompt's blocks shared
        let unused = usage.rows() - distinct; // empty rows, and copies of prompt rows
        // the copy-on-write copies the filled rows of the prompt's last block
        let copied = usage.copies * (300 % block_size);
        let entries: usize = own.iter().map(|o| (300 + o).div_ceil(block_size)).sum();
        let pct = 100.0 * unused as f64 / usage.rows() as f64;
        let (blocks, rows, copies) = (usage.blocks, usage.rows(), usage.copies);
        print!("{block_size:>5} {blocks:>7} {rows:>7} {unused:>6} ({pct:>4.1} %)");
        println!("{copies:>15} {copied:>12} {:>13.1}", entries as f64 / own.len() as f64);
    }
    Ok(())
}
// ANCHOR_END: example
