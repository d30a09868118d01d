//! Chapter 3: scaling one head's scores by 1/√d_out instead of 1/√head_dim, caught by
//! comparing its weights with PyTorch's.
extern crate attention;
extern crate nalgebra;
// ANCHOR: example
use attention::{Fixture, apply_causal_mask, softmax_rows_in_place};

fn main() -> Result<(), attention::AttnError> {
    let fx = Fixture::load("small_mha")?; // MultiHeadAttention(12, 16, num_heads=4)
    let (n_heads, head_dim) = (4, 4);
    let x = fx.batch("x")?.items()[0].clone(); // item 0: (7, 12)
    let q = fx.linear("W_query")?.forward(&x)?; // (7, 16)
    let k = fx.linear("W_key")?.forward(&x)?; // (7, 16)
    // head 0: (7, 4) · (4, 7) -> (7, 7), each score a dot product of head_dim numbers
    let scores = q.columns(0, head_dim) * k.columns(0, head_dim).transpose();

    println!("head 0 of item 0 against PyTorch's attn_weights[0, 0] (7 x 7):");
    let d_out = n_heads * head_dim; // 16: all heads together
    // n_wrong: how many of the 49 weights must differ from PyTorch's (asserted)
    for (name, scale, n_wrong) in [("head_dim", head_dim, 0), ("d_out", d_out, 27)] {
        // right: √head_dim = 2; bug: √d_out = 4 shrinks every score
        let mut w = &scores / (scale as f32).sqrt();
        apply_causal_mask(&mut w, 0)?;
        softmax_rows_in_place(&mut w); // smaller scores: flatter weights
        compare_with_pytorch(&fx, &format!("1/sqrt({name})"), &w, n_wrong)?;
    }
    Ok(())
}
// ANCHOR_END: example

/// Prints the last row of `w` and how it compares with PyTorch's head 0 of item 0
/// (`assert_close`'s test: rtol 1.3e-6, atol 1e-5), naming the worst element; asserts
/// that `n_wrong` of the 49 weights differ.
fn compare_with_pytorch(
    fx: &Fixture,
    name: &str,
    w: &nalgebra::DMatrix<f32>,
    n_wrong: usize,
) -> Result<(), attention::AttnError> {
    use attention::{Tolerance, compare, matrix_to_row_major, show};
    use nalgebra::DMatrix;
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
