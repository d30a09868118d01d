//! Chapter 2: Raschka's `CausalAttention` on the toy batch (the sentence twice), (2,
//! 6, 3) -> (2, 6, 2).
extern crate attention;
// ANCHOR: example
use attention::show::TOY_TOKENS;
use attention::{Attention, Fixture, SelfAttention};

fn main() -> Result<(), attention::AttnError> {
    // PyTorch: torch.manual_seed(123); ca = CausalAttention(3, 2, context_length=6,
    // dropout=0.0); batch = torch.stack((inputs, inputs)); out = ca(batch)
    let fx = Fixture::load("toy_causal")?;
    let w = |name| fx.linear(name); // (d_out, d_in) = (2, 3) each
    // causal = true: CausalAttention is SelfAttention with the mask
    let ca = SelfAttention::new(w("W_query")?, w("W_key")?, w("W_value")?, true)?;
    let batch = fx.batch("x")?; // (batch, seq, d_in) = (2, 6, 3)
    let out = ca.forward(&batch)?; // each sequence on its own -> (2, 6, 2)
    println!("input {:?} -> output {:?}", batch.shape(), out.shape());

    println!("{:<10}{:>18}{:>18}", "", "item 0", "item 1");
    for (t, token) in TOY_TOKENS.iter().enumerate() {
        let (a, b) = (out.items()[0].row(t), out.items()[1].row(t));
        println!(
            "  {token:<8}  [{:7.4} {:7.4}]  [{:7.4} {:7.4}]",
            a[0], a[1], b[0], b[1]
        );
    }

    check_against_pytorch(&fx, &out)
}
// ANCHOR_END: example

/// The whole batch is PyTorch's output, within `assert_close`'s f32 tolerance (rtol
/// 1.3e-6, atol 1e-5).
fn check_against_pytorch(
    fx: &Fixture,
    out: &attention::Batch,
) -> Result<(), attention::AttnError> {
    use attention::{Tolerance, assert_batch_close};
    assert_batch_close(out, &fx.batch("out")?, Tolerance::F32);
    Ok(())
}
