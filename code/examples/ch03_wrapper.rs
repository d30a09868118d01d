//! Chapter 3: two independent causal heads side by side, Raschka's
//! `MultiHeadAttentionWrapper`.
extern crate attention;
// ANCHOR: example
use attention::{
    Attention, Fixture, MultiHeadAttentionWrapper, SelfAttention, Tolerance,
};

fn main() -> Result<(), attention::AttnError> {
    // torch.manual_seed(123); MultiHeadAttentionWrapper(3, 2, 6, 0.0, num_heads=2):
    // PyTorch's weights
    let fx = Fixture::load("toy_wrapper")?;
    let heads = (0..2)
        .map(|h| {
            let w = |name: &str| fx.linear(&format!("heads.{h}.{name}"));
            // each head is a causal single-head attention 3 -> 2, with its own W_q, W_k,
            // W_v
            SelfAttention::new(w("W_query")?, w("W_key")?, w("W_value")?, true)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let wrapper = MultiHeadAttentionWrapper::new(heads)?;

    let x = fx.batch("x")?; // the toy sentence twice
    let out = wrapper.forward(&x)?; // (batch, seq, d_in) -> (batch, seq, n_heads * 2)
    let ([b, s, d_in], [_, _, d_out]) = (x.shape(), out.shape());
    println!("input ({b}, {s}, {d_in}) -> output ({b}, {s}, {d_out})");
    println!("item 0:     head 0 | head 1");
    for row in out.items()[0].row_iter() {
        let v: Vec<String> = row.iter().map(|v| format!("{v:7.4}")).collect();
        println!("  [{} | {}]", v[..2].join(" "), v[2..].join(" "));
    }

    // the numbers above are PyTorch's (assert_close semantics: rtol 1.3e-6, atol 1e-5)
    attention::assert_batch_close(&out, &fx.batch("out")?, Tolerance::F32);
    Ok(())
}
// ANCHOR_END: example
