//! Chapter 1: the scores, attention weights and context vector of one query, "journey"
//! (x2).
extern crate attention;
extern crate nalgebra;
// ANCHOR: example
use attention::{Fixture, Tolerance, assert_matrix_close, softmax_rows};
use nalgebra::DMatrix;

/// The entries of a `(1, n)` row, each printed with 4 decimals in a column 8 wide.
fn fmt_row(m: &DMatrix<f32>) -> String {
    m.iter().map(|v| format!("{v:8.4}")).collect()
}

fn main() -> Result<(), attention::AttnError> {
    // PyTorch's numbers, from scripts/gen_fixtures.py
    let fx = Fixture::load("toy_simplified")?;
    // (6, 3): "Your journey starts with one step", one row per token
    let x = fx.matrix("x")?;
    let query = x.row(1); // x2, "journey"

    // One dot product per token: how far does each token point the same way as "journey"?
    let scores = DMatrix::from_fn(1, x.nrows(), |_, j| query.dot(&x.row(j))); // (1, 6)
    // Softmax turns the scores into weights: positive, summing to 1.
    let weights = softmax_rows(&scores); // (1, 6)
    // z2 = Σ_j α_2j · x_j: the weighted sum of all the token vectors.
    let mut z2 = DMatrix::<f32>::zeros(1, x.ncols()); // (1, 3)
    for j in 0..x.nrows() {
        z2 += weights[(0, j)] * x.row(j);
    }

    let tokens = ["Your", "journey", "starts", "with", "one", "step"];
    for (j, token) in tokens.iter().enumerate() {
        println!("x{} {token:<10}{}", j + 1, fmt_row(&x.rows(j, 1).into_owned()));
    }
    println!("{:<14}{}", "key token", tokens.map(|t| format!("{t:>8}")).concat());
    println!("{:<14}{}", "score x2·xj", fmt_row(&scores));
    println!("{:<14}{}   sum {:.4}", "weight α2j", fmt_row(&weights), weights.sum());
    println!("{:<14}{}", "context z2", fmt_row(&z2));

    // The same numbers from PyTorch: row 1 of its score and weight matrices and of its
    // output.
    let row1 = |name: &str| fx.matrix(name).map(|m| m.rows(1, 1).into_owned());
    assert_matrix_close(&scores, &row1("attn_scores")?, Tolerance::F32);
    assert_matrix_close(&weights, &row1("attn_weights")?, Tolerance::F32);
    assert_matrix_close(&z2, &row1("out")?, Tolerance::F32);
    Ok(())
}
// ANCHOR_END: example
