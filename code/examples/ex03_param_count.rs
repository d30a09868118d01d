//! Exercise 3.1: the wrapper and the efficient module have the same Q/K/V parameters.
extern crate attention;
extern crate rand;
// ANCHOR: example
use attention::{Linear, MultiHeadAttention, MultiHeadAttentionWrapper};
use rand::{SeedableRng, rngs::StdRng};

/// Weights plus biases of a linear layer.
fn params(l: &Linear) -> usize {
    l.weight().len() + l.bias().map_or(0, |b| b.len())
}

fn main() -> Result<(), attention::AttnError> {
    let mut rng = StdRng::seed_from_u64(0);
    // 12 heads of 64 over a 768-wide input, no biases, as GPT-2 small's attention would
    // be
    // d_out per head
    let wrapper = MultiHeadAttentionWrapper::random(768, 64, 12, false, &mut rng)?;
    // d_out in total
    let mha = MultiHeadAttention::random(768, 768, 12, false, &mut rng)?;
    let wrapper_qkv: usize = wrapper
        .heads()
        .iter()
        .map(|h| params(h.w_query()) + params(h.w_key()) + params(h.w_value()))
        .sum();
    let w = mha.weights();
    let mha_qkv = params(&w.w_query) + params(&w.w_key) + params(&w.w_value);
    println!("wrapper, 12 heads of (64, 768) per Q/K/V: {wrapper_qkv} parameters");
    println!("MultiHeadAttention, one (768, 768) per Q/K/V: {mha_qkv} parameters");
    println!("MultiHeadAttention's out_proj adds {}", params(&w.out_proj));
    assert_eq!(wrapper_qkv, mha_qkv); // the same numbers, stacked differently
    Ok(())
}
// ANCHOR_END: example
