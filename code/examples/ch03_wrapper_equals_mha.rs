//! Chapter 3: the wrapper of independent heads equals `MultiHeadAttention` when its heads
//! are `MultiHeadAttention`'s weight rows, head by head.
extern crate attention;
// ANCHOR: example
use attention::{Attention, Fixture, MultiHeadAttention, MultiHeadAttentionWrapper};
use attention::{SelfAttention, max_abs_diff};

fn main() -> Result<(), attention::AttnError> {
    // PyTorch, seed 42: MultiHeadAttention(12, 16, 7, 0.0, num_heads=4, qkv_bias=True)
    let fx = Fixture::load("small_mha")?;
    let mha = MultiHeadAttention::new(fx.weights()?, 4)?; // 4 heads of head_dim 4
    // head h: rows h·head_dim .. (h+1)·head_dim of W_query, W_key, W_value (and biases)
    let head = |h| {
        let rows = |name| head_rows(&fx.linear(name)?, h, mha.head_dim()); // (4, 12)
        SelfAttention::new(rows("W_query")?, rows("W_key")?, rows("W_value")?, true)
    };
    let heads = (0..mha.n_heads()).map(head).collect::<Result<_, _>>()?;
    let wrapper = MultiHeadAttentionWrapper::new(heads)?; // 4 causal heads 12 -> 4

    let x = fx.batch("x")?; // (2, 7, 12)
    let concat = wrapper.forward(&x)?; // 4 separate heads, side by side: (2, 7, 16)
    let context = x.try_map(|m| mha.context(m))?; // 4 column blocks of one projection
    // not bit-equal: the products may add in a different order, which depends on the CPU
    assert!(max_abs_diff(&concat.to_row_major(), &context.to_row_major()) < 1e-6);
    println!("max |wrapper - context| < 1e-6");
    let out = fx.linear("out_proj")?.forward_batch(&concat)?; // mixes the heads
    assert!(max_abs_diff(&out.to_row_major(), &fx.batch("out")?.to_row_major()) < 1e-6);
    println!("max |out_proj(wrapper) - PyTorch out| < 1e-6");
    check_against_pytorch(&fx, &concat, &context, &out)
}
// ANCHOR_END: example

/// Rows `h·head_dim .. (h+1)·head_dim` of a `(d_out, d_in)` projection, and the same
/// entries of its bias: the part that makes head `h`.
fn head_rows(
    w: &attention::Linear,
    h: usize,
    head_dim: usize,
) -> Result<attention::Linear, attention::AttnError> {
    let weight = w.weight().rows(h * head_dim, head_dim).into_owned(); // (head_dim, d_in)
    let bias = w.bias().map(|b| b.rows(h * head_dim, head_dim).into_owned());
    attention::Linear::new(weight, bias)
}

/// Both ways are PyTorch's numbers (`assert_close` semantics: rtol 1.3e-6, atol 1e-5),
/// and agree with each other to 1e-6.
fn check_against_pytorch(
    fx: &Fixture,
    concat: &attention::Batch,
    context: &attention::Batch,
    out: &attention::Batch,
) -> Result<(), attention::AttnError> {
    use attention::{Tolerance, assert_batch_close};
    assert_batch_close(concat, &fx.batch("context")?, Tolerance::F32);
    assert_batch_close(out, &fx.batch("out")?, Tolerance::F32);
    assert_batch_close(concat, context, Tolerance::new(0.0, 1e-6));
    Ok(())
}
