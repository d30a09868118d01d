//! Chapter 1: why softmax and not plain division by the sum, and why the maximum is
//! subtracted.
extern crate attention;
extern crate nalgebra;
// ANCHOR: example
use attention::show::row_width;
use attention::{Fixture, softmax_rows};
use nalgebra::DMatrix;

fn main() -> Result<(), attention::AttnError> {
    let fx = Fixture::load("softmax_edge")?; // hand-picked rows, torch.softmax of them
    let scores = fx.matrix("scores")?; // (3, 5)
    let small = scores.rows(0, 1).into_owned(); // ordinary scores, one of them negative
    let large = scores.rows(1, 1).into_owned(); // scores in the thousands
    let print = |name: &str, m: &DMatrix<f32>| println!("{name:<22}{}", row_width(m, 11));

    // 1. Dividing by the sum: a negative score becomes a negative "weight".
    let divided = &small / small.sum();
    print("scores", &small);
    print("divided by their sum", &divided);
    print("softmax", &softmax_rows(&small));

    // 2. exp without subtracting the maximum: exp(1000) is inf in f32, inf / inf is NaN.
    let naive = large.map(f32::exp) / large.map(f32::exp).sum();
    print("large scores", &large);
    print("exp(s) / Σ exp(s)", &naive);
    print("softmax (max removed)", &softmax_rows(&large));
    check(&fx, &scores, &divided, &naive)
}
// ANCHOR_END: example

/// What the text claims of the two failures, and that our softmax of both rows is
/// PyTorch's.
fn check(
    fx: &Fixture,
    scores: &DMatrix<f32>,
    divided: &DMatrix<f32>,
    naive: &DMatrix<f32>,
) -> Result<(), attention::AttnError> {
    use attention::{Tolerance, assert_matrix_close};
    assert!(
        divided.iter().any(|&w| w < 0.0),
        "plain division keeps the sign of a negative score"
    );
    assert!(naive.iter().any(|w| w.is_nan()), "exp overflows without the max subtracted");
    let ours = softmax_rows(&scores.rows(0, 2).into_owned());
    assert_matrix_close(
        &ours,
        &fx.matrix("out")?.rows(0, 2).into_owned(),
        Tolerance::F32,
    );
    Ok(())
}
