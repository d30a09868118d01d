//! Chapter 3: splitting the heads wrongly (a view without the transpose), caught by
//! comparing one head's weights with PyTorch's.
extern crate attention;
extern crate nalgebra;
// ANCHOR: example
use attention::{Fixture, Mask, attention_weights, matrix_to_row_major};
use nalgebra::DMatrix;

fn main() -> Result<(), attention::AttnError> {
    let fx = Fixture::load("small_mha")?; // MultiHeadAttention(12, 16, num_heads=4)
    let (head_dim, causal) = (4, Mask::Causal { query_offset: 0 });
    let x = fx.batch("x")?.items()[0].clone(); // item 0: (7, 12)
    let q = fx.linear("W_query")?.forward(&x)?; // (7, 16): 4 heads of 4 columns
    let k = fx.linear("W_key")?.forward(&x)?; // (7, 16)

    // right: head 0 is columns 0..head_dim of every token's row, a (7, 4) view
    let right =
        attention_weights(q.columns(0, head_dim), k.columns(0, head_dim), causal)?;

    // bug: PyTorch's t.view(b, n_heads, seq, head_dim) without .view(b, seq, n_heads,
    // head_dim).transpose(1, 2): "head 0" is the first seq·head_dim = 28 numbers of the
    // row-major buffer (token 0's 16 features and 12 of token 1's) cut into rows of 4
    let first_block = |m| DMatrix::from_row_slice(7, 4, &matrix_to_row_major(m)[..28]);
    let (q0, k0) = (first_block(&q), first_block(&k)); // tokens and heads mixed up
    let mixed = attention_weights(q0.as_view(), k0.as_view(), causal)?;

    println!("head 0 of item 0 against PyTorch's attn_weights[0, 0] (7 x 7):");
    // last argument: how many of the 49 weights must differ from PyTorch's (asserted)
    compare_with_pytorch(&fx, "column blocks", &right, 0)?;
    compare_with_pytorch(&fx, "view, no transpose", &mixed, 27)
}
// ANCHOR_END: example

/// Prints the last row of `w` and how it compares with PyTorch's head 0 of item 0
/// (`assert_close`'s test: rtol 1.3e-6, atol 1e-5), naming the worst element; asserts
/// that `n_wrong` of the 49 weights differ.
fn compare_with_pytorch(
    fx: &Fixture,
    name: &str,
    w: &DMatrix<f32>,
    n_wrong: usize,
) -> Result<(), attention::AttnError> {
    use attention::{Tolerance, compare, show};
    // PyTorch's attn_weights[0, 0]: the first (7, 7) block of the row-major (2, 4, 7, 7)
    let want = DMatrix::from_row_slice(7, 7, &fx.tensor("attn_weights")?.data[..49]);
    let row_major = |m: &DMatrix<f32>| matrix_to_row_major(m);
    let result = compare(&row_major(w), &row_major(&want), &[7, 7], Tolerance::F32);
    println!("  {name:<18} last row{}", show::row(w.row(6).iter()));
    match &result {
        Ok(()) => println!("  {:<18} matches", ""),
        // the worst difference to 2 digits: its last digits are f32 rounding, which
        // varies by CPU
        Err(m) => println!(
            "  {:<18} {} of {} differ, worst by {:.2} at {:?}",
            "", m.n_bad, m.n_total, m.diff, m.index
        ),
    }
    assert_eq!(result.map_err(|m| m.n_bad).err().unwrap_or(0), n_wrong);
    Ok(())
}
