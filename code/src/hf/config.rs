//! `config.json`: the attention shape of a Hugging Face Llama checkpoint, with Hugging Face's
//! defaults applied and every value checked.

use std::path::Path;

use serde_json::{Map, Value};

use crate::mechanisms::config::{AttentionConfig, FieldNames};
use crate::mechanisms::rope::{Llama3Scaling, Rope};
use crate::support::error::{AttnError, Result, divisible};

/// The prefix of layer 0's attention in a Hugging Face Llama checkpoint.
pub const DEFAULT_PREFIX: &str = "model.layers.0.self_attn.";

/// The largest RoPE table this module builds: `positions · head_dim/2` entries (2²⁷, i.e. 512 MiB for
/// cos and 512 MiB for sin). Llama 3.1 at 131 072 positions with head_dim 128 needs 2²³.
pub const MAX_ROPE_TABLE_ENTRIES: usize = 1 << 27;

// ANCHOR: hf_llama_config
/// The attention shape of a Hugging Face Llama `config.json`, with Hugging Face's defaults applied.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct HfLlamaConfig {
    /// `hidden_size`: the width of the layer's input and output (`d_model`).
    pub hidden_size: usize,
    /// `num_attention_heads`: query heads (`n_heads`).
    pub num_attention_heads: usize,
    /// `num_key_value_heads` (default: `num_attention_heads`): `n_kv_heads`.
    pub num_key_value_heads: usize,
    /// `head_dim` (default: `hidden_size / num_attention_heads`). May differ from that quotient, so
    /// `num_attention_heads · head_dim` need not equal `hidden_size`.
    pub head_dim: usize,
    /// `rope_theta`, top level or inside `rope_parameters` (default 10 000, as Hugging Face).
    pub rope_theta: f32,
    /// `max_position_embeddings`: positions `0 .. max_position_embeddings` are valid.
    pub max_position_embeddings: usize,
    /// `rope_scaling` / `rope_parameters` with `rope_type` (or `type`) `"llama3"`; `None` for `"default"`.
    pub rope_scaling: Option<Llama3Scaling>,
    /// `attention_bias` (default false): whether q/k/v/o projections have biases.
    pub attention_bias: bool,
}
// ANCHOR_END: hf_llama_config

/// Reads a key of a JSON object with a typed conversion, naming the key on error.
struct Keys<'a> {
    obj: &'a Map<String, Value>,
    source: &'a str,
    /// Prefix for key names in messages, e.g. `"rope_scaling."`.
    scope: &'a str,
}

impl Keys<'_> {
    fn err(&self, message: String) -> AttnError {
        AttnError::Format { path: self.source.to_string(), message }
    }

    /// The value of `key`, treating JSON `null` as absent (Hugging Face writes `"head_dim": null`).
    fn get(&self, key: &str) -> Option<&Value> {
        self.obj.get(key).filter(|v| !v.is_null())
    }

    fn usize_opt(&self, key: &str) -> Result<Option<usize>> {
        self.get(key)
            .map(|v| {
                v.as_u64().and_then(|n| usize::try_from(n).ok()).ok_or_else(|| {
                    self.err(format!("key `{}{key}` must be a non-negative integer, got {v}", self.scope))
                })
            })
            .transpose()
    }

    fn usize(&self, key: &str) -> Result<usize> {
        self.usize_opt(key)?.ok_or_else(|| self.err(format!("missing key `{}{key}`", self.scope)))
    }

    fn f32_opt(&self, key: &str) -> Result<Option<f32>> {
        self.get(key)
            .map(|v| {
                v.as_f64()
                    .map(|x| x as f32)
                    .ok_or_else(|| self.err(format!("key `{}{key}` must be a number, got {v}", self.scope)))
            })
            .transpose()
    }

    fn f32(&self, key: &str) -> Result<f32> {
        self.f32_opt(key)?.ok_or_else(|| self.err(format!("missing key `{}{key}`", self.scope)))
    }

    fn bool_opt(&self, key: &str) -> Result<Option<bool>> {
        self.get(key)
            .map(|v| {
                v.as_bool().ok_or_else(|| {
                    self.err(format!("key `{}{key}` must be true or false, got {v}", self.scope))
                })
            })
            .transpose()
    }

    fn str_opt(&self, key: &str) -> Result<Option<&str>> {
        self.get(key)
            .map(|v| {
                v.as_str()
                    .ok_or_else(|| self.err(format!("key `{}{key}` must be a string, got {v}", self.scope)))
            })
            .transpose()
    }
}

