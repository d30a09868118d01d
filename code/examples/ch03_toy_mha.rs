//! Chapter 3: Raschka's toy `MultiHeadAttention`: d_out = 2 split into 2 heads of size 1.
extern crate attention;
// ANCHOR: example
use attention::{Attention, Fixture, MultiHeadAttention, QkvoWeights, Tolerance};

fn main() -> Result<(), attention::AttnError> {
    // torch.manual_seed(123); MultiHeadAttention(3, 2, 6, 0.0, num_heads=2): PyTorch's
    // weights
    let fx = Fixture::load("toy_mha")?;
    let weights = QkvoWeights {
        // (d_out, d_in) = (2, 3): ONE projection for both heads
        w_query: fx.linear("W_query")?,
        w_key: fx.linear("W_key")?,
        w_value: fx.linear("W_value")?,
        out_proj: fx.linear("out_proj")?, // (2, 2), with a bias
    };
    let mha = MultiHeadAttention::new(weights, fx.usize("n_heads")?)?;
    println!(
        "d_in {}, d_out {}, n_heads {}, head_dim {}",
        mha.d_in(),
        mha.d_out(),
        mha.n_heads(),
        mha.head_dim()
    );

    let x = fx.batch("x")?; // (2, 6, 3)
    // (2, 6, 2): head 0 | head 1, before out_proj
    let context = x.try_map(|m| mha.context(m))?;
    let out = mha.forward(&x)?; // (2, 6, 2): after out_proj
    let ([b, s, d_in], [_, _, d_out]) = (x.shape(), out.shape());
    println!("input ({b}, {s}, {d_in}) -> output ({b}, {s}, {d_out})");
    println!("item 0:  context (h0 | h1)    out");
    for (c, o) in context.items()[0].row_iter().zip(out.items()[0].row_iter()) {
        println!("  [{:7.4} | {:7.4}]   [{:7.4} {:7.4}]", c[0], c[1], o[0], o[1]);
    }

    // both are PyTorch's numbers (assert_close semantics: rtol 1.3e-6, atol 1e-5)
    attention::assert_batch_close(&context, &fx.batch("context")?, Tolerance::F32);
    attention::assert_batch_close(&out, &fx.batch("out")?, Tolerance::F32);
    Ok(())
}
// ANCHOR_END: example
