//! Chapter 10: two QK-norm mistakes, measured against transformers: normalizing after
//! RoPE (Qwen3), and Gemma's gain read as `w` instead of `1 + w` (Gemma 3).
extern crate attention;
// ANCHOR: example
use attention::{AttnError, Batch, HfFixture, QkNorm, RmsNormStyle};

fn main() -> Result<(), AttnError> {
    let fx = HfFixture::load("variants/qwen3_qknorm")?;
    let layer = fx.layer()?;
    let x = fx.input()?; // (3, 9, 36) at positions 5..14
    let after_rope = norm_after_rope(&layer, &x, fx.start_pos)?; // RoPE, then QK-norm
    let qwen3 = diff(&after_rope, &fx.expected("attn_output")?);
    println!("Qwen3, QK-norm after RoPE:        {qwen3:.3}");
    let fx = HfFixture::load("variants/gemma3_sliding")?;
    let layer = fx.layer()?;
    let gemma = layer.qk_norm().unwrap().clone(); // x̂ · (1 + w)
    let as_weight = QkNorm { style: RmsNormStyle::Weight, ..gemma }; // x̂ · w
    let out =
        layer.with_qk_norm(Some(as_weight))?.forward(&fx.input()?, fx.start_pos, None)?;
    let gemma3 = diff(&out, &fx.expected("attn_output")?);
    println!("Gemma 3, gain w instead of 1 + w: {gemma3:.3}");
    Ok(())
}
// ANCHOR_END: example

/// `layer` with its QK-norm moved after RoPE: project, rotate, then normalize, then
/// attend and project out, as `forward` does otherwise.
fn norm_after_rope(
    layer: &attention::GroupedQueryAttention,
    x: &Batch,
    start_pos: usize,
) -> Result<Batch, AttnError> {
    let (norm, rope, heads) =
        (layer.qk_norm().unwrap(), layer.rope().unwrap(), layer.heads());
    let bare = layer.clone().with_qk_norm(None)?.with_rope(None)?; // projections only
    x.try_map(|item| {
        let (mut q, mut k, v) = bare.project(item, start_pos)?;
        rope.apply(&mut q, start_pos)?; // rotate first ...
        rope.apply(&mut k, start_pos)?;
        norm.apply(&mut q, &mut k, heads)?; // ... then normalize: the wrong order
        let scores = layer.scores();
        let c = attention::grouped_attention_with(
            &q,
            k.as_view(),
            v.as_view(),
            heads,
            0,
            scores,
        )?;
        layer.weights().out_proj.forward(&c)
    })
}

/// The largest absolute difference between two batches of the same shape.
fn diff(a: &Batch, b: &Batch) -> f32 {
    attention::max_abs_diff(&a.to_row_major(), &b.to_row_major())
}
