//! Chapter 12: two MLA details that change every output, measured against transformers:
//! the pair layout of DeepSeek's RoPE, and YaRN's correction of the softmax scale.
extern crate attention;
// ANCHOR: example
use attention::{AttnError, HfFixture, MultiHeadLatentAttention, RopeLayout};

fn main() -> Result<(), AttnError> {
    let plain = HfFixture::load("variants/deepseek_v3_mla")?; // default RoPE
    let yarn = HfFixture::load("variants/deepseek_v3_yarn")?; // YaRN, factor 40
    let right = error(&yarn, yarn.mla_layer()?)?;
    assert!(right < 1e-5); // f32 rounding; its last digits depend on the CPU
    println!("max |ours - transformers| on a DeepSeek-V3 layer:");
    println!("  as configured:                               < 1e-5");
    let split = plain.mla_layer()?.with_rope_layout(RopeLayout::SplitHalves);
    println!(
        "  RoPE pairs (i, i + d/2), not (2i, 2i + 1):   {:.3}",
        error(&plain, split)?
    );
    let layer = yarn.mla_layer()?;
    let no_mscale = 1.0 / (layer.shape().qk_head_dim() as f32).sqrt();
    println!(
        "  scale 1/sqrt(qk_head_dim), without mscale²:  {:.3}",
        error(&yarn, layer.with_scale(no_mscale)?)?
    );
    Ok(())
}
// ANCHOR_END: example

/// The largest difference between `layer`'s output on the fixture's input and
/// transformers'.
fn error(fx: &HfFixture, layer: MultiHeadLatentAttention) -> Result<f32, AttnError> {
    let out = layer.forward(&fx.input()?, fx.start_pos, None)?;
    let want = fx.expected("attn_output")?;
    Ok(attention::max_abs_diff(&out.to_row_major(), &want.to_row_major()))
}
