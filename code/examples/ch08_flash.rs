//! Chapter 8: the flash path gives PyTorch's output on the small model's config.
extern crate attention;
extern crate nalgebra;
// ANCHOR: example
use attention::{AttentionInputs, Fixture, FlashAttention};
use nalgebra::DMatrix;

fn main() -> Result<(), attention::AttnError> {
    // PyTorch: GroupedQueryAttention(768, 768, 12 heads, 4 KV heads, RoPE θ 500 000),
    // weights from the shared SplitMix64 generator (scripts/gen_fixtures.py), 16 tokens
    let fx = Fixture::load("default_gqa")?;
    let gqa = fx.gqa()?; // weights regenerated from the seeds in its JSON (chapter 4)
    let (q, k, v) = gqa.project(&fx.batch("x")?.items()[0], 0)?; // (16, 768), (16, 256)
    // the same projections, then the tiled path instead of grouped_attention
    let (k, v, heads) = (k.as_view(), v.as_view(), gqa.heads());
    let inputs = AttentionInputs { q: &q, k, v, heads, query_offset: 0 };
    let context = FlashAttention::new().forward(inputs)?; // (16, 768)
    let out = gqa.weights().out_proj.forward(&context)?;
    let want = fx.batch("out")?.items()[0].clone();
    check_against_pytorch(&out, &want);
    println!("default config, 16 tokens: flash output vs PyTorch's, max |diff| < 1e-5");
    let row15 = |m: &DMatrix<f32>| m.row(15).iter().take(4).copied().collect::<Vec<_>>();
    println!("  token 15, first 4 of 768: ours    {:.4?}", row15(&out));
    println!("                            PyTorch {:.4?}", row15(&want));
    Ok(())
}
// ANCHOR_END: example

/// The flash output is PyTorch's: within the f32 tolerance everywhere, and no entry off
/// by 1e-5 or more.
fn check_against_pytorch(out: &DMatrix<f32>, want: &DMatrix<f32>) {
    use attention::{Tolerance, assert_matrix_close, max_abs_diff};
    assert_matrix_close(out, want, Tolerance::F32);
    assert!(max_abs_diff(out.as_slice(), want.as_slice()) < 1e-5);
}
