//! Exercise 1.1: the softmax ignores a shift of all scores, but not a scaling.
extern crate attention;
extern crate nalgebra;
// ANCHOR: example
use attention::softmax_rows;
use nalgebra::DMatrix;

fn main() {
    // the six scores of query x2 "journey" from the start of the chapter
    let s =
        DMatrix::from_row_slice(1, 6, &[0.9544, 1.4950, 1.4754, 0.8434, 0.7070, 1.0865]);
    let weights = softmax_rows(&s);
    let shifted = softmax_rows(&s.add_scalar(100.0)); // every score + 100
    let doubled = softmax_rows(&(&s * 2.0)); // every score × 2
    let max_diff = |a: &DMatrix<f32>| (a - &weights).amax();
    let row = |m: &DMatrix<f32>| m.iter().map(|v| format!("{v:7.4}")).collect::<String>();
    println!("softmax(s)      {}", row(&weights));
    println!("softmax(2 s)    {}", row(&doubled));
    println!(
        "softmax(s + 100) differs from softmax(s) by at most {:.1e}",
        max_diff(&shifted)
    );
    println!("largest weight: {:.4} for s, {:.4} for 2 s", weights.max(), doubled.max());
    assert!(max_diff(&shifted) < 1e-6); // e^(s+c) / Σ e^(s+c): the e^c cancels
    assert!(doubled.max() > weights.max()); // larger scores: a peakier distribution
}
// ANCHOR_END: example
