//! Chapter 3: `MultiHeadAttention` with 4 heads and q/k/v biases, step by step, against
//! PyTorch.
extern crate attention;
extern crate nalgebra;
// ANCHOR: example
use attention::{Attention, Fixture, Mask, MultiHeadAttention, attention_weights, show};

fn main() -> Result<(), attention::AttnError> {
    // PyTorch, seed 42: MultiHeadAttention(12, 16, 7, 0.0, num_heads=4, qkv_bias=True)
    let fx = Fixture::load("small_mha")?;
    let mha = MultiHeadAttention::new(fx.weights()?, fx.usize("n_heads")?)?;
    let (n_heads, head_dim) = (mha.n_heads(), mha.head_dim()); // 4 heads of 16 / 4 = 4
    let x = fx.batch("x")?.items()[0].clone(); // item 0: (seq, d_in) = (7, 12)

    let q = mha.weights().w_query.forward(&x)?; // (7, 16) = (seq, n_heads · head_dim)
    let k = mha.weights().w_key.forward(&x)?; // (7, 16)
    println!("x {:?} -> queries and keys {:?}", x.shape(), q.shape());
    println!("{n_heads} heads of head_dim {head_dim}; weights of the last token:");
    for h in 0..n_heads {
        let c = h * head_dim; // head h: columns c..c + head_dim, a (7, 4) view, no copy
        let (q_h, k_h) = (q.columns(c, head_dim), k.columns(c, head_dim));
        // (7, 4) · (4, 7) -> (7, 7), scaled by 1/√head_dim = 1/2, causal
        let w = attention_weights(q_h, k_h, Mask::Causal { query_offset: 0 })?;
        println!("  head {h}: {}", show::row(w.row(6).iter()));
        check_head(&fx, h, &w)?; // PyTorch's attn_weights[0, h]
    }
    let out = mha.forward_one(&x)?; // context · W_oᵀ + b_o
    println!("out {:?}: the heads side by side, mixed by out_proj", out.shape());

    check_against_pytorch(&fx, &mha, &out)
}
// ANCHOR_END: example

/// Head `h`'s weights are PyTorch's `attn_weights[0, h]`, a `(7, 7)` block of the
/// row-major `(2, 4, 7, 7)` tensor (`assert_close` semantics: rtol 1.3e-6, atol 1e-5).
fn check_head(
    fx: &Fixture,
    h: usize,
    w: &nalgebra::DMatrix<f32>,
) -> Result<(), attention::AttnError> {
    let want = fx.tensor("attn_weights")?;
    let block = nalgebra::DMatrix::from_row_slice(7, 7, &want.data[h * 49..(h + 1) * 49]);
    attention::assert_matrix_close(w, &block, attention::Tolerance::F32);
    Ok(())
}

/// The whole batch through the module, before and after `out_proj`, is PyTorch's; `out`
/// is its item 0.
fn check_against_pytorch(
    fx: &Fixture,
    mha: &MultiHeadAttention,
    out: &nalgebra::DMatrix<f32>,
) -> Result<(), attention::AttnError> {
    use attention::{Tolerance, assert_batch_close, assert_matrix_close};
    let x = fx.batch("x")?; // (2, 7, 12)
    let context = x.try_map(|m| mha.context(m))?; // (2, 7, 16): the 4 heads side by side
    assert_batch_close(&context, &fx.batch("context")?, Tolerance::F32);
    let want = fx.batch("out")?;
    assert_batch_close(&mha.forward(&x)?, &want, Tolerance::F32);
    assert_matrix_close(out, &want.items()[0], Tolerance::F32);
    Ok(())
}
