//! YaRN RoPE scaling (gpt-oss, DeepSeek-V3) against transformers 5.24's own numbers
//! (`scripts/gen_yarn_fixtures.py`, fixture `tests/fixtures/yarn.{json,safetensors}`, nine
//! cases). For each case the generator ran, with torch 2.15 on the CPU in f32:
//!
//! ```python
//! config = GptOssConfig(...)  # or DeepseekV3Config(...), with the case's YaRN parameters
//! inv_freq, attention_factor = ROPE_INIT_FUNCTIONS["yarn"](config)
//! cos, sin = GptOssRotaryEmbedding(config)(x, position_ids)  # or DeepseekV3RotaryEmbedding
//! ```
//!
//! Tolerances, and why:
//! - correction range, attention factor, DeepSeek's softmax scale: **exact** (the same f64
//!   operations in the same order; the generator stores f64 results as IEEE bits).
//! - inverse frequencies: **bit-exact**, except at the pairs where torch's f32 power `theta
//!   ** e` (SLEEF's, accurate to 1 ulp) is not the correctly rounded value ours is. The
//!   generator lists them (`pow_not_correctly_rounded`: pairs 6 and 10 for gpt-oss's theta
//!   150 000, none in the other cases); there the frequencies may differ by 1 ulp.
//! - cos and sin: `|ours − theirs| <= factor · |pos·θ_ours − pos·θ_theirs| + 2.5e-7`. The
//!   first term is 0 wherever the frequencies agree bit for bit: a 1-ulp frequency
//!   difference at pair 6 grows with the position to an angle difference of 8e-4 rad at
//!   position 131 071, and `|cos a − cos b| <= |a − b|`. The 2.5e-7 is two f32 cos (or
//!   sin) implementations, glibc's and SLEEF's, each within 1 ulp of the exact value, times
//!   a factor up to 1.35: about 2 ulps of the largest entries (measured: at most 2 ulps).

use attention::mechanisms::rope::{
    Llama3Scaling, Rope, RopeScaling, YarnScaling, rope_inv_freq, yarn_get_mscale,
};
use attention::support::error::AttnError;
use attention::{Fixture, Result};
use serde_json::Value;

/// One case of the fixture: the parameters transformers was given and what it computed.
struct Case {
    name: String,
    json: Value,
    head_dim: usize,
    theta: f32,
    yarn: YarnScaling,
}

impl Case {
    /// An f64 the generator stored as its IEEE bits (`KEY_f64_bits`): exact, where a
    /// decimal in JSON may be parsed 1 ulp off.
    fn f64_bits(&self, key: &str) -> f64 {
        let bits = self.json[format!("{key}_f64_bits")].as_u64();
        f64::from_bits(
            bits.unwrap_or_else(|| panic!("{}: no `{key}_f64_bits`", self.name)),
        )
    }

    /// The tensor `NAME.what` of this case.
    fn tensor(&self, fx: &Fixture, what: &str) -> Result<attention::Tensor> {
        fx.tensor(&format!("{}.{what}", self.name))
    }
}

/// The fixture, its positions, and its cases with their YaRN parameters read the way
/// transformers reads them: an absent (`null`) `beta_fast` is 32, `beta_slow` 1,
/// `truncate` true.
fn cases() -> Result<(Fixture, Vec<usize>, Vec<Case>)> {
    let fx = Fixture::load("yarn")?;
    let positions = fx.config()["positions"]
        .as_array()
        .expect("positions")
        .iter()
        .map(|p| p.as_u64().expect("position") as usize)
        .collect();
    let mut cases = Vec::new();
    for json in fx.config()["cases"].as_array().expect("cases") {
        let y = &json["yarn"];
        let opt = |key: &str| y[key].as_f64().map(|v| v as f32);
        let original = y["original_max_position_embeddings"].as_u64().expect("original");
        let yarn = YarnScaling {
            factor: opt("factor").expect("factor"),
            original_max_position_embeddings: original as usize,
            beta_fast: opt("beta_fast").unwrap_or(32.0),
            beta_slow: opt("beta_slow").unwrap_or(1.0),
            truncate: y["truncate"].as_bool().unwrap_or(true),
            mscale: opt("mscale"),
            mscale_all_dim: opt("mscale_all_dim"),
            attention_factor: opt("attention_factor"),
        };
        cases.push(Case {
            name: json["name"].as_str().expect("name").to_string(),
            head_dim: json["head_dim"].as_u64().expect("head_dim") as usize,
            theta: json["rope_theta"].as_f64().expect("rope_theta") as f32,
            json: json.clone(),
            yarn,
        });
    }
    assert_eq!(cases.len(), 9, "the generator writes nine cases");
    Ok((fx, positions, cases))
}

