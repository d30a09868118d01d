//! Chapter 1: self-attention with trainable W_q, W_k, W_v, loaded from PyTorch's
//! `SelfAttention_v2`.
extern crate attention;
extern crate nalgebra;
// ANCHOR: example
use attention::{Fixture, SelfAttention, Tolerance, assert_matrix_close};
use nalgebra::DMatrix;

const TOKENS: [&str; 6] = ["Your", "journey", "starts", "with", "one", "step"];

/// Prints a matrix under its column names, one row per line with a label, 4 decimals.
fn print_rows(title: &str, columns: &[&str], rows: &[&str], m: &DMatrix<f32>) {
    println!(
        "{title:<10}{}",
        columns.iter().map(|c| format!("{c:>8}")).collect::<String>()
    );
    for (label, row) in rows.iter().zip(m.row_iter()) {
        println!(
            "  {label:<8}{}",
            row.iter().map(|v| format!("{v:8.4}")).collect::<String>()
        );
    }
}

fn main() -> Result<(), attention::AttnError> {
    // PyTorch: torch.manual_seed(789); sa = SelfAttention_v2(d_in=3, d_out=2); out =
    // sa(x)
    let fx = Fixture::load("toy_self_attention")?;
    let attn = SelfAttention::new(
        fx.linear("W_query")?, // weight (d_out, d_in) = (2, 3), as nn.Linear stores it
        fx.linear("W_key")?,
        fx.linear("W_value")?,
        false, // not causal: every token sees every token
    )?;
    let x = fx.matrix("x")?; // (6, 3)
    let out = attn.forward_with_weights(&x)?; // context (6, 2), weights (6, 6)

    print_rows(
        "W_query",
        &["x[0]", "x[1]", "x[2]"],
        &["q[0]", "q[1]"],
        attn.w_query().weight(),
    );
    print_rows("weights", &TOKENS, &TOKENS, &out.weights); // row = query, column = key
    print_rows("context", &["dim 0", "dim 1"], &TOKENS, &out.context);

    // Each step is PyTorch's: projections, weights (scaled by 1/√d_out), context.
    assert_matrix_close(
        &attn.w_query().forward(&x)?,
        &fx.matrix("queries")?,
        Tolerance::F32,
    );
    assert_matrix_close(&attn.w_key().forward(&x)?, &fx.matrix("keys")?, Tolerance::F32);
    assert_matrix_close(
        &attn.w_value().forward(&x)?,
        &fx.matrix("values")?,
        Tolerance::F32,
    );
    assert_matrix_close(&out.weights, &fx.matrix("attn_weights")?, Tolerance::F32);
    assert_matrix_close(&out.context, &fx.matrix("out")?, Tolerance::F32);
    Ok(())
}
// ANCHOR_END: example
