//! Chapter 1: why softmax and not plain division by the sum, and why the maximum is
//! subtracted.
extern crate attention;
extern crate nalgebra;
// ANCHOR: example
use attention::{Fixture, Tolerance, assert_matrix_close, softmax_rows};
use nalgebra::DMatrix;

/// The entries of a `(1, n)` row, each printed with 4 decimals in a column 11 wide.
fn fmt_row(m: &DMatrix<f32>) -> String {
    m.iter().map(|v| format!("{v:11.4}")).collect()
}

fn main() -> Result<(), attention::AttnError> {
    // torch.softmax(scores, dim=-1) on hand-picked rows (scripts/gen_fixtures.py, case
    // softmax_edge)
    let fx = Fixture::load("softmax_edge")?;
    let scores = fx.matrix("scores")?; // (3, 5)
    let small = scores.rows(0, 1).into_owned(); // ordinary scores, one of them negative
    let large = scores.rows(1, 1).into_owned(); // scores in the thousands

    // 1. Dividing by the sum: a negative score becomes a negative "weight".
    let divided = &small / small.sum();
    println!("{:<22}{}", "scores", fmt_row(&small));
    println!("{:<22}{}", "divided by their sum", fmt_row(&divided));
    println!("{:<22}{}", "softmax", fmt_row(&softmax_rows(&small)));

    // 2. exp without subtracting the maximum: exp(1000) is inf in f32, and inf / inf is
    //    NaN.
    let naive = large.map(f32::exp) / large.map(f32::exp).sum();
    println!("{:<22}{}", "large scores", fmt_row(&large));
    println!("{:<22}{}", "exp(s) / Σ exp(s)", fmt_row(&naive));
    println!("{:<22}{}", "softmax (max removed)", fmt_row(&softmax_rows(&large)));

    assert!(
        divided.iter().any(|&w| w < 0.0),
        "plain division keeps the sign of a negative score"
    );
    assert!(naive.iter().any(|w| w.is_nan()), "exp overflows without the max subtracted");
    // our softmax of both rows is PyTorch's
    let ours = softmax_rows(&scores.rows(0, 2).into_owned());
    assert_matrix_close(
        &ours,
        &fx.matrix("out")?.rows(0, 2).into_owned(),
        Tolerance::F32,
    );
    Ok(())
}
// ANCHOR_END: example