fn case<'a>(cases: &'a [Case], name: &str) -> &'a Case {
    cases.iter().find(|c| c.name == name).unwrap_or_else(|| panic!("no case {name}"))
}

/// Distance in units in the last place between two f32 of the same sign.
fn ulps(a: f32, b: f32) -> u32 {
    a.to_bits().abs_diff(b.to_bits())
}

/// The constants are what `GptOssConfig()` and DeepSeek-V3's config.json give transformers.
#[test]
fn presets_match_the_model_configs() -> Result<()> {
    let (_, _, cases) = cases()?;
    assert_eq!(case(&cases, "gpt_oss").yarn, YarnScaling::GPT_OSS);
    assert_eq!(case(&cases, "gpt_oss").theta, 150_000.0);
    assert_eq!(case(&cases, "deepseek_v3").yarn, YarnScaling::DEEPSEEK_V3);
    assert_eq!(case(&cases, "deepseek_v3").head_dim, 64);
    Ok(())
}

/// `find_correction_range`'s ends, exactly: gpt-oss's (8.09, 17.40) unrounded, DeepSeek's
/// floored / ceiled (10, 23), both clamps (`clamped`: 0 and head_dim − 1 = 15), and equal
/// ends (`equal_ends`).
#[test]
fn correction_range_matches_transformers() -> Result<()> {
    let (_, _, cases) = cases()?;
    for c in &cases {
        let range = &c.json["correction_range"];
        let want = (range[0].as_f64().expect("low"), range[1].as_f64().expect("high"));
        let got = c.yarn.correction_range(c.head_dim, c.theta)?;
        // decimal JSON (Python's repr) parsed by serde_json: within 1 ulp of the f64
        let close = |a: f64, b: f64| a.to_bits().abs_diff(b.to_bits()) <= 1;
        assert!(
            close(got.0, want.0) && close(got.1, want.1),
            "{}: {got:?} vs {want:?}",
            c.name
        );
    }
    let ends = |name| case(&cases, name).json["correction_range"].clone();
    assert_eq!(ends("clamped"), serde_json::json!([0, 15]));
    assert_eq!(ends("equal_ends")[0], ends("equal_ends")[1]);
    Ok(())
}

/// The attention factor: `0.1 ln(factor) + 1`, the mscale ratio (exactly 1 for DeepSeek-V3,
/// whose mscale equals its mscale_all_dim), or the explicit value; 1 for factor 1.
#[test]
fn attention_factor_matches_transformers() -> Result<()> {
    let (fx, _, cases) = cases()?;
    for c in &cases {
        let want = c.f64_bits("attention_factor") as f32; // torch's cast at `cos * factor`
        assert_eq!(c.yarn.attention_factor(), want, "{}", c.name);
        assert_eq!(c.tensor(&fx, "attention_factor")?.data, [want], "{}", c.name);
    }
    assert_eq!(case(&cases, "deepseek_v3").yarn.attention_factor(), 1.0);
    assert_eq!(case(&cases, "factor_one").yarn.attention_factor(), 1.0);
    assert_eq!(case(&cases, "explicit_attention_factor").yarn.attention_factor(), 0.8);
    Ok(())
}

/// DeepSeek-V3's softmax scale, `qk_head_dim^-0.5 · m · m` with `m =
/// yarn_get_mscale(factor, mscale_all_dim)` (transformers' `yarn_apply_mscale`), in f64
/// bit for bit.
#[test]
fn deepseek_softmax_scale_matches_transformers() -> Result<()> {
    let (_, _, cases) = cases()?;
    for name in ["deepseek_v3", "deepseek_mscale_pair"] {
        let c = case(&cases, name);
        let y = c.yarn;
        let m = yarn_get_mscale(y.factor as f64, y.mscale_all_dim.expect("set") as f64);
        assert_eq!(m.to_bits(), c.f64_bits("mscale_all_dim_factor").to_bits(), "{name}");
        let qk_head_dim = c.json["qk_head_dim"].as_u64().expect("qk_head_dim") as f64;
        let scale = qk_head_dim.powf(-0.5) * m * m;
        assert_eq!(scale.to_bits(), c.f64_bits("softmax_scale").to_bits(), "{name}");
    }
    // no temperature without scaling
    assert_eq!(yarn_get_mscale(1.0, 7.0), 1.0);
    assert_eq!(yarn_get_mscale(0.5, 7.0), 1.0);
    Ok(())
}

