//! Chapter 5: the same attention with RoPE on the queries and keys sees word order.
extern crate attention;
extern crate nalgebra;
// ANCHOR: example
use attention::{Fixture, Mask, Rope, SelfAttention, scaled_dot_product_attention};
use nalgebra::DMatrix;

fn main() -> Result<(), attention::AttnError> {
    let fx = Fixture::load("toy_self_attention")?; // the weights of Listing 5-1
    let w = |name| fx.linear(name);
    let attn = SelfAttention::new(w("W_query")?, w("W_key")?, w("W_value")?, false)?;
    let x = fx.matrix("x")?; // (6, 3): "Your journey starts with one step"
    let rope = Rope::new(2, 6, 10_000.0, None)?; // head_dim 2, positions 0..6, no scaling
    let with_rope = |x: &DMatrix<f32>| -> Result<DMatrix<f32>, attention::AttnError> {
        let (mut q, mut k) = (attn.w_query().forward(x)?, attn.w_key().forward(x)?);
        rope.apply(&mut q, 0)?; // start_pos 0: row t is turned to position t
        rope.apply(&mut k, 0)?;
        let v = attn.w_value().forward(x)?; // the values are not rotated
        let (q, k, v) = (q.as_view(), k.as_view(), v.as_view());
        Ok(scaled_dot_product_attention(q, k, v, Mask::None)?.context) // (6, 2)
    };
    let (out, out_reversed) = (with_rope(&x)?, with_rope(&reverse(&x))?);
    let (a, b) = (out.row(1), out_reversed.row(4)); // "journey" in both orders
    println!("with RoPE: \"journey\" gives [{:7.4}, {:7.4}]", a[0], a[1]);
    println!("           reversed:    [{:7.4}, {:7.4}]", b[0], b[1]);
    let diff = (reverse(&out_reversed) - &out).amax(); // the reversal undone
    println!("max |difference| after undoing the permutation: {diff:.3}");
    assert!(diff > 1e-2, "with RoPE, word order must change the outputs");
    Ok(())
}
// ANCHOR_END: example

/// The rows of `x` in reverse order: token `t` of six goes to row `5 - t`. Reversing
/// twice gives `x` back.
fn reverse(x: &DMatrix<f32>) -> DMatrix<f32> {
    let n = x.nrows();
    DMatrix::from_fn(n, x.ncols(), |r, c| x[(n - 1 - r, c)])
}
