//! Chapter 4: the starting project's default layer (d_model 768, 12 query heads, 4 KV
//! heads) against PyTorch, and the parameters its narrower W_key and W_value save.
extern crate attention;
// ANCHOR: example
use attention::{Fixture, Preset, Tolerance};

fn main() -> Result<(), attention::AttnError> {
    // 768, 12 heads, 4 KV heads, head_dim 64, context 1024
    let cfg = Preset::SMALL.config;
    // PyTorch's GroupedQueryAttention(768, 768, 12, 4, 1024, rope_theta=500000)
    let fx = Fixture::load("default_gqa")?; // its weights come from seeds (Appendix A)
    let gqa = fx.gqa()?; // the 4 projections regenerated, with RoPE tables: 768 -> 768
    assert_eq!(
        (gqa.d_in(), gqa.n_heads(), gqa.n_kv_heads(), gqa.head_dim()),
        (768, 12, 4, 64)
    );
    println!(
        "d_model {}, n_heads {}, n_kv_heads {}, group_size {}, head_dim {}",
        cfg.d_model,
        cfg.n_heads,
        cfg.n_kv_heads,
        cfg.group_size(),
        cfg.head_dim
    );
    let x = fx.batch("x")?; // (1, 16, 768)
    let out = gqa.forward(&x, 0, None)?;
    // PyTorch's output (assert_close semantics: rtol 1.3e-6, atol 1e-5)
    attention::assert_batch_close(&out, &fx.batch("out")?, Tolerance::F32);
    let first: Vec<String> =
        out.items()[0].row(0).iter().take(4).map(|v| format!("{v:.4}")).collect();
    let [b, s, d] = out.shape();
    println!(
        "out ({b}, {s}, {d}) matches PyTorch; out[0, 0, :4] = [{}]",
        first.join(" ")
    );

    // parameters of W_key and W_value: n_kv_heads · head_dim rows each, against n_heads ·
    // head_dim for MHA
    let w = gqa.weights();
    let kv_params = w.w_key.weight().len() + w.w_value.weight().len();
    let mha_kv_params = 2 * cfg.n_heads * cfg.head_dim * cfg.d_model;
    let layer_params = kv_params + w.w_query.weight().len() + w.out_proj.weight().len();
    let mha_layer_params = layer_params - kv_params + mha_kv_params;
    println!(
        "W_key + W_value: {kv_params} parameters (MHA: {mha_kv_params}), {} fewer",
        mha_kv_params - kv_params
    );
    let fewer = 100.0 * (1.0 - layer_params as f64 / mha_layer_params as f64);
    println!(
        "whole attention layer: {layer_params} parameters (MHA: {mha_layer_params}), \
            {fewer:.0} % fewer"
    );
    assert_eq!((kv_params, mha_kv_params), (393_216, 1_179_648));
    assert_eq!((layer_params, mha_layer_params), (1_572_864, 2_359_296));
    assert_eq!(format!("{fewer:.0}"), "33");
    Ok(())
}
// ANCHOR_END: example
