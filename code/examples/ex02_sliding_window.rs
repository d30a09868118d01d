//! Exercise 2.1: a sliding-window causal mask, and the fully masked rows that padding
//! creates.
extern crate attention;
extern crate nalgebra;
// ANCHOR: example
use attention::{causal_mask, softmax_rows};
use nalgebra::DMatrix;

/// Query `i` sees keys `i - window < j <= i`: the causal mask, minus keys too far back.
fn sliding_window_mask(
    seq: usize,
    window: usize,
) -> Result<DMatrix<f32>, attention::AttnError> {
    let mut mask = causal_mask(seq, seq, 0)?; // (seq, seq): 0 or -inf
    for i in 0..seq {
        for j in 0..(i + 1).saturating_sub(window) {
            mask[(i, j)] = f32::NEG_INFINITY; // more than window - 1 tokens back
        }
    }
    Ok(mask)
}

fn main() -> Result<(), attention::AttnError> {
    let (seq, window) = (6, 3);
    let mask = sliding_window_mask(seq, window)?;
    // all scores 0: each row spreads evenly over what it sees
    let weights = softmax_rows(&mask);
    for i in 0..seq {
        let visible = weights.row(i).iter().filter(|&&w| w > 0.0).count();
        println!(
            "query {i}: sees {visible} key(s), weights {:.3?}",
            weights.row(i).iter().collect::<Vec<_>>()
        );
        assert_eq!(visible, (i + 1).min(window));
    }
    // Left padding: tokens 0 and 1 are padding, hidden from every query. The padding
    // queries' own rows are then fully masked: the softmax gives them zeros, not NaN.
    let mut padded = mask.clone();
    padded.columns_mut(0, 2).fill(f32::NEG_INFINITY);
    let weights = softmax_rows(&padded);
    let fully_masked: Vec<usize> =
        (0..seq).filter(|&i| weights.row(i).iter().all(|&w| w == 0.0)).collect();
    println!("with keys 0 and 1 hidden, fully masked rows: {fully_masked:?}");
    assert_eq!(fully_masked, [0, 1]);
    Ok(())
}
// ANCHOR_END: example
