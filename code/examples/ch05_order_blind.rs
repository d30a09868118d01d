//! Chapter 5: attention without position information cannot tell word order; RoPE can.
extern crate attention;
extern crate nalgebra;
// ANCHOR: example
use attention::{
    Attention, Fixture, Mask, Rope, SelfAttention, Tolerance, assert_matrix_close,
    matrix_to_row_major, max_abs_diff, scaled_dot_product_attention,
};
use nalgebra::DMatrix;

/// The rows of `x` in the order `order` (row r of the result is row `order[r]` of `x`).
fn permute(x: &DMatrix<f32>, order: &[usize]) -> DMatrix<f32> {
    DMatrix::from_fn(order.len(), x.ncols(), |r, c| x[(order[r], c)])
}

fn main() -> Result<(), attention::AttnError> {
    // PyTorch: torch.manual_seed(789); SelfAttention_v2(3, 2) on "Your journey starts
    // with one step"
    let fx = Fixture::load("toy_self_attention")?;
    let attn = SelfAttention::new(
        fx.linear("W_query")?,
        fx.linear("W_key")?,
        fx.linear("W_value")?,
        false,
    )?;
    let x = fx.matrix("x")?; // (6, 3)
    let out = attn.forward_one(&x)?; // (6, 2)
    assert_matrix_close(&out, &fx.matrix("out")?, Tolerance::F32);

    // "step one with starts journey Your": the same six tokens, reversed
    let order = [5, 4, 3, 2, 1, 0];
    let out_reversed = attn.forward_one(&permute(&x, &order))?;
    let words = ["Your", "journey", "starts", "with", "one", "step"];
    println!("without positions: each word's output in both orders");
    for (t, word) in words.iter().enumerate() {
        let r = 5 - t; // where the word stands in the reversed sentence
        println!(
            "  {word:<8} [{:7.4}, {:7.4}]  reversed: [{:7.4}, {:7.4}]",
            out[(t, 0)],
            out[(t, 1)],
            out_reversed[(r, 0)],
            out_reversed[(r, 1)]
        );
    }
    // Permuting the tokens only permutes the outputs (up to f32 rounding: the sums run in
    // another order).
    let diff = max_abs_diff(
        &matrix_to_row_major(&permute(&out, &order)),
        &matrix_to_row_major(&out_reversed),
    );
    assert!(diff < 1e-6);
    println!("max |difference| after undoing the permutation: < 1e-6");
    assert_matrix_close(&out_reversed, &permute(&out, &order), Tolerance::F32);

    // The same weights with RoPE on the queries and keys (head_dim 2: one pair, θ_0 = 1
    // rad per position).
    let rope = Rope::new(2, 6, 10_000.0, None)?;
    let with_rope = |x: &DMatrix<f32>| -> Result<DMatrix<f32>, attention::AttnError> {
        let (mut q, mut k) = (attn.w_query().forward(x)?, attn.w_key().forward(x)?);
        rope.apply(&mut q, 0)?;
        rope.apply(&mut k, 0)?;
        let v = attn.w_value().forward(x)?;
        Ok(scaled_dot_product_attention(
            q.as_view(),
            k.as_view(),
            v.as_view(),
            Mask::None,
        )?
        .context)
    };
    let rope_out = with_rope(&x)?;
    let rope_reversed = with_rope(&permute(&x, &order))?;
    let diff = max_abs_diff(
        &matrix_to_row_major(&permute(&rope_out, &order)),
        &matrix_to_row_major(&rope_reversed),
    );
    println!(
        "with RoPE: \"journey\" gives [{:7.4}, {:7.4}]",
        rope_out[(1, 0)],
        rope_out[(1, 1)]
    );
    println!(
        "           reversed:    [{:7.4}, {:7.4}]",
        rope_reversed[(4, 0)],
        rope_reversed[(4, 1)]
    );
    println!("max |difference| after undoing the permutation: {diff:.3}");
    assert!(diff > 1e-2, "with RoPE, word order must change the outputs");
    Ok(())
}
// ANCHOR_END: example
