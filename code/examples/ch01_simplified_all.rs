//! Chapter 1: every token's weights and context vector at once, with three matrix
//! products.
extern crate attention;
extern crate nalgebra;
// ANCHOR: example
use attention::show::{TOY_TOKENS, print_table};
use attention::{Fixture, simplified_self_attention, softmax_rows};

fn main() -> Result<(), attention::AttnError> {
    // PyTorch: x @ x.T, torch.softmax(dim=-1), @ x
    let fx = Fixture::load("toy_simplified")?;
    let x = fx.matrix("x")?; // (6, 3)

    let scores = &x * x.transpose(); // (6, 3) · (3, 6) -> (6, 6): all dot products
    let weights = softmax_rows(&scores); // (6, 6): row i holds the weights of query i
    let context = simplified_self_attention(&x); // (6, 6) · (6, 3) -> (6, 3)

    // weights: a row per query, a column per key; context: a row per token
    print_table("weights", &TOY_TOKENS, &TOY_TOKENS, &weights);
    print_table("context", &["dim 0", "dim 1", "dim 2"], &TOY_TOKENS, &context);

    // every row is one query's distribution over the keys: it sums to 1
    assert!(weights.row_iter().all(|row| (row.sum() - 1.0).abs() < 1e-6));
    check_against_pytorch(&fx, &scores, &weights, &context)
}
// ANCHOR_END: example

/// Each step is PyTorch's: the scores, the weights and the context vectors.
fn check_against_pytorch(
    fx: &Fixture,
    scores: &nalgebra::DMatrix<f32>,
    weights: &nalgebra::DMatrix<f32>,
    context: &nalgebra::DMatrix<f32>,
) -> Result<(), attention::AttnError> {
    use attention::{Tolerance, assert_matrix_close};
    assert_matrix_close(scores, &fx.matrix("attn_scores")?, Tolerance::F32);
    assert_matrix_close(weights, &fx.matrix("attn_weights")?, Tolerance::F32);
    assert_matrix_close(context, &fx.matrix("out")?, Tolerance::F32);
    Ok(())
}
