//! Chapter 4: the starting project's default layer (d_model 768, 12 query heads, 4 KV heads) against
//! PyTorch, and the parameters its narrower W_key and W_value save.
extern crate attention;
// ANCHOR: example
use attention::support::init::splitmix_matrix;
use attention::{Fixture, GroupedQueryAttention, Linear, Preset, QkvoWeights, Rope, Tolerance};

fn main() -> Result<(), attention::AttnError> {
    let cfg = Preset::SMALL.config; // 768, 12 heads, 4 KV heads, head_dim 64, context 1024
    // PyTorch's GroupedQueryAttention(768, 768, 12, 4, 1024, rope_theta=500000) with weights from the
    // SplitMix64 generator that Python and Rust share: (seed, bound) per weight, in the JSON
    let fx = Fixture::load("default_gqa")?;
    let fixture_shape =
        (fx.usize("d_in")?, fx.usize("n_heads")?, fx.usize("n_kv_heads")?, fx.usize("head_dim")?);
    assert_eq!(fixture_shape, (cfg.d_model, cfg.n_heads, cfg.n_kv_heads, cfg.head_dim));
    let weight = |name: &str, rows: usize| {
        let seed = fx.config()["weight_seeds"][name].as_u64().expect("a seed");
        let bound = fx.config()["weight_bounds"][name].as_f64().expect("a bound");
        Linear::new(splitmix_matrix(seed, rows, cfg.d_model, bound), None)
    };
    let kv_dim = cfg.n_kv_heads * cfg.head_dim; // 4 · 64 = 256
    let weights = QkvoWeights {
        w_query: weight("W_query.weight", cfg.n_heads * cfg.head_dim)?, // (768, 768)
        w_key: weight("W_key.weight", kv_dim)?,                         // (256, 768)
        w_value: weight("W_value.weight", kv_dim)?,                     // (256, 768)
        out_proj: weight("out_proj.weight", cfg.d_model)?,              // (768, 768)
    };
    let rope = Rope::new(cfg.head_dim, cfg.context_length, cfg.rope_theta, None)?;
    let gqa = GroupedQueryAttention::new(weights, cfg.n_heads, cfg.n_kv_heads, Some(rope))?;
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
    let first: Vec<String> = out.items()[0].row(0).iter().take(4).map(|v| format!("{v:.4}")).collect();
    let [b, s, d] = out.shape();
    println!("out ({b}, {s}, {d}) matches PyTorch; out[0, 0, :4] = [{}]", first.join(" "));

    // parameters of W_key and W_value: n_kv_heads · head_dim rows each, against n_heads · head_dim for MHA
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
        "whole attention layer: {layer_params} parameters (MHA: {mha_layer_params}), {fewer:.0} % fewer"
    );
    assert_eq!((kv_params, mha_kv_params), (393_216, 1_179_648));
    assert_eq!((layer_params, mha_layer_params), (1_572_864, 2_359_296));
    assert_eq!(format!("{fewer:.0}"), "33");
    Ok(())
}
// ANCHOR_END: example
