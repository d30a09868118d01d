//! Chapter 4: the starting project's default layer (d_model 768, 12 query heads, 4 KV
//! heads) against PyTorch, and the parameters its narrower W_key and W_value save.
extern crate attention;
// ANCHOR: example
use attention::{AttentionConfig, Batch, Fixture, Preset, show};

fn main() -> Result<(), attention::AttnError> {
    let cfg = Preset::SMALL.config; // the starting project's default layer
    let AttentionConfig { d_model, n_heads, n_kv_heads, head_dim, .. } = cfg;
    print!("d_model {d_model}, n_heads {n_heads}, n_kv_heads {n_kv_heads}, ");
    println!("group_size {}, head_dim {head_dim}", cfg.group_size());
    // PyTorch's GroupedQueryAttention(768, 768, 12, 4, 1024, rope_theta=500000)
    let fx = Fixture::load("default_gqa")?; // its weights come from seeds (Appendix A)
    let gqa = fx.gqa()?; // the 4 projections regenerated, with RoPE tables: 768 -> 768
    let out = gqa.forward(&fx.batch("x")?, 0, None)?; // (1, 16, 768)
    check_against_pytorch(&fx, &gqa, &out)?;
    let [b, s, d] = out.shape();
    let first = show::row(out.items()[0].row(0).iter().take(4));
    println!("out ({b}, {s}, {d}) matches PyTorch; out[0, 0, :4] ={first}");
    // W_key and W_value have n_kv_heads · head_dim rows each; in MHA, n_heads · head_dim
    let w = gqa.weights();
    let kv = w.w_key.weight().len() + w.w_value.weight().len();
    let mha_kv = 2 * n_heads * head_dim * d_model;
    let layer = kv + w.w_query.weight().len() + w.out_proj.weight().len();
    let mha_layer = layer - kv + mha_kv; // W_query and out_proj do not change
    println!("W_key + W_value: {kv} parameters (MHA: {mha_kv}), {} fewer", mha_kv - kv);
    print!("whole attention layer: {layer} parameters (MHA: {mha_layer}), ");
    println!("{:.0} % fewer", 100.0 * (1.0 - layer as f64 / mha_layer as f64));
    check_counts([kv, mha_kv, layer, mha_layer])
}
// ANCHOR_END: example

/// The layer has the configuration's sizes and its output is PyTorch's (`assert_close`
/// semantics: rtol 1.3e-6, atol 1e-5).
fn check_against_pytorch(
    fx: &Fixture,
    gqa: &attention::GroupedQueryAttention,
    out: &Batch,
) -> Result<(), attention::AttnError> {
    let sizes = (gqa.d_in(), gqa.n_heads(), gqa.n_kv_heads(), gqa.head_dim());
    assert_eq!(sizes, (768, 12, 4, 64));
    attention::assert_batch_close(out, &fx.batch("out")?, attention::Tolerance::F32);
    Ok(())
}

/// The parameter counts are the chapter's.
fn check_counts(
    [kv, mha_kv, layer, mha_layer]: [usize; 4],
) -> Result<(), attention::AttnError> {
    assert_eq!((kv, mha_kv), (393_216, 1_179_648));
    assert_eq!((layer, mha_layer), (1_572_864, 2_359_296));
    let fewer = 100.0 * (1.0 - layer as f64 / mha_layer as f64);
    assert_eq!(format!("{fewer:.0}"), "33");
    Ok(())
}
