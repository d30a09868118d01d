//! `config.json`: the attention shape of a Hugging Face Llama checkpoint, with Hugging
//! Face's defaults applied and every value checked.
//!
//! The keys are declared as serde structs (`RawConfig`, `RawRope`); each number goes
//! through a small type (`Count`, `Number`) that refuses what transformers would choke on
//! later (a negative or fractional size, a string, a float beyond f32) with a one-line
//! message naming the key.

use std::path::Path;

use serde::de::{DeserializeOwned, Error as _};
use serde::{Deserialize, Deserializer};
use serde_json::Value;

use crate::mechanisms::config::{AttentionConfig, FieldNames};
use crate::mechanisms::rope::{Llama3Scaling, Rope};
use crate::support::error::{AttnError, Result};
use crate::support::io::read_small_file;

/// The prefix of layer 0's attention in a Hugging Face Llama checkpoint.
pub const DEFAULT_PREFIX: &str = "model.layers.0.self_attn.";

/// The largest RoPE table this module builds: `positions · head_dim/2` entries (2²⁷, i.e.
/// 512 MiB for cos and 512 MiB for sin). Llama 3.1 at 131 072 positions with head_dim 128
/// needs 2²³.
pub const MAX_ROPE_TABLE_ENTRIES: usize = 1 << 27;

/// The `model_type`s whose attention this crate computes. transformers loads a `mistral`
/// or `gemma2` config.json into `LlamaConfig` with only a logged warning; the layer then
/// runs without Mistral's sliding window or Gemma's soft-capping and scale, silently
/// wrong.
const SUPPORTED_MODEL_TYPES: [&str; 1] = ["llama"];

// ANCHOR: hf_llama_config
/// The attention shape of a Hugging Face Llama `config.json`, with Hugging Face's
/// defaults applied.
#[derive(Clone, Debug, PartialEq)]
pub struct HfLlamaConfig {
    /// `hidden_size`: the width of the layer's input and output (`d_model`).
    pub hidden_size: usize,
    /// `num_attention_heads`: query heads (`n_heads`).
    pub num_attention_heads: usize,
    /// `num_key_value_heads` (default: `num_attention_heads`): `n_kv_heads`.
    pub num_key_value_heads: usize,
    /// `head_dim` (default: `hidden_size / num_attention_heads`). May differ from that
    /// quotient, so `num_attention_heads · head_dim` need not equal `hidden_size`.
    pub head_dim: usize,
    /// `rope_theta`, inside `rope_parameters` or at the top level (10 000 when absent, as
    /// Hugging Face; an explicit `null` is an error, as in transformers).
    pub rope_theta: f32,
    /// `max_position_embeddings`: positions `0 .. max_position_embeddings` are valid.
    pub max_position_embeddings: usize,
    /// `rope_scaling` / `rope_parameters` with `rope_type` (or `type`) `"llama3"`; `None`
    /// for `"default"`.
    pub rope_scaling: Option<Llama3Scaling>,
    /// `attention_bias` (default false): whether q/k/v/o projections have biases.
    pub attention_bias: bool,
    /// What the file asked for that runs, but maybe not as its author meant (see
    /// [`Self::warnings`]).
    warnings: Vec<String>,
}
// ANCHOR_END: hf_llama_config

/// The keys of `config.json` this crate reads; serde ignores all others (`vocab_size`,
/// `rms_norm_eps`, ...).
///
/// Every field is optional here: which keys are required, and what an absent one defaults
/// to, is decided in [`HfLlamaConfig::from_json_str`], where the message can say `missing
/// key`. A JSON `null` reads as absent (transformers writes `"head_dim": null`), except
/// for `rope_theta`.
#[derive(Deserialize)]
struct RawConfig {
    model_type: Option<Text>,
    hidden_size: Option<Count>,
    num_attention_heads: Option<Count>,
    num_key_value_heads: Option<Count>,
    head_dim: Option<Count>,
    max_position_embeddings: Option<Count>,
    attention_bias: Option<Flag>,
    /// `None`: absent; `Some(None)`: `null`. The difference matters (see [`nullable`]).
    #[serde(default, deserialize_with = "nullable")]
    rope_theta: Option<Option<Number>>,
    partial_rotary_factor: Option<Number>,
    original_max_position_embeddings: Option<Count>,
    /// Kept as JSON until we know which of the two objects counts; read as a [`RawRope`]
    /// then.
    rope_scaling: Option<Value>,
    rope_parameters: Option<Value>,
}

