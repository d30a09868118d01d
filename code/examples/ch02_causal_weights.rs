//! Chapter 2: the causal mask added to the toy's scores, and the weights it gives.
extern crate attention;
extern crate nalgebra;
// ANCHOR: example
use attention::{
    Fixture, SelfAttention, Tolerance, assert_matrix_close, causal_mask, softmax_rows,
};
use nalgebra::DMatrix;

const TOKENS: [&str; 6] = ["Your", "journey", "starts", "with", "one", "step"];

/// Prints a (6, 6) matrix with the tokens as row and column labels, 4 decimals.
fn print_rows(title: &str, m: &DMatrix<f32>) {
    println!(
        "{title:<10}{}",
        TOKENS.iter().map(|c| format!("{c:>8}")).collect::<String>()
    );
    for (label, row) in TOKENS.iter().zip(m.row_iter()) {
        println!(
            "  {label:<8}{}",
            row.iter().map(|v| format!("{v:8.4}")).collect::<String>()
        );
    }
}

fn main() -> Result<(), attention::AttnError> {
    // PyTorch: torch.manual_seed(123); CausalAttention(d_in=3, d_out=2, context_length=6,
    // dropout=0.0)
    let fx = Fixture::load("toy_causal")?;
    let attn = SelfAttention::new(
        fx.linear("W_query")?,
        fx.linear("W_key")?,
        fx.linear("W_value")?,
        true,
    )?;
    let x = fx.batch("x")?.items()[0].clone(); // (6, 3): the first sentence of the batch

    // By hand: scaled scores, plus the mask (0 on and below the diagonal, -inf above),
    // then softmax.
    let (q, k) = (attn.w_query().forward(&x)?, attn.w_key().forward(&x)?); // (6, 2) each
    let scores = &q * k.transpose() / 2f32.sqrt(); // (6, 6), scaled by 1/√head_dim
    let masked = scores + causal_mask(6, 6, 0)?; // query_offset 0: a fresh sequence
    let weights = softmax_rows(&masked); // exp(-inf) = 0: the future gets no weight
    print_rows("masked", &masked);
    print_rows("weights", &weights);

    // The module does the same (with `apply_causal_mask` in place), and both are
    // PyTorch's.
    let out = attn.forward_with_weights(&x)?;
    assert_matrix_close(&weights, &out.weights, Tolerance::F32);
    assert_matrix_close(&weights, &fx.matrix("attn_weights")?, Tolerance::F32);
    Ok(())
}
// ANCHOR_END: example