/// The inverse frequencies, bit for bit but where torch's f32 power is 1 ulp off the
/// correctly rounded one (see the file's header).
#[test]
fn inv_freq_matches_transformers() -> Result<()> {
    let (fx, _, cases) = cases()?;
    for c in &cases {
        let ours = c.yarn.inv_freq(c.head_dim, c.theta)?;
        let want = c.tensor(&fx, "inv_freq")?.data;
        assert_eq!(ours.len(), c.head_dim / 2);
        assert_eq!(want.len(), c.head_dim / 2);
        let pow_off: Vec<usize> = c.json["pow_not_correctly_rounded"]
            .as_array()
            .expect("pow_not_correctly_rounded")
            .iter()
            .map(|i| i.as_u64().expect("pair") as usize)
            .collect();
        for (i, (&got, &want)) in ours.iter().zip(&want).enumerate() {
            let allowed = if pow_off.contains(&i) { 1 } else { 0 };
            assert!(
                ulps(got, want) <= allowed,
                "{} pair {i}: got {got:e}, want {want:e}, {} ulps > {allowed}",
                c.name,
                ulps(got, want)
            );
        }
    }
    // the only non-correctly-rounded powers are gpt-oss's theta 150 000 (pairs 6 and 10)
    for c in &cases {
        let n = c.json["pow_not_correctly_rounded"].as_array().expect("list").len();
        assert_eq!(n != 0, c.theta == 150_000.0, "{}", c.name);
    }
    Ok(())
}

/// `Rope::with_scaling` against the model's own rotary embedding at positions 0 .. 131 071
/// (gpt-oss's whole context; DeepSeek's table repeats each angle in both halves).
#[test]
fn tables_match_the_models_rotary_embedding() -> Result<()> {
    let (fx, positions, cases) = cases()?;
    let max_positions = positions.iter().max().expect("positions") + 1;
    assert_eq!(max_positions, 131_072);
    for c in &cases {
        let rope =
            Rope::with_scaling(c.head_dim, max_positions, c.theta, Some(c.yarn.into()))?;
        let factor = c.yarn.attention_factor();
        assert_eq!(rope.attention_factor(), factor, "{}", c.name);
        let theirs = c.tensor(&fx, "inv_freq")?.data;
        let (want_cos, want_sin) = (c.tensor(&fx, "cos")?, c.tensor(&fx, "sin")?);
        let half = c.head_dim / 2;
        // (positions, head_dim/2) for gpt-oss, (positions, head_dim) for DeepSeek
        let width = want_cos.shape[1];
        assert!(width == half || width == c.head_dim, "{}: width {width}", c.name);
        assert_eq!(want_cos.shape, [positions.len(), width]);
        for (r, &pos) in positions.iter().enumerate() {
            let pairs = rope.inv_freq().iter().zip(&theirs).enumerate();
            for (i, (&ours_i, &theirs_i)) in pairs {
                let (cos, sin) = rope.cos_sin(pos, i)?;
                let p = pos as f32;
                let angle_diff = (p * ours_i - p * theirs_i).abs();
                let allowed = factor * angle_diff + 2.5e-7;
                for col in [i, i + width - half] {
                    for (what, got, want) in [
                        ("cos", cos, want_cos.data[r * width + col]),
                        ("sin", sin, want_sin.data[r * width + col]),
                    ] {
                        assert!(
                            (got - want).abs() <= allowed,
                            "{} {what} at pos {pos} pair {i}: got {got:e}, want {want:e}, \
                             |diff| {:e} > allowed {allowed:e}",
                            c.name,
                            (got - want).abs()
                        );
                    }
                }
            }
        }
    }
    Ok(())
}

