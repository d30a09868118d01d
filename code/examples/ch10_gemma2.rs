//! Chapter 10: a Gemma 2 window layer (soft-cap 3, scale 20^-1/2) from a tiny
//! transformers checkpoint, whole and decoded, against transformers.
extern crate attention;
// ANCHOR: example
use attention::{Batch, HfFixture, ScoreOptions};

fn main() -> Result<(), attention::AttnError> {
    let fx = HfFixture::load("variants/gemma2_sliding")?; // layer 0: a window layer
    let layer = fx.layer()?; // config.json: attn_logit_softcapping, query_pre_attn_scalar
    let o = layer.scores().clone();
    let (scale, cap) = (o.scale.unwrap(), o.softcap.unwrap());
    println!("head_dim 8, so 1/sqrt(head_dim) = {:.4}", 1.0 / 8f32.sqrt());
    println!("Gemma 2: scale {scale:.4} (20^-1/2), softcap {cap}, window {:?}", o.window);
    let x = fx.input()?; // (2, 11, 24), at positions 3..14
    let hf = fx.expected("attn_output")?; // Gemma2Attention's output
    let whole = layer.forward(&x, fx.start_pos, None)?;
    let decoded = layer.forward_prefill_decode(&x, fx.start_pos, fx.decode_from)?;
    println!("max |ours - transformers|:");
    println!("  whole {}, decoded {}", small(&whole, &hf), small(&decoded, &hf));
    // the same weights without the cap, then with Llama's scale: what each is worth
    let no_cap = ScoreOptions { softcap: None, ..o.clone() };
    let llama_scale = ScoreOptions { scale: None, ..o };
    for (name, options) in
        [("without the cap", no_cap), ("1/sqrt(head_dim)", llama_scale)]
    {
        let out = layer.clone().with_scores(options)?.forward(&x, fx.start_pos, None)?;
        println!("  {name:18} {:.3}", diff(&out, &hf));
    }
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
