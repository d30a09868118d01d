//! Chapter 1: two silent bugs, PyTorch data read column-major and the softmax taken down
//! the columns.
extern crate attention;
extern crate nalgebra;
// ANCHOR: example
use attention::{
    Fixture, Tolerance, compare, matrix_from_row_major, matrix_to_row_major, softmax_rows,
};
use nalgebra::DMatrix;

/// Numbers with 4 decimals, each in a column 8 wide.
fn fmt<'a>(values: impl IntoIterator<Item = &'a f32>) -> String {
    values.into_iter().map(|v| format!("{v:8.4}")).collect()
}

fn main() -> Result<(), attention::AttnError> {
    // torch.manual_seed(789); SelfAttention_v2(3, 2)
    let fx = Fixture::load("toy_self_attention")?;

    // Trap 1: safetensors (like PyTorch and NumPy) stores the (2, 3) weight row by row.
    let w = fx.tensor("W_query.weight")?; // shape [2, 3], data row-major
    let right = matrix_from_row_major(2, 3, &w.data)?;
    // nalgebra fills column by column
    let wrong = DMatrix::from_vec(2, 3, w.data.clone());
    println!("data as stored (row-major)      {}", fmt(&w.data));
    println!("matrix_from_row_major: row 0    {}", fmt(right.row(0).iter()));
    println!("DMatrix::from_vec:     row 0    {}", fmt(wrong.row(0).iter()));
    assert_eq!(right, fx.matrix("W_query.weight")?);
    assert_ne!(right, wrong, "same shape, same numbers, different matrix");

    // Trap 2: softmax down the columns instead of along the rows.
    let scores = fx.matrix("attn_scores")? / 2f32.sqrt(); // (6, 6), scaled by 1/√head_dim
    let weights = softmax_rows(&scores); // along each row: one distribution per query
    // one distribution per key
    let wrong_axis = softmax_rows(&scores.transpose()).transpose();
    let row_sums = |m: &DMatrix<f32>| m.row_iter().map(|r| r.sum()).collect::<Vec<f32>>();
    println!("row sums, softmax along rows    {}", fmt(&row_sums(&weights)));
    println!("row sums, softmax down columns  {}", fmt(&row_sums(&wrong_axis)));

    // Same shape (6, 6), so a test that checks shapes passes; comparing the numbers does
    // not.
    let want = matrix_to_row_major(&fx.matrix("attn_weights")?);
    assert!(
        compare(&matrix_to_row_major(&weights), &want, &[6, 6], Tolerance::F32).is_ok()
    );
    let m = compare(&matrix_to_row_major(&wrong_axis), &want, &[6, 6], Tolerance::F32)
        .unwrap_err();
    println!(
        "wrong axis vs PyTorch: {} of {} weights differ; worst at {:?}: {:.4} instead \
            of {:.4}",
        m.n_bad, m.n_total, m.index, m.got, m.want
    );
    assert_eq!(m.n_bad, m.n_total, "every weight is wrong");
    Ok(())
}
// ANCHOR_END: example