/// The keys of `rope_scaling` (older configs) or `rope_parameters` (transformers 5) this
/// crate reads; the default (all absent) is RoPE of type `default`.
#[derive(Default, Deserialize)]
struct RawRope {
    rope_type: Option<Text>,
    /// The older spelling of `rope_type`.
    #[serde(rename = "type")]
    legacy_type: Option<Text>,
    #[serde(default, deserialize_with = "nullable")]
    rope_theta: Option<Option<Number>>,
    partial_rotary_factor: Option<Number>,
    factor: Option<Number>,
    low_freq_factor: Option<Number>,
    high_freq_factor: Option<Number>,
    original_max_position_embeddings: Option<Count>,
}

/// Reads a key that may be absent (`None`, by `#[serde(default)]`) or `null`
/// (`Some(None)`).
///
/// serde's plain `Option` reads both as `None`. For `rope_theta` that would repeat a bug:
/// an absent key means "use the default 10 000", but `"rope_theta": null` is a broken
/// config (transformers fails on it), and Llama 3 run at base 10 000 instead of 500 000
/// is wrong at every position.
fn nullable<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> std::result::Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

/// A JSON value for an error message: compact JSON on one line, cut short if long.
fn shown(v: &Value) -> String {
    let text = v.to_string();
    match text.char_indices().nth(40) {
        Some((cut, _)) => format!("{}...", &text[..cut]),
        None => text,
    }
}

/// Reads one JSON value with `convert`, or fails with "must be {what}, got {value}".
fn leaf<'de, D: Deserializer<'de>, T>(
    d: D,
    what: &str,
    convert: impl Fn(&Value) -> Option<T>,
) -> std::result::Result<T, D::Error> {
    let v = Value::deserialize(d)?;
    convert(&v)
        .ok_or_else(|| D::Error::custom(format!("must be {what}, got {}", shown(&v))))
}

/// A size: a JSON integer `>= 0` that fits in `usize`. `8.0`, `-8`, `"8"` and `1e20` are
/// refused.
#[derive(Clone, Copy)]
struct Count(usize);

impl<'de> Deserialize<'de> for Count {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        leaf(d, "a non-negative integer", |v| {
            v.as_u64().and_then(|n| usize::try_from(n).ok()).map(Count)
        })
    }
}

/// A real number that survives the conversion to f32, as PyTorch's f32 tensors will hold
/// it.
///
/// serde_json already refuses `NaN`, `Infinity` and `1e400` (not JSON, or out of f64's
/// range); what is left to refuse is a string and a finite f64 beyond f32's range (`1e39`
/// would become `inf`).
#[derive(Clone, Copy)]
struct Number(f32);

impl<'de> Deserialize<'de> for Number {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        leaf(d, "a number within f32's range", |v| {
            v.as_f64().filter(|x| x.abs() <= f32::MAX as f64).map(|x| Number(x as f32))
        })
    }
}

/// `true` or `false`.
struct Flag(bool);

impl<'de> Deserialize<'de> for Flag {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        leaf(d, "true or false", |v| v.as_bool().map(Flag))
    }
}

/// A string.
struct Text(String);

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        leaf(d, "a string", |v| v.as_str().map(|s| Text(s.to_string())))
    }
}

/// Deserializes `value` (the object `scope`, `""` for the top level) into `T`, naming the
/// key that failed: `key `rope_scaling.factor` must be a number within f32's range, got
/// "4"`.
///
/// serde's derive says what was wrong but not where; `serde_path_to_error` tracks the
/// path. The value is a parsed [`Value`], not the text, so serde_json adds no "at line 3
/// column 20" to the message.
fn from_value<T: DeserializeOwned>(value: Value, scope: &str, source: &str) -> Result<T> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let key = match (scope, path.as_str()) {
            (scope, ".") => scope.to_string(),
            ("", path) => path.to_string(),
            (scope, path) => format!("{scope}.{path}"),
        };
        let message = if key.is_empty() {
            e.inner().to_string()
        } else {
            format!("key `{key}` {}", e.inner())
        };
        AttnError::Format { path: source.to_string(), message }
    })
}

