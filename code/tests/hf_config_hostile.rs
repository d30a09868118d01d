//! Hostile `config.json` files: each builds its input here (no fixture files) and checks
//! that `HfLlamaConfig` either reads it as transformers would or refuses it with one line
//! that names the file and the key. Then a property test: whatever JSON-ish text comes
//! in, the parser returns a config that passes validation or an error, and never panics.

use attention::hf::{LayerKind, MlaFields, ModelFields, ModelType};
use attention::mechanisms::rope::LinearScaling;
use attention::support::io::save_tensors;
use attention::variants::RmsNormStyle;
use attention::{
    AttnError, HfLlamaConfig, MlaShape, Preset, RopeLayout, Tensor, TensorFile,
    YarnScaling, rope_inv_freq, yarn_get_mscale,
};
use proptest::prelude::*;
use serde_json::{Value, json};

/// A valid small Llama config (the shape of the `gqa` fixture) to break one key at a
/// time.
fn base() -> Value {
    json!({
        "model_type": "llama", "hidden_size": 40, "num_attention_heads": 4, "num_key_value_heads": 2,
        "head_dim": 12, "max_position_embeddings": 256, "rope_theta": 500000.0, "attention_bias": false,
        "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                         "high_freq_factor": 4.0, "original_max_position_embeddings": 64}
    })
}

fn parse(text: &str) -> Result<HfLlamaConfig, AttnError> {
    HfLlamaConfig::from_json_str(text, "hostile/config.json")
}

/// `base()` with `edit` applied, parsed.
fn with(
    edit: impl FnOnce(&mut serde_json::Map<String, Value>),
) -> Result<HfLlamaConfig, AttnError> {
    let mut v = base();
    edit(v.as_object_mut().unwrap());
    parse(&v.to_string())
}

/// The error's message, checked to be one line that names the file.
fn message(r: Result<HfLlamaConfig, AttnError>) -> String {
    let e = r.expect_err("a hostile config was accepted");
    let m = e.to_string();
    assert!(!m.contains('\n'), "not one line: {m}");
    assert!(m.starts_with("hostile/config.json: "), "does not name the file: {m}");
    assert!(matches!(e, AttnError::Format { .. } | AttnError::InFile { .. }), "{e:?}");
    m
}

fn scaling(
    m: &mut serde_json::Map<String, Value>,
) -> &mut serde_json::Map<String, Value> {
    m.get_mut("rope_scaling").unwrap().as_object_mut().unwrap()
}

#[test]
fn the_base_config_is_valid_and_warns_of_nothing() {
    let c = with(|_| {}).unwrap();
    assert_eq!((c.q_dim(), c.kv_dim(), c.rope_theta), (48, 24, 500_000.0));
    assert!(c.warnings().is_empty());
}

/// transformers fails on `"rope_theta": null`; the old reader took it as absent and ran
/// Llama 3 at base 10 000 instead of 500 000, wrong at every position.
#[test]
fn a_null_rope_theta_is_an_error_not_the_default() {
    let m = message(with(|m| {
        m.insert("rope_theta".into(), Value::Null);
    }));
    assert!(m.contains("key `rope_theta` is null"), "{m}");
    let m = message(with(|m| {
        m.remove("rope_scaling");
        m.insert(
            "rope_parameters".into(),
            json!({"rope_type": "default", "rope_theta": null}),
        );
    }));
    assert!(m.contains("key `rope_parameters.rope_theta` is null"), "{m}");
    // absent: the default, as transformers
    let c = with(|m| {
        m.remove("rope_theta");
    })
    .unwrap();
    assert_eq!(c.rope_theta, 10_000.0);
    // a value inside rope_parameters wins over a null at the top level, as transformers'
    // setdefault (without rope_scaling, which transformers would take instead, and then
    // the null)
    let c = with(|m| {
        m.remove("rope_scaling");
        m.insert("rope_theta".into(), Value::Null);
        m.insert(
            "rope_parameters".into(),
            json!({"rope_type": "default", "rope_theta": 500000.0}),
        );
    })
    .unwrap();
    assert_eq!((c.rope_theta, c.rope_scaling), (500_000.0, None));
}

/// The model types of chapters 9-12 that this crate reads each go to their own class's
/// rules (here: Llama's llama3 RoPE is not theirs); any other is refused, naming the
/// type: a DeepSeek-V3.2 or Gemma 1 config has every key a Llama config has, and read as
/// one of ours it would run silently wrong.
#[test]
fn other_model_types_are_refused() {
    for other in ["mistral", "qwen3", "gemma2", "gemma3_text", "gpt_oss"] {
        let m = message(with(|m| {
            m.insert("model_type".into(), json!(other));
        }));
        assert!(
            m.contains(&format!(
                "rope_scaling.rope_type `llama3` is not supported for model_type `{other}`"
            )),
            "{m}"
        );
    }
    for other in ["gemma", "deepseek_v32", "qwen2", "gemma3n", "LLAMA", ""] {
        let m = message(with(|m| {
            m.insert("model_type".into(), json!(other));
        }));
        assert!(
            m.contains(&format!(
                "model_type `{other}` is not supported (only `llama`, `mistral`, `qwen3`, \
                 `gemma2`, `gemma3_text`, `gemma3`, `gpt_oss`, `deepseek_v2`, `deepseek_v3`)"
            )),
            "{m}"
        );
    }
    let m = message(with(|m| {
        m.insert("model_type".into(), json!(["llama"]));
    }));
    assert!(m.contains("key `model_type` must be a string, got [\"llama\"]"), "{m}");
    // absent (older configs) or null: taken as Llama
    for edit in [None, Some(Value::Null)] {
        let c = with(|m| match edit {
            None => drop(m.remove("model_type")),
            Some(v) => drop(m.insert("model_type".into(), v)),
        });
        assert_eq!(c.unwrap().model, ModelFields::llama());
    }
}

/// transformers runs a `rope_scaling` without a type unscaled. So does the crate, and it
/// says so.
#[test]
fn an_untyped_rope_scaling_runs_unscaled_with_a_warning() {
    let c = with(|m| {
        scaling(m).remove("rope_type");
    })
    .unwrap();
    assert_eq!(c.rope_scaling, None);
    assert_eq!(c.warnings().len(), 1);
    let w = &c.warnings()[0];
    assert!(
        w.starts_with(
            "hostile/config.json: `rope_scaling` has no `rope_type` (nor `type`)"
        ),
        "{w}"
    );
    assert!(w.contains("`factor`") && !w.contains('\n'), "{w}");
    // the legacy key is a type
    let c = with(|m| {
        let s = scaling(m);
        s.remove("rope_type");
        s.insert("type".into(), json!("llama3"));
    })
    .unwrap();
    assert!(c.rope_scaling.is_some() && c.warnings().is_empty());
    // rope_parameters holding only rope_theta is not a forgotten scaling
    let c = with(|m| {
        m.remove("rope_scaling");
        m.insert("rope_parameters".into(), json!({"rope_theta": 10000.0}));
    })
    .unwrap();
    assert!(c.warnings().is_empty(), "{:?}", c.warnings());
}

#[test]
fn llama3_scaling_errors_name_the_field() {
    let cases = [
        (
            "factor",
            json!(0.5),
            "rope_scaling.factor must be a finite number >= 1, got 0.5",
        ),
        (
            "low_freq_factor",
            json!(0),
            "rope_scaling.low_freq_factor must be a finite number > 0, got 0",
        ),
        (
            "high_freq_factor",
            json!(1.0),
            "rope_scaling.high_freq_factor must be finite, with low_freq_factor",
        ),
        (
            "original_max_position_embeddings",
            json!(0),
            "rope_scaling.original_max_position_embeddings must be",
        ),
        (
            "factor",
            json!("8"),
            "key `rope_scaling.factor` must be a number within f32's range, got \"8\"",
        ),
        (
            "original_max_position_embeddings",
            json!(-1),
            "key `rope_scaling.original_max_position_embeddings` must be a non-negative integer, got -1",
        ),
    ];
    for (key, value, want) in cases {
        let m = message(with(|m| {
            scaling(m).insert(key.into(), value);
        }));
        assert!(m.contains(want), "{key}: {m}");
        assert!(!m.contains("Llama3Scaling"), "a Debug dump: {m}");
    }
    // the same in the transformers 5 form names rope_parameters
    let m = message(with(|m| {
        let mut s = m.remove("rope_scaling").unwrap();
        s["factor"] = json!(0.25);
        m.insert("rope_parameters".into(), s);
    }));
    assert!(
        m.contains("rope_parameters.factor must be a finite number >= 1, got 0.25"),
        "{m}"
    );
}

/// The shared validator names the field for the crate's own config too, instead of a
/// Debug dump.
#[test]
fn attention_config_scaling_errors_name_the_field() {
    let mut cfg = Preset::LLAMA_3_1_8B.config;
    cfg.rope_scaling.as_mut().unwrap().factor = f32::NAN;
    assert_eq!(
        cfg.validate().unwrap_err().to_string(),
        "invalid config: rope_scaling.factor must be a finite number >= 1, got NaN"
    );
}

