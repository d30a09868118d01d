//! Chapter 3: the wrapper of independent heads equals `MultiHeadAttention` when its heads
//! are `MultiHeadAttention`'s weight rows, head by head.
extern crate attention;
// ANCHOR: example
use attention::support::compare::max_abs_diff;
use attention::{
    Attention, Fixture, Linear, MultiHeadAttention, MultiHeadAttentionWrapper,
    SelfAttention, Tolerance,
};

/// Rows `h·head_dim .. (h+1)·head_dim` of a `(d_out, d_in)` projection: the part that
/// makes head `h`.
fn head_rows(
    w: &Linear,
    h: usize,
    head_dim: usize,
) -> Result<Linear, attention::AttnError> {
    let weight = w.weight().rows(h * head_dim, head_dim).into_owned(); // (head_dim, d_in)
    let bias = w.bias().as_ref().map(|b| b.rows(h * head_dim, head_dim).into_owned());
    Linear::new(weight, bias)
}

fn main() -> Result<(), attention::AttnError> {
    // torch.manual_seed(42); MultiHeadAttention(12, 16, 7, 0.0, num_heads=4,
    // qkv_bias=True)
    let fx = Fixture::load("small_mha")?;
    let (wq, wk, wv) =
        (fx.linear("W_query")?, fx.linear("W_key")?, fx.linear("W_value")?);
    let (n_heads, head_dim) = (4, 4);
    let heads = (0..n_heads)
        .map(|h| {
            let (q, k) = (head_rows(&wq, h, head_dim)?, head_rows(&wk, h, head_dim)?);
            // causal, 12 -> 4
            SelfAttention::new(q, k, head_rows(&wv, h, head_dim)?, true)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let wrapper = MultiHeadAttentionWrapper::new(heads)?;
    let mha = MultiHeadAttention::new(fx.weights()?, n_heads)?;

    let x = fx.batch("x")?; // (2, 7, 12)
    let concat = wrapper.forward(&x)?; // 4 separate heads, concatenated: (2, 7, 16)
    // one projection, 4 column blocks: (2, 7, 16)
    let context = x.try_map(|m| mha.context(m))?;
    let [b, s, d] = context.shape();
    println!("wrapper and MultiHeadAttention context: both ({b}, {s}, {d})");
    // Not bit-equal: the two products may sum in different orders (which depend on the
    // CPU), so we print the bound the difference is checked against, not its last-bit
    // value.
    assert!(max_abs_diff(&concat.to_row_major(), &context.to_row_major()) < 1e-6);
    println!("max |wrapper - context| < 1e-6");
    // the output projection then mixes the heads: out_proj(wrapper) is the module's
    // output
    let out = mha.weights().out_proj.forward_batch(&concat)?; // (2, 7, 16) -> (2, 7, 16)
    let want = fx.batch("out")?;
    assert!(max_abs_diff(&out.to_row_major(), &want.to_row_major()) < 1e-6);
    println!("max |out_proj(wrapper) - PyTorch out| < 1e-6");

    // PyTorch's numbers (assert_close semantics: rtol 1.3e-6, atol 1e-5), and the two
    // ways agree
    attention::assert_batch_close(&concat, &fx.batch("context")?, Tolerance::F32);
    attention::assert_batch_close(&out, &want, Tolerance::F32);
    attention::assert_batch_close(&concat, &context, Tolerance::new(0.0, 1e-6));
    Ok(())
}
// ANCHOR_END: example
