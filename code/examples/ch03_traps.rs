//! Chapter 3: two classic bugs, caught by comparing one head's weights with PyTorch's.
extern crate attention;
extern crate nalgebra;
// ANCHOR: example
use attention::{
    Fixture, Mask, Tolerance, apply_causal_mask, attention_weights, compare,
    matrix_from_row_major, matrix_to_row_major, softmax_rows_in_place,
};
use nalgebra::DMatrix;

fn main() -> Result<(), attention::AttnError> {
    // MultiHeadAttention(12, 16, num_heads=4, qkv_bias=True)
    let fx = Fixture::load("small_mha")?;
    let (n_heads, head_dim, seq) = (4, 4, 7);
    let x = fx.batch("x")?;
    let x0 = &x.items()[0]; // item 0: (7, 12)
    let queries = fx.linear("W_query")?.forward(x0)?; // (7, 16)
    let keys = fx.linear("W_key")?.forward(x0)?; // (7, 16)
    // PyTorch's attn_weights[0, 0]: head 0 of item 0, (7, 7)
    let want =
        DMatrix::from_row_slice(seq, seq, &fx.tensor("attn_weights")?.data[..seq * seq]);
    let causal = Mask::Causal { query_offset: 0 };

    // right: head 0 is columns 0..head_dim of every row, scores scaled by 1/√head_dim
    let right = attention_weights(
        queries.columns(0, head_dim),
        keys.columns(0, head_dim),
        causal,
    )?;

    // bug 1: scaled by 1/√d_out (= 1/4) instead of 1/√head_dim (= 1/2)
    let d_out = n_heads * head_dim;
    let mut too_flat =
        queries.columns(0, head_dim) * keys.columns(0, head_dim).transpose();
    too_flat /= (d_out as f32).sqrt();
    apply_causal_mask(&mut too_flat, 0)?;
    softmax_rows_in_place(&mut too_flat);

    // bug 2: PyTorch's t.view(b, n_heads, seq, head_dim) without .view(b, seq, n_heads,
    // head_dim) .transpose(1, 2): "head 0" becomes the first seq·head_dim = 28 numbers in
    // row-major order (token 0's 16 features and 12 of token 1's) cut into rows of 4:
    // tokens and heads mixed up
    let first_block = |m: &DMatrix<f32>| {
        let flat = matrix_to_row_major(m);
        matrix_from_row_major(seq, head_dim, &flat[..seq * head_dim])
    };
    let mixed = attention_weights(
        first_block(&queries)?.as_view(),
        first_block(&keys)?.as_view(),
        causal,
    )?;

    // PyTorch's assert_close test (rtol 1.3e-6, atol 1e-5); on failure it names the worst
    // element
    let check = |w: &DMatrix<f32>| {
        compare(
            &matrix_to_row_major(w),
            &matrix_to_row_major(&want),
            &[seq, seq],
            Tolerance::F32,
        )
    };
    println!("head 0 of item 0 against PyTorch's attn_weights[0, 0] (7 x 7):");
    // (name, weights, how many of the 49 differ from PyTorch's)
    for (name, w, n_wrong) in [
        ("1/sqrt(head_dim)", &right, 0),
        ("1/sqrt(d_out)", &too_flat, 27),
        ("view, no transpose", &mixed, 27),
    ] {
        let last: Vec<String> =
            w.row(seq - 1).iter().map(|v| format!("{v:.4}")).collect();
        println!("  {name:<18} last row [{}]", last.join(" "));
        match check(w) {
            Ok(()) => println!("  {:<18} matches", ""),
            // the worst difference to 2 digits: its last digits are f32 rounding, which
            // varies by CPU
            Err(m) => println!(
                "  {:<18} {} of {} differ, worst by {:.2} at {:?}",
                "", m.n_bad, m.n_total, m.diff, m.index
            ),
        }
        assert_eq!(check(w).map_err(|m| m.n_bad).err().unwrap_or(0), n_wrong);
    }
    Ok(())
}
// ANCHOR_END: example
