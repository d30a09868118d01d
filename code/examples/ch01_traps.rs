//! Chapter 1: two silent bugs, PyTorch data read column-major and the softmax taken down
//! the columns.
extern crate attention;
extern crate nalgebra;
// ANCHOR: example
use attention::{Fixture, Tolerance, compare, matrix_from_row_major, softmax_rows};
use attention::{matrix_to_row_major, show::row};
use nalgebra::DMatrix;

fn main() -> Result<(), attention::AttnError> {
    let fx = Fixture::load("toy_self_attention")?; // seed 789, SelfAttention_v2(3, 2)
    // Trap 1: safetensors (like PyTorch and NumPy) stores the (2, 3) weight row by row.
    let w = fx.tensor("W_query.weight")?; // shape [2, 3], data row-major
    let right = matrix_from_row_major(2, 3, &w.data)?;
    let wrong = DMatrix::from_vec(2, 3, w.data.clone()); // nalgebra fills by columns
    println!("data as stored (row-major)      {}", row(&w.data));
    println!("matrix_from_row_major: row 0    {}", row(right.row(0).iter()));
    println!("DMatrix::from_vec:     row 0    {}", row(wrong.row(0).iter()));
    // Trap 2: softmax down the columns, not along the rows. Same shape (6, 6), so a shape
    // check passes; row sums (column_sum: one per row) and PyTorch's numbers do not.
    let scores = fx.matrix("attn_scores")? / 2f32.sqrt(); // (6, 6), scaled by 1/√head_dim
    let weights = softmax_rows(&scores); // along each row: one distribution per query
    let wrong_axis = softmax_rows(&scores.transpose()).transpose(); // one per key
    println!("row sums, softmax along rows    {}", row(&weights.column_sum()));
    println!("row sums, softmax down columns  {}", row(&wrong_axis.column_sum()));
    let (got, want) = (matrix_to_row_major(&wrong_axis), fx.tensor("attn_weights")?.data);
    let m = compare(&got, &want, &[6, 6], Tolerance::F32).unwrap_err(); // 36 of 36 differ
    println!("wrong axis vs PyTorch: {} of {} weights differ", m.n_bad, m.n_total);
    check(&fx, &right, &wrong, &weights, &m)
}
// ANCHOR_END: example

/// The lines above, as assertions: trap 1's two matrices differ and the right one is
/// PyTorch's; the weights along the rows are PyTorch's, and every weight down the columns
/// is wrong.
fn check(
    fx: &Fixture,
    right: &DMatrix<f32>,
    wrong: &DMatrix<f32>,
    weights: &DMatrix<f32>,
    m: &attention::Mismatch,
) -> Result<(), attention::AttnError> {
    assert_eq!(*right, fx.matrix("W_query.weight")?);
    assert_ne!(right, wrong, "same shape, same numbers, different matrix");
    let want = matrix_to_row_major(&fx.matrix("attn_weights")?);
    assert!(
        compare(&matrix_to_row_major(weights), &want, &[6, 6], Tolerance::F32).is_ok()
    );
    assert_eq!(m.n_bad, m.n_total, "every weight is wrong");
    Ok(())
}
