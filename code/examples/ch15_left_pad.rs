//! Chapter 15: three sequences of 3, 1 and 4 tokens starting at positions 0, 7 and 20,
//! padded on the left and on the right: the attention_mask, the position_ids, and the
//! mask one sequence's queries get.
extern crate attention;
extern crate nalgebra;
// ANCHOR: example
use attention::serving::ragged::{PaddedBatch, PaddingSide, padding_causal_mask};
use nalgebra::DMatrix;

fn main() -> Result<(), attention::AttnError> {
    let seqs: Vec<DMatrix<f32>> = [3, 1, 4].map(|n| DMatrix::zeros(n, 1)).to_vec();
    let start_pos = [0, 7, 20];
    for side in [PaddingSide::Left, PaddingSide::Right] {
        let padded = PaddedBatch::pad(&seqs, &start_pos, side)?;
        println!(
            "{:<16}{:<16}position_ids",
            format!("{side:?} padding"),
            "attention_mask"
        );
        for (b, mask) in padded.attention_mask().iter().enumerate() {
            let positions = &padded.position_ids()[b];
            println!("  sequence {b}    {:<16}{}", list(mask), list(positions));
        }
    }
    let left = PaddedBatch::pad(&seqs, &start_pos, PaddingSide::Left)?;
    let mask = padding_causal_mask(&left.attention_mask()[0], left.seq_len())?;
    println!("padding_causal_mask of sequence 0, left-padded (row: query, column: key)");
    print_mask(&mask);
    Ok(())
}
// ANCHOR_END: example

/// The numbers of `values`, each right-aligned in 2 columns.
fn list<T: std::fmt::Display>(values: &[T]) -> String {
    values.iter().map(|v| format!("{v:>2}")).collect::<Vec<_>>().join(" ")
}

/// A mask of 0 and −∞, one row per query: `0` where it sees the key, `-inf` where not.
fn print_mask(mask: &DMatrix<f32>) {
    for (i, row) in mask.row_iter().enumerate() {
        let cells: Vec<String> = row
            .iter()
            .map(|&m| if m == 0.0 { "    0".into() } else { format!("{m:>5}") })
            .collect();
        println!("  query {i} {}", cells.join(""));
    }
}