/// serde_json's syntax error, plus a hint when it stopped at Python's `NaN` or
/// `Infinity`: `json.dump` writes them by default, but they are not JSON.
fn json_syntax_error(text: &[u8], e: &serde_json::Error) -> String {
    let line =
        text.split(|&b| b == b'\n').nth(e.line().saturating_sub(1)).unwrap_or_default();
    let from = e.column().saturating_sub(2).min(line.len());
    let near = &line[from..];
    let python = ["NaN", "Infinity", "-Infinity"];
    if python.iter().any(|p| {
        near.starts_with(p.as_bytes())
            || near.get(1..).is_some_and(|n| n.starts_with(p.as_bytes()))
    }) {
        format!("invalid JSON: {e} (NaN and Infinity are Python's, not JSON numbers)")
    } else {
        format!("invalid JSON: {e}")
    }
}

/// Reads the RoPE object `scope` (`rope_parameters` or `rope_scaling`), and the warning
/// it deserves.
fn read_rope(v: Value, scope: &str, source: &str) -> Result<(RawRope, Option<String>)> {
    let Some(obj) = v.as_object() else {
        let message = format!("key `{scope}` must be a JSON object, got {}", shown(&v));
        return Err(AttnError::Format { path: source.to_string(), message });
    };
    let ignored: Vec<String> =
        obj.keys().filter(|k| *k != "rope_theta").map(|k| format!("`{k}`")).collect();
    let rope: RawRope = from_value(v, scope, source)?;
    // transformers takes a RoPE object without a type as "default", unscaled, without a
    // word; but nobody writes `"factor": 8.0` to have it ignored, so the caller hears of
    // it
    let warning = (rope.rope_type.is_none() && rope.legacy_type.is_none() && !ignored.is_empty()).then(|| {
        format!(
            "{source}: `{scope}` has no `rope_type` (nor `type`): RoPE runs unscaled, as in transformers, \
             ignoring {}",
            ignored.join(", ")
        )
    });
    Ok((rope, warning))
}

/// `rope_theta` as transformers resolves it: the RoPE object's own, else the top level's,
/// else 10 000.
///
/// A `null` is an error wherever it is the value used: "absent" and "null" are not the
/// same here.
fn rope_theta(
    rope: Option<&RawRope>,
    top: Option<Option<Number>>,
    scope: &str,
) -> std::result::Result<f32, String> {
    let null = |key: String| {
        Err(format!("key `{key}` is null: give the RoPE base (Llama 3: 500000.0)"))
    };
    match (rope.and_then(|r| r.rope_theta.as_ref()), top) {
        (Some(Some(Number(theta))), _) => Ok(*theta),
        (Some(None), _) => null(format!("{scope}.rope_theta")),
        (None, Some(Some(Number(theta)))) => Ok(theta),
        (None, Some(None)) => null("rope_theta".into()),
        (None, None) => Ok(10_000.0),
    }
}

