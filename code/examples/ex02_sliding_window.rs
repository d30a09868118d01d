//! Exercise 2.1: a sliding-window causal mask, and the fully masked rows that padding
//! creates.
extern crate attention;
extern crate nalgebra;
// ANCHOR: example
use attention::{causal_mask, softmax_rows};

fn main() -> Result<(), attention::AttnError> {
    let (seq, window) = (6, 3);
    let mut mask = causal_mask(seq, seq, 0)?; // (6, 6): 0 or -inf
    for i in window..seq {
        for j in 0..=i - window {
            mask[(i, j)] = f32::NEG_INFINITY; // query i sees only i - window < j <= i
        }
    }
    let weights = softmax_rows(&mask); // all scores 0: each row spreads evenly
    for (i, row) in weights.row_iter().enumerate() {
        let visible = row.iter().filter(|&&w| w > 0.0).count();
        let cells: Vec<&f32> = row.iter().collect();
        println!("query {i}: sees {visible} key(s), weights {cells:.3?}");
    }
    // Left padding hides keys 0 and 1 from every query; a row left with no key gets zeros
    mask.columns_mut(0, 2).fill(f32::NEG_INFINITY);
    let padded = softmax_rows(&mask);
    let fully_masked: Vec<usize> =
        (0..seq).filter(|&i| padded.row(i).iter().all(|&w| w == 0.0)).collect();
    println!("with keys 0 and 1 hidden, fully masked rows: {fully_masked:?}");
    check(&weights, window, &fully_masked);
    Ok(())
}
// ANCHOR_END: example

/// Query `i` sees `min(i + 1, window)` keys; with keys 0 and 1 hidden, queries 0 and 1
/// see none.
fn check(weights: &nalgebra::DMatrix<f32>, window: usize, fully_masked: &[usize]) {
    for (i, row) in weights.row_iter().enumerate() {
        assert_eq!(row.iter().filter(|&&w| w > 0.0).count(), (i + 1).min(window));
    }
    assert_eq!(fully_masked, [0, 1]);
}
