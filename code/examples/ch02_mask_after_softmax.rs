//! Chapter 2: zeroing the future after the softmax and renormalising gives the -inf
//! mask's weights.
extern crate attention;
extern crate nalgebra;
// ANCHOR: example
use attention::{Fixture, SelfAttention, Tolerance, compare, matrix_to_row_major};
use nalgebra::DMatrix;

/// Each row's sum, 4 decimals, each in a column 8 wide.
fn fmt_row_sums(m: &DMatrix<f32>) -> String {
    m.row_iter().map(|r| format!("{:8.4}", r.sum())).collect()
}

fn main() -> Result<(), attention::AttnError> {
    // PyTorch: torch.manual_seed(123); CausalAttention(d_in=3, d_out=2, context_length=6,
    // dropout=0.0)
    let fx = Fixture::load("toy_causal")?;
    let x = fx.batch("x")?.items()[0].clone(); // (6, 3)
    let (wq, wk, wv) =
        (fx.linear("W_query")?, fx.linear("W_key")?, fx.linear("W_value")?);
    let unmasked =
        // (6, 6)
        SelfAttention::new(wq, wk, wv, false)?.forward_with_weights(&x)?.weights;

    // Zero every weight above the diagonal (Raschka's `torch.tril` route)...
    let zeroed =
        DMatrix::from_fn(6, 6, |i, j| if j <= i { unmasked[(i, j)] } else { 0.0 });
    println!("row sums after zeroing     {}", fmt_row_sums(&zeroed));
    // ...then divide each row by its sum so it is a distribution again.
    let mut renormalised = zeroed.clone();
    for mut row in renormalised.row_iter_mut() {
        row /= row.sum();
    }
    println!("row sums after renormalising{}", fmt_row_sums(&renormalised));

    // PyTorch's weights, from -inf before the softmax; compared with assert_close's f32
    // tolerance
    let want = matrix_to_row_major(&fx.matrix("attn_weights")?);
    let tol = Tolerance::F32;
    let check = |m: &DMatrix<f32>| compare(&matrix_to_row_major(m), &want, &[6, 6], tol);
    check(&renormalised).expect("renormalised = the -inf mask's weights");
    println!(
        "renormalised vs PyTorch: all 36 weights within rtol {:e}, atol {:e}",
        tol.rtol, tol.atol
    );
    // Without the renormalisation the rows do not sum to 1, and the numbers are wrong.
    let m = check(&zeroed).unwrap_err();
    println!(
        "zeroed, not renormalised, vs PyTorch: {} of {} weights differ;\n  \
            worst at {:?}: {:.4} instead of {:.4}",
        m.n_bad, m.n_total, m.index, m.got, m.want
    );
    assert_eq!(
        (m.n_bad, m.index),
        (15, vec![0, 0]),
        "every weight left of the diagonal; worst: the first"
    );
    Ok(())
}
// ANCHOR_END: example
