//! Chapter 2: Raschka's §3.5.1, the masked weights of `sa_v2` (seed 789), against
//! PyTorch's.
extern crate attention;
extern crate nalgebra;
// ANCHOR: example
use attention::{Fixture, Mask, SelfAttention, attention_weights};

fn main() -> Result<(), attention::AttnError> {
    // torch.manual_seed(789); sa_v2 = SelfAttention_v2(3, 2); then -inf above the
    // diagonal, softmax
    let fx = Fixture::load("toy_masked_sa_v2")?;
    let w = |name| fx.linear(name);
    let sa_v2 = SelfAttention::new(w("W_query")?, w("W_key")?, w("W_value")?, false)?;
    let x = fx.matrix("x")?; // (6, 3)
    // (6, 3) · (3, 2) -> (6, 2) each
    let (q, k) = (sa_v2.w_query().forward(&x)?, sa_v2.w_key().forward(&x)?);
    let mask = Mask::Causal { query_offset: 0 }; // a fresh sequence
    let weights = attention_weights(q.as_view(), k.as_view(), mask)?; // (6, 6)
    for (i, row) in weights.row_iter().enumerate() {
        // row i keeps keys 0..=i; numbered from 1, as the book prints rows
        let seen: Vec<String> =
            row.iter().take(i + 1).map(|v| format!("{v:.4}")).collect();
        println!("row {}: [{}]", i + 1, seen.join(", "));
    }

    check_against_pytorch(&fx, &weights)
}
// ANCHOR_END: example

/// The weights are PyTorch's (`masked_weights`), within `assert_close`'s f32 tolerance.
fn check_against_pytorch(
    fx: &Fixture,
    weights: &nalgebra::DMatrix<f32>,
) -> Result<(), attention::AttnError> {
    use attention::{Tolerance, assert_matrix_close};
    assert_matrix_close(weights, &fx.matrix("masked_weights")?, Tolerance::F32);
    Ok(())
}
