//! Chapter 10: gpt-oss's learned sinks: how much weight each head's sink takes, and the
//! layer against transformers, with and without its sinks.
extern crate attention;
// ANCHOR: example
use attention::{Batch, HfFixture, ScoreOptions, attention_weights_with, show};

fn main() -> Result<(), attention::AttnError> {
    let fx = HfFixture::load("variants/gpt_oss_sinks")?; // 6 heads over 3 KV heads
    let layer = fx.layer()?;
    let o = layer.scores().clone();
    println!("sink logits:   {}", show::row(o.sinks.as_ref().unwrap()));
    let x = fx.input()?; // (2, 10, 20)
    let (q, k, _) = layer.project(&x.items()[0], fx.start_pos)?; // sequence 0
    let d = layer.head_dim();
    // the share of each head's weight that goes to its sink: 1 - (row sum), last query
    let mut share = Vec::new();
    for h in 0..layer.n_heads() {
        let kv = layer.heads().kv_head(h);
        let (q_h, k_h) = (q.columns(h * d, d), k.columns(kv * d, d));
        let w = attention_weights_with(q_h, k_h, 0, &o, h)?; // (10, 10)
        share.push(1.0 - w.row(9).sum());
    }
    println!("sink's share:  {}", show::row(&share));
    let hf = fx.expected("attn_output")?; // GptOssAttention's output
    let whole = layer.forward(&x, fx.start_pos, None)?;
    println!("max |ours - transformers|:          {}", small(&whole, &hf));
    let no_sinks = layer.with_scores(ScoreOptions { sinks: None, ..o })?;
    let out = no_sinks.forward(&x, fx.start_pos, None)?;
    println!("max |without sinks - transformers|: {:.3}", diff(&out, &hf));
    Ok(())
}
// ANCHOR_END: example

/// The largest absolute difference between two batches of the same shape.
fn diff(a: &Batch, b: &Batch) -> f32 {
    attention::max_abs_diff(&a.to_row_major(), &b.to_row_major())
}

/// A difference within PyTorch's f32 `assert_close` tolerance, printed as the bound
/// `< 1e-5` (its last digits depend on the CPU).
fn small(a: &Batch, b: &Batch) -> &'static str {
    attention::assert_batch_close(a, b, attention::Tolerance::F32);
    assert!(diff(a, b) < 1e-5);
    "< 1e-5"
}
