//! Chapter 2: a row with every key masked: NaN from a plain softmax, zeros from ours (and
//! PyTorch's safe one).
extern crate attention;
extern crate nalgebra;
// ANCHOR: example
use attention::{Fixture, Tolerance, assert_matrix_close, causal_mask, softmax_rows};
use nalgebra::DMatrix;

/// The entries of a `(1, n)` row, each in a column 8 wide with 4 decimals.
fn fmt_row(m: &DMatrix<f32>) -> String {
    m.iter().map(|v| format!("{v:8.4}")).collect()
}

/// The textbook softmax of one row: exp(s - max) / Σ exp(s - max), with no special case.
fn plain_softmax(row: &DMatrix<f32>) -> DMatrix<f32> {
    let max = row.max();
    let e = row.map(|s| (s - max).exp());
    &e / e.sum()
}

fn main() -> Result<(), attention::AttnError> {
    // PyTorch: torch.softmax and torch._safe_softmax over the last axis (case
    // softmax_edge)
    let fx = Fixture::load("softmax_edge")?;
    // (4, 5); row 2 partly masked, row 3 fully masked
    let scores = fx.matrix("scores_safe")?;
    for (name, r) in [("partly masked", 2), ("fully masked", 3)] {
        let row = scores.rows(r, 1).into_owned();
        println!("{name:<15}{:<14}{}", "scores", fmt_row(&row));
        println!("{:<15}{:<14}{}", "", "plain softmax", fmt_row(&plain_softmax(&row)));
        println!("{:<15}{:<14}{}", "", "softmax_rows", fmt_row(&softmax_rows(&row)));
    }
    // -inf - (-inf) is NaN, so the plain formula returns NaN for the fully masked row...
    assert!(plain_softmax(&scores.rows(3, 1).into_owned()).iter().all(|w| w.is_nan()));
    let partly = scores.rows(2, 1).into_owned();
    assert_matrix_close(
        &plain_softmax(&partly),
        &fx.matrix("out")?.rows(2, 1).into_owned(),
        Tolerance::F32,
    );
    // ...and our softmax_rows returns zeros, as torch._safe_softmax does.
    assert_matrix_close(&softmax_rows(&scores), &fx.matrix("out_safe")?, Tolerance::F32);

    // A causal mask alone never masks a whole row: query i always sees its own key
    // query_offset + i.
    let mut checked = 0;
    for n_keys in 1..=32 {
        for query_offset in 0..n_keys {
            for n_queries in 1..=n_keys - query_offset {
                let mask = causal_mask(n_queries, n_keys, query_offset)?;
                assert!(mask.row_iter().all(|row| row.iter().any(|&m| m == 0.0)));
                checked += 1;
            }
        }
    }
    println!("causal masks checked: {checked}, fully masked rows: 0");
    Ok(())
}
// ANCHOR_END: example
