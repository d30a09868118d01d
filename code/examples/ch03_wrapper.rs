//! Chapter 3: two independent causal heads side by side, Raschka's
//! `MultiHeadAttentionWrapper`.
extern crate attention;
// ANCHOR: example
use attention::{Attention, Fixture, MultiHeadAttentionWrapper, SelfAttention};

fn main() -> Result<(), attention::AttnError> {
    // PyTorch, seed 123: MultiHeadAttentionWrapper(3, 2, 6, 0.0, num_heads=2)
    let fx = Fixture::load("toy_wrapper")?;
    let heads = (0..2)
        .map(|h| {
            // head h: a causal single-head attention 3 -> 2 with its own W_q, W_k, W_v
            let w = |name: &str| fx.linear(&format!("heads.{h}.{name}"));
            SelfAttention::new(w("W_query")?, w("W_key")?, w("W_value")?, true)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let wrapper = MultiHeadAttentionWrapper::new(heads)?;

    let x = fx.batch("x")?; // (2, 6, 3): the toy sentence twice
    let out = wrapper.forward(&x)?; // -> (2, 6, n_heads · 2): the heads side by side
    let ([b, s, d_in], [_, _, d_out]) = (x.shape(), out.shape());
    println!("input ({b}, {s}, {d_in}) -> output ({b}, {s}, {d_out})");
    println!("item 0:     head 0 | head 1");
    for r in out.items()[0].row_iter() {
        println!("  [{:7.4} {:7.4} | {:7.4} {:7.4}]", r[0], r[1], r[2], r[3]);
    }

    check_against_pytorch(&fx, &out)
}
// ANCHOR_END: example

/// The wrapper's output is PyTorch's (`assert_close` semantics: rtol 1.3e-6, atol 1e-5).
fn check_against_pytorch(
    fx: &Fixture,
    out: &attention::Batch,
) -> Result<(), attention::AttnError> {
    attention::assert_batch_close(out, &fx.batch("out")?, attention::Tolerance::F32);
    Ok(())
}
