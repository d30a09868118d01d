//! Chapter 1: every token's weights and context vector at once, with three matrix
//! products.
extern crate attention;
extern crate nalgebra;
// ANCHOR: example
use attention::{
    Fixture, Tolerance, assert_matrix_close, simplified_self_attention, softmax_rows,
};
use nalgebra::DMatrix;

const TOKENS: [&str; 6] = ["Your", "journey", "starts", "with", "one", "step"];

/// Prints a matrix under its column names, one row per line labelled with its token, 4
/// decimals.
fn print_rows(title: &str, columns: &[&str], m: &DMatrix<f32>) {
    println!(
        "{title:<10}{}",
        columns.iter().map(|c| format!("{c:>8}")).collect::<String>()
    );
    for (token, row) in TOKENS.iter().zip(m.row_iter()) {
        println!(
            "  {token:<8}{}",
            row.iter().map(|v| format!("{v:8.4}")).collect::<String>()
        );
    }
}

fn main() -> Result<(), attention::AttnError> {
    // PyTorch: x @ x.T, torch.softmax(dim=-1), @ x
    let fx = Fixture::load("toy_simplified")?;
    let x = fx.matrix("x")?; // (6, 3)

    let scores = &x * x.transpose(); // (6, 3) · (3, 6) -> (6, 6): all dot products
    let weights = softmax_rows(&scores); // (6, 6): row i holds the weights of query i
    let context = simplified_self_attention(&x); // (6, 6) · (6, 3) -> (6, 3)

    print_rows("weights", &TOKENS, &weights); // row = query, column = key
    print_rows("context", &["dim 0", "dim 1", "dim 2"], &context); // row = token

    // every row is one query's distribution over the keys: it sums to 1
    assert!(weights.row_iter().all(|row| (row.sum() - 1.0).abs() < 1e-6));
    assert_matrix_close(&scores, &fx.matrix("attn_scores")?, Tolerance::F32);
    assert_matrix_close(&weights, &fx.matrix("attn_weights")?, Tolerance::F32);
    assert_matrix_close(&context, &fx.matrix("out")?, Tolerance::F32);
    Ok(())
}
// ANCHOR_END: example