/// The tables rotate each pair and scale its length by the attention factor: after
/// `apply`, `x1'² + x2'² = factor² · (x1² + x2²)`.
#[test]
fn rotation_scales_each_pair_by_the_attention_factor() -> Result<()> {
    let (head_dim, n_heads, seq, start_pos) = (64, 3, 5, 4093); // across the original 4096
    let rope =
        Rope::with_scaling(head_dim, 8192, 150_000.0, Some(YarnScaling::GPT_OSS.into()))?;
    let factor = rope.attention_factor();
    let x = nalgebra::DMatrix::from_fn(seq, n_heads * head_dim, |t, j| {
        ((t * 31 + j * 17) % 23) as f32 / 11.0 - 1.0
    });
    let mut y = x.clone();
    rope.apply(&mut y, start_pos)?;
    for t in 0..seq {
        for h in 0..n_heads {
            for i in 0..head_dim / 2 {
                let (a, b) = (h * head_dim + i, h * head_dim + head_dim / 2 + i);
                let before = x[(t, a)].powi(2) + x[(t, b)].powi(2);
                let after = y[(t, a)].powi(2) + y[(t, b)].powi(2);
                // a few f32 roundings of numbers up to ~4: relative 1e-6
                let want = factor * factor * before;
                assert!(
                    (after - want).abs() <= 1e-6 * want.max(1.0),
                    "t {t} h {h} i {i}"
                );
            }
        }
    }
    Ok(())
}

/// Factor 1 is no scaling: attention factor exactly 1, the unscaled frequencies (outside
/// the ramp bit for bit; inside it `θ·(1 − m) + θ·m` may round 1 ulp away from `θ`, in
/// transformers too), and so the unscaled tables wherever the frequencies agree.
#[test]
fn factor_one_reproduces_the_unscaled_tables() -> Result<()> {
    for (head_dim, base) in
        [(64, 150_000.0), (128, 500_000.0), (48, 10_000.0), (16, 10_000.0)]
    {
        let yarn = YarnScaling { factor: 1.0, ..YarnScaling::GPT_OSS };
        assert_eq!(yarn.attention_factor(), 1.0);
        let (low, high) = yarn.correction_range(head_dim, base)?;
        let scaled = yarn.inv_freq(head_dim, base)?;
        let plain = rope_inv_freq(head_dim, base)?;
        for (i, (&s, &p)) in scaled.iter().zip(&plain).enumerate() {
            let in_ramp = (i as f64) > low && (i as f64) < high;
            assert!(ulps(s, p) <= u32::from(in_ramp), "{head_dim} {base} pair {i}");
        }
        let max_positions = 5000; // past the original 4096
        let a = Rope::with_scaling(head_dim, max_positions, base, Some(yarn.into()))?;
        let b = Rope::new(head_dim, max_positions, base, None)?;
        assert_eq!(a.attention_factor(), 1.0);
        for pos in [0, 1, 4095, 4096, 4999] {
            for i in (0..head_dim / 2).filter(|&i| scaled[i] == plain[i]) {
                assert_eq!(a.cos_sin(pos, i)?, b.cos_sin(pos, i)?, "pos {pos} pair {i}");
            }
        }
        if scaled == plain {
            assert_eq!(a, b);
        }
    }
    Ok(())
}

/// `with_scaling` with Llama 3 scaling, or none, is `Rope::new`; and the tables it builds
/// keep their factor 1.
#[test]
fn with_scaling_agrees_with_rope_new() -> Result<()> {
    let s = Llama3Scaling::LLAMA_3_1;
    let scaled = Rope::with_scaling(32, 300, 500_000.0, Some(RopeScaling::Llama3(s)))?;
    assert_eq!(scaled, Rope::new(32, 300, 500_000.0, Some(s))?);
    assert_eq!(scaled.attention_factor(), 1.0);
    let plain = Rope::with_scaling(24, 200, 10_000.0, None)?;
    assert_eq!(plain, Rope::new(24, 200, 10_000.0, None)?);
    assert_eq!(RopeScaling::from(s), RopeScaling::Llama3(s));
    Ok(())
}

