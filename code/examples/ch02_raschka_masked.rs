//! Chapter 2: Raschka's §3.5.1, the masked weights of `sa_v2` (seed 789), against
//! PyTorch's.
extern crate attention;
// ANCHOR: example
use attention::{
    Fixture, Mask, SelfAttention, Tolerance, assert_matrix_close, attention_weights,
};

fn main() -> Result<(), attention::AttnError> {
    // torch.manual_seed(789); sa_v2 = SelfAttention_v2(3, 2); then -inf above the
    // diagonal, softmax
    let fx = Fixture::load("toy_masked_sa_v2")?;
    let sa_v2 = SelfAttention::new(
        fx.linear("W_query")?,
        fx.linear("W_key")?,
        fx.linear("W_value")?,
        true,
    )?;
    let x = fx.matrix("x")?; // (6, 3)
    // (6, 2) each
    let (q, k) = (sa_v2.w_query().forward(&x)?, sa_v2.w_key().forward(&x)?);
    let weights =
        attention_weights(q.as_view(), k.as_view(), Mask::Causal { query_offset: 0 })?;
    for (i, row) in weights.row_iter().enumerate() {
        let cells: Vec<String> =
            row.iter().take(i + 1).map(|v| format!("{v:.4}")).collect();
        // 1-based, as the book prints rows
        println!("row {}: [{}]", i + 1, cells.join(", "));
    }
    assert_matrix_close(&weights, &fx.matrix("masked_weights")?, Tolerance::F32);
    Ok(())
}
// ANCHOR_END: example
