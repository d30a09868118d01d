//! Chapter 11: YaRN's attention factor multiplies cos and sin, so every RoPE score is
//! multiplied by its square: a sharper softmax.
extern crate attention;
extern crate nalgebra;
// ANCHOR: example
use attention::{Rope, YarnScaling, show, splitmix_matrix};

fn main() -> Result<(), attention::AttnError> {
    let (head_dim, seq, start_pos) = (64, 6, 5000); // one gpt-oss head, past 4096
    let yarn = YarnScaling::GPT_OSS;
    let factor_one = YarnScaling { attention_factor: Some(1.0), ..yarn }; // same θ'_i
    let mut scores = Vec::new(); // (seq, seq) each: factor 1, then YaRN's factor
    for y in [factor_one, yarn] {
        let n = start_pos + seq;
        let rope = Rope::with_scaling(head_dim, n, 150_000.0, Some(y.into()))?;
        let mut q = splitmix_matrix(1, seq, head_dim, 2.0); // (seq, head_dim)
        let mut k = splitmix_matrix(2, seq, head_dim, 2.0);
        rope.apply(&mut q, start_pos)?; // rotated and lengthened by the factor
        rope.apply(&mut k, start_pos)?;
        scores.push(&q * k.transpose() / (head_dim as f32).sqrt());
    }
    let m = yarn.attention_factor(); // 0.1 · ln 32 + 1
    println!("attention factor m = {m:.6}, m² = {:.6}", m * m);
    let bound = check_scores_scaled(&scores[0], &scores[1], m * m);
    println!("scores with m = m² · scores with 1 (every difference {bound})");
    let (w1, wm) = (last_weights(&scores[0]), last_weights(&scores[1])); // no mask needed
    println!("weights of the last query, factor 1: {}", show::row(&w1));
    println!("                           factor m: {}", show::row(&wm));
    Ok(())
}
// ANCHOR_END: example

use attention::softmax_rows;
use nalgebra::DMatrix;

/// The attention weights of the last query: the softmax of the last row of `scores`
/// `(seq, seq)`, returned as `(1, seq)`. The last query sees every key, so no causal
/// mask is needed.
fn last_weights(scores: &DMatrix<f32>) -> DMatrix<f32> {
    softmax_rows(&scores.rows(scores.nrows() - 1, 1).into_owned())
}

/// Checks `with = factor² · without` entry by entry and returns the bound it holds to,
/// `< 1e-5` (printed as that bound: the last bits depend on the math library's cos and
/// sin). The scores are up to about 5 in size; each table entry of YaRN's is the f32
/// product `cos · m`, rounded, so the two sides differ by a few f32 roundings of numbers
/// that size (one f32 step near 4 is 4.8e-7; measured: 1.9e-6), well inside 1e-5.
fn check_scores_scaled(
    without: &DMatrix<f32>,
    with: &DMatrix<f32>,
    m2: f32,
) -> &'static str {
    let d = with.iter().zip(without).map(|(w, o)| (w - m2 * o).abs()).fold(0.0, f32::max);
    assert!(d < 1e-5, "{d}");
    "< 1e-5"
}
