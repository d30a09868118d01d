//! Exercise 3.1: the wrapper and the efficient module have the same Q/K/V parameters.
extern crate attention;
extern crate rand;
// ANCHOR: example
use attention::{MultiHeadAttention, MultiHeadAttentionWrapper};
use rand::{SeedableRng, rngs::StdRng};

fn main() -> Result<(), attention::AttnError> {
    let mut rng = StdRng::seed_from_u64(0);
    // 12 heads of 64 over a 768-wide input, no biases, as GPT-2 small's attention would
    // be; Raschka's d_out is per head in the wrapper, in total in MultiHeadAttention
    let wrapper = MultiHeadAttentionWrapper::random(768, 64, 12, false, &mut rng)?;
    let mha = MultiHeadAttention::random(768, 768, 12, false, &mut rng)?;
    let wrapper_qkv: usize =
        wrapper.heads().iter().map(|h| qkv(h.w_query(), h.w_key(), h.w_value())).sum();
    let w = mha.weights();
    let mha_qkv = qkv(&w.w_query, &w.w_key, &w.w_value);
    println!("wrapper, 12 heads of (64, 768) per Q/K/V: {wrapper_qkv} parameters");
    println!("MultiHeadAttention, one (768, 768) per Q/K/V: {mha_qkv} parameters");
    println!("MultiHeadAttention's out_proj adds {}", params(&w.out_proj));
    assert_eq!(wrapper_qkv, mha_qkv); // the same numbers, stacked differently
    Ok(())
}
// ANCHOR_END: example

/// Weights plus biases of a linear layer.
fn params(l: &attention::Linear) -> usize {
    l.weight().len() + l.bias().map_or(0, |b| b.len())
}

/// Weights plus biases of a query, a key and a value projection.
fn qkv(q: &attention::Linear, k: &attention::Linear, v: &attention::Linear) -> usize {
    params(q) + params(k) + params(v)
}