impl HfLlamaConfig {
    /// Reads and validates a `config.json` file (at most `MAX_SMALL_FILE_BYTES`; a
    /// directory, FIFO or device is refused rather than read).
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        let source = path.as_ref().display().to_string();
        let bytes = read_small_file(path.as_ref())?;
        Self::from_json_bytes(&bytes, &source)
    }

    /// Parses and validates the text of a `config.json`; `source` names it in error
    /// messages.
    ///
    /// Required: `hidden_size`, `num_attention_heads`, `max_position_embeddings`. RoPE
    /// parameters are read from `rope_parameters` (transformers 5) or else `rope_scaling`
    /// (older configs), with `rope_theta` inside them or at the top level. Only the
    /// `"default"` and `"llama3"` RoPE types exist in Llama 3.x; any other type
    /// (`"yarn"`, `"linear"`, ...) is an error, not silently ignored, and so is a
    /// `model_type` other than `"llama"` (an absent one is taken as Llama).
    ///
    /// Every error names `source` and the key, on one line: an [`AttnError::Format`] for
    /// what is not a valid Llama `config.json`, and an [`AttnError::InFile`] wrapping the
    /// validator's typed error (e.g. [`AttnError::NotDivisible`]) for a shape it refuses,
    /// which reads `source: invalid config: ...`.
    pub fn from_json_str(text: &str, source: &str) -> Result<Self> {
        Self::from_json_bytes(text.as_bytes(), source)
    }

    fn from_json_bytes(text: &[u8], source: &str) -> Result<Self> {
        let bad =
            |message: String| AttnError::Format { path: source.to_string(), message };
        let value: Value =
            serde_json::from_slice(text).map_err(|e| bad(json_syntax_error(text, &e)))?;
        if !value.is_object() {
            return Err(bad("config.json must be a JSON object".into()));
        }
        let top: RawConfig = from_value(value, "", source)?;
        let mut warnings = Vec::new();

        if let Some(Text(model_type)) = &top.model_type
            && !SUPPORTED_MODEL_TYPES.contains(&model_type.as_str())
        {
            return Err(bad(format!(
                "model_type `{model_type}` is not supported (only `llama`): its attention is not Llama's \
                 (sliding windows, soft-capping, q/k norms) and would run silently wrong as Llama"
            )));
        }
        let required = |v: Option<Count>, key: &str| {
            v.map(|c| c.0).ok_or_else(|| bad(format!("missing key `{key}`")))
        };
        let hidden_size = required(top.hidden_size, "hidden_size")?;
        let num_attention_heads =
            required(top.num_attention_heads, "num_attention_heads")?;
        let max_position_embeddings =
            required(top.max_position_embeddings, "max_position_embeddings")?;
        let num_key_value_heads =
            top.num_key_value_heads.map_or(num_attention_heads, |c| c.0);
        // a zero or non-dividing head count is reported by the validator below, by name
        let head_dim = top
            .head_dim
            .map_or(hidden_size.checked_div(num_attention_heads).unwrap_or(0), |c| c.0);
        let attention_bias = top.attention_bias.is_some_and(|f| f.0);

        // transformers 5 writes `rope_parameters`; older configs `rope_scaling` (+
        // top-level rope_theta)
        let (scope, rope) = match (top.rope_parameters, top.rope_scaling) {
            (Some(v), _) => ("rope_parameters", Some(v)),
            (None, Some(v)) => ("rope_scaling", Some(v)),
            (None, None) => ("rope_scaling", None),
        };
        let rope = match rope {
            Some(v) => {
                let (rope, warning) = read_rope(v, scope, source)?;
                warnings.extend(warning);
                Some(rope)
            }
            None => None,
        };
        let rope_theta = rope_theta(rope.as_ref(), top.rope_theta, scope).map_err(bad)?;
        let rope = rope.unwrap_or_default();
        let partial =
            rope.partial_rotary_factor.as_ref().or(top.partial_rotary_factor.as_ref());
        if let Some(Number(f)) = partial
            && *f != 1.0
        {
            return Err(bad(format!(
                "partial_rotary_factor = {f} is not supported (only 1.0)"
            )));
        }
        let (type_key, rope_type) = match (&rope.rope_type, &rope.legacy_type) {
            (Some(Text(t)), _) => ("rope_type", t.as_str()),
            (None, Some(Text(t))) => ("type", t.as_str()),
            (None, None) => ("rope_type", "default"),
        };
        let rope_scaling = match rope_type {
            "default" => None,
            "llama3" => {
                let need = |v: &Option<Number>, key: &str| {
                    v.as_ref()
                        .map(|n| n.0)
                        .ok_or_else(|| bad(format!("missing key `{scope}.{key}`")))
                };
                Some(Llama3Scaling {
                    factor: need(&rope.factor, "factor")?,
                    low_freq_factor: need(&rope.low_freq_factor, "low_freq_factor")?,
                    high_freq_factor: need(&rope.high_freq_factor, "high_freq_factor")?,
                    // as transformers: a top-level value wins, then the scaling's own,
                    // then the context
                    original_max_position_embeddings: top
                        .original_max_position_embeddings
                        .or(rope.original_max_position_embeddings)
                        .map_or(max_position_embeddings, |c| c.0),
                })
            }
            other => {
                return Err(bad(format!(
                    "{scope}.{type_key} `{other}` is not supported (only `default` and `llama3`)"
                )));
            }
        };
        let cfg = Self {
            hidden_size,
            num_attention_heads,
            num_key_value_heads,
            head_dim,
            rope_theta,
            max_position_embeddings,
            rope_scaling,
            attention_bias,
            warnings,
        };
        // the validator's errors keep their type and name the file too:
        // "config.json: invalid config: ..."
        cfg.check(&FieldNames { rope_scaling: scope, ..FieldNames::HF }).map_err(
            |e| AttnError::InFile { path: source.to_string(), source: Box::new(e) },
        )?;
        Ok(cfg)
    }

    /// Checks what transformers' `LlamaConfig` and `LlamaAttention` need: sizes at least
    /// 1, `hidden_size` divisible by `num_attention_heads`, `num_attention_heads` by
    /// `num_key_value_heads`, products that fit in `usize`, an even `head_dim`, a sane
    /// `rope_theta` and scaling. The checks are [`AttentionConfig::validate`]'s, less its
    /// `num_attention_heads · head_dim = hidden_size`, with Hugging Face's key names in
    /// the messages.
    pub fn validate(&self) -> Result<()> {
        self.check(&FieldNames::HF)
    }

    fn check(&self, names: &FieldNames) -> Result<()> {
        self.shape().check_shape(names).map(|_q_width| ())
    }

    /// The fields as an [`AttentionConfig`], square or not (see
    /// [`Self::attention_config`]).
    fn shape(&self) -> AttentionConfig {
        AttentionConfig {
            d_model: self.hidden_size,
            n_heads: self.num_attention_heads,
            n_kv_heads: self.num_key_value_heads,
            head_dim: self.head_dim,
            context_length: self.max_position_embeddings,
            rope_theta: self.rope_theta,
            rope_scaling: self.rope_scaling,
        }
    }

    /// What the file asked for that runs, but perhaps not as its author meant, one line
    /// each, naming the file: today, a `rope_scaling` without `rope_type`, which runs
    /// unscaled. The library prints nothing; a program shows these to its user (the
    /// `llama-attn` binary on stderr).
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// Width of the queries: `num_attention_heads · head_dim` (saturating:
    /// [`Self::validate`] refuses a config where it overflows).
    pub fn q_dim(&self) -> usize {
        self.num_attention_heads.saturating_mul(self.head_dim)
    }

    /// Width of the keys and values: `num_key_value_heads · head_dim` (saturating, as
    /// [`Self::q_dim`]).
    pub fn kv_dim(&self) -> usize {
        self.num_key_value_heads.saturating_mul(self.head_dim)
    }

    /// The same shape as the crate's [`AttentionConfig`] (`d_model = hidden_size`,
    /// `context_length = max_position_embeddings`). Errors when `num_attention_heads ·
    /// head_dim != hidden_size`: [`AttentionConfig`] describes square layers; such a
    /// config still loads with [`HfLlamaConfig::load_attention`], whose
    /// [`GroupedQueryAttention`] takes the two widths apart.
    ///
    /// [`GroupedQueryAttention`]: crate::GroupedQueryAttention
    pub fn attention_config(&self) -> Result<AttentionConfig> {
        let cfg = self.shape();
        cfg.validate()?;
        Ok(cfg)
    }

    /// RoPE tables (scaled if the config says so) for positions `0 .. n_positions`;
    /// `n_positions` may not exceed `max_position_embeddings` nor make a table larger
    /// than [`MAX_ROPE_TABLE_ENTRIES`].
    pub fn rope(&self, n_positions: usize) -> Result<Rope> {
        if n_positions > self.max_position_embeddings {
            return Err(AttnError::PositionOutOfRange {
                start_pos: 0,
                len: n_positions,
                max_positions: self.max_position_embeddings,
            });
        }
        let entries = n_positions.saturating_mul(self.head_dim / 2);
        if entries > MAX_ROPE_TABLE_ENTRIES {
            return Err(AttnError::Config(format!(
                "RoPE tables for {n_positions} positions of head_dim {} would hold {entries} entries, more than \
                 the {MAX_ROPE_TABLE_ENTRIES} this crate builds",
                self.head_dim
            )));
        }
        Rope::new(self.head_dim, n_positions, self.rope_theta, self.rope_scaling)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mechanisms::config::Preset;

    /// meta-llama/Llama-3.2-1B's config.json (attention keys as published; other keys
    /// kept for realism).
    const LLAMA_3_2_1B: &str = r#"{"architectures": ["LlamaForCausalLM"], "attention_bias": false,
        "attention_dropout": 0.0, "bos_token_id": 128000, "eos_token_id": 128001, "head_dim": 64,
        "hidden_act": "silu", "hidden_size": 2048, "intermediate_size": 8192,
        "max_position_embeddings": 131072, "mlp_bias": false, "model_type": "llama",
        "num_attention_heads": 32, "num_hidden_layers": 16, "num_key_value_heads": 8, "rms_norm_eps": 1e-05,
        "rope_scaling": {"factor": 32.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
                         "original_max_position_embeddings": 8192, "rope_type": "llama3"},
        "rope_theta": 500000.0, "tie_word_embeddings": true, "torch_dtype": "bfloat16", "vocab_size": 128256}"#;

    /// meta-llama/Llama-3.1-8B's attention keys (no head_dim key: 4096 / 32).
    const LLAMA_3_1_8B: &str = r#"{"hidden_size": 4096, "num_attention_heads": 32, "num_key_value_heads": 8,
        "max_position_embeddings": 131072, "rope_theta": 500000.0, "attention_bias": false,
        "rope_scaling": {"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                         "original_max_position_embeddings": 8192, "rope_type": "llama3"}}"#;

    /// meta-llama/Meta-Llama-3-8B's attention keys: no scaling.
    const LLAMA_3_8B: &str = r#"{"hidden_size": 4096, "num_attention_heads": 32, "num_key_value_heads": 8,
        "max_position_embeddings": 8192, "rope_theta": 500000.0, "rope_scaling": null}"#;

    fn parse(text: &str) -> Result<HfLlamaConfig> {
        HfLlamaConfig::from_json_str(text, "config.json")
    }

    #[test]
    fn published_llama3_configs_are_the_presets() {
        assert_eq!(
            parse(LLAMA_3_2_1B).unwrap().attention_config().unwrap(),
            Preset::LLAMA_3_2_1B.config
        );
        assert_eq!(
            parse(LLAMA_3_1_8B).unwrap().attention_config().unwrap(),
            Preset::LLAMA_3_1_8B.config
        );
        assert_eq!(
            parse(LLAMA_3_8B).unwrap().attention_config().unwrap(),
            Preset::LLAMA_3_8B.config
        );
        for text in [LLAMA_3_2_1B, LLAMA_3_1_8B, LLAMA_3_8B] {
            assert_eq!(parse(text).unwrap().warnings(), &[] as &[String]);
        }
    }

    #[test]
    fn defaults_and_the_newer_rope_parameters_form() {
        let c =
            parse(r#"{"hidden_size": 48, "num_attention_heads": 6, "max_position_embeddings": 64}"#).unwrap();
        assert_eq!(
            (c.num_key_value_heads, c.head_dim, c.rope_theta, c.attention_bias),
            (6, 8, 10_000.0, false)
        );
        assert_eq!(c.rope_scaling, None);
        // rope_parameters wins over rope_scaling and the top-level rope_theta, as in
        // transformers 5
        let c = parse(
            r#"{"hidden_size": 64, "num_attention_heads": 4, "head_dim": null, "max_position_embeddings": 131072,
                "rope_theta": 10000.0, "rope_scaling": null,
                "rope_parameters": {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 32,
                                    "low_freq_factor": 1, "high_freq_factor": 4}}"#,
        )
        .unwrap();
        assert_eq!((c.head_dim, c.rope_theta), (16, 500_000.0));
        // original_max_position_embeddings defaults to max_position_embeddings, as
        // transformers does
        assert_eq!(
            c.rope_scaling,
            Some(Llama3Scaling {
                original_max_position_embeddings: 131_072,
                ..Llama3Scaling::LLAMA_3_2
            })
        );
        let c = parse(
            r#"{"hidden_size": 64, "num_attention_heads": 4, "max_position_embeddings": 99,
                          "rope_scaling": {"type": "default"}}"#,
        )
        .unwrap();
        assert_eq!(c.rope_scaling, None);
    }

    #[test]
    fn explicit_head_dim_loads_but_is_not_a_square_attention_config() {
        let c = parse(
            r#"{"hidden_size": 40, "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 12,
                          "max_position_embeddings": 256}"#,
        )
        .unwrap();
        assert_eq!((c.q_dim(), c.kv_dim()), (48, 24));
        assert!(
            c.attention_config()
                .unwrap_err()
                .to_string()
                .contains("4 * 12 = 48 must equal d_model = 40")
        );
    }

    #[test]
    fn bad_configs_name_the_problem() {
        let err = |text: &str| parse(text).unwrap_err().to_string();
        assert_eq!(err("[1, 2]"), "config.json: config.json must be a JSON object");
        assert!(err("{").starts_with("config.json: invalid JSON"));
        assert_eq!(
            err(r#"{"num_attention_heads": 4, "max_position_embeddings": 8}"#),
            "config.json: missing key `hidden_size`"
        );
        assert_eq!(
            err(
                r#"{"hidden_size": -8, "num_attention_heads": 4, "max_position_embeddings": 8}"#
            ),
            "config.json: key `hidden_size` must be a non-negative integer, got -8"
        );
        assert_eq!(
            err(
                r#"{"hidden_size": 8, "num_attention_heads": 0, "max_position_embeddings": 8}"#
            ),
            "config.json: invalid config: num_attention_heads must be at least 1, got 0"
        );
        let llama3 = |extra: &str| {
            format!(
                r#"{{"hidden_size": 64, "num_attention_heads": 4, "max_position_embeddings": 64,
                    "rope_scaling": {{"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0 {extra}}}}}"#
            )
        };
        assert_eq!(
            err(&llama3("")),
            "config.json: missing key `rope_scaling.high_freq_factor`"
        );
        assert!(
            err(&llama3(r#", "high_freq_factor": 0.5"#))
                .contains("low_freq_factor < high_freq_factor")
        );
        assert!(
            err(&llama3(r#", "high_freq_factor": "4""#))
                .contains("`rope_scaling.high_freq_factor` must be a number")
        );
        assert_eq!(
            err(
                r#"{"hidden_size": 64, "num_attention_heads": 4, "max_position_embeddings": 64,
                    "rope_parameters": {"rope_type": "linear", "factor": 2.0}}"#
            ),
            "config.json: rope_parameters.rope_type `linear` is not supported (only `default` and `llama3`)"
        );
        assert!(
            err(r#"{"hidden_size": 64, "num_attention_heads": 4, "max_position_embeddings": 64,
                        "partial_rotary_factor": 0.5}"#)
            .contains("partial_rotary_factor = 0.5 is not supported")
        );
        assert_eq!(
            err(
                r#"{"hidden_size": 64, "num_attention_heads": 4, "max_position_embeddings": 64, "rope_theta": 1}"#
            ),
            "config.json: invalid config: rope_theta must be a finite number > 1, got 1"
        );
    }

    #[test]
    fn rope_tables_are_bounded() {
        let c = parse(LLAMA_3_1_8B).unwrap();
        assert!(matches!(c.rope(131_073), Err(AttnError::PositionOutOfRange { .. })));
        let mut huge = c;
        huge.max_position_embeddings = 1 << 40;
        assert!(
            huge.rope(1 << 30)
                .unwrap_err()
                .to_string()
                .contains("more than the 134217728")
        );
    }
}
