//! Chapter 3: Raschka's toy `MultiHeadAttention`: d_out = 2 split into 2 heads of size 1.
extern crate attention;
// ANCHOR: example
use attention::{Attention, Fixture, MultiHeadAttention, QkvoWeights};

fn main() -> Result<(), attention::AttnError> {
    let fx = Fixture::load("toy_mha")?; // MultiHeadAttention(3, 2, 6, 0.0, num_heads=2)
    let x = fx.batch("x")?; // (batch, seq, d_in) = (2, 6, 3)
    let weights = QkvoWeights {
        w_query: fx.linear("W_query")?, // (d_out, d_in) = (2, 3): one for both heads
        w_key: fx.linear("W_key")?,
        w_value: fx.linear("W_value")?,
        out_proj: fx.linear("out_proj")?, // (2, 2), with a bias
    };
    let mha = MultiHeadAttention::new(weights, fx.usize("n_heads")?)?;
    let (n_heads, head_dim) = (mha.n_heads(), mha.head_dim()); // d_out / n_heads = 1
    let (d_in, d_out, [b, s, _]) = (mha.d_in(), mha.d_out(), x.shape());
    println!("d_in {d_in}, d_out {d_out}, n_heads {n_heads}, head_dim {head_dim}");

    let context = x.try_map(|m| mha.context(m))?; // (2, 6, 2): head 0 | head 1
    let out = mha.forward(&x)?; // (2, 6, 2): the context after out_proj
    println!("input ({b}, {s}, {d_in}) -> output ({b}, {s}, {})", out.dim());
    println!("item 0:  context (h0 | h1)    out");
    for (c, o) in context.items()[0].row_iter().zip(out.items()[0].row_iter()) {
        println!("  [{:7.4} | {:7.4}]   [{:7.4} {:7.4}]", c[0], c[1], o[0], o[1]);
    }

    check_against_pytorch(&fx, &context, &out)
}
// ANCHOR_END: example

/// Both are PyTorch's numbers, from `torch.manual_seed(123)` (`assert_close` semantics:
/// rtol 1.3e-6, atol 1e-5).
fn check_against_pytorch(
    fx: &Fixture,
    context: &attention::Batch,
    out: &attention::Batch,
) -> Result<(), attention::AttnError> {
    use attention::{Tolerance, assert_batch_close};
    assert_batch_close(context, &fx.batch("context")?, Tolerance::F32);
    assert_batch_close(out, &fx.batch("out")?, Tolerance::F32);
    Ok(())
}
