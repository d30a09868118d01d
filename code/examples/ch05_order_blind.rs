//! Chapter 5: attention without position information cannot tell word order; RoPE can.
extern crate attention;
extern crate nalgebra;
// ANCHOR: example
use attention::show::TOY_TOKENS;
use attention::{Attention, Fixture, SelfAttention};

fn main() -> Result<(), attention::AttnError> {
    // PyTorch: torch.manual_seed(789); SelfAttention_v2(3, 2), no mask
    let fx = Fixture::load("toy_self_attention")?;
    let w = |name| fx.linear(name);
    let attn = SelfAttention::new(w("W_query")?, w("W_key")?, w("W_value")?, false)?;
    let x = fx.matrix("x")?; // (6, 3): "Your journey starts with one step"
    let out = attn.forward_one(&x)?; // (6, 2)
    let out_reversed = attn.forward_one(&reverse(&x))?; // the six tokens reversed
    println!("without positions: each word's output in both orders");
    for (t, word) in TOY_TOKENS.iter().enumerate() {
        let (a, b) = (out.row(t), out_reversed.row(5 - t)); // its row when reversed
        println!(
            "  {word:<8} [{:7.4}, {:7.4}]  reversed: [{:7.4}, {:7.4}]",
            a[0], a[1], b[0], b[1]
        );
    }
    // Reordering the tokens only reorders the outputs (up to f32 rounding):
    assert!((reverse(&out_reversed) - &out).amax() < 1e-6); // the reversal undone
    println!("max |difference| after undoing the permutation: < 1e-6");

    check_against_pytorch(&fx, &out, &out_reversed)
}
// ANCHOR_END: example

/// The rows of `x` in reverse order: token `t` of six goes to row `5 - t`. Reversing
/// twice gives `x` back.
fn reverse(x: &nalgebra::DMatrix<f32>) -> nalgebra::DMatrix<f32> {
    let n = x.nrows();
    nalgebra::DMatrix::from_fn(n, x.ncols(), |r, c| x[(n - 1 - r, c)])
}

/// The outputs are PyTorch's, and the reversed sentence's are the same rows reversed.
fn check_against_pytorch(
    fx: &Fixture,
    out: &nalgebra::DMatrix<f32>,
    out_reversed: &nalgebra::DMatrix<f32>,
) -> Result<(), attention::AttnError> {
    use attention::{Tolerance, assert_matrix_close};
    assert_matrix_close(out, &fx.matrix("out")?, Tolerance::F32);
    assert_matrix_close(out_reversed, &reverse(out), Tolerance::F32);
    Ok(())
}
