//! Exercise 8.1: the online softmax, fed one block at a time, gives the softmax's
//! weights.
extern crate attention;
extern crate nalgebra;
// ANCHOR: example
use attention::fast::online_softmax::online_softmax_step;
use attention::softmax_rows;
use nalgebra::DMatrix;

fn main() {
    let scores = [0.9544_f32, 1.4950, 1.4754, 0.8434, 0.7070, 1.0865, 3.0, -2.0];
    let want = softmax_rows(&DMatrix::from_row_slice(1, 8, &scores));
    // blocks of 3, 3 and 2 keys; keep each block's exp(s - running max) and rescale old
    // blocks
    let (mut max, mut sum) = (f32::NEG_INFINITY, 0.0_f32);
    let mut kept: Vec<f32> = Vec::new();
    for block in scores.chunks(3) {
        let mut row = block.to_vec();
        let visible = row.len(); // every key of the block is visible to this query
        let rescale = online_softmax_step(&mut row, visible, &mut max, &mut sum);
        kept.iter_mut().for_each(|w| *w *= rescale); // bring old terms to the new maximum
        kept.extend(row);
        println!("after {} keys: running max {max:.4}, running sum {sum:.4}", kept.len());
    }
    let got: Vec<f32> = kept.iter().map(|w| w / sum).collect();
    let diff =
        got.iter().zip(want.iter()).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
    println!("online vs softmax_rows: max |diff| {diff:.1e}");
    assert!(diff < 1e-6);
}
// ANCHOR_END: example
