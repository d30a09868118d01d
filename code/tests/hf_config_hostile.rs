//! Hostile `config.json` files: each builds its input here (no fixture files) and checks
//! that `HfLlamaConfig` either reads it as transformers would or refuses it with one line
//! that names the file and the key. Then a property test: whatever JSON-ish text comes
//! in, the parser returns a config that passes validation or an error, and never panics.

use attention::{AttnError, HfLlamaConfig, Preset};
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
    // setdefault
    let c = with(|m| {
        m.insert("rope_theta".into(), Value::Null);
        m.insert(
            "rope_parameters".into(),
            json!({"rope_type": "default", "rope_theta": 500000.0}),
        );
    })
    .unwrap();
    assert_eq!((c.rope_theta, c.rope_scaling), (500_000.0, None));
}

/// Mistral (sliding window), Gemma (soft-capping, query_pre_attn_scalar) and Qwen3 (q/k
/// norms) configs have every key a Llama config has; read as Llama they run, silently
/// wrong.
#[test]
fn other_model_types_are_refused() {
    let m = message(with(|m| {
        m.insert("model_type".into(), json!("mistral"));
        m.insert("sliding_window".into(), json!(4096));
    }));
    assert!(m.contains("model_type `mistral` is not supported (only `llama`)"), "{m}");
    for other in
        ["gemma", "gemma2", "gemma3_text", "qwen3", "gpt_oss", "deepseek_v3", "LLAMA", ""]
    {
        let m = message(with(|m| {
            m.insert("model_type".into(), json!(other));
        }));
        assert!(m.contains(&format!("model_type `{other}` is not supported")), "{m}");
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
        assert!(c.is_ok(), "{c:?}");
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
    std::fs::write(&path, base().to_string().replace("\"llama\"", "\"mistral\""))
        .unwrap();
    let e = HfLlamaConfig::from_file(&path).unwrap_err().to_string();
    assert!(e.starts_with(&format!("{}: model_type `mistral`", path.display())), "{e}");
    std::fs::write(&path, [0xff, 0xfe, b'{']).unwrap();
    assert!(
        HfLlamaConfig::from_file(&path).unwrap_err().to_string().contains("invalid JSON")
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Keys the parser reads, so that generated objects hit them often.
const KEYS: [&str; 18] = [
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
            Just("mistral"),
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
