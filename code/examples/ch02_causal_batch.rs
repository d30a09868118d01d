//! Chapter 2: Raschka's `CausalAttention` on the toy batch (the sentence twice), (2,
//! 6, 3) -> (2, 6, 2).
extern crate attention;
// ANCHOR: example
use attention::{Attention, Fixture, SelfAttention, Tolerance, assert_batch_close};

fn main() -> Result<(), attention::AttnError> {
    // PyTorch: torch.manual_seed(123); ca = CausalAttention(3, 2, context_length=6,
    // dropout=0.0)
    //          batch = torch.stack((inputs, inputs)); out = ca(batch)
    let fx = Fixture::load("toy_causal")?;
    let causal_attention = SelfAttention::new(
        fx.linear("W_query")?, // (d_out, d_in) = (2, 3)
        fx.linear("W_key")?,
        fx.linear("W_value")?,
        true, // causal: CausalAttention is SelfAttention with the mask
    )?;
    let batch = fx.batch("x")?; // (batch, seq, d_in) = (2, 6, 3)
    let out = causal_attention.forward(&batch)?; // each sequence on its own -> (2, 6, 2)
    println!("input {:?} -> output {:?}", batch.shape(), out.shape());

    let tokens = ["Your", "journey", "starts", "with", "one", "step"];
    println!("{:<10}{:>18}{:>18}", "", "item 0", "item 1");
    for (t, token) in tokens.iter().enumerate() {
        let (a, b) = (out.items()[0].row(t), out.items()[1].row(t));
        println!(
            "  {token:<8}  [{:7.4} {:7.4}]  [{:7.4} {:7.4}]",
            a[0], a[1], b[0], b[1]
        );
    }
    // PyTorch's output for the whole batch (assert_close semantics: rtol 1.3e-6, atol
    // 1e-5)
    assert_batch_close(&out, &fx.batch("out")?, Tolerance::F32);
    Ok(())
}
// ANCHOR_END: example