#[test]
fn a_rope_object_that_is_not_an_object_is_named_without_a_stray_dot() {
    for (value, shown) in
        [(json!(3), "3"), (json!("llama3"), "\"llama3\""), (json!([1, 2]), "[1,2]")]
    {
        let m = message(with(|m| {
            m.insert("rope_scaling".into(), value);
        }));
        assert!(
            m.ends_with(&format!(
                "key `rope_scaling` must be a JSON object, got {shown}"
            )),
            "{m}"
        );
        assert!(!m.contains("rope_scaling.`"), "{m}");
    }
}

#[test]
fn invalid_config_messages_name_the_file() {
    let m = message(with(|m| {
        m.insert("num_key_value_heads".into(), json!(3));
    }));
    assert_eq!(
        m,
        "hostile/config.json: invalid config: num_attention_heads = 4 is not divisible by num_key_value_heads = 3"
    );
    let m = message(with(|m| {
        m.insert("head_dim".into(), json!(11));
    }));
    assert_eq!(
        m,
        "hostile/config.json: invalid config: RoPE needs an even head_dim, got 11"
    );
    // the file's error keeps the validator's typed variant inside it
    let e = with(|m| {
        m.insert("num_key_value_heads".into(), json!(3));
    })
    .unwrap_err();
    match e {
        AttnError::InFile { path, source } => {
            assert_eq!(path, "hostile/config.json");
            assert!(matches!(*source, AttnError::NotDivisible { .. }), "{source:?}");
        }
        other => panic!("expected InFile, got {other:?}"),
    }
    // and so does a struct built in code
    let mut c = with(|_| {}).unwrap();
    c.head_dim = 11;
    assert_eq!(c.validate(), Err(AttnError::OddHeadDim { head_dim: 11 }));
}

/// `4 · 2⁶²` wraps to 0 in a release build: the layer then expected q_proj of shape (0,
/// 40).
#[test]
fn a_head_dim_whose_product_overflows_is_a_clear_error() {
    let m = message(with(|m| {
        m.insert("head_dim".into(), json!(1u64 << 62));
    }));
    assert!(
        m.ends_with("num_attention_heads * head_dim = 4 * 4611686018427387904 does not fit in usize"),
        "{m}"
    );
    let m = message(with(|m| {
        m.insert("num_attention_heads".into(), json!(1));
        m.insert("num_key_value_heads".into(), json!(1));
        m.insert("hidden_size".into(), json!(1u64 << 40));
        m.insert("head_dim".into(), json!(1u64 << 30));
    }));
    assert!(m.contains("weights do not fit in usize"), "{m}");
    // built in code, not parsed: validate refuses it and q_dim saturates instead of
    // panicking
    let mut c = with(|_| {}).unwrap();
    c.head_dim = usize::MAX - 1;
    assert!(matches!(c.validate(), Err(AttnError::Config(_))));
    assert_eq!(c.q_dim(), usize::MAX);
}

#[test]
fn numbers_that_are_not_sizes_are_clean_errors() {
    let int = "must be a non-negative integer, got";
    let cases = [
        ("hidden_size", json!(-40), format!("key `hidden_size` {int} -40")),
        ("hidden_size", json!(40.0), format!("key `hidden_size` {int} 40.0")),
        ("hidden_size", json!(40.5), format!("key `hidden_size` {int} 40.5")),
        ("hidden_size", json!("40"), format!("key `hidden_size` {int} \"40\"")),
        ("hidden_size", json!(true), format!("key `hidden_size` {int} true")),
        (
            "num_attention_heads",
            json!(1e300),
            format!("key `num_attention_heads` {int} 1e+300"),
        ),
        (
            "rope_theta",
            json!(1e39),
            "key `rope_theta` must be a number within f32's range, got 1e+39".into(),
        ),
        (
            "rope_theta",
            json!("500000"),
            "key `rope_theta` must be a number within f32's range".into(),
        ),
        (
            "rope_theta",
            json!(-500000.0),
            "rope_theta must be a finite number > 1, got -500000".into(),
        ),
        (
            "attention_bias",
            json!(0),
            "key `attention_bias` must be true or false, got 0".into(),
        ),
        (
            "hidden_size",
            json!({"a": "x".repeat(1000)}),
            format!("key `hidden_size` {int} {{\"a\":\"xxx"),
        ),
    ];
    for (key, value, want) in cases {
        let m = message(with(|m| {
            m.insert(key.into(), value);
        }));
        assert!(m.contains(&want), "{key}: {m}");
        assert!(m.len() < 200, "{key}: too long: {m}");
    }
    // near usize::MAX: read exactly, then refused by the shape checks
    for n in [usize::MAX, usize::MAX - 1, 1 << 63] {
        let m = message(with(|m| {
            m.insert("hidden_size".into(), json!(n));
        }));
        assert!(m.contains("invalid config"), "{m}");
        let m = message(with(|m| {
            m.insert("num_key_value_heads".into(), json!(n));
        }));
        assert!(m.contains("is not divisible by num_key_value_heads"), "{m}");
    }
    // past u64: JSON has it, serde_json reads it as a float, not a size
    let m = message(parse(
        &base()
            .to_string()
            .replace("\"hidden_size\":40", "\"hidden_size\":18446744073709551616"),
    ));
    assert!(
        m.contains(&format!("key `hidden_size` {int} 1.8446744073709552e+19")),
        "{m}"
    );
    // a huge context is legal and harmless: RoPE tables are built for the positions asked
    // for
    let c = with(|m| {
        m.insert("max_position_embeddings".into(), json!(usize::MAX));
    })
    .unwrap();
    assert!(c.rope(usize::MAX).is_err());
}

/// Python's `json.dump` writes NaN, Infinity and -Infinity; serde_json and JSON itself do
/// not have them.
#[test]
fn python_nan_infinity_and_out_of_range_floats_are_clean_errors() {
    let text = base().to_string();
    for token in ["NaN", "Infinity", "-Infinity"] {
        let m = message(parse(&text.replace("500000.0", token)));
        assert!(
            m.contains("invalid JSON") && m.contains("NaN and Infinity are Python's"),
            "{token}: {m}"
        );
    }
    let m = message(parse(&text.replace("500000.0", "1e400")));
    assert!(m.contains("invalid JSON: number out of range"), "{m}");
    for text in ["", "{", "[1, 2]", "null", "\"config\"", "{\"hidden_size\": 40,}"] {
        message(parse(text));
    }
    // nesting deeper than serde_json's recursion limit is an error, not a stack overflow
    let deep = format!("{{\"x\": {}{}}}", "[".repeat(100_000), "]".repeat(100_000));
    assert!(message(parse(&deep)).contains("recursion limit"));
}

#[test]
fn a_duplicate_key_takes_the_last_value_as_python_does() {
    let text = base().to_string().replacen('{', "{\"hidden_size\": 7,", 1);
    assert_eq!(parse(&text).unwrap().hidden_size, 40);
}

#[test]
fn from_file_refuses_what_is_not_a_small_regular_file() {
    let dir =
        std::env::temp_dir().join(format!("hf_config_hostile_{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let e = HfLlamaConfig::from_file(&dir).unwrap_err().to_string();
    assert!(e.contains("is a directory, not a file"), "{e}");
    let e = HfLlamaConfig::from_file(dir.join("missing.json")).unwrap_err();
    assert!(matches!(e, AttnError::Io { .. }), "{e:?}");
    let path = dir.join("config.json");
    std::fs::write(&path, base().to_string().replace("\"llama\"", "\"deepseek_v32\""))
        .unwrap();
    let e = HfLlamaConfig::from_file(&path).unwrap_err().to_string();
    assert!(
        e.starts_with(&format!("{}: model_type `deepseek_v32`", path.display())),
        "{e}"
    );
    std::fs::write(&path, [0xff, 0xfe, b'{']).unwrap();
    assert!(
        HfLlamaConfig::from_file(&path).unwrap_err().to_string().contains("invalid JSON")
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Keys the parser reads, so that generated objects hit them often.
const KEYS: [&str; 43] = [
    "model_type",
    "hidden_size",
    "num_attention_heads",
    "num_key_value_heads",
    "head_dim",
    "max_position_embeddings",
    "rope_theta",
    "attention_bias",
    "rope_scaling",
    "rope_parameters",
    "partial_rotary_factor",
    "original_max_position_embeddings",
    "rope_type",
    "type",
    "factor",
    "low_freq_factor",
    "high_freq_factor",
    "sliding_window",
    // the later models' keys (chapters 9-11)
    "layer_types",
    "num_hidden_layers",
    "use_sliding_window",
    "max_window_layers",
    "attn_logit_softcapping",
    "query_pre_attn_scalar",
    "rms_norm_eps",
    "sliding_window_pattern",
    "use_bidirectional_attention",
    "text_config",
    "rope_local_base_freq",
    "full_attention",
    "sliding_attention",
    "beta_fast",
    "beta_slow",
    "truncate",
    "attention_factor",
    // DeepSeek's latent attention (chapter 12)
    "q_lora_rank",
    "kv_lora_rank",
    "qk_nope_head_dim",
    "qk_rope_head_dim",
    "v_head_dim",
    "rope_interleave",
    "mscale",
    "mscale_all_dim",
];

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        (0u64..130).prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        prop_oneof![Just(1u64 << 62), Just(u64::MAX), Just(usize::MAX as u64 / 3)]
            .prop_map(Value::from),
        any::<f64>()
            .prop_filter("JSON numbers are finite", |x| x.is_finite())
            .prop_map(Value::from),
        prop_oneof![
            Just(0.5),
            Just(1.0),
            Just(4.0),
            Just(8.0),
            Just(500000.0),
            Just(1e39),
            Just(-1.0)
        ]
        .prop_map(Value::from),
        prop_oneof![
            Just("llama"),
            Just("llama3"),
            Just("default"),
            Just("yarn"),
            Just("linear"),
            Just("mistral"),
            Just("qwen3"),
            Just("gemma2"),
            Just("gemma3"),
            Just("gemma3_text"),
            Just("gpt_oss"),
            Just("deepseek_v2"),
            Just("deepseek_v3"),
            Just("sliding_attention"),
            Just("full_attention"),
            Just("8"),
            Just("")
        ]
        .prop_map(Value::from),
    ]
}

fn json_ish() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::vec((prop::sample::select(&KEYS[..]), inner), 0..8)
                .prop_map(|kv| {
                    Value::Object(
                        kv.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
                    )
                }),
        ]
    })
}

