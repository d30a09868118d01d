//! Chapter 2: zeroing the future after the softmax and renormalising gives the -inf
//! mask's weights.
extern crate attention;
extern crate nalgebra;
// ANCHOR: example
use attention::{Fixture, SelfAttention, show};
use nalgebra::DMatrix;

fn main() -> Result<(), attention::AttnError> {
    // PyTorch: torch.manual_seed(123); CausalAttention(3, 2, context_length=6, dropout=0)
    let fx = Fixture::load("toy_causal")?;
    let w = |name| fx.linear(name);
    let attn = SelfAttention::new(w("W_query")?, w("W_key")?, w("W_value")?, false)?;
    let x = fx.batch("x")?.items()[0].clone(); // (6, 3): the first of the batch of two
    let unmasked = attn.forward_with_weights(&x)?.weights; // (6, 6): no mask

    // Zero every weight above the diagonal (Raschka's `torch.tril`)...
    let zeroed = unmasked.lower_triangle();
    // ...then divide each row by its sum so it is a distribution again.
    let mut renormalised = zeroed.clone();
    for mut row in renormalised.row_iter_mut() {
        row /= row.sum();
    }
    let sums = |m: &DMatrix<f32>| m.row_iter().map(|r| r.sum()).collect::<Vec<_>>();
    println!("row sums after zeroing      {}", show::row(&sums(&zeroed)));
    println!("row sums after renormalising{}", show::row(&sums(&renormalised)));

    compare_with_pytorch(&fx, &zeroed, &renormalised)
}
// ANCHOR_END: example

/// Compares both routes with PyTorch's weights (from -inf before the softmax) under
/// `assert_close`'s f32 tolerance: the renormalised weights agree, all 36; the zeroed
/// ones do not, and the worst of their 15 wrong weights is the first token's on itself.
fn compare_with_pytorch(
    fx: &Fixture,
    zeroed: &DMatrix<f32>,
    renormalised: &DMatrix<f32>,
) -> Result<(), attention::AttnError> {
    use attention::{Tolerance, compare, matrix_to_row_major};
    let want = matrix_to_row_major(&fx.matrix("attn_weights")?);
    let tol = Tolerance::F32;
    let check = |m: &DMatrix<f32>| compare(&matrix_to_row_major(m), &want, &[6, 6], tol);
    check(renormalised).expect("renormalised = the -inf mask's weights");
    println!(
        "renormalised vs PyTorch: all 36 weights within rtol {:e}, atol {:e}",
        tol.rtol, tol.atol
    );
    // Without the renormalisation the rows do not sum to 1, and the numbers are wrong.
    let m = check(zeroed).unwrap_err();
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
