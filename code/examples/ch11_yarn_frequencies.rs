//! Chapter 11: gpt-oss's and DeepSeek-V3's YaRN frequencies, correction range and
//! attention factor, against the numbers transformers computes from their configs.
extern crate attention;
// ANCHOR: example
use attention::YarnScaling;

fn main() -> Result<(), attention::AttnError> {
    for (case, yarn, head_dim, base) in [
        ("gpt_oss", YarnScaling::GPT_OSS, 64, 150_000.0),
        ("deepseek_v3", YarnScaling::DEEPSEEK_V3, 64, 10_000.0), // qk_rope_head_dim 64
    ] {
        let (low, high) = yarn.correction_range(head_dim, base)?;
        let inv_freq = yarn.inv_freq(head_dim, base)?; // θ'_i, one per pair
        let attention_factor = yarn.attention_factor();
        let agreement = check_against_transformers(case, &yarn, &inv_freq)?;
        println!("{case}: head_dim {head_dim}, base {base}, factor {}", yarn.factor);
        println!("  correction range {low:.2} .. {high:.2}, truncate {}", yarn.truncate);
        println!("  attention factor {attention_factor:.6} (= transformers')");
        println!("  inv_freq {agreement}");
    }
    Ok(())
}
// ANCHOR_END: example

/// Compares with the fixture `yarn` (`scripts/gen_yarn_fixtures.py`), in which
/// transformers 5.24 computed, with torch 2.15 on the CPU:
///
/// ```python
/// config = GptOssConfig()  # or DeepseekV3Config(...) with DeepSeek-V3's rope_scaling
/// inv_freq, attention_factor = ROPE_INIT_FUNCTIONS["yarn"](config)
/// ```
///
/// Checks that the case's parameters are `yarn`'s; the correction range to 1 ulp of f64
/// (the JSON holds Python's decimal `repr`); the attention factor exactly (the f64
/// stored as its bits, rounded to f32 as torch does at `cos * attention_factor`); every
/// frequency bit for bit, except at the pairs where the generator found torch's f32
/// power (`base ** e`, accurate to 1 ulp, not always correctly rounded) off the
/// correctly rounded one this crate computes: there 1 ulp is allowed. Returns how the
/// frequencies agree.
fn check_against_transformers(
    case: &str,
    yarn: &YarnScaling,
    inv_freq: &[f32],
) -> attention::Result<String> {
    let fx = attention::Fixture::load("yarn")?;
    let cases = fx.config()["cases"].as_array().expect("cases");
    let json = cases.iter().find(|c| c["name"] == case).expect("the case");
    let p = &json["yarn"];
    let base = json["rope_theta"].as_f64().expect("rope_theta") as f32;
    let head_dim = json["head_dim"].as_u64().expect("head_dim") as usize;
    assert_eq!(p["factor"].as_f64(), Some(yarn.factor as f64));
    assert_eq!(p["beta_fast"].as_f64(), Some(yarn.beta_fast as f64));
    assert_eq!(p["beta_slow"].as_f64(), Some(yarn.beta_slow as f64));
    // absent (null) means true in transformers
    assert_eq!(p["truncate"].as_bool().unwrap_or(true), yarn.truncate);
    let (low, high) = yarn.correction_range(head_dim, base)?;
    // (the JSON values are read through the crate's serde_json: a snippet's own
    // `serde_json::Value` type may be another build of it)
    let range = |i: usize| json["correction_range"][i].as_f64().expect("range");
    assert!(low.to_bits().abs_diff(range(0).to_bits()) <= 1);
    assert!(high.to_bits().abs_diff(range(1).to_bits()) <= 1);
    let bits = json["attention_factor_f64_bits"].as_u64().expect("bits");
    assert_eq!(yarn.attention_factor(), f64::from_bits(bits) as f32);
    let theirs = fx.tensor(&format!("{case}.inv_freq"))?.data;
    let pow_off = json["pow_not_correctly_rounded"].as_array().expect("list");
    let mut one_ulp = Vec::new();
    for (i, (&a, &b)) in inv_freq.iter().zip(&theirs).enumerate() {
        match a.to_bits().abs_diff(b.to_bits()) {
            0 => {}
            1 if pow_off.iter().any(|p| p.as_u64() == Some(i as u64)) => one_ulp.push(i),
            n => panic!("{case} pair {i}: {a:e} vs transformers' {b:e}, {n} ulps"),
        }
    }
    assert_eq!(theirs.len(), inv_freq.len());
    Ok(match one_ulp.is_empty() {
        true => "= transformers', bit for bit".to_string(),
        false => {
            format!("= transformers', bit for bit but pairs {one_ulp:?}: 1 ulp (pow)")
        }
    })
}
