//! Chapter 1: self-attention with trainable W_q, W_k, W_v, loaded from PyTorch's
//! `SelfAttention_v2`.
extern crate attention;
extern crate nalgebra;
// ANCHOR: example
use attention::show::{TOY_TOKENS, print_table};
use attention::{Fixture, SelfAttention};

fn main() -> Result<(), attention::AttnError> {
    // PyTorch: torch.manual_seed(789); sa = SelfAttention_v2(3, 2); out = sa(x)
    let fx = Fixture::load("toy_self_attention")?;
    let attn = SelfAttention::new(
        fx.linear("W_query")?, // weight (d_out, d_in) = (2, 3), as nn.Linear stores it
        fx.linear("W_key")?,
        fx.linear("W_value")?,
        false, // not causal: every token sees every token
    )?;
    let x = fx.matrix("x")?; // (6, 3)
    let out = attn.forward_with_weights(&x)?; // context (6, 2), weights (6, 6)

    let w_query = attn.w_query().weight(); // (2, 3): a row per output feature
    print_table("W_query", &["x[0]", "x[1]", "x[2]"], &["q[0]", "q[1]"], w_query);
    print_table("weights", &TOY_TOKENS, &TOY_TOKENS, &out.weights); // row = query
    print_table("context", &["dim 0", "dim 1"], &TOY_TOKENS, &out.context);
    check_against_pytorch(&fx, &attn, &x, &out)
}
// ANCHOR_END: example

/// Each step is PyTorch's: projections, weights (scaled by 1/√d_out), context.
fn check_against_pytorch(
    fx: &Fixture,
    attn: &SelfAttention,
    x: &nalgebra::DMatrix<f32>,
    out: &attention::HeadOutput,
) -> Result<(), attention::AttnError> {
    use attention::{Tolerance, assert_matrix_close};
    let close =
        |got: &nalgebra::DMatrix<f32>, name| -> Result<(), attention::AttnError> {
            assert_matrix_close(got, &fx.matrix(name)?, Tolerance::F32);
            Ok(())
        };
    close(&attn.w_query().forward(x)?, "queries")?;
    close(&attn.w_key().forward(x)?, "keys")?;
    close(&attn.w_value().forward(x)?, "values")?;
    close(&out.weights, "attn_weights")?;
    close(&out.context, "out")
}
