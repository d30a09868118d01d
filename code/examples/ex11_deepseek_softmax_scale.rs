//! Exercise 11.2: DeepSeek-V3 puts YaRN's temperature into the softmax scale, not into
//! its RoPE tables.
extern crate attention;
// ANCHOR: example
use attention::{YarnScaling, yarn_get_mscale};

fn main() {
    let yarn = YarnScaling::DEEPSEEK_V3; // factor 40, mscale 1, mscale_all_dim 1
    let qk_head_dim: f64 = 192.0; // 128 dimensions without RoPE + 64 with it
    // the tables: yarn_get_mscale(40, mscale) / yarn_get_mscale(40, mscale_all_dim)
    println!("attention factor of the RoPE tables: {}", yarn.attention_factor());
    let m = yarn_get_mscale(yarn.factor as f64, yarn.mscale_all_dim.unwrap() as f64);
    let plain = f64::powf(qk_head_dim, -0.5); // Python's `qk_head_dim ** -0.5`
    let scale = plain * m * m; // transformers' `yarn_apply_mscale`
    check_against_transformers(m, scale);
    println!("m = 0.1 · ln 40 + 1 = {m:.6}, m² = {:.6}", m * m);
    println!("softmax scale: 192^-0.5 = {plain:.6} becomes {scale:.6}");
}
// ANCHOR_END: example

/// Compares with the numbers transformers 5.24 computed for the fixture `yarn`'s case
/// `deepseek_v3` (`scripts/gen_yarn_fixtures.py`): `yarn_get_mscale(40, 1)` and
/// `DeepseekV3Attention(config).scaling`, both Python floats stored as their f64 bits.
/// Exact: the same f64 operations in the same order.
fn check_against_transformers(m: f64, scale: f64) {
    let fx = attention::Fixture::load("yarn").expect("the yarn fixture");
    let cases = fx.config()["cases"].as_array().expect("cases");
    let case = cases.iter().find(|c| c["name"] == "deepseek_v3").expect("deepseek_v3");
    let bits = |key: &str| f64::from_bits(case[key].as_u64().expect(key));
    assert_eq!(m, bits("mscale_all_dim_factor_f64_bits"));
    assert_eq!(scale, bits("softmax_scale_f64_bits"));
    assert_eq!(case["qk_head_dim"], 192);
}