impl HfLlamaConfig {
    /// Reads and validates a `config.json` file.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        let source = path.as_ref().display().to_string();
        let text = std::fs::read_to_string(path.as_ref()).map_err(|e| AttnError::io(&source, e))?;
        Self::from_json_str(&text, &source)
    }

    /// Parses and validates the text of a `config.json`; `source` names it in error messages.
    ///
    /// Required: `hidden_size`, `num_attention_heads`, `max_position_embeddings`. RoPE parameters are
    /// read from `rope_parameters` (transformers 5) or else `rope_scaling` (older configs), with
    /// `rope_theta` inside them or at the top level. Only the `"default"` and `"llama3"` RoPE types exist
    /// in Llama 3.x; any other type (`"yarn"`, `"linear"`, ...) is an error, not silently ignored.
    pub fn from_json_str(text: &str, source: &str) -> Result<Self> {
        let bad = |message: String| AttnError::Format { path: source.to_string(), message };
        let value: Value = serde_json::from_str(text).map_err(|e| bad(format!("invalid JSON: {e}")))?;
        let obj = value.as_object().ok_or_else(|| bad("config.json must be a JSON object".into()))?;
        let top = Keys { obj, source, scope: "" };

        let hidden_size = top.usize("hidden_size")?;
        let num_attention_heads = top.usize("num_attention_heads")?;
        let num_key_value_heads = top.usize_opt("num_key_value_heads")?.unwrap_or(num_attention_heads);
        divisible("hidden_size", hidden_size, "num_attention_heads", num_attention_heads)?;
        let head_dim = top.usize_opt("head_dim")?.unwrap_or(hidden_size / num_attention_heads);
        let max_position_embeddings = top.usize("max_position_embeddings")?;
        let attention_bias = top.bool_opt("attention_bias")?.unwrap_or(false);

        // transformers 5 writes `rope_parameters`; older configs `rope_scaling` (+ top-level rope_theta)
        let (scope, rope) = match (top.get("rope_parameters"), top.get("rope_scaling")) {
            (Some(v), _) => ("rope_parameters.", Some(v)),
            (None, Some(v)) => ("rope_scaling.", Some(v)),
            (None, None) => ("", None),
        };
        let empty = Map::new();
        let rope_obj = match rope {
            Some(v) => {
                v.as_object().ok_or_else(|| bad(format!("`{scope}` must be a JSON object, got {v}")))?
            }
            None => &empty,
        };
        let rp = Keys { obj: rope_obj, source, scope };
        let rope_theta = match rp.f32_opt("rope_theta")? {
            Some(theta) => theta,
            None => top.f32_opt("rope_theta")?.unwrap_or(10_000.0),
        };
        if let Some(f) = rp.f32_opt("partial_rotary_factor")?.or(top.f32_opt("partial_rotary_factor")?)
            && f != 1.0
        {
            return Err(AttnError::Config(format!(
                "partial_rotary_factor = {f} is not supported (only 1.0)"
            )));
        }
        let rope_type = match rp.str_opt("rope_type")? {
            Some(t) => t,
            None => rp.str_opt("type")?.unwrap_or("default"),
        };
        let rope_scaling = match rope_type {
            "default" => None,
            "llama3" => Some(Llama3Scaling {
                factor: rp.f32("factor")?,
                low_freq_factor: rp.f32("low_freq_factor")?,
                high_freq_factor: rp.f32("high_freq_factor")?,
                // as transformers: a top-level value wins, then the scaling's own, then the context
                original_max_position_embeddings: match top.usize_opt("original_max_position_embeddings")? {
                    Some(n) => n,
                    None => {
                        rp.usize_opt("original_max_position_embeddings")?.unwrap_or(max_position_embeddings)
                    }
                },
            }),
            other => {
                return Err(AttnError::Config(format!(
                    "{scope}rope_type `{other}` is not supported (only `default` and `llama3`)"
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
        };
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks what transformers' `LlamaConfig` and `LlamaAttention` need: sizes at least 1,
    /// `hidden_size` divisible by `num_attention_heads`, `num_attention_heads` by
    /// `num_key_value_heads`, products that fit in `usize`, an even `head_dim`, a sane `rope_theta`
    /// and scaling. The checks are [`AttentionConfig::validate`]'s, less its
    /// `num_attention_heads · head_dim = hidden_size`, with Hugging Face's key names in the messages.
    pub fn validate(&self) -> Result<()> {
        self.shape().check_shape(&FieldNames::HF).map(|_q_width| ())
    }

    /// The fields as an [`AttentionConfig`], square or not (see [`Self::attention_config`]).
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

    /// Width of the queries: `num_attention_heads · head_dim`.
    pub fn q_dim(&self) -> usize {
        self.num_attention_heads * self.head_dim
    }

    /// Width of the keys and values: `num_key_value_heads · head_dim`.
    pub fn kv_dim(&self) -> usize {
        self.num_key_value_heads * self.head_dim
    }

    /// The same shape as the crate's [`AttentionConfig`] (`d_model = hidden_size`,
    /// `context_length = max_position_embeddings`). Errors when `num_attention_heads · head_dim !=
    /// hidden_size`: [`AttentionConfig`] describes square layers; such a config still loads with
    /// [`HfLlamaConfig::load_attention`], whose [`GroupedQueryAttention`] takes the two widths apart.
    pub fn attention_config(&self) -> Result<AttentionConfig> {
        let cfg = self.shape();
        cfg.validate()?;
        Ok(cfg)
    }

    /// RoPE tables (scaled if the config says so) for positions `0 .. n_positions`; `n_positions` may
    /// not exceed `max_position_embeddings` nor make a table larger than [`MAX_ROPE_TABLE_ENTRIES`].
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

    /// meta-llama/Llama-3.2-1B's config.json (attention keys as published; other keys kept for realism).
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
        assert_eq!(parse(LLAMA_3_2_1B).unwrap().attention_config().unwrap(), Preset::LLAMA_3_2_1B.config);
        assert_eq!(parse(LLAMA_3_1_8B).unwrap().attention_config().unwrap(), Preset::LLAMA_3_1_8B.config);
        assert_eq!(parse(LLAMA_3_8B).unwrap().attention_config().unwrap(), Preset::LLAMA_3_8B.config);
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
        // rope_parameters wins over rope_scaling and the top-level rope_theta, as in transformers 5
        let c = parse(
            r#"{"hidden_size": 64, "num_attention_heads": 4, "head_dim": null, "max_position_embeddings": 131072,
                "rope_theta": 10000.0, "rope_scaling": null,
                "rope_parameters": {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 32,
                                    "low_freq_factor": 1, "high_freq_factor": 4}}"#,
        )
        .unwrap();
        assert_eq!((c.head_dim, c.rope_theta), (16, 500_000.0));
        // original_max_position_embeddings defaults to max_position_embeddings, as transformers does
        assert_eq!(
            c.rope_scaling,
            Some(Llama3Scaling { original_max_position_embeddings: 131_072, ..Llama3Scaling::LLAMA_3_2 })
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
            c.attention_config().unwrap_err().to_string().contains("4 * 12 = 48 must equal d_model = 40")
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
            err(r#"{"hidden_size": -8, "num_attention_heads": 4, "max_position_embeddings": 8}"#),
            "config.json: key `hidden_size` must be a non-negative integer, got -8"
        );
        assert_eq!(
            err(r#"{"hidden_size": 8, "num_attention_heads": 0, "max_position_embeddings": 8}"#),
            "invalid config: num_attention_heads must be at least 1, got 0"
        );
        let llama3 = |extra: &str| {
            format!(
                r#"{{"hidden_size": 64, "num_attention_heads": 4, "max_position_embeddings": 64,
                    "rope_scaling": {{"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0 {extra}}}}}"#
            )
        };
        assert_eq!(err(&llama3("")), "config.json: missing key `rope_scaling.high_freq_factor`");
        assert!(err(&llama3(r#", "high_freq_factor": 0.5"#)).contains("low_freq_factor < high_freq_factor"));
        assert!(
            err(&llama3(r#", "high_freq_factor": "4""#))
                .contains("`rope_scaling.high_freq_factor` must be a number")
        );
        assert_eq!(
            err(r#"{"hidden_size": 64, "num_attention_heads": 4, "max_position_embeddings": 64,
                    "rope_parameters": {"rope_type": "linear", "factor": 2.0}}"#),
            "invalid config: rope_parameters.rope_type `linear` is not supported (only `default` and `llama3`)"
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
            "invalid config: rope_theta must be a finite number > 1, got 1"
        );
    }

    #[test]
    fn rope_tables_are_bounded() {
        let c = parse(LLAMA_3_1_8B).unwrap();
        assert!(matches!(c.rope(131_073), Err(AttnError::PositionOutOfRange { .. })));
        let mut huge = c;
        huge.max_position_embeddings = 1 << 40;
        assert!(huge.rope(1 << 30).unwrap_err().to_string().contains("more than the 134217728"));
    }
}
