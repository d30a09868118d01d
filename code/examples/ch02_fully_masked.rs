//! Chapter 2: a row with every key masked: NaN from a plain softmax, zeros from ours (and
//! PyTorch's safe one).
extern crate attention;
extern crate nalgebra;
// ANCHOR: example
use attention::{Fixture, show, softmax_rows};
use nalgebra::DMatrix;

/// The textbook softmax of one row: exp(s - max) / Σ exp(s - max), with no special case.
fn plain_softmax(row: &DMatrix<f32>) -> DMatrix<f32> {
    let max = row.max();
    let e = row.map(|s| (s - max).exp()); // all -inf: -inf - (-inf) is NaN
    &e / e.sum()
}

fn main() -> Result<(), attention::AttnError> {
    let fx = Fixture::load("softmax_edge")?; // torch.softmax and torch._safe_softmax
    let scores = fx.matrix("scores_safe")?; // (4, 5); row 2 partly masked, row 3 fully
    for (name, r) in [("partly masked", 2), ("fully masked", 3)] {
        let row = scores.rows(r, 1).into_owned(); // (1, 5)
        println!("{name:<15}{:<14}{}", "scores", show::row(&row));
        println!("{:<15}{:<14}{}", "", "plain softmax", show::row(&plain_softmax(&row)));
        println!("{:<15}{:<14}{}", "", "softmax_rows", show::row(&softmax_rows(&row)));
    }

    // A causal mask alone never masks a whole row: query i always sees its own key.
    let (checked, fully_masked) = check_every_causal_mask(32)?; // asserts none
    println!("causal masks checked: {checked}, fully masked rows: {fully_masked}");
    check_against_pytorch(&fx, &scores)
}
// ANCHOR_END: example

/// The plain softmax gives NaN on the fully masked row and PyTorch's `torch.softmax` on
/// the partly masked one; `softmax_rows` gives `torch._safe_softmax` on every row (zeros
/// for the fully masked one).
fn check_against_pytorch(
    fx: &Fixture,
    scores: &DMatrix<f32>,
) -> Result<(), attention::AttnError> {
    use attention::{Tolerance, assert_matrix_close};
    assert!(plain_softmax(&scores.rows(3, 1).into_owned()).iter().all(|w| w.is_nan()));
    let partly = scores.rows(2, 1).into_owned();
    assert_matrix_close(
        &plain_softmax(&partly),
        &fx.matrix("out")?.rows(2, 1).into_owned(),
        Tolerance::F32,
    );
    assert_matrix_close(&softmax_rows(scores), &fx.matrix("out_safe")?, Tolerance::F32);
    Ok(())
}

/// Counts the fully masked rows of every causal mask of up to `max_keys` keys, at every
/// `query_offset` and chunk length, and asserts there are none (query `i` sees its own
/// key, `query_offset + i`); returns how many masks it checked and that count.
fn check_every_causal_mask(
    max_keys: usize,
) -> Result<(usize, usize), attention::AttnError> {
    let (mut checked, mut fully_masked) = (0, 0);
    for n_keys in 1..=max_keys {
        for query_offset in 0..n_keys {
            for n_queries in 1..=n_keys - query_offset {
                let mask = attention::causal_mask(n_queries, n_keys, query_offset)?;
                fully_masked +=
                    mask.row_iter().filter(|r| r.iter().all(|&m| m != 0.0)).count();
                checked += 1;
            }
        }
    }
    assert_eq!(fully_masked, 0, "every row of a causal mask sees its own key");
    Ok((checked, fully_masked))
}
