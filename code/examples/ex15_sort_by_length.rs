//! Exercise 15.1: twelve prompts in batches of four, padded in arrival order, padded
//! after sorting by length, and packed: the score entries of each prefill, for 32 heads.
extern crate attention;
extern crate nalgebra;
// ANCHOR: example
use attention::serving::ragged::{PackedBatch, PaddedBatch};
use nalgebra::DMatrix;

fn main() -> Result<(), attention::AttnError> {
    let arrival = [412, 37, 1900, 88, 650, 23, 1210, 305, 77, 2048, 140, 960]; // tokens
    let mut sorted = arrival;
    sorted.sort();
    let n_heads = 32; // Llama 3 8B
    let padded = |lengths: &[usize]| -> Result<u128, attention::AttnError> {
        let mut entries = 0;
        for batch in lengths.chunks(4) {
            let x = PaddedBatch::left_pad(&prompts(batch), &[0; 4])?;
            entries += x.score_entries(n_heads);
        }
        Ok(entries)
    };
    let packed = PackedBatch::pack(&prompts(&arrival), &[0; 12])?;
    let rows = [
        ("padded, arrival order", padded(&arrival)?),
        ("padded, sorted by length", padded(&sorted)?),
        ("packed", packed.score_entries(n_heads, None)?),
        ("causal half of packed", causal_entries(&arrival, n_heads)),
    ];
    print_table(&rows);
    Ok(())
}
// ANCHOR_END: example

/// One prompt of each length (width 1: the count of scores does not depend on it).
fn prompts(lengths: &[usize]) -> Vec<DMatrix<f32>> {
    lengths.iter().map(|&n| DMatrix::zeros(n, 1)).collect()
}

/// The entries a causal kernel needs at least (chapter 8's flash kernel skips the tiles
/// above the diagonal): `n (n + 1) / 2` per prompt of `n` tokens and per head.
fn causal_entries(lengths: &[usize], n_heads: usize) -> u128 {
    lengths.iter().map(|&n| (n * (n + 1) / 2) as u128).sum::<u128>() * n_heads as u128
}

/// The score entries of each way, in millions and as a multiple of the packed form's;
/// sorting must beat arrival order, and packing both.
fn print_table(rows: &[(&str, u128)]) {
    let packed = rows[2].1 as f64;
    println!("{:<26}{:>14}{:>12}", "prefill of 12 prompts", "M entries", "× packed");
    for (name, entries) in rows {
        let m = *entries as f64 / 1e6;
        println!("{name:<26}{m:>14.1}{:>12.2}", *entries as f64 / packed);
    }
    assert!(rows[0].1 > rows[1].1 && rows[1].1 > rows[2].1);
}