/// One edit of a valid config: set or remove a key at the top level or in `rope_scaling`.
#[derive(Clone, Debug)]
enum Edit {
    Set { nested: bool, key: &'static str, value: Value },
    Remove { nested: bool, key: &'static str },
}

fn edit() -> impl Strategy<Value = Edit> {
    let key = prop::sample::select(&KEYS[..]);
    prop_oneof![
        (any::<bool>(), key.clone(), json_ish())
            .prop_map(|(nested, key, value)| Edit::Set { nested, key, value }),
        (any::<bool>(), key).prop_map(|(nested, key)| Edit::Remove { nested, key }),
    ]
}

/// Whatever happened, the outcome is a config that passes its own validation or a
/// one-line error.
fn check_outcome(r: Result<HfLlamaConfig, AttnError>) -> Result<(), TestCaseError> {
    match r {
        Ok(c) => {
            prop_assert_eq!(c.validate(), Ok(()));
            prop_assert!(c.q_dim() >= c.kv_dim());
            let _ = c.attention_config();
            if c.model.mla.is_some() {
                prop_assert_eq!(c.num_key_value_heads, c.num_attention_heads);
                let scale = c.mla_scale().unwrap();
                prop_assert!(scale.is_finite() && scale > 0.0, "{}", scale);
                let _ = c.mla_shape().unwrap().validate();
            }
            for w in c.warnings() {
                prop_assert!(
                    w.starts_with("hostile/config.json: ") && !w.contains('\n'),
                    "{}",
                    w
                );
            }
        }
        Err(e) => {
            let m = e.to_string();
            prop_assert!(
                m.starts_with("hostile/config.json: ") && !m.contains('\n'),
                "{}",
                m
            );
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_json_never_panics(v in json_ish()) {
        check_outcome(parse(&v.to_string()))?;
    }

    #[test]
    fn mutated_valid_configs_never_panic(edits in prop::collection::vec(edit(), 1..5)) {
        let mut v = base();
        for e in edits {
            let m = v.as_object_mut().unwrap();
            let target = match &e {
                Edit::Set { nested: true, .. } | Edit::Remove { nested: true, .. } => {
                    match m.get_mut("rope_scaling").and_then(Value::as_object_mut) {
                        Some(s) => s,
                        None => continue,
                    }
                }
                _ => m,
            };
            match e {
                Edit::Set { key, value, .. } => drop(target.insert(key.to_string(), value)),
                Edit::Remove { key, .. } => drop(target.remove(key)),
            }
        }
        check_outcome(parse(&v.to_string()))?;
    }

    #[test]
    fn cut_or_garbled_text_never_panics(cut in 0usize..400, byte in any::<u8>(), at in 0usize..400) {
        let mut text = base().to_string().into_bytes();
        text.truncate(cut.max(1));
        let at = at.min(text.len());
        text.insert(at, byte);
        let text = String::from_utf8_lossy(&text);
        check_outcome(parse(&text))?;
    }
}

/// A minimal config of `model_type`: 32 heads of 128 in 4096, 4096 positions, plus
/// `extra` keys.
fn model(model_type: &str, extra: Value) -> Result<HfLlamaConfig, AttnError> {
    let mut v = json!({"model_type": model_type, "hidden_size": 4096,
                       "num_attention_heads": 32, "max_position_embeddings": 4096});
    for (k, x) in extra.as_object().unwrap() {
        v[k] = x.clone();
    }
    parse(&v.to_string())
}

/// What each class fills in for an absent key (transformers 5.24's dataclass defaults and
/// `__post_init__`), for `hidden_size` 4096 and 32 heads.
#[test]
fn each_class_fills_in_its_own_defaults() {
    use LayerKind::{Full, Sliding};
    let c = model("mistral", json!({})).unwrap();
    assert_eq!((c.num_key_value_heads, c.head_dim, c.rope_theta), (8, 128, 10_000.0));
    assert_eq!((c.model.sliding_window, &c.model.layer_types), (Some(4096), &None));
    assert_eq!(c.layer_kind("model.layers.9.self_attn.").unwrap(), Sliding);
    assert_eq!(c.layer_kind("self_attn.").unwrap(), Sliding);

    let c = model("qwen3", json!({})).unwrap();
    assert_eq!((c.num_key_value_heads, c.head_dim, c.attention_bias), (32, 128, false));
    // `sliding_window` 4096 by default, but off without `use_sliding_window`
    assert_eq!(c.model.sliding_window, None);
    assert_eq!(c.model.layer_types, Some(vec![Full; 32]));
    assert_eq!(c.model.qk_norm, Some((RmsNormStyle::Weight, 1e-6)));

    let c = model("gemma2", json!({})).unwrap();
    assert_eq!((c.num_key_value_heads, c.head_dim), (4, 256));
    let m = &c.model;
    assert_eq!((m.sliding_window, m.query_pre_attn_scalar), (Some(4096), Some(256)));
    assert_eq!(m.attn_logit_softcapping, Some(50.0));
    let alternating: Vec<LayerKind> =
        (0..26).map(|i| if i % 2 == 0 { Sliding } else { Full }).collect();
    assert_eq!(m.layer_types.as_ref(), Some(&alternating));
    assert_eq!(m.qk_norm, None);

    let c = model("gemma3_text", json!({})).unwrap();
    assert_eq!((c.num_key_value_heads, c.head_dim), (4, 256));
    let m = &c.model;
    assert_eq!((m.attn_logit_softcapping, m.query_pre_attn_scalar), (None, Some(256)));
    let every_sixth: Vec<LayerKind> =
        (0..26).map(|i| if (i + 1) % 6 == 0 { Full } else { Sliding }).collect();
    assert_eq!(m.layer_types.as_ref(), Some(&every_sixth));
    assert_eq!(m.qk_norm, Some((RmsNormStyle::OnePlusWeight, 1e-6)));
    assert_eq!((c.rope_theta, m.sliding_rope_theta), (1_000_000.0, Some(10_000.0)));
    // the smaller base turns each pair faster: the sliding layers' tables are their own
    let (sliding, full) = (c.rope_for(Sliding, 8).unwrap(), c.rope_for(Full, 8).unwrap());
    assert!(sliding.inv_freq()[1] > full.inv_freq()[1]);

    let c = model("gpt_oss", json!({})).unwrap();
    assert_eq!((c.num_key_value_heads, c.head_dim, c.attention_bias), (8, 64, true));
    let m = &c.model;
    assert_eq!((m.sliding_window, m.learned_sinks), (Some(128), true));
    let alternating: Vec<LayerKind> =
        (0..36).map(|i| if i % 2 == 0 { Sliding } else { Full }).collect();
    assert_eq!(m.layer_types.as_ref(), Some(&alternating));
    // `rope_parameters` absent: the class's YaRN, at base 150 000
    assert_eq!((m.yarn, c.rope_theta), (Some(YarnScaling::GPT_OSS), 150_000.0));
    assert!(c.attention_config().is_err(), "AttentionConfig cannot hold YaRN");
    assert!(c.warnings().is_empty(), "{:?}", c.warnings());
}

/// `null` and an absent key differ where the class says so: `"sliding_window": null` is
/// no window (Mistral 7B v0.2), an absent one the default; a `null` the class's type
/// refuses is an error naming the key and the class.
#[test]
fn null_is_not_absent_where_the_class_says_so() {
    let c = model("mistral", json!({"sliding_window": null})).unwrap();
    assert_eq!(c.model.sliding_window, None);
    assert_eq!(c.layer_kind("model.layers.0.self_attn.").unwrap(), LayerKind::Full);
    let c = model("gemma2", json!({"attn_logit_softcapping": null})).unwrap();
    assert_eq!(c.model.attn_logit_softcapping, None);
    let c = model("qwen3", json!({"num_key_value_heads": null})).unwrap();
    assert_eq!(c.num_key_value_heads, 32); // num_attention_heads
    let c = model("mistral", json!({"head_dim": null})).unwrap();
    assert_eq!(c.head_dim, 128);
    for (m, key) in [
        ("qwen3", "head_dim"),
        ("gemma2", "head_dim"),
        ("gpt_oss", "num_key_value_heads"),
        ("mistral", "num_key_value_heads"),
        ("gemma3_text", "query_pre_attn_scalar"),
        ("gpt_oss", "attention_bias"),
        ("qwen3", "use_sliding_window"),
        ("gemma3_text", "rms_norm_eps"),
        ("gemma2", "num_hidden_layers"),
    ] {
        let e = message(model(m, json!({ key: null })));
        let class = ModelType::from_name(m).unwrap().class();
        assert!(
            e.ends_with(&format!("key `{key}` is null, which {class} refuses for it")),
            "{e}"
        );
    }
}

/// `layer_types` as given (with transformers' legacy `attention`), checked against
/// `num_hidden_layers`, or the class's pattern; a sliding layer needs a window.
#[test]
fn layer_types_are_read_and_checked() {
    use LayerKind::{Full, Sliding};
    let c = model(
        "gemma2",
        json!({"num_hidden_layers": 3,
               "layer_types": ["attention", "sliding_attention", "full_attention"]}),
    )
    .unwrap();
    assert_eq!(c.model.layer_types, Some(vec![Full, Sliding, Full]));
    let e = message(model("gemma2", json!({"layer_types": ["full_attention"]})));
    assert!(
        e.ends_with(
            "`num_hidden_layers` (26) must be equal to the number of `layer_types` (1)"
        ),
        "{e}"
    );
    let e = message(model(
        "gpt_oss",
        json!({"num_hidden_layers": 2, "layer_types": ["full_attention", "chunked_attention"]}),
    ));
    assert!(
        e.contains(
            "key `layer_types[1]`: layer type `chunked_attention` is not supported"
        ),
        "{e}"
    );
    let e = message(model("gpt_oss", json!({"layer_types": "full_attention"})));
    assert!(e.contains("key `layer_types` invalid type: string"), "{e}");
    // Qwen3: windows from max_window_layers on, only with use_sliding_window
    let c = model(
        "qwen3",
        json!({"use_sliding_window": true, "max_window_layers": 1, "num_hidden_layers": 3}),
    )
    .unwrap();
    assert_eq!(c.model.layer_types, Some(vec![Full, Sliding, Sliding]));
    assert_eq!(c.model.sliding_window, Some(4096));
    let e = message(model(
        "qwen3",
        json!({"sliding_window": 512, "num_hidden_layers": 1, "layer_types": ["sliding_attention"]}),
    ));
    assert!(e.contains("layer 0 is a sliding_attention layer but `sliding_window` is null (Qwen3 reads it only with use_sliding_window = true)"), "{e}");
    let e = message(model("gemma2", json!({"sliding_window": null})));
    assert!(
        e.contains("layer 0 is a sliding_attention layer but `sliding_window` is null"),
        "{e}"
    );
    // Gemma 3's pattern; its private `_sliding_window_pattern` is not read
    let c = model(
        "gemma3_text",
        json!({"num_hidden_layers": 4, "sliding_window_pattern": 2, "_sliding_window_pattern": 3}),
    )
    .unwrap();
    assert_eq!(c.model.layer_types, Some(vec![Sliding, Full, Sliding, Full]));
    let e = message(model("gemma3_text", json!({"sliding_window_pattern": 0})));
    assert!(e.contains("key `sliding_window_pattern` must be at least 1, got 0"), "{e}");
    let e = message(model("gemma2", json!({"num_hidden_layers": 1u64 << 40})));
    assert!(e.contains("is more layers than this crate reads"), "{e}");
    // Mistral has no layer_types: ignored, as MistralModel does, with a warning
    let c = model("mistral", json!({"layer_types": ["full_attention"]})).unwrap();
    assert_eq!(c.model.layer_types, None);
    assert!(c.warnings()[0].contains("`layer_types` is ignored"), "{:?}", c.warnings());
}

/// What the crate does not compute is refused with one line naming it: bidirectional
/// Gemma, a zero window, cap or scale, and every RoPE type not tested against
/// transformers for that model type (Gemma 3 4B's `linear` scaling among them).
#[test]
fn unsupported_settings_are_refused() {
    let cases = [
        (
            "gemma2",
            json!({"use_bidirectional_attention": true}),
            "`use_bidirectional_attention` = true is not supported",
        ),
        (
            "gemma3_text",
            json!({"use_bidirectional_attention": true}),
            "the attention is then not causal",
        ),
        (
            "mistral",
            json!({"sliding_window": 0}),
            "key `sliding_window` must be at least 1 (a query sees itself), got 0",
        ),
        (
            "gemma2",
            json!({"attn_logit_softcapping": 0.0}),
            "key `attn_logit_softcapping` must be a number > 0, got 0",
        ),
        (
            "gemma2",
            json!({"query_pre_attn_scalar": 0}),
            "key `query_pre_attn_scalar` must be at least 1, got 0",
        ),
        (
            "gemma2",
            json!({"query_pre_attn_scalar": 144.5}),
            "key `query_pre_attn_scalar` must be a non-negative integer",
        ),
        (
            "qwen3",
            json!({"rms_norm_eps": -1e-6}),
            "key `rms_norm_eps` must be a number >= 0",
        ),
        (
            "qwen3",
            json!({"rope_scaling": {"rope_type": "dynamic", "factor": 4.0}}),
            "rope_scaling.rope_type `dynamic` is not supported for model_type `qwen3` (only `default` and `yarn`)",
        ),
        (
            "qwen3",
            json!({"rope_scaling": {"rope_type": "linear", "factor": 4.0}}),
            "rope_scaling.rope_type `linear` is not supported for model_type `qwen3` (only `default` and `yarn`)",
        ),
        (
            "mistral",
            json!({"rope_parameters": {"rope_type": "longrope", "factor": 4.0}}),
            "rope_parameters.rope_type `longrope` is not supported for model_type `mistral` (only `default` and `yarn`)",
        ),
        (
            "mistral",
            json!({"head_dim": 0, "rope_parameters": {"rope_type": "yarn", "factor": 4.0}}),
            "key `head_dim` = 0 with a `yarn` RoPE: transformers' YaRN sizes its tables by head_dim itself",
        ),
        (
            "qwen3",
            json!({"rope_scaling": {"rope_type": "yarn", "factor": 0.5}}),
            "rope_scaling.factor must be a finite number >= 1, got 0.5",
        ),
        (
            "gemma2",
            json!({"rope_parameters": {"rope_type": "linear", "factor": 8.0}}),
            "rope_parameters.rope_type `linear` is not supported for model_type `gemma2` (only `default`)",
        ),
        (
            "mistral",
            json!({"rope_parameters": {"rope_type": "dynamic", "factor": 2.0}}),
            "rope_parameters.rope_type `dynamic` is not supported for model_type `mistral`",
        ),
        (
            "gpt_oss",
            json!({"rope_parameters": {"rope_type": "linear", "factor": 2.0}}),
            "rope_parameters.rope_type `linear` is not supported for model_type `gpt_oss` (only `default` and `yarn`)",
        ),
        (
            "gemma3_text",
            json!({"rope_scaling": {"rope_type": "yarn", "factor": 8.0}}),
            "rope_scaling.rope_type `yarn` is not supported for model_type `gemma3_text` (only `default` and `linear`)",
        ),
        (
            "gemma3_text",
            json!({"rope_parameters": {"full_attention": {"rope_type": "dynamic", "factor": 2.0}}}),
            "rope_parameters.full_attention.rope_type `dynamic` is not supported for model_type `gemma3_text` (only `default` and `linear`)",
        ),
        (
            "gemma3_text",
            json!({"rope_parameters": {"sliding_attention": {"rope_type": "linear", "factor": 8.0}}}),
            "rope_parameters.sliding_attention.rope_type `linear` is not supported for model_type `gemma3_text` (only `default`)",
        ),
        (
            "gemma3_text",
            json!({"rope_scaling": {"rope_type": "linear"}}),
            "missing key `rope_scaling.factor`",
        ),
        (
            "gemma3_text",
            json!({"rope_scaling": {"rope_type": "linear", "factor": null}}),
            "key `rope_scaling.factor` is null: give the factor (Gemma 3: 8.0)",
        ),
        (
            "gemma3_text",
            json!({"rope_scaling": {"rope_type": "linear", "factor": 0.5}}),
            "invalid config: rope_scaling.factor must be a finite number >= 1, got 0.5",
        ),
        (
            "gemma3_text",
            json!({"rope_parameters": {"full_attention": {"rope_type": "linear", "factor": "8"}}}),
            "key `rope_parameters.full_attention.factor` must be a number within f32's range, got \"8\"",
        ),
        (
            "gemma3_text",
            json!({"rope_parameters": {"sliding_attention": {"rope_type": "default"}},
                   "rope_scaling": {"rope_type": "linear", "factor": 8.0}}),
            "key `rope_parameters.full_attention` is absent or null, but `rope_scaling` is given, which Gemma3TextConfig merges into it (transformers fails)",
        ),
        (
            "gemma3_text",
            json!({"rope_parameters": {"rope_type": "default", "rope_theta": 10000.0}}),
            "`: Gemma 3's rope_parameters are nested per layer kind (`full_attention`, `sliding_attention`)",
        ),
        (
            "gemma3_text",
            json!({"rope_parameters": {"sliding_attention": {"rope_type": "yarn", "factor": 2.0}}}),
            "rope_parameters.sliding_attention.rope_type `yarn` is not supported",
        ),
        (
            "gemma3_text",
            json!({"rope_local_base_freq": null}),
            "key `rope_local_base_freq` is null",
        ),
        (
            "gemma3_text",
            json!({"rope_local_base_freq": 0.5}),
            "rope_parameters.sliding_attention.rope_theta must be a finite number > 1, got 0.5",
        ),
        (
            "gpt_oss",
            json!({"rope_parameters": {"rope_type": "yarn"}}),
            "missing key `rope_parameters.factor`",
        ),
        (
            "gpt_oss",
            json!({"rope_parameters": {"rope_type": "yarn", "factor": 0.5}}),
            "rope_parameters.factor must be a finite number >= 1, got 0.5",
        ),
        (
            "gpt_oss",
            json!({"rope_parameters": {"rope_type": "yarn", "factor": 8.0, "beta_fast": 0.5}}),
            "rope_parameters.beta_fast must be at least beta_slow = 1, got 0.5",
        ),
        (
            "gpt_oss",
            json!({"partial_rotary_factor": 0.5}),
            "partial_rotary_factor = 0.5 is not supported",
        ),
    ];
    for (m, extra, want) in cases {
        let e = message(model(m, extra.clone()));
        assert!(e.contains(want), "{m} {extra}: {e}");
    }
}

/// transformers 5.24 takes `rope_scaling or rope_parameters`: the older key wins unless
/// it is empty; gpt-oss's class puts its YaRN in an absent `rope_parameters` first. YaRN
/// reads an absent, `null` or 0 `beta_*` as 32 / 1, and `truncate` as true when absent,
/// false when `null`. Gemma 3's older keys give each layer kind its base.
#[test]
fn rope_objects_are_chosen_as_transformers_chooses_them() {
    let llama3 = json!({"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                        "high_freq_factor": 4.0, "original_max_position_embeddings": 64});
    let c = with(|m| {
        m.insert(
            "rope_parameters".into(),
            json!({"rope_type": "default", "rope_theta": 1e4}),
        );
    })
    .unwrap();
    assert!(c.rope_scaling.is_some(), "a non-empty rope_scaling wins");
    assert_eq!(c.rope_theta, 500_000.0); // the top level's: rope_scaling has none
    let c = with(|m| {
        m.insert("rope_scaling".into(), json!({}));
        m.insert("rope_parameters".into(), llama3.clone());
    })
    .unwrap();
    assert!(c.rope_scaling.is_some(), "an empty rope_scaling does not");
    // rope_scaling wins, so the top level's null is the base: an error, as in
    // transformers (which builds no tables from it)
    let e = message(with(|m| {
        m.insert("rope_theta".into(), Value::Null);
        m.insert(
            "rope_parameters".into(),
            json!({"rope_type": "default", "rope_theta": 5e5}),
        );
    }));
    assert!(
        e.ends_with("key `rope_theta` is null: give the RoPE base (Llama 3: 500000.0)"),
        "{e}"
    );

    let c = model("gpt_oss", json!({"rope_parameters": {}, "rope_theta": 1e6})).unwrap();
    assert_eq!((c.model.yarn, c.rope_theta), (None, 1e6));
    let c = model("gpt_oss", json!({"rope_scaling": {}})).unwrap();
    assert_eq!(c.model.yarn, Some(YarnScaling::GPT_OSS));
    let c = model(
        "gpt_oss",
        json!({"rope_parameters": {"rope_type": "yarn", "factor": 8.0, "beta_fast": 0, "beta_slow": null, "truncate": null}}),
    )
    .unwrap();
    let y = c.model.yarn.unwrap();
    assert_eq!((y.beta_fast, y.beta_slow, y.truncate), (32.0, 1.0, false));
    assert_eq!((y.factor, y.original_max_position_embeddings), (8.0, 4096));
    let c = model(
        "gpt_oss",
        json!({"max_position_embeddings": 131072, "original_max_position_embeddings": 8192,
               "rope_parameters": {"rope_type": "yarn", "factor": null, "original_max_position_embeddings": 4096}}),
    )
    .unwrap();
    let y = c.model.yarn.unwrap();
    // the top-level original wins; a null factor is the context over it
    assert_eq!(
        (y.factor, y.original_max_position_embeddings, y.truncate),
        (16.0, 8192, true)
    );

    let c = model("gemma3_text", json!({"rope_theta": 5e5, "rope_local_base_freq": 2e4}))
        .unwrap();
    assert_eq!((c.rope_theta, c.model.sliding_rope_theta), (5e5, Some(2e4)));
    let c = model(
        "gemma3_text",
        json!({"rope_theta": 5e5, "rope_parameters": {"full_attention": {"rope_type": "default", "rope_theta": 2e6}, "sliding_attention": null}}),
    )
    .unwrap();
    assert_eq!((c.rope_theta, c.model.sliding_rope_theta), (2e6, Some(1e4)));
}

/// The RoPE scalings read beyond Llama's, gpt-oss's and DeepSeek's: Gemma 3's linear
/// scaling of its full layers (the hub form and the nested one), never of its sliding
/// layers; a YaRN added to Qwen3 (as Qwen documents it) or Mistral, with transformers'
/// defaults, on every layer. An older `type` does not override the `rope_type` that
/// `Gemma3TextConfig` sets first: those layers run unscaled, as in transformers, with a
/// warning. Llama still refuses both.
#[test]
fn linear_for_gemma3_full_layers_and_yarn_for_qwen3_and_mistral() {
    use LayerKind::{Full, Sliding};
    // google/gemma-3-4b-it's text_config: rope_theta, rope_local_base_freq, rope_scaling
    let hub = json!({"rope_theta": 1e6, "rope_local_base_freq": 1e4,
                     "rope_scaling": {"factor": 8.0, "rope_type": "linear"}});
    let c = model("gemma3_text", hub.clone()).unwrap();
    assert_eq!(c.model.linear, Some(LinearScaling::GEMMA_3));
    assert_eq!((c.model.yarn, c.rope_scaling), (None, None));
    assert_eq!((c.rope_theta, c.model.sliding_rope_theta), (1e6, Some(1e4)));
    assert!(c.warnings().is_empty(), "{:?}", c.warnings());
    let (full, sliding) = (c.rope_for(Full, 8).unwrap(), c.rope_for(Sliding, 8).unwrap());
    let unscaled = |base| rope_inv_freq(c.head_dim, base).unwrap();
    let eighth: Vec<f32> = unscaled(1e6).iter().map(|f| f / 8.0).collect();
    assert_eq!(full.inv_freq(), &eighth[..]);
    assert_eq!(sliding.inv_freq(), &unscaled(1e4)[..], "sliding layers are never scaled");
    assert_eq!((full.attention_factor(), sliding.attention_factor()), (1.0, 1.0));
    let e = c.attention_config().unwrap_err().to_string();
    assert!(e.contains("AttentionConfig has no linear RoPE scaling"), "{e}");
    // the nested form transformers 5 writes reads the same
    let nested = json!({"rope_parameters": {
        "full_attention": {"rope_type": "linear", "factor": 8.0, "rope_theta": 1e6},
        "sliding_attention": {"rope_type": "default", "rope_theta": 1e4}}});
    assert_eq!(model("gemma3_text", nested).unwrap(), c);
    // in a multimodal `gemma3` config, errors name the key under text_config
    let mut text = json!({"hidden_size": 4096, "num_attention_heads": 32,
                          "max_position_embeddings": 4096});
    text.as_object_mut().unwrap().extend(hub.as_object().unwrap().clone());
    let wrapped = json!({"model_type": "gemma3", "text_config": text.clone()});
    assert_eq!(parse(&wrapped.to_string()).unwrap(), c);
    text["rope_scaling"]["factor"] = json!(0.25);
    let wrapped = json!({"model_type": "gemma3", "text_config": text});
    let e = message(parse(&wrapped.to_string()));
    assert!(
        e.ends_with(
            "text_config.rope_scaling.factor must be a finite number >= 1, got 0.25"
        ),
        "{e}"
    );
    // `rope_parameters["full_attention"].update(rope_scaling)`: the older key wins
    let c = model(
        "gemma3_text",
        json!({"rope_parameters": {"full_attention": {"rope_type": "default"}},
               "rope_scaling": {"rope_type": "linear", "factor": 2.0}}),
    )
    .unwrap();
    assert_eq!(c.model.linear, Some(LinearScaling { factor: 2.0 }));
    // an older `type` over the class's own {"rope_type": "default"} counts for nothing
    let c =
        model("gemma3_text", json!({"rope_scaling": {"type": "linear", "factor": 8.0}}))
            .unwrap();
    assert_eq!(c.model.linear, None);
    assert!(
        c.warnings()[0].contains("`rope_scaling.type` `linear` is ignored"),
        "{:?}",
        c.warnings()
    );
    assert!(c.warnings()[0].contains("rope_type `default`, as in transformers"));
    // ... but it is the type of a nested object that has no `rope_type`
    let c = model(
        "gemma3_text",
        json!({"rope_parameters": {"full_attention": {"type": "linear", "factor": 8.0}}}),
    )
    .unwrap();
    assert_eq!(c.model.linear, Some(LinearScaling::GEMMA_3));
    assert!(c.warnings().is_empty(), "{:?}", c.warnings());

    // Qwen's documented YaRN for Qwen3 past 32768 tokens, added to its config.json
    let c = model(
        "qwen3",
        json!({"rope_theta": 1e6, "max_position_embeddings": 131072,
               "rope_scaling": {"rope_type": "yarn", "factor": 4.0,
                                "original_max_position_embeddings": 32768}}),
    )
    .unwrap();
    let qwen = YarnScaling {
        factor: 4.0,
        original_max_position_embeddings: 32768,
        beta_fast: 32.0,
        beta_slow: 1.0,
        truncate: true,
        mscale: None,
        mscale_all_dim: None,
        attention_factor: None,
    };
    assert_eq!((c.model.yarn, c.model.linear), (Some(qwen), None));
    assert_eq!(c.rope(8).unwrap().attention_factor(), yarn_get_mscale(4.0, 1.0) as f32);
    assert!(c.warnings().is_empty(), "{:?}", c.warnings());
    // Mistral: every layer slides and rotates with YaRN; no original context given is
    // max_position_embeddings; a null head_dim is hidden_size / num_attention_heads
    let c = model(
        "mistral",
        json!({"head_dim": null, "rope_parameters": {"rope_type": "yarn", "factor": 8.0}}),
    )
    .unwrap();
    let y = c.model.yarn.unwrap();
    assert_eq!(
        (y.factor, y.original_max_position_embeddings, c.head_dim),
        (8.0, 4096, 128)
    );
    let sliding = c.rope_for(Sliding, 8).unwrap();
    assert_eq!(sliding.inv_freq(), &y.inv_freq(128, 10_000.0).unwrap()[..]);
    assert_eq!(sliding.attention_factor(), y.attention_factor());

    // Llama reads neither (chapter 7)
    for t in ["linear", "yarn"] {
        let e = message(model(
            "llama",
            json!({"rope_scaling": {"rope_type": t, "factor": 4.0}}),
        ));
        assert!(
            e.ends_with(&format!(
                "rope_scaling.rope_type `{t}` is not supported (only `default` and `llama3`)"
            )),
            "{e}"
        );
    }
}

/// What a class reads but ignores runs as transformers runs it, and says so.
#[test]
fn ignored_keys_are_warnings() {
    let c = model("gemma3_text", json!({"attn_logit_softcapping": 30.0})).unwrap();
    assert_eq!(c.model.attn_logit_softcapping, None);
    assert!(
        c.warnings()[0].contains("Gemma 3's attention never applies it"),
        "{:?}",
        c.warnings()
    );
    let c = model("mistral", json!({"attention_bias": true})).unwrap();
    assert!(!c.attention_bias);
    assert!(
        c.warnings()[0].contains("MistralAttention has no biases"),
        "{:?}",
        c.warnings()
    );
    for w in c.warnings() {
        assert!(w.starts_with("hostile/config.json: "), "{w}");
    }
}

// ---------------------------------------------------------------------------------------
// DeepSeek's multi-head latent attention (`deepseek_v3`, `deepseek_v2`; chapter 12)

/// deepseek-ai/DeepSeek-V3's attention keys as its hub config.json publishes them: the
/// older `rope_scaling` with `type`, `rope_theta` at the top level, no `head_dim`, no
/// `rope_interleave`.
const DEEPSEEK_V3: &str = r#"{"architectures": ["DeepseekV3ForCausalLM"], "model_type": "deepseek_v3",
    "hidden_size": 7168, "num_attention_heads": 128, "num_key_value_heads": 128,
    "q_lora_rank": 1536, "kv_lora_rank": 512, "qk_nope_head_dim": 128, "qk_rope_head_dim": 64,
    "v_head_dim": 128, "attention_bias": false, "max_position_embeddings": 163840,
    "rms_norm_eps": 1e-06, "rope_theta": 10000,
    "rope_scaling": {"beta_fast": 32, "beta_slow": 1, "factor": 40, "mscale": 1.0,
                     "mscale_all_dim": 1.0, "original_max_position_embeddings": 4096, "type": "yarn"}}"#;

/// A small DeepSeek-V3 config (sizes pairwise different) to break one key at a time.
fn deepseek_base() -> Value {
    json!({
        "model_type": "deepseek_v3", "hidden_size": 36, "num_attention_heads": 3,
        "num_key_value_heads": 3, "q_lora_rank": 10, "kv_lora_rank": 6, "qk_nope_head_dim": 5,
        "qk_rope_head_dim": 4, "v_head_dim": 7, "max_position_embeddings": 512,
        "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0}
    })
}

/// `deepseek_base()` with `edit` applied, parsed.
fn deepseek(
    edit: impl FnOnce(&mut serde_json::Map<String, Value>),
) -> Result<HfLlamaConfig, AttnError> {
    let mut v = deepseek_base();
    edit(v.as_object_mut().unwrap());
    parse(&v.to_string())
}

#[test]
fn the_deepseek_base_config_is_valid_and_warns_of_nothing() {
    let c = deepseek(|_| {}).unwrap();
    assert_eq!(c.model.model_type, ModelType::DeepseekV3);
    let want = MlaFields {
        q_lora_rank: Some(10),
        kv_lora_rank: 6,
        qk_nope_head_dim: 5,
        qk_rope_head_dim: 4,
        v_head_dim: 7,
        rope_layout: RopeLayout::Interleaved,
    };
    assert_eq!(c.model.mla, Some(want));
    // transformers' head_dim is qk_rope_head_dim: it sizes the RoPE tables only
    assert_eq!((c.head_dim, c.num_key_value_heads), (4, 3));
    let rope = c.rope(16).unwrap();
    assert_eq!((rope.head_dim(), rope.layout()), (4, RopeLayout::Interleaved));
    assert_eq!(c.mla_shape().unwrap().qk_head_dim(), 9);
    assert_eq!(c.mla_scale().unwrap(), (9f64).powf(-0.5) as f32);
    assert!(c.warnings().is_empty(), "{:?}", c.warnings());
    // AttentionConfig describes grouped-query layers only
    let e = c.attention_config().unwrap_err().to_string();
    assert!(e.contains("load_mla"), "{e}");
}

/// DeepSeek-V3's published config: its sizes are `MlaShape::DEEPSEEK_V3`, its YaRN
/// `YarnScaling::DEEPSEEK_V3` read from the hub form, and the same from the
/// transformers 5 form; the softmax scale carries YaRN's `mscale²`. An absent key gets
/// `DeepseekV3Config`'s default, which is DeepSeek-V3's own size.
#[test]
fn deepseek_v3_published_config_and_class_defaults() {
    let c = parse(DEEPSEEK_V3).unwrap();
    assert_eq!(c.mla_shape().unwrap(), MlaShape::DEEPSEEK_V3);
    assert_eq!((c.model.yarn, c.rope_theta), (Some(YarnScaling::DEEPSEEK_V3), 10_000.0));
    let m = yarn_get_mscale(40.0, 1.0);
    assert_eq!(c.mla_scale().unwrap(), ((192f64).powf(-0.5) * m * m) as f32);
    assert_eq!(c.rope(8).unwrap().attention_factor(), 1.0);
    assert!(c.warnings().is_empty(), "{:?}", c.warnings());
    // transformers 5's rope_parameters, as it writes them back (both type keys)
    let mut v: Value = serde_json::from_str(DEEPSEEK_V3).unwrap();
    let mut rope = v["rope_scaling"].clone();
    rope["rope_type"] = json!("yarn");
    rope["rope_theta"] = json!(10000);
    let m = v.as_object_mut().unwrap();
    m.remove("rope_scaling");
    m.remove("rope_theta");
    m.insert("rope_parameters".into(), rope);
    m.insert("head_dim".into(), json!(64)); // 5.24 writes qk_rope_head_dim there
    m.insert("qk_head_dim".into(), json!(192)); // and this, which nothing reads
    assert_eq!(parse(&v.to_string()).unwrap(), c);
    // the MLA keys absent: DeepseekV3Config's defaults, DeepSeek-V3's sizes
    let c = parse(
        r#"{"model_type": "deepseek_v3", "hidden_size": 7168, "num_attention_heads": 128,
            "max_position_embeddings": 4096}"#,
    )
    .unwrap();
    assert_eq!(c.mla_shape().unwrap(), MlaShape::DEEPSEEK_V3);
    assert_eq!(c.num_key_value_heads, 128); // the class default, = the heads here
    assert_eq!(c.model.mla.unwrap().rope_layout, RopeLayout::Interleaved);
    assert_eq!((c.model.yarn, c.rope_theta, c.attention_bias), (None, 10_000.0, false));
}

/// A missing MLA size is the class default, as in transformers (`kv_lora_rank`: 512),
/// and the checkpoint then does not fit it; `null` is refused where the class's type
/// refuses it, or where its attention cannot use it.
#[test]
fn missing_and_null_mla_keys() {
    let c = deepseek(|m| drop(m.remove("kv_lora_rank"))).unwrap();
    assert_eq!(c.model.mla.unwrap().kv_lora_rank, 512);
    let c = deepseek(|m| drop(m.remove("q_lora_rank"))).unwrap();
    assert_eq!(c.model.mla.unwrap().q_lora_rank, Some(1536));
    // null: a plain q_proj (DeepSeek-V2-Lite)
    let c = deepseek(|m| drop(m.insert("q_lora_rank".into(), Value::Null))).unwrap();
    assert_eq!(c.model.mla.unwrap().q_lora_rank, None);
    for key in ["kv_lora_rank", "qk_nope_head_dim", "qk_rope_head_dim", "attention_bias"]
    {
        let m = message(deepseek(|m| drop(m.insert(key.into(), Value::Null))));
        assert!(
            m.ends_with(&format!(
                "key `{key}` is null, which DeepseekV3Config refuses for it"
            )),
            "{m}"
        );
    }
    let m = message(deepseek(|m| drop(m.insert("v_head_dim".into(), Value::Null))));
    assert!(m.contains("key `v_head_dim` is null, which DeepseekV3Attention cannot use"));
    let int = "must be a non-negative integer, got";
    for (key, value) in [
        ("q_lora_rank", json!(-1)),
        ("kv_lora_rank", json!(6.5)),
        ("qk_rope_head_dim", json!("4")),
        ("v_head_dim", json!(1e300)),
    ] {
        let m = message(deepseek(|m| drop(m.insert(key.into(), value))));
        assert!(m.contains(&format!("key `{key}` {int}")), "{key}: {m}");
    }
    let m = message(deepseek(|m| drop(m.insert("rope_interleave".into(), json!(1)))));
    assert!(m.contains("key `rope_interleave` must be true or false, got 1"), "{m}");
}

/// Sizes the layer cannot have: a zero rank or head part, an odd RoPE part (RoPE
/// rotates pairs).
#[test]
fn zero_ranks_and_an_odd_rope_part_are_refused() {
    for key in [
        "q_lora_rank",
        "kv_lora_rank",
        "qk_nope_head_dim",
        "qk_rope_head_dim",
        "v_head_dim",
    ] {
        let e = deepseek(|m| drop(m.insert(key.into(), json!(0)))).unwrap_err();
        assert!(
            matches!(&e, AttnError::InFile { source, .. }
                if **source == AttnError::ZeroSize { what: key }),
            "{key}: {e:?}"
        );
        assert!(message(Err(e)).ends_with(&format!("{key} must be at least 1, got 0")));
    }
    let m = message(deepseek(|m| drop(m.insert("qk_rope_head_dim".into(), json!(5)))));
    assert!(m.ends_with(
        "qk_rope_head_dim must be even (RoPE rotates pairs of dimensions), got 5"
    ));
    for (key, value) in [("hidden_size", 0), ("num_attention_heads", 0)] {
        let m = message(deepseek(|m| drop(m.insert(key.into(), json!(value)))));
        assert!(m.ends_with(&format!("{key} must be at least 1, got 0")), "{m}");
    }
}

/// Sizes whose sums or weight counts overflow `usize` are refused by name, never wrapped
/// (a wrapped `kv_lora_rank + qk_rope_head_dim` would expect a tiny kv_a_proj_with_mqa).
#[test]
fn mla_sizes_whose_products_overflow_are_clear_errors() {
    let big = 1u64 << 62;
    let cases = [
        (
            json!({"kv_lora_rank": u64::MAX}),
            "kv_lora_rank + qk_rope_head_dim = 18446744073709551615 + 4 does not fit in usize",
        ),
        (
            json!({"qk_nope_head_dim": u64::MAX - 1}),
            "qk_nope_head_dim + qk_rope_head_dim = 18446744073709551614 + 4 does not fit",
        ),
        (
            json!({"v_head_dim": u64::MAX}),
            "qk_nope_head_dim + v_head_dim = 5 + 18446744073709551615 does not fit",
        ),
        (
            json!({"qk_nope_head_dim": big}),
            "the q_b_proj weights' num_attention_heads * (qk_nope_head_dim + \
             qk_rope_head_dim) * q_lora_rank = 3 * 4611686018427387908 * 10 does not fit",
        ),
        (
            json!({"q_lora_rank": null, "qk_nope_head_dim": big}),
            "the q_proj weights' num_attention_heads * (qk_nope_head_dim + \
             qk_rope_head_dim) * hidden_size = 3 * 4611686018427387908 * 36 does not fit",
        ),
        (
            json!({"kv_lora_rank": big}),
            "the kv_a_proj_with_mqa weights' (kv_lora_rank + qk_rope_head_dim) * \
             hidden_size = 4611686018427387908 * 36 does not fit",
        ),
        (
            json!({"v_head_dim": big}),
            "the kv_b_proj weights' num_attention_heads * (qk_nope_head_dim + v_head_dim) \
             * kv_lora_rank = 3 * 4611686018427387909 * 6 does not fit",
        ),
        (
            json!({"q_lora_rank": big}),
            "the q_b_proj weights' num_attention_heads * (qk_nope_head_dim + \
             qk_rope_head_dim) * q_lora_rank = 3 * 9 * 4611686018427387904 does not fit",
        ),
        (
            json!({"hidden_size": big, "num_attention_heads": 1, "num_key_value_heads": 1}),
            "does not fit in usize",
        ),
    ];
    for (extra, want) in cases {
        let m = message(deepseek(|m| {
            for (k, v) in extra.as_object().unwrap() {
                m.insert(k.clone(), v.clone());
            }
        }));
        assert!(m.contains(want), "{extra}: {m}");
    }
    // built in code, not parsed: validate refuses it
    let mut c = deepseek(|_| {}).unwrap();
    c.model.mla.as_mut().unwrap().kv_lora_rank = usize::MAX;
    assert!(matches!(c.validate(), Err(AttnError::Config(_))));
}

/// `num_key_value_heads` must be the head count: `DeepseekV3Config`'s default when
/// absent is 128, which transformers' attention then fails on (it repeats keys
/// `heads // 128 = 0` times); `null` is the head count, as the class makes it.
#[test]
fn deepseek_kv_heads_must_be_the_head_count() {
    let m = message(deepseek(|m| drop(m.remove("num_key_value_heads"))));
    assert!(
        m.contains(
            "key `num_key_value_heads` is absent, and DeepseekV3Config's default 128 must \
             equal num_attention_heads = 3"
        ),
        "{m}"
    );
    let m = message(deepseek(|m| drop(m.insert("num_key_value_heads".into(), json!(1)))));
    assert!(
        m.contains("key `num_key_value_heads` = 1 must equal num_attention_heads = 3")
    );
    let c =
        deepseek(|m| drop(m.insert("num_key_value_heads".into(), Value::Null))).unwrap();
    assert_eq!(c.num_key_value_heads, 3);
    // DeepSeek-V2's class defaults it to the head count
    let c = deepseek(|m| {
        m.insert("model_type".into(), json!("deepseek_v2"));
        m.remove("num_key_value_heads");
    })
    .unwrap();
    assert_eq!(c.num_key_value_heads, 3);
}

/// A `head_dim` in a DeepSeek-V3 config.json is set after the class writes
/// `qk_rope_head_dim` there, and sizes transformers' RoPE tables: another value, or
/// `null`, makes its attention fail, and is refused. DeepSeek-V2's class ignores it.
#[test]
fn a_deepseek_head_dim_must_be_the_rope_part() {
    let c = deepseek(|m| drop(m.insert("head_dim".into(), json!(4)))).unwrap();
    assert_eq!(c.head_dim, 4);
    let m = message(deepseek(|m| drop(m.insert("head_dim".into(), json!(12)))));
    assert!(
        m.contains("key `head_dim` = 12 must equal qk_rope_head_dim = 4 (or be absent)")
    );
    let m = message(deepseek(|m| drop(m.insert("head_dim".into(), Value::Null))));
    assert!(
        m.contains("key `head_dim` is null, but must equal qk_rope_head_dim = 4"),
        "{m}"
    );
    let c = deepseek(|m| {
        m.insert("model_type".into(), json!("deepseek_v2"));
        m.insert("head_dim".into(), json!(12));
    })
    .unwrap();
    assert_eq!(c.head_dim, 4);
}

/// `rope_interleave`: absent is true (DeepSeek's own configs do not have it), `null` is
/// false as transformers tests its truth (with a warning). DeepSeek-V2's attention does
/// not read it and always interleaves: a false one is a warning.
#[test]
fn rope_interleave_is_read_as_transformers_reads_it() {
    let layout = |c: &HfLlamaConfig| c.model.mla.unwrap().rope_layout;
    let c = deepseek(|m| drop(m.insert("rope_interleave".into(), json!(false)))).unwrap();
    assert_eq!(layout(&c), RopeLayout::SplitHalves);
    assert_eq!(c.rope(4).unwrap().layout(), RopeLayout::SplitHalves);
    assert!(c.warnings().is_empty());
    let c = deepseek(|m| drop(m.insert("rope_interleave".into(), Value::Null))).unwrap();
    assert_eq!(layout(&c), RopeLayout::SplitHalves);
    assert!(
        c.warnings()[0].contains(
            "`rope_interleave` is null, which DeepseekV3Attention reads as false"
        )
    );
    let c = deepseek(|m| {
        m.insert("model_type".into(), json!("deepseek_v2"));
        m.insert("rope_interleave".into(), json!(false));
    })
    .unwrap();
    assert_eq!(layout(&c), RopeLayout::Interleaved);
    assert!(
        c.warnings()[0].starts_with("hostile/config.json: `rope_interleave` is ignored")
    );
}

/// DeepSeek's RoPE: `default` or `yarn` (in either form), with YaRN's checks; a `null`
/// factor is the context over the original one unless `mscale_all_dim` needs it
/// (transformers' `yarn_apply_mscale` fails on it); `mscale_all_dim` 0 leaves the scale
/// alone; other types and a partial rotation are refused.
#[test]
fn deepseek_rope_types_and_yarn() {
    let yarn = |extra: Value| {
        deepseek(|m| {
            let mut rope = json!({"rope_type": "yarn", "factor": 40, "rope_theta": 10000.0,
                                   "original_max_position_embeddings": 128});
            for (k, v) in extra.as_object().unwrap() {
                rope[k] = v.clone();
            }
            m.insert("rope_parameters".into(), rope);
        })
    };
    let c = yarn(json!({"mscale": 1.0, "mscale_all_dim": 1.0})).unwrap();
    let m = yarn_get_mscale(40.0, 1.0);
    assert_eq!(c.mla_scale().unwrap(), ((9f64).powf(-0.5) * m * m) as f32);
    let c = yarn(json!({"mscale_all_dim": 0})).unwrap();
    assert_eq!(c.mla_scale().unwrap(), (9f64).powf(-0.5) as f32);
    let c = yarn(json!({"factor": null})).unwrap();
    assert_eq!(c.model.yarn.unwrap().factor, 4.0); // 512 / 128
    let m = message(yarn(json!({"factor": null, "mscale_all_dim": 0.707})));
    assert!(m.contains("key `rope_parameters.factor` is null, which DeepseekV3Attention's softmax scale cannot use"));
    let m = message(yarn(json!({"mscale_all_dim": -1.0})));
    assert!(m.contains("rope_parameters.mscale_all_dim must be a finite number >= 0"));
    let m = message(yarn(json!({"mscale_all_dim": 1e30})));
    assert!(m.contains("the softmax scale") && m.contains("must be a finite f32 > 0"));
    let m = message(yarn(json!({"factor": 0.5})));
    assert!(m.contains("rope_parameters.factor must be a finite number >= 1, got 0.5"));
    for (rope, want) in [
        (
            json!({"rope_type": "linear", "factor": 2.0}),
            "rope_parameters.rope_type `linear` is not supported for model_type `deepseek_v3` (only `default` and `yarn`)",
        ),
        (
            json!({"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0}),
            "rope_parameters.rope_type `llama3` is not supported for model_type `deepseek_v3`",
        ),
        (
            json!({"rope_type": "default", "partial_rotary_factor": 0.5}),
            "partial_rotary_factor = 0.5 is not supported",
        ),
    ] {
        let m = message(deepseek(|m| drop(m.insert("rope_parameters".into(), rope))));
        assert!(m.contains(want), "{m}");
    }
    let m = message(deepseek(|m| {
        m.insert("model_type".into(), json!("deepseek_v2"));
        m.insert("rope_scaling".into(), json!({"type": "dynamic", "factor": 2.0}));
    }));
    assert!(m.contains(
        "rope_scaling.type `dynamic` is not supported for model_type `deepseek_v2`"
    ));
}

/// A checkpoint written here for the base config: every tensor `load_mla` reads, zeros
/// (gains 1), less `drop`, plus `extra`.
fn deepseek_weights(
    test: &str,
    q_lora: bool,
    drop: &str,
    extra: &[(&str, &[usize])],
) -> TensorFile {
    let dir = std::env::temp_dir()
        .join(format!("hf_config_hostile_mla_{}_{test}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = "model.layers.0.self_attn.";
    // (3 heads, q/k heads 5 + 4, values 7, latent 6, query rank 10, hidden 36)
    let mut shapes: Vec<(String, Vec<usize>)> = vec![
        ("kv_a_proj_with_mqa.weight".into(), vec![6 + 4, 36]),
        ("kv_a_layernorm.weight".into(), vec![6]),
        ("kv_b_proj.weight".into(), vec![3 * (5 + 7), 6]),
        ("o_proj.weight".into(), vec![36, 3 * 7]),
    ];
    if q_lora {
        shapes.push(("q_a_proj.weight".into(), vec![10, 36]));
        shapes.push(("q_a_layernorm.weight".into(), vec![10]));
        shapes.push(("q_b_proj.weight".into(), vec![3 * 9, 10]));
    } else {
        shapes.push(("q_proj.weight".into(), vec![3 * 9, 36]));
    }
    shapes.retain(|(n, _)| n != drop);
    shapes.extend(extra.iter().map(|(n, s)| (n.to_string(), s.to_vec())));
    let tensors: Vec<(String, Tensor)> = shapes
        .into_iter()
        .map(|(n, s)| {
            let fill = if n.contains("layernorm") { 1.0 } else { 0.0 };
            let len = s.iter().product();
            (format!("{p}{n}"), Tensor::new(s, vec![fill; len]).unwrap())
        })
        .collect();
    let refs: Vec<(&str, &Tensor)> =
        tensors.iter().map(|(n, t)| (n.as_str(), t)).collect();
    let path = dir.join("model.safetensors");
    save_tensors(&path, &refs).unwrap();
    let file = TensorFile::open(&path).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    file
}

/// The checkpoint must be the config's: a `q_proj` beside a `q_lora_rank` (or the
/// low-rank query without one) is refused, naming the tensor and the key; a projection
/// of another shape is a shape error naming the keys that size it; a bias DeepSeek's
/// attention does not have is refused, and one `attention_bias` asks for must be there.
#[test]
fn deepseek_checkpoints_must_match_the_config() {
    let p = "model.layers.0.self_attn.";
    let c = deepseek(|_| {}).unwrap();
    let layer = c.load_mla(&deepseek_weights("ok", true, "", &[]), p).unwrap();
    assert_eq!(layer.shape(), c.mla_shape().unwrap());
    assert_eq!(layer.rope().max_positions(), 512);
    let w = deepseek_weights("q_proj", true, "", &[("q_proj.weight", &[27, 36])]);
    let e = c.load_mla(&w, p).unwrap_err().to_string();
    assert!(
        e.contains(&format!(
            "tensor `{p}q_proj.weight` is present, but config.json has q_lora_rank = 10"
        )),
        "{e}"
    );
    let direct = deepseek(|m| drop(m.insert("q_lora_rank".into(), Value::Null))).unwrap();
    direct.load_mla(&deepseek_weights("direct", false, "", &[]), p).unwrap();
    let e = direct.load_mla(&deepseek_weights("low_rank", true, "", &[]), p).unwrap_err();
    assert!(
        e.to_string().contains(
            "q_a_proj.weight` is present, but config.json has q_lora_rank = null"
        )
    );
    // another configuration's q_b_proj: (3 heads of 5 + 6, 10)
    let w = deepseek_weights(
        "q_b_shape",
        true,
        "q_b_proj.weight",
        &[("q_b_proj.weight", &[33, 10])],
    );
    let e = c.load_mla(&w, p).unwrap_err();
    assert!(matches!(e, AttnError::Shape { .. }), "{e:?}");
    assert!(e.to_string().contains(
        "q_b_proj.weight` (num_attention_heads·(qk_nope_head_dim + qk_rope_head_dim), q_lora_rank)"
    ));
    let w = deepseek_weights(
        "norm",
        true,
        "kv_a_layernorm.weight",
        &[("kv_a_layernorm.weight", &[10])],
    );
    let e = c.load_mla(&w, p).unwrap_err().to_string();
    assert!(
        e.contains("kv_a_layernorm.weight` (kv_lora_rank)")
            && e.contains("expected (6), got (10)")
    );
    // biases: never on q_b_proj; on q_a_proj, kv_a_proj_with_mqa and o_proj iff attention_bias
    let w = deepseek_weights("q_b_bias", true, "", &[("q_b_proj.bias", &[27])]);
    let e = c.load_mla(&w, p).unwrap_err().to_string();
    assert!(e.contains("DeepseekV3Attention's q_b_proj has no bias"), "{e}");
    let biased =
        deepseek(|m| drop(m.insert("attention_bias".into(), json!(true)))).unwrap();
    let all = [
        ("q_a_proj.bias", &[10][..]),
        ("kv_a_proj_with_mqa.bias", &[10][..]),
        ("o_proj.bias", &[36][..]),
    ];
    biased.load_mla(&deepseek_weights("biased", true, "", &all), p).unwrap();
    let e = biased
        .load_mla(&deepseek_weights("no_bias", true, "", &all[..2]), p)
        .unwrap_err();
    assert!(
        e.to_string().contains("o_proj.bias` (config.json has attention_bias = true)")
    );
    let e = c.load_mla(&deepseek_weights("stray", true, "", &all[1..2]), p).unwrap_err();
    assert!(e.to_string().contains("attention_bias = false"), "{e}");
    // the grouped-query loader refuses the config, and load_mla a grouped-query one
    let e = c.load_attention(&deepseek_weights("gqa", true, "", &[]), p).unwrap_err();
    assert!(matches!(e, AttnError::Unsupported(_)) && e.to_string().contains("load_mla"));
    let llama = with(|_| {}).unwrap();
    let e = llama.load_mla(&deepseek_weights("llama", true, "", &[]), p).unwrap_err();
    assert!(
        e.to_string().contains("model_type `llama` has no multi-head latent attention")
    );
}
