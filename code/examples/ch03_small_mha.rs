//! Chapter 3: `MultiHeadAttention` with 4 heads and q/k/v biases, step by step, against
//! PyTorch.
extern crate attention;
extern crate nalgebra;
// ANCHOR: example
use attention::{
    Attention, Fixture, Mask, MultiHeadAttention, Tolerance, attention_weights,
};
use nalgebra::DMatrix;

fn main() -> Result<(), attention::AttnError> {
    // torch.manual_seed(42); MultiHeadAttention(12, 16, 7, 0.0, num_heads=4,
    // qkv_bias=True)
    let fx = Fixture::load("small_mha")?;
    // W_query, W_key, ...
    let mha = MultiHeadAttention::new(fx.weights()?, fx.usize("n_heads")?)?;
    let (n_heads, head_dim) = (mha.n_heads(), mha.head_dim());
    let x = fx.batch("x")?; // (batch, seq, d_in) = (2, 7, 12)
    let x0 = &x.items()[0]; // item 0: (seq, d_in) = (7, 12)

    // (7, 12) -> (7, 16) = (seq, n_heads * head_dim)
    let queries = mha.weights().w_query.forward(x0)?;
    let keys = mha.weights().w_key.forward(x0)?; // (7, 16)
    println!("x {:?} -> queries and keys {:?}", x0.shape(), queries.shape());
    println!(
        "{n_heads} heads of head_dim {head_dim}: head h = columns \
            {head_dim}h..{head_dim}h+{head_dim}, a (7, {head_dim}) view"
    );
    println!("weights of the last token (it sees all 7), item 0:");
    let want = fx.tensor("attn_weights")?; // (batch, n_heads, seq, seq)
    for h in 0..n_heads {
        // (7, 4) · (4, 7) -> (7, 7), scaled by 1/√head_dim = 1/2, causal
        let cols = h * head_dim;
        let w = attention_weights(
            queries.columns(cols, head_dim),
            keys.columns(cols, head_dim),
            Mask::Causal { query_offset: 0 },
        )?;
        let last: Vec<String> = w.row(6).iter().map(|v| format!("{v:.4}")).collect();
        println!("  head {h}: [{}]", last.join(" "));
        // PyTorch's attn_weights[0, h]: a (7, 7) block of the row-major (2, 4, 7, 7)
        // tensor
        let block = &want.data[h * 49..(h + 1) * 49];
        attention::assert_matrix_close(
            &w,
            &DMatrix::from_row_slice(7, 7, block),
            Tolerance::F32,
        );
    }

    let context = x.try_map(|m| mha.context(m))?; // (2, 7, 16): the 4 heads side by side
    let out = mha.forward(&x)?; // (2, 7, 16) -> out_proj -> (2, 7, 16)
    let first: Vec<String> =
        out.items()[0].row(0).iter().take(4).map(|v| format!("{v:.4}")).collect();
    let ([b, s, d], [_, _, d_out]) = (context.shape(), out.shape());
    println!(
        "context ({b}, {s}, {d}) -> out ({b}, {s}, {d_out}); out[0, 0, :4] = [{}]",
        first.join(" ")
    );
    // all printed numbers are PyTorch's (assert_close semantics: rtol 1.3e-6, atol 1e-5)
    attention::assert_batch_close(&context, &fx.batch("context")?, Tolerance::F32);
    attention::assert_batch_close(&out, &fx.batch("out")?, Tolerance::F32);
    Ok(())
}
// ANCHOR_END: example
