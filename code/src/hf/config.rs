//! `config.json`: the attention shape of a Hugging Face checkpoint (Llama, and the models
//! of chapters 9 to 12), with Hugging Face's defaults applied and every value checked.
//!
//! The keys are declared as serde structs (`RawConfig`, `RawRope`, and the later models'
//! `RawModel` in [`super::variants`]); each number goes through a small type (`Count`,
//! `Number`) that refuses what transformers would choke on later (a negative or
//! fractional size, a string, a float beyond f32) with a one-line message naming the key.

use std::path::Path;

use serde::de::{DeserializeOwned, Error as _};
use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value, json};

use super::variants::{LayerKind, MlaFields, ModelFields, ModelType, RawModel};
use crate::mechanisms::config::{AttentionConfig, FieldNames};
use crate::mechanisms::rope::{
    LinearScaling, Llama3Scaling, Rope, RopeScaling, YarnScaling, yarn_get_mscale,
};
use crate::support::error::{AttnError, Result, divisible, nonzero};
use crate::support::io::read_small_file;
use crate::variants::MlaShape;

/// The prefix of layer 0's attention in a Hugging Face Llama checkpoint.
pub const DEFAULT_PREFIX: &str = "model.layers.0.self_attn.";

/// The largest RoPE table this module builds: `positions · head_dim/2` entries (2²⁷, i.e.
/// 512 MiB for cos and 512 MiB for sin). Llama 3.1 at 131 072 positions with head_dim 128
/// needs 2²³.
pub const MAX_ROPE_TABLE_ENTRIES: usize = 1 << 27;

/// The `model_type`s whose attention this crate computes: [`ModelType`]'s, and `gemma3`,
/// the multimodal Gemma 3, whose `text_config` is a `gemma3_text` config. Any other is
/// refused: read as one of these, its attention (another mask, scale, norm or RoPE) would
/// run silently wrong.
pub const SUPPORTED_MODEL_TYPES: [&str; 9] = [
    "llama",
    "mistral",
    "qwen3",
    "gemma2",
    "gemma3_text",
    "gemma3",
    "gpt_oss",
    "deepseek_v2",
    "deepseek_v3",
];

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
    /// What the models of chapters 9 to 11 add (`model_type`, windows, soft-cap,
    /// QK-norm, sinks, YaRN, with their classes' own defaults for the keys above too).
    pub model: ModelFields,
    /// What the file asked for that runs, but maybe not as its author meant (see
    /// [`Self::warnings`]).
    warnings: Vec<String>,
}
// ANCHOR_END: hf_llama_config

/// The keys of `config.json` this crate reads for every model type; serde ignores all
/// others (`vocab_size`, ...). The later models' own keys are in
/// [`RawModel`](super::variants::RawModel).
///
/// Every field is optional here: which keys are required, and what an absent one defaults
/// to, is decided in [`HfLlamaConfig::from_json_str`], where the message can say `missing
/// key`. A JSON `null` reads as absent (transformers writes `"head_dim": null`), except
/// where the tri-state `Option<Option<_>>` keeps it apart: `rope_theta`, and the keys
/// whose meaning of `null` depends on the model's class.
#[derive(Deserialize)]
struct RawConfig {
    hidden_size: Option<Count>,
    num_attention_heads: Option<Count>,
    #[serde(default, deserialize_with = "nullable")]
    num_key_value_heads: Option<Option<Count>>,
    #[serde(default, deserialize_with = "nullable")]
    head_dim: Option<Option<Count>>,
    max_position_embeddings: Option<Count>,
    #[serde(default, deserialize_with = "nullable")]
    attention_bias: Option<Option<Flag>>,
    /// `None`: absent; `Some(None)`: `null`. The difference matters (see [`nullable`]).
    #[serde(default, deserialize_with = "nullable")]
    rope_theta: Option<Option<Number>>,
    /// Gemma 3's sliding layers' RoPE base, in configs older than its nested
    /// `rope_parameters`.
    #[serde(default, deserialize_with = "nullable")]
    rope_local_base_freq: Option<Option<Number>>,
    partial_rotary_factor: Option<Number>,
    original_max_position_embeddings: Option<Count>,
    /// Kept as JSON until we know which of the two objects counts; read as a [`RawRope`]
    /// then.
    rope_scaling: Option<Value>,
    rope_parameters: Option<Value>,
}

/// `model_type` alone, read first: it says which keys to read next, and where (`gemma3`
/// keeps them in `text_config`).
#[derive(Deserialize)]
struct RawModelType {
    model_type: Option<Text>,
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
    /// `null` means `max_position_embeddings / original_max_position_embeddings` to YaRN.
    #[serde(default, deserialize_with = "nullable")]
    factor: Option<Option<Number>>,
    low_freq_factor: Option<Number>,
    high_freq_factor: Option<Number>,
    original_max_position_embeddings: Option<Count>,
    // YaRN's (gpt-oss): transformers reads an absent, null or 0 `beta_*` as its default
    beta_fast: Option<Number>,
    beta_slow: Option<Number>,
    /// Absent: true; `null`: false (transformers tests the value's truth).
    #[serde(default, deserialize_with = "nullable")]
    truncate: Option<Option<Flag>>,
    mscale: Option<Number>,
    mscale_all_dim: Option<Number>,
    attention_factor: Option<Number>,
}

