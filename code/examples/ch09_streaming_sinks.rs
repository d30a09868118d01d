//! Chapter 9: StreamingLLM's sink tokens beside a window of 6, through a cache of 8 rows,
//! against our own PyTorch reference.
extern crate attention;
// ANCHOR: example
use attention::{Batch, Fixture, ScoreOptions, max_abs_diff};

fn main() -> Result<(), attention::AttnError> {
    let fx = Fixture::load("streaming_sinks")?; // GQA 4/2, head_dim 4, RoPE; 40 tokens
    let x = fx.batch("x")?; // (2, 40, 12)
    let sinks = ScoreOptions { window: Some(6), sink_tokens: 2, ..Default::default() };
    let layer = fx.gqa()?.with_scores(sinks)?;
    let mut cache = layer.new_cache(2, 8)?; // 2 sink tokens + a window of 6
    let mut outputs = vec![layer.forward(&x.narrow_seq(0, 5)?, 0, Some(&mut cache))?];
    for t in 5..40 {
        outputs.push(layer.forward(&x.narrow_seq(t, 1)?, t, Some(&mut cache))?);
    }
    let streamed = Batch::concat_seq(&outputs)?; // (2, 40, 16)
    println!("cache: {} rows, {} dropped", cache.len(), cache.dropped());
    let diff = |a: &Batch, b: &Batch| max_abs_diff(&a.to_row_major(), &b.to_row_major());
    let want = fx.batch("out_streamed")?; // PyTorch, the same policy
    let without = fx.batch("out_window_only")?; // PyTorch, the window alone
    println!("max |ours - PyTorch|, sinks kept:    {}", small(diff(&streamed, &want)));
    println!("max |sinks kept - window alone|:     {:.3}", diff(&streamed, &without));
    Ok(())
}
// ANCHOR_END: example

/// A difference at f32 rounding level, printed as a bound (its last digits depend on the
/// CPU); a larger one stops the example.
fn small(d: f32) -> &'static str {
    assert!(d < 1e-5, "{d}");
    "< 1e-5"
}
