//! Chapter 1: the scores, attention weights and context vector of one query, "journey"
//! (x2).
extern crate attention;
extern crate nalgebra;
// ANCHOR: example
use attention::show::{TOY_TOKENS, row};
use attention::{Fixture, softmax_rows};
use nalgebra::DMatrix;

fn main() -> Result<(), attention::AttnError> {
    let fx = Fixture::load("toy_simplified")?; // with PyTorch's numbers
    let x = fx.matrix("x")?; // (6, 3): "Your journey starts with one step"

    // x.row(1) is x2, "journey". One dot product per token: do they point the same way?
    let scores = DMatrix::from_fn(1, 6, |_, j| x.row(1).dot(&x.row(j))); // (1, 6)
    let weights = softmax_rows(&scores); // (1, 6): positive, summing to 1
    let mut z2 = DMatrix::<f32>::zeros(1, 3); // z2 = Σ_j α_2j · x_j, (1, 3)
    for j in 0..6 {
        z2 += weights[(0, j)] * x.row(j);
    }

    for (j, token) in TOY_TOKENS.iter().enumerate() {
        println!("x{} {token:<10}{}", j + 1, row(x.row(j).iter()));
    }
    println!("key token     {}", TOY_TOKENS.map(|t| format!("{t:>8}")).concat());
    println!("score x2·xj   {}", row(&scores));
    println!("weight α2j    {}   sum {:.4}", row(&weights), weights.sum());
    println!("context z2    {}", row(&z2));
    check_against_pytorch(&fx, &scores, &weights, &z2)
}
// ANCHOR_END: example

/// The same numbers from PyTorch: row 1 of its score and weight matrices and of its
/// output.
fn check_against_pytorch(
    fx: &Fixture,
    scores: &DMatrix<f32>,
    weights: &DMatrix<f32>,
    z2: &DMatrix<f32>,
) -> Result<(), attention::AttnError> {
    use attention::{Tolerance, assert_matrix_close};
    let row1 = |name: &str| fx.matrix(name).map(|m| m.rows(1, 1).into_owned());
    assert_matrix_close(scores, &row1("attn_scores")?, Tolerance::F32);
    assert_matrix_close(weights, &row1("attn_weights")?, Tolerance::F32);
    assert_matrix_close(z2, &row1("out")?, Tolerance::F32);
    Ok(())
}