/// Reads a key that may be absent (`None`, by `#[serde(default)]`) or `null`
/// (`Some(None)`).
///
/// serde's plain `Option` reads both as `None`. For `rope_theta` that would repeat a bug:
/// an absent key means "use the default 10 000", but `"rope_theta": null` is a broken
/// config (transformers fails on it), and Llama 3 run at base 10 000 instead of 500 000
/// is wrong at every position.
pub(super) fn nullable<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
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
pub(super) struct Count(pub(super) usize);

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
pub(super) struct Number(pub(super) f32);

impl<'de> Deserialize<'de> for Number {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        leaf(d, "a number within f32's range", |v| {
            v.as_f64().filter(|x| x.abs() <= f32::MAX as f64).map(|x| Number(x as f32))
        })
    }
}

/// `true` or `false`.
#[derive(Clone, Copy)]
pub(super) struct Flag(pub(super) bool);

impl<'de> Deserialize<'de> for Flag {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        leaf(d, "true or false", |v| v.as_bool().map(Flag))
    }
}

/// A string.
pub(super) struct Text(pub(super) String);

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        leaf(d, "a string", |v| v.as_str().map(|s| Text(s.to_string())))
    }
}

/// Where the attention keys are: the top level (`""`), or `text_config` in a `gemma3`
/// config. Names a key for a message: `text_config.sliding_window`.
pub(super) struct Scope(&'static str);

impl Scope {
    /// `key` as it is spelled from the top of the file.
    pub(super) fn key(&self, key: &str) -> String {
        if self.0.is_empty() { key.to_string() } else { format!("{}.{key}", self.0) }
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

/// `rope_theta` as transformers resolves it: the RoPE object's own, else the top level's
/// (`top`, under the key `top_key`), else `default`.
///
/// A `null` is an error wherever it is the value used: "absent" and "null" are not the
/// same here.
fn rope_theta(
    rope: Option<&RawRope>,
    (top, top_key): (Option<Option<Number>>, &str),
    scope: &str,
    default: f32,
) -> std::result::Result<f32, String> {
    let null = |key: String| {
        Err(format!("key `{key}` is null: give the RoPE base (Llama 3: 500000.0)"))
    };
    match (rope.and_then(|r| r.rope_theta.as_ref()), top) {
        (Some(Some(Number(theta))), _) => Ok(*theta),
        (Some(None), _) => null(format!("{scope}.rope_theta")),
        (None, Some(Some(Number(theta)))) => Ok(theta),
        (None, Some(None)) => null(top_key.into()),
        (None, None) => Ok(default),
    }
}

/// The RoPE of a model's layers: the base and scaling of its full-attention layers, and
/// Gemma 3's sliding layers' own base.
struct Ropes {
    theta: f32,
    llama3: Option<Llama3Scaling>,
    yarn: Option<YarnScaling>,
    /// Gemma 3's full layers' linear scaling (its sliding layers are never scaled).
    linear: Option<LinearScaling>,
    sliding_theta: Option<f32>,
    /// The object the scaling came from, for the validator's messages.
    scope: &'static str,
}

/// The RoPE parameters of a config read by one class: which object counts, its type
/// (only those the model type is tested with here), its base, and the scaling.
struct RopeReader<'a> {
    model: ModelType,
    top: &'a RawConfig,
    prefix: &'a Scope,
    source: &'a str,
    max_position_embeddings: usize,
}

impl RopeReader<'_> {
    fn bad(&self, message: String) -> AttnError {
        AttnError::Format { path: self.source.to_string(), message }
    }

    /// One RoPE object for every layer (all but Gemma 3).
    ///
    /// transformers 5.24 (`convert_rope_params_to_dict`) takes `rope_scaling or
    /// rope_parameters`: the older key wins when it is not empty. gpt-oss's class fills an
    /// absent `rope_parameters` with its YaRN before that.
    fn flat(&self, warnings: &mut Vec<String>) -> Result<Ropes> {
        let top = self.top;
        let empty = |v: &Value| v.is_null() || v.as_object().is_some_and(Map::is_empty);
        let (scope, rope) = match (&top.rope_scaling, &top.rope_parameters) {
            (Some(s), _) if !empty(s) => ("rope_scaling", Some(s.clone())),
            (_, Some(p)) => ("rope_parameters", Some(p.clone())),
            (_, None) if self.model == ModelType::GptOss => {
                ("rope_parameters", Some(gpt_oss_default_rope()))
            }
            (Some(s), None) => ("rope_scaling", Some(s.clone())),
            (None, None) => ("rope_scaling", None),
        };
        let rope = match rope {
            Some(v) => {
                let (rope, warning) = read_rope(v, scope, self.source)?;
                warnings.extend(warning);
                Some(rope)
            }
            None => None,
        };
        let default = self.model.default_rope_theta();
        let top_theta = (top.rope_theta, "rope_theta");
        let theta = rope_theta(rope.as_ref(), top_theta, scope, default)
            .map_err(|m| self.bad(m))?;
        let rope = rope.unwrap_or_default();
        self.check_partial(&rope)?;
        let (type_key, rope_type) = rope_type(&rope);
        let mut ropes = Ropes {
            theta,
            llama3: None,
            yarn: None,
            linear: None,
            sliding_theta: None,
            scope,
        };
        match (self.model, rope_type) {
            (_, "default") => {}
            (ModelType::Llama, "llama3") => {
                ropes.llama3 = Some(self.llama3(&rope, scope)?)
            }
            (ModelType::GptOss, "yarn") => ropes.yarn = Some(self.yarn(&rope, scope)?),
            (ModelType::Qwen3 | ModelType::Mistral, "yarn") => {
                // `_compute_yarn_parameters` sizes its tables by `config.head_dim` as it
                // is; MistralAttention reads a 0 as `hidden_size / num_attention_heads`
                if matches!(self.top.head_dim, Some(Some(Count(0)))) {
                    let key = self.prefix.key("head_dim");
                    return Err(self.bad(format!(
                        "key `{key}` = 0 with a `yarn` RoPE: transformers' YaRN sizes \
                         its tables by head_dim itself (0 pairs), which {} cannot \
                         apply: give the head width",
                        self.model.attention_class()
                    )));
                }
                ropes.yarn = Some(self.yarn(&rope, scope)?)
            }
            (ModelType::DeepseekV2 | ModelType::DeepseekV3, "yarn") => {
                // `yarn_apply_mscale` reads `rope_parameters["factor"]` itself: a null
                // one fails there (`None <= 1`) when `mscale_all_dim` is set
                let mscale_all_dim = rope.mscale_all_dim.is_some_and(|m| m.0 != 0.0);
                if mscale_all_dim && matches!(rope.factor, Some(None)) {
                    return Err(self.bad(format!(
                        "key `{scope}.factor` is null, which {}'s softmax scale cannot use \
                         with `mscale_all_dim` (transformers fails): give the factor",
                        self.model.attention_class()
                    )));
                }
                ropes.yarn = Some(self.yarn(&rope, scope)?)
            }
            (ModelType::Llama, other) => {
                return Err(self.bad(format!(
                    "{scope}.{type_key} `{other}` is not supported (only `default` and `llama3`)"
                )));
            }
            (m, other) => {
                let yarn = matches!(m, ModelType::Qwen3 | ModelType::Mistral)
                    || m == ModelType::GptOss
                    || m.uses_mla();
                let only = if yarn { "`default` and `yarn`" } else { "`default`" };
                return Err(self.unsupported(scope, type_key, other, only));
            }
        }
        Ok(ropes)
    }

    /// Gemma 3's RoPE, nested per layer kind, as `Gemma3TextConfig`'s
    /// `convert_rope_params_to_dict` builds it: `rope_parameters.full_attention` (base
    /// `rope_theta`, default 1 000 000) with the older `rope_scaling` merged into it, and
    /// `rope_parameters.sliding_attention` (base `rope_local_base_freq`, default 10 000).
    ///
    /// The full layers may be `linear` (Gemma 3 4B, 12B and 27B: factor 8), the sliding
    /// layers only `default`: an older config's `rope_scaling` never reaches them. Where
    /// config.json has no `rope_parameters`, the class starts from `{"rope_type":
    /// "default"}` for each kind and merges `rope_scaling` into that: an older `"type"`
    /// there does not override the `rope_type` already set, and those layers run
    /// unscaled (as in transformers, with a warning here).
    fn nested(&self, warnings: &mut Vec<String>) -> Result<Ropes> {
        let (full_key, sliding_key) = ("full_attention", "sliding_attention");
        let params = self.prefix.key("rope_parameters");
        // `None`: absent or null, the class's default of one `default` object per kind
        let nested = match &self.top.rope_parameters {
            None => None,
            Some(Value::Object(m)) => Some(m.clone()),
            Some(v) => {
                return Err(self.bad(format!(
                    "key `{params}` must be a JSON object, got {}",
                    shown(v)
                )));
            }
        };
        let mut keys = nested.iter().flat_map(Map::keys);
        if let Some(k) = keys.find(|k| *k != full_key && *k != sliding_key) {
            // a flat `rope_theta` here would be silently ignored by transformers
            return Err(self.bad(format!(
                "key `{params}.{k}`: Gemma 3's rope_parameters are nested per layer kind \
                 (`{full_key}`, `{sliding_key}`), nothing else"
            )));
        }
        let given =
            |k: &str| nested.as_ref().and_then(|m| m.get(k)).filter(|v| !v.is_null());
        let kind =
            |k: &str| given(k).cloned().unwrap_or_else(|| Value::Object(Map::new()));
        let (mut full, mut full_scope) = (kind(full_key), format!("{params}.{full_key}"));
        // `rope_parameters["full_attention"].update(rope_scaling)`
        if let Some(scaling) = self.top.rope_scaling.as_ref().filter(|v| !v.is_null()) {
            let into = full_scope;
            full_scope = self.prefix.key("rope_scaling");
            let Some(extra) = scaling.as_object() else {
                return Err(self.bad(format!(
                    "key `{full_scope}` must be a JSON object, got {}",
                    shown(scaling)
                )));
            };
            if nested.is_some() && given(full_key).is_none() {
                return Err(self.bad(format!(
                    "key `{into}` is absent or null, but `{full_scope}` is given, which \
                     Gemma3TextConfig merges into it (transformers fails): give both or \
                     neither"
                )));
            }
            if let Value::Object(m) = &mut full {
                m.extend(extra.clone());
            }
        }
        // the class's `{"rope_type": "default"}`, under what was merged into it
        let class_default = nested.is_none();
        let full_rope = self.kind_rope(full, &full_scope, class_default, warnings)?;
        let linear = match rope_type(&full_rope) {
            (_, "default") => None,
            (_, "linear") => Some(self.linear(&full_rope, &full_scope)?),
            (type_key, other) => {
                let only = "`default` and `linear`";
                return Err(self.unsupported(&full_scope, type_key, other, only));
            }
        };
        let sliding_scope = format!("{params}.{sliding_key}");
        let sliding_rope =
            self.kind_rope(kind(sliding_key), &sliding_scope, class_default, warnings)?;
        // transformers would scale the sliding layers too; no checkpoint does, and no
        // fixture tests it
        if let (type_key, t) = rope_type(&sliding_rope)
            && t != "default"
        {
            return Err(self.unsupported(&sliding_scope, type_key, t, "`default`"));
        }
        let theta = |rope: &RawRope, scope: &str, top, top_key: &str, default| {
            let key = self.prefix.key(top_key);
            rope_theta(Some(rope), (top, &key), scope, default).map_err(|m| self.bad(m))
        };
        let full_theta = theta(
            &full_rope,
            &full_scope,
            self.top.rope_theta,
            "rope_theta",
            self.model.default_rope_theta(),
        )?;
        let sliding_theta = theta(
            &sliding_rope,
            &sliding_scope,
            self.top.rope_local_base_freq,
            "rope_local_base_freq",
            10_000.0,
        )?;
        if !(sliding_theta.is_finite() && sliding_theta > 1.0) {
            return Err(self.bad(format!(
                "{sliding_scope}.rope_theta must be a finite number > 1, got {sliding_theta}"
            )));
        }
        Ok(Ropes {
            theta: full_theta,
            llama3: None,
            yarn: None,
            linear,
            sliding_theta: Some(sliding_theta),
            scope: "rope_parameters",
        })
    }

    /// One of Gemma 3's per-kind RoPE objects, read, with what it deserves to be warned
    /// of. `class_default`: config.json has no `rope_parameters`, so the class's
    /// `"rope_type": "default"` is set before anything is merged, and an older `"type"`
    /// does not count.
    fn kind_rope(
        &self,
        v: Value,
        scope: &str,
        class_default: bool,
        warnings: &mut Vec<String>,
    ) -> Result<RawRope> {
        let (mut rope, warning) = read_rope(v, scope, self.source)?;
        warnings.extend(warning);
        self.check_partial(&rope)?;
        if class_default && rope.rope_type.is_none() && rope.legacy_type.is_some() {
            rope.rope_type = Some(Text("default".into()));
        }
        if let (Some(Text(t)), Some(Text(legacy))) = (&rope.rope_type, &rope.legacy_type)
            && t != legacy
        {
            let why = if class_default {
                "Gemma3TextConfig merges it into its own `{\"rope_type\": \
                 \"default\"}`, and `type` is read only where `rope_type` is absent"
            } else {
                "`type` is read only where `rope_type` is absent"
            };
            warnings.push(format!(
                "{}: `{scope}.type` `{legacy}` is ignored: {why}; these layers run with \
                 rope_type `{t}`, as in transformers",
                self.source
            ));
        }
        Ok(rope)
    }

    /// `partial_rotary_factor` (in the RoPE object or at the top level) must be 1.
    fn check_partial(&self, rope: &RawRope) -> Result<()> {
        let partial = rope
            .partial_rotary_factor
            .as_ref()
            .or(self.top.partial_rotary_factor.as_ref());
        match partial {
            Some(Number(f)) if *f != 1.0 => Err(self
                .bad(format!("partial_rotary_factor = {f} is not supported (only 1.0)"))),
            _ => Ok(()),
        }
    }

    /// "{scope}.{key} `{t}` is not supported for model_type `...` (only {only})".
    fn unsupported(&self, scope: &str, key: &str, t: &str, only: &str) -> AttnError {
        self.bad(format!(
            "{scope}.{key} `{t}` is not supported for model_type `{}` (only {only})",
            self.model.name()
        ))
    }

    /// A value the RoPE type needs, or `missing key`.
    fn need(&self, v: Option<Number>, scope: &str, key: &str) -> Result<f32> {
        v.map(|n| n.0).ok_or_else(|| self.bad(format!("missing key `{scope}.{key}`")))
    }

    /// `original_max_position_embeddings` as transformers ends up using it: a top-level
    /// value wins (its `standardize_rope_params` runs again once the attribute is set),
    /// then the RoPE object's own, then the context.
    fn original_max(&self, rope: &RawRope) -> usize {
        self.top
            .original_max_position_embeddings
            .or(rope.original_max_position_embeddings)
            .map_or(self.max_position_embeddings, |c| c.0)
    }

    fn llama3(&self, rope: &RawRope, scope: &str) -> Result<Llama3Scaling> {
        Ok(Llama3Scaling {
            factor: self.need(rope.factor.flatten(), scope, "factor")?,
            low_freq_factor: self.need(rope.low_freq_factor, scope, "low_freq_factor")?,
            high_freq_factor: self.need(
                rope.high_freq_factor,
                scope,
                "high_freq_factor",
            )?,
            original_max_position_embeddings: self.original_max(rope),
        })
    }

    /// Linear scaling as `_compute_linear_scaling_rope_parameters` reads it: `factor`
    /// required (transformers fails without it, and on a `null`), at least 1 (it only
    /// warns below), checked here so that the error names the key.
    fn linear(&self, rope: &RawRope, scope: &str) -> Result<LinearScaling> {
        let factor = match rope.factor {
            None => return Err(self.bad(format!("missing key `{scope}.factor`"))),
            Some(None) => {
                return Err(self.bad(format!(
                    "key `{scope}.factor` is null: give the factor (Gemma 3: 8.0)"
                )));
            }
            Some(Some(Number(f))) => f,
        };
        let linear = LinearScaling { factor };
        linear.check(scope).map_err(|e| AttnError::InFile {
            path: self.source.to_string(),
            source: Box::new(e),
        })?;
        Ok(linear)
    }

    /// YaRN as `_compute_yarn_parameters` reads it: `factor` required (`null`: the
    /// context over the original one), `beta_fast` / `beta_slow` 32 / 1 when absent,
    /// `null` or 0, `truncate` true when absent (false when `null`).
    fn yarn(&self, rope: &RawRope, scope: &str) -> Result<YarnScaling> {
        let original = self.original_max(rope);
        let factor = match rope.factor {
            None => return Err(self.bad(format!("missing key `{scope}.factor`"))),
            Some(Some(Number(f))) => f,
            // a zero original is refused by the validator
            Some(None) => {
                (self.max_position_embeddings as f64 / original.max(1) as f64) as f32
            }
        };
        let or = |v: Option<Number>, default: f32| {
            v.map(|n| n.0).filter(|b| *b != 0.0).unwrap_or(default)
        };
        Ok(YarnScaling {
            factor,
            original_max_position_embeddings: original,
            beta_fast: or(rope.beta_fast, 32.0),
            beta_slow: or(rope.beta_slow, 1.0),
            truncate: match rope.truncate {
                None => true,
                Some(t) => t.is_some_and(|f| f.0),
            },
            mscale: rope.mscale.map(|n| n.0),
            mscale_all_dim: rope.mscale_all_dim.map(|n| n.0),
            attention_factor: rope.attention_factor.map(|n| n.0),
        })
    }
}

/// The key that names the RoPE type, and the type (`default` when neither key is there).
fn rope_type(rope: &RawRope) -> (&'static str, &str) {
    match (&rope.rope_type, &rope.legacy_type) {
        (Some(Text(t)), _) => ("rope_type", t.as_str()),
        (None, Some(Text(t))) => ("type", t.as_str()),
        (None, None) => ("rope_type", "default"),
    }
}

/// What `GptOssConfig` puts in an absent `rope_parameters`: gpt-oss's YaRN.
fn gpt_oss_default_rope() -> Value {
    json!({"rope_type": "yarn", "factor": 32.0, "beta_fast": 32.0, "beta_slow": 1.0,
           "truncate": false, "original_max_position_embeddings": 4096})
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
    /// `model_type` says which transformers class would read the file, and so which keys
    /// count and their defaults: `llama` (also when absent), `mistral`, `qwen3`,
    /// `gemma2`, `gemma3_text`, `gemma3` (its `text_config` read as `gemma3_text`),
    /// `gpt_oss` (see [`ModelFields`]), `deepseek_v2` and `deepseek_v3` (multi-head latent
    /// attention, see [`MlaFields`]); any other is an error, not Llama.
    ///
    /// Required: `hidden_size`, `num_attention_heads`, `max_position_embeddings`
    /// (transformers' class defaults describe one checkpoint, not this one). RoPE
    /// parameters are read from `rope_scaling` (older configs) unless it is empty, else
    /// `rope_parameters` (transformers 5), with `rope_theta` inside them or at the top
    /// level; Gemma 3's are nested per layer kind. The RoPE types read are those tested
    /// against transformers here: `default` for all, `llama3` for Llama, `yarn` for
    /// Mistral, Qwen3, gpt-oss and DeepSeek, `linear` for Gemma 3's full-attention
    /// layers (its sliding layers: `default` only); any other (`dynamic`, `longrope`,
    /// `linear` elsewhere, ...) is an error, not silently ignored.
    ///
    /// Every error names `source` and the key, on one line: an [`AttnError::Format`] for
    /// what is not a valid `config.json`, and an [`AttnError::InFile`] wrapping the
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
        let RawModelType { model_type } = from_value(value.clone(), "", source)?;
        let (model_type, scope, value) = match model_type.as_ref().map(|t| t.0.as_str()) {
            None => (ModelType::Llama, Scope(""), value),
            // Gemma3Config: the text model's keys are all in `text_config`
            Some("gemma3") => match value.get("text_config") {
                Some(v @ Value::Object(_)) => {
                    (ModelType::Gemma3Text, Scope("text_config"), v.clone())
                }
                other => {
                    let got = other.map_or("nothing".into(), shown);
                    return Err(bad(format!(
                        "model_type `gemma3` keeps its text model in `text_config`, which \
                         must be a JSON object, got {got}"
                    )));
                }
            },
            Some(name) => match ModelType::from_name(name) {
                Some(m) => (m, Scope(""), value),
                None => {
                    let only = SUPPORTED_MODEL_TYPES.map(|t| format!("`{t}`")).join(", ");
                    return Err(bad(format!(
                        "model_type `{name}` is not supported (only {only}): its attention \
                         would run silently wrong as one of these"
                    )));
                }
            },
        };
        let top: RawConfig = from_value(value.clone(), scope.0, source)?;
        let raw_model: RawModel = from_value(value, scope.0, source)?;
        let mut warnings = Vec::new();

        let required = |v: Option<Count>, key: &str| {
            v.map(|c| c.0).ok_or_else(|| bad(format!("missing key `{}`", scope.key(key))))
        };
        let hidden_size = required(top.hidden_size, "hidden_size")?;
        let num_attention_heads =
            required(top.num_attention_heads, "num_attention_heads")?;
        let max_position_embeddings =
            required(top.max_position_embeddings, "max_position_embeddings")?;
        let m = model_type;
        let num_key_value_heads = m
            .kv_heads(top.num_key_value_heads, num_attention_heads, &scope)
            .map_err(bad)?;
        let mut model_warnings = Vec::new(); // what a class reads but ignores
        // DeepSeek's latent attention: its sizes, and `head_dim` is `qk_rope_head_dim`
        let mla =
            MlaFields::read(m, &raw_model, top.head_dim, &scope, &mut model_warnings)
                .map_err(bad)?;
        // a zero or non-dividing head count is reported by the validator below, by name
        let head_dim = match &mla {
            Some(mla) => mla.qk_rope_head_dim,
            None => m
                .head_dim(top.head_dim, hidden_size, num_attention_heads, &scope)
                .map_err(bad)?,
        };
        let attention_bias = m
            .attention_bias(top.attention_bias, &scope, &mut model_warnings)
            .map_err(bad)?;

        let reader = RopeReader {
            model: m,
            top: &top,
            prefix: &scope,
            source,
            max_position_embeddings,
        };
        let ropes = match m {
            ModelType::Gemma3Text => reader.nested(&mut warnings)?,
            _ => reader.flat(&mut warnings)?,
        };
        let mut model =
            ModelFields::read(m, raw_model, &scope, &mut model_warnings).map_err(bad)?;
        warnings.extend(model_warnings.into_iter().map(|w| format!("{source}: {w}")));
        model.yarn = ropes.yarn;
        model.linear = ropes.linear;
        model.sliding_rope_theta = ropes.sliding_theta;
        model.mla = mla;
        let cfg = Self {
            hidden_size,
            num_attention_heads,
            num_key_value_heads,
            head_dim,
            rope_theta: ropes.theta,
            max_position_embeddings,
            rope_scaling: ropes.llama3,
            attention_bias,
            model,
            warnings,
        };
        // the validator's errors keep their type and name the file too:
        // "config.json: invalid config: ..."
        cfg.check(&FieldNames { rope_scaling: ropes.scope, ..FieldNames::HF }).map_err(
            |e| AttnError::InFile { path: source.to_string(), source: Box::new(e) },
        )?;
        Ok(cfg)
    }

    /// Checks what transformers' config class and attention need: sizes at least 1,
    /// `hidden_size` divisible by `num_attention_heads` (Llama and Gemma only: the other
    /// classes allow any `hidden_size` with an explicit `head_dim`),
    /// `num_attention_heads` by `num_key_value_heads`, products that fit in `usize`, an
    /// even `head_dim`, a sane `rope_theta` and scaling. The checks are
    /// [`AttentionConfig::validate`]'s, less its `num_attention_heads · head_dim =
    /// hidden_size`, with Hugging Face's key names in the messages. A DeepSeek config's
    /// are its latent attention's: every MLA size at least 1, an even
    /// `qk_rope_head_dim`, every weight's element count in `usize`.
    pub fn validate(&self) -> Result<()> {
        self.check(&FieldNames::HF)
    }

    fn check(&self, names: &FieldNames) -> Result<()> {
        let shape = self.shape();
        if let Some(mla) = &self.model.mla {
            self.check_mla(mla, names)?;
        } else if self.model.model_type.needs_divisible_heads() {
            shape.check_shape(names)?;
        } else {
            // the shared checks with a stand-in d_model that `num_attention_heads`
            // divides; then the one that involves the real `hidden_size`
            nonzero(names.d_model, self.hidden_size)?;
            nonzero(names.n_heads, self.num_attention_heads)?;
            let stand_in = AttentionConfig { d_model: self.num_attention_heads, ..shape };
            let q_width = stand_in.check_shape(names)?;
            if q_width.checked_mul(self.hidden_size).is_none() {
                return Err(AttnError::Config(format!(
                    "the query projection's {} * {} * {} = {} * {} * {} weights do not \
                     fit in usize",
                    names.n_heads,
                    names.head_dim,
                    names.d_model,
                    self.num_attention_heads,
                    self.head_dim,
                    self.hidden_size
                )));
            }
        }
        if let Some(y) = &self.model.yarn {
            y.check(names.rope_scaling)?;
        }
        if let Some(l) = &self.model.linear {
            l.check(names.rope_scaling)?;
        }
        if self.model.mla.is_some() {
            // a huge `mscale_all_dim` squares to infinity in f32
            let scale = self.mla_scale()?;
            if !(scale.is_finite() && scale > 0.0) {
                return Err(AttnError::Config(format!(
                    "the softmax scale qk_head_dim^-1/2 * yarn_get_mscale(factor, \
                     mscale_all_dim)^2 must be a finite f32 > 0, got {scale}"
                )));
            }
        }
        if let Some(theta) = self.model.sliding_rope_theta
            && !(theta.is_finite() && theta > 1.0)
        {
            let msg = format!(
                "sliding layers' rope_theta must be a finite number > 1, got {theta}"
            );
            return Err(AttnError::Config(msg));
        }
        Ok(())
    }

    /// DeepSeek's checks: every size at least 1 (`q_lora_rank` when set), an even
    /// `qk_rope_head_dim`, `hidden_size` divisible by `num_attention_heads` for
    /// DeepSeek-V2 (its `validate_architecture`), and every head width and weight count
    /// computed in checked arithmetic, each overflow named by its keys.
    fn check_mla(&self, mla: &MlaFields, names: &FieldNames) -> Result<()> {
        let names = FieldNames { head_dim: "qk_rope_head_dim", ..*names };
        let (hidden, heads) = (self.hidden_size, self.num_attention_heads);
        nonzero(names.d_model, hidden)?;
        nonzero(names.n_heads, heads)?;
        if self.model.model_type.needs_divisible_heads() {
            divisible(names.d_model, hidden, names.n_heads, heads)?;
        }
        let (nope, rope, v) =
            (mla.qk_nope_head_dim, mla.qk_rope_head_dim, mla.v_head_dim);
        nonzero("kv_lora_rank", mla.kv_lora_rank)?;
        nonzero("qk_nope_head_dim", nope)?;
        nonzero("qk_rope_head_dim", rope)?;
        nonzero("v_head_dim", v)?;
        if let Some(r) = mla.q_lora_rank {
            nonzero("q_lora_rank", r)?;
        }
        if !rope.is_multiple_of(2) {
            return Err(AttnError::Config(format!(
                "qk_rope_head_dim must be even (RoPE rotates pairs of dimensions), got {rope}"
            )));
        }
        // the context, the RoPE base and scaling, with the RoPE part as the head
        let stand_in = AttentionConfig {
            d_model: heads,
            n_kv_heads: heads,
            head_dim: rope,
            ..self.shape()
        };
        stand_in.check_shape(&names)?;
        let too_large = |what: &str, keys: &str, values: &[usize]| {
            let values: Vec<String> = values.iter().map(usize::to_string).collect();
            AttnError::Config(format!(
                "{what} {keys} = {} does not fit in usize",
                values.join(" * ")
            ))
        };
        let sum = |a: (&str, usize), b: (&str, usize)| {
            a.1.checked_add(b.1).ok_or_else(|| {
                AttnError::Config(format!(
                    "{} + {} = {} + {} does not fit in usize",
                    a.0, b.0, a.1, b.1
                ))
            })
        };
        let qk = sum(("qk_nope_head_dim", nope), ("qk_rope_head_dim", rope))?;
        let kv_b = sum(("qk_nope_head_dim", nope), ("v_head_dim", v))?;
        let kv_a = sum(("kv_lora_rank", mla.kv_lora_rank), ("qk_rope_head_dim", rope))?;
        let q_in = mla.q_lora_rank.unwrap_or(hidden);
        let (q_name, q_in_key) = match mla.q_lora_rank {
            Some(_) => ("q_b_proj", "q_lora_rank"),
            None => ("q_proj", "hidden_size"),
        };
        let q_keys = format!(
            "num_attention_heads * (qk_nope_head_dim + qk_rope_head_dim) * {q_in_key}"
        );
        let mut weights: Vec<(&str, String, Vec<usize>)> = vec![
            (q_name, q_keys, vec![heads, qk, q_in]),
            (
                "kv_a_proj_with_mqa",
                "(kv_lora_rank + qk_rope_head_dim) * hidden_size".into(),
                vec![kv_a, hidden],
            ),
            (
                "kv_b_proj",
                "num_attention_heads * (qk_nope_head_dim + v_head_dim) * kv_lora_rank"
                    .into(),
                vec![heads, kv_b, mla.kv_lora_rank],
            ),
            (
                "o_proj",
                "hidden_size * num_attention_heads * v_head_dim".into(),
                vec![hidden, heads, v],
            ),
        ];
        if let Some(r) = mla.q_lora_rank {
            weights.push((
                "q_a_proj",
                "q_lora_rank * hidden_size".into(),
                vec![r, hidden],
            ));
        }
        for (name, keys, dims) in &weights {
            if dims.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d)).is_none() {
                return Err(too_large(&format!("the {name} weights'"), keys, dims));
            }
        }
        Ok(())
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
    /// each, naming the file: a `rope_scaling` without `rope_type`, which runs unscaled;
    /// keys a model's class reads but ignores (Gemma 3's `attn_logit_softcapping`,
    /// Mistral's `layer_types`). The library prints nothing; a program shows these to its
    /// user (the `llama-attn` binary on stderr).
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// Width of the queries: `num_attention_heads · head_dim` (saturating:
    /// [`Self::validate`] refuses a config where it overflows). A grouped-query layer's
    /// only: a DeepSeek config's widths are in [`Self::mla_shape`].
    pub fn q_dim(&self) -> usize {
        self.num_attention_heads.saturating_mul(self.head_dim)
    }

    /// Width of the keys and values: `num_key_value_heads · head_dim` (saturating, as
    /// [`Self::q_dim`]).
    pub fn kv_dim(&self) -> usize {
        self.num_key_value_heads.saturating_mul(self.head_dim)
    }

    /// The same shape as the crate's [`AttentionConfig`] (`d_model = hidden_size`,
    /// `context_length = max_position_embeddings`; Gemma 3: the full-attention layers'
    /// RoPE). Errors when `num_attention_heads · head_dim != hidden_size`:
    /// [`AttentionConfig`] describes square layers; such a config still loads with
    /// [`HfLlamaConfig::load_attention`], whose [`GroupedQueryAttention`] takes the two
    /// widths apart. Errors too for a YaRN or linear RoPE, which [`AttentionConfig`]
    /// cannot hold, and for DeepSeek's latent attention (see [`Self::mla_shape`]).
    ///
    /// [`GroupedQueryAttention`]: crate::GroupedQueryAttention
    pub fn attention_config(&self) -> Result<AttentionConfig> {
        if self.model.mla.is_some() {
            return Err(AttnError::Unsupported(format!(
                "model_type `{}` is multi-head latent attention, which AttentionConfig \
                 cannot describe: see mla_shape, and load the layer with load_mla",
                self.model.model_type.name()
            )));
        }
        if self.model.yarn.is_some() {
            let msg =
                "AttentionConfig has no YaRN RoPE: load the layer with load_attention";
            return Err(AttnError::Unsupported(msg.into()));
        }
        if self.model.linear.is_some() {
            let msg = "AttentionConfig has no linear RoPE scaling: load the layer with \
                       load_attention";
            return Err(AttnError::Unsupported(msg.into()));
        }
        let cfg = self.shape();
        cfg.validate()?;
        Ok(cfg)
    }

    /// RoPE tables (scaled if the config says so) of the full-attention layers for
    /// positions `0 .. n_positions` (see [`Self::rope_for`]).
    pub fn rope(&self, n_positions: usize) -> Result<Rope> {
        self.rope_for(LayerKind::Full, n_positions)
    }

    /// RoPE tables of a layer of `kind` for positions `0 .. n_positions`: `rope_theta`
    /// with the config's Llama 3, YaRN or (Gemma 3's full layers) linear scaling, except
    /// Gemma 3's sliding layers, which rotate with their own base and no scaling.
    /// `n_positions` may not exceed `max_position_embeddings` nor make a table larger
    /// than [`MAX_ROPE_TABLE_ENTRIES`].
    /// A DeepSeek config's tables are `qk_rope_head_dim` wide (its `head_dim`) and rotate
    /// the pairs its `rope_interleave` says.
    pub fn rope_for(&self, kind: LayerKind, n_positions: usize) -> Result<Rope> {
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
        let (head_dim, theta) = (self.head_dim, self.rope_theta);
        let rope = match (kind, self.model.sliding_rope_theta) {
            // Gemma 3's sliding layers: their own base, never scaled
            (LayerKind::Sliding, Some(local)) => {
                Rope::with_scaling(head_dim, n_positions, local, None)?
            }
            _ => match (self.rope_scaling, self.model.yarn, self.model.linear) {
                (Some(s), _, _) => {
                    let s = Some(RopeScaling::Llama3(s));
                    Rope::with_scaling(head_dim, n_positions, theta, s)?
                }
                (None, Some(y), _) => {
                    let y = Some(RopeScaling::Yarn(y));
                    Rope::with_scaling(head_dim, n_positions, theta, y)?
                }
                // Gemma 3's full layers (4B, 12B, 27B)
                (None, None, Some(l)) => {
                    Rope::with_linear_scaling(head_dim, n_positions, theta, l)?
                }
                (None, None, None) => {
                    Rope::with_scaling(head_dim, n_positions, theta, None)?
                }
            },
        };
        Ok(match &self.model.mla {
            Some(mla) => rope.with_layout(mla.rope_layout),
            None => rope,
        })
    }

    /// The sizes of a DeepSeek config's multi-head latent attention (chapter 12), or an
    /// error naming `load_attention` for the grouped-query models.
    pub fn mla_shape(&self) -> Result<MlaShape> {
        match &self.model.mla {
            Some(mla) => Ok(mla.shape(self.hidden_size, self.num_attention_heads)),
            None => Err(AttnError::Unsupported(format!(
                "model_type `{}` has no multi-head latent attention (only `deepseek_v2` \
                 and `deepseek_v3` do): load the layer with load_attention",
                self.model.model_type.name()
            ))),
        }
    }

    /// The softmax scale of a DeepSeek config's attention, as `yarn_apply_mscale` sets
    /// it: `qk_head_dim^-1/2`, times `m²` with `m = yarn_get_mscale(factor,
    /// mscale_all_dim)` when the RoPE is YaRN and `mscale_all_dim` is set and nonzero
    /// (DeepSeek-V3 moves YaRN's temperature from the RoPE tables into the scores).
    /// Python computes it in f64; torch rounds it to f32 where it scales the scores.
    pub fn mla_scale(&self) -> Result<f32> {
        let shape = self.mla_shape()?;
        // checked by `validate`; saturating, as a hostile struct literal may not be
        let qk = shape.qk_nope_head_dim.saturating_add(shape.qk_rope_head_dim);
        let mut scale = (qk as f64).powf(-0.5);
        if let Some(y) = &self.model.yarn
            && let Some(m) = y.mscale_all_dim.filter(|m| *m != 0.0)
        {
            let m = yarn_get_mscale(y.factor as f64, m as f64);
            scale = scale * m * m; // Python's `scaling * mscale * mscale`
        }
        Ok(scale as f32)
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
