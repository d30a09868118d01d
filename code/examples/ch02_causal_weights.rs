//! Chapter 2: the causal mask added to the toy's scores, and the weights it gives.
extern crate attention;
extern crate nalgebra;
// ANCHOR: example
use attention::show::{TOY_TOKENS, print_table};
use attention::{Fixture, SelfAttention, causal_mask, softmax_rows};

fn main() -> Result<(), attention::AttnError> {
    // PyTorch: torch.manual_seed(123); CausalAttention(3, 2, context_length=6, dropout=0)
    let fx = Fixture::load("toy_causal")?;
    let w = |name| fx.linear(name);
    let attn = SelfAttention::new(w("W_query")?, w("W_key")?, w("W_value")?, true)?;
    // The fixture stores a batch of two sentences (a `Batch`, later in this chapter).
    let x = fx.batch("x")?.items()[0].clone(); // (6, 3): the first

    // By hand: scaled scores, plus the mask (0 on and below the diagonal, -inf above),
    // then softmax.
    let (q, k) = (attn.w_query().forward(&x)?, attn.w_key().forward(&x)?); // (6, 2) each
    let scores = &q * k.transpose() / 2f32.sqrt(); // (6, 6), scaled by 1/√head_dim
    let masked = scores + causal_mask(6, 6, 0)?; // query_offset 0: a fresh sequence
    let weights = softmax_rows(&masked); // exp(-inf) = 0: the future gets no weight
    print_table("masked", &TOY_TOKENS, &TOY_TOKENS, &masked);
    print_table("weights", &TOY_TOKENS, &TOY_TOKENS, &weights);

    check_against_pytorch(&fx, &attn, &x, &weights)
}
// ANCHOR_END: example

/// The module does the same (with `apply_causal_mask` in place), and both are PyTorch's.
fn check_against_pytorch(
    fx: &Fixture,
    attn: &SelfAttention,
    x: &nalgebra::DMatrix<f32>,
    weights: &nalgebra::DMatrix<f32>,
) -> Result<(), attention::AttnError> {
    use attention::{Tolerance, assert_matrix_close};
    let out = attn.forward_with_weights(x)?;
    assert_matrix_close(weights, &out.weights, Tolerance::F32);
    assert_matrix_close(weights, &fx.matrix("attn_weights")?, Tolerance::F32);
    Ok(())
}