/// Bad parameters are refused with a `Config` error naming the field, by `validate` and
/// by every function that uses them, never a panic or NaN tables.
#[test]
fn validate_refuses_bad_parameters() {
    let ok = YarnScaling::GPT_OSS;
    let cases: Vec<(&str, YarnScaling)> = vec![
        ("factor", YarnScaling { factor: f32::NAN, ..ok }),
        ("factor", YarnScaling { factor: f32::INFINITY, ..ok }),
        ("factor", YarnScaling { factor: 0.0, ..ok }),
        ("factor", YarnScaling { factor: -32.0, ..ok }),
        ("factor", YarnScaling { factor: 0.5, ..ok }),
        (
            "original_max_position_embeddings",
            YarnScaling { original_max_position_embeddings: 0, ..ok },
        ),
        ("beta_slow", YarnScaling { beta_slow: 0.0, ..ok }),
        ("beta_slow", YarnScaling { beta_slow: -1.0, ..ok }),
        ("beta_slow", YarnScaling { beta_slow: f32::NAN, ..ok }),
        ("beta_fast", YarnScaling { beta_fast: 0.5, ..ok }), // below beta_slow = 1
        ("beta_fast", YarnScaling { beta_fast: f32::NAN, ..ok }),
        ("beta_fast", YarnScaling { beta_fast: f32::INFINITY, ..ok }),
        ("mscale", YarnScaling { mscale: Some(-1.0), mscale_all_dim: Some(1.0), ..ok }),
        (
            "mscale_all_dim",
            YarnScaling { mscale: Some(1.0), mscale_all_dim: Some(f32::NAN), ..ok },
        ),
        ("attention_factor", YarnScaling { attention_factor: Some(0.0), ..ok }),
        ("attention_factor", YarnScaling { attention_factor: Some(-0.5), ..ok }),
        ("attention_factor", YarnScaling { attention_factor: Some(f32::INFINITY), ..ok }),
        // each field fine, but gm(1e6, f32::MAX) / gm(1e6, 1e-30) overflows f32
        (
            "mscale",
            YarnScaling {
                factor: 1e6,
                mscale: Some(f32::MAX),
                mscale_all_dim: Some(1e-30),
                ..ok
            },
        ),
    ];
    for (field, bad) in cases {
        let prefix = format!("rope_scaling.{field} must be");
        let check = |what: &str, err: AttnError| match err {
            AttnError::Config(msg) => {
                assert!(msg.starts_with(&prefix), "{what} {bad:?}: {msg}")
            }
            other => panic!("{what} {bad:?}: expected a Config error, got {other:?}"),
        };
        check("validate", bad.validate().unwrap_err());
        check("inv_freq", bad.inv_freq(64, 150_000.0).unwrap_err());
        check("correction_range", bad.correction_range(64, 150_000.0).unwrap_err());
        check(
            "with_scaling",
            Rope::with_scaling(64, 16, 150_000.0, Some(bad.into())).unwrap_err(),
        );
    }
    // accepted, as transformers accepts them: equal betas (a step), mscale 0 (= unset)
    for fine in [
        YarnScaling { beta_fast: 4.0, beta_slow: 4.0, ..ok },
        YarnScaling { mscale: Some(0.0), mscale_all_dim: Some(1.0), ..ok },
        YarnScaling { factor: 1.0, ..YarnScaling::DEEPSEEK_V3 },
    ] {
        fine.validate().unwrap_or_else(|e| panic!("{fine:?}: {e}"));
    }
    let unset = YarnScaling { mscale: Some(0.0), mscale_all_dim: Some(1.0), ..ok };
    assert_eq!(unset.attention_factor(), ok.attention_factor());
}

/// Bad sizes and bases: typed errors, checked before anything is allocated.
#[test]
fn bad_sizes_are_typed_errors() {
    let yarn = Some(RopeScaling::Yarn(YarnScaling::DEEPSEEK_V3));
    let err = Rope::with_scaling(64, usize::MAX, 10_000.0, yarn).unwrap_err();
    assert!(matches!(err, AttnError::TooLarge { .. }), "{err:?}");
    let err = Rope::with_scaling(64, 1 << 40, 10_000.0, yarn).unwrap_err();
    assert!(matches!(err, AttnError::TooLarge { .. }), "{err:?}");
    let err = Rope::with_scaling(64, 0, 10_000.0, yarn).unwrap_err();
    assert!(matches!(err, AttnError::ZeroSize { what: "max_positions" }), "{err:?}");
    let err = Rope::with_scaling(63, 16, 10_000.0, yarn).unwrap_err();
    assert!(matches!(err, AttnError::OddHeadDim { head_dim: 63 }), "{err:?}");
    let err = YarnScaling::GPT_OSS.inv_freq(0, 10_000.0).unwrap_err();
    assert!(matches!(err, AttnError::ZeroSize { what: "head_dim" }), "{err:?}");
    for base in [1.0, 0.5, f32::NAN, f32::INFINITY] {
        let err = YarnScaling::GPT_OSS.inv_freq(64, base).unwrap_err();
        assert!(
            matches!(err, AttnError::Config(ref m) if m.starts_with("rope_theta")),
            "{err:?}"
        );
    }
    let err = YarnScaling::GPT_OSS.inv_freq(usize::MAX - 1, 10_000.0).unwrap_err();
    assert!(matches!(err, AttnError::TooLarge { .. }), "{err:?}");
}
