//! Chapter 14: the memory a serving workload reserves with chapter 6's contiguous cache,
//! and what a paged cache uses, with and without sharing the system prompt.
extern crate attention;
// ANCHOR: example
use attention::AttnError;
use attention::serving::paged::Workload;

fn main() -> Result<(), AttnError> {
    let workload = Workload { n_sequences: 32, prompt_len: 300, max_own: 1748, seed: 14 };
    let own: usize = workload.own_lengths().iter().sum(); // each sequence's own tokens
    let (paged, shared) = (workload.run(16, false)?, workload.run(16, true)?);
    println!("32 sequences: a system prompt of 300 tokens, then 1 to 1748 of their own");
    println!("{:<40}{:>8}{:>20}{:>15}", "", "rows", "Llama 3 8B, bf16", "of contiguous");
    for (what, rows) in [
        ("contiguous: 2048 reserved per sequence", paged.reserved),
        ("paged, blocks of 16", paged.rows()),
        ("paged, the prompt's blocks shared", shared.rows()),
        ("tokens held", paged.tokens),
        ("distinct tokens (the prompt once)", 300 + own),
    ] {
        let share = 100.0 * rows as f64 / paged.reserved as f64;
        println!("{what:<40}{rows:>8}{:>16.2} GiB{share:>13.1} %", llama3_8b_gib(rows));
    }
    Ok(())
}
// ANCHOR_END: example

/// What `rows` token rows per layer weigh in Llama 3 8B's whole cache: 32 layers, 8 KV
/// heads of 128, keys and values in bf16 (128 KiB a token), in GiB.
fn llama3_8b_gib(rows: usize) -> f64 {
    use attention::{DType, Preset, kv_cache_bytes};
    let bytes = kv_cache_bytes(&Preset::LLAMA_3_8B.config, 32, 1, rows, DType::BF16);
    bytes as f64 / f64::from(1 << 30)
}
