//! `config.json` beyond Llama: the attention settings of Mistral, Qwen3, Gemma 2, Gemma 3
//! and gpt-oss (chapters 9 to 11), and DeepSeek-V2's and V3's multi-head latent attention
//! (chapter 12), read as transformers 5.24's config classes read them.
//!
//! Each family keeps Llama's keys and adds a few of its own; [`ModelFields`] holds them,
//! with each class's defaults applied. The defaults differ from class to class
//! (`sliding_window` is 4096 in `MistralConfig`, 128 in `GptOssConfig`; `head_dim` is 128
//! in `Qwen3Config`, 256 in Gemma's), and so does `null`: `"sliding_window": null` means
//! no window at all (Mistral 7B v0.2), an absent key the class default, and a `null` where
//! the class's type has no `None` (`"head_dim": null` for Qwen3) is an error, as
//! transformers' strict dataclasses make it.

use serde::Deserialize;

use super::config::{Count, Flag, Number, Scope, Text, nullable};
use crate::mechanisms::rope::{LinearScaling, RopeLayout, YarnScaling};
use crate::variants::{MlaShape, RmsNormStyle, ScoreOptions};

/// The most layers a config may declare (`num_hidden_layers`), so that a hostile number
/// cannot make the default `layer_types` allocate without bound. Real models have at
/// most a few hundred.
pub const MAX_LAYERS: usize = 1 << 16;

/// A `model_type` whose attention this crate computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModelType {
    /// `llama` (also a config without `model_type`): chapter 7.
    Llama,
    /// `mistral`: a sliding window on every layer (chapter 9).
    Mistral,
    /// `qwen3`: QK-norm `x̂·w`, biases on all four projections if `attention_bias`, a
    /// window on the layers from `max_window_layers` on if `use_sliding_window`.
    Qwen3,
    /// `gemma2`: soft-capping, the scale `query_pre_attn_scalar^-1/2`, windows on even
    /// layers (chapter 10).
    Gemma2,
    /// `gemma3_text`, or the `text_config` of a `gemma3` (multimodal) config: QK-norm
    /// `x̂·(1+w)`, Gemma 2's scale without its cap, five window layers out of six with
    /// their own RoPE base (never scaled; the full layers' may be linear).
    Gemma3Text,
    /// `gpt_oss`: learned sinks, biases, windows on even layers, YaRN RoPE.
    GptOss,
    /// `deepseek_v2`: multi-head latent attention (chapter 12), RoPE always on
    /// interleaved pairs. Loaded by [`HfLlamaConfig::load_mla`], not `load_attention`.
    ///
    /// [`HfLlamaConfig::load_mla`]: crate::HfLlamaConfig::load_mla
    DeepseekV2,
    /// `deepseek_v3`: multi-head latent attention (chapter 12), RoPE pairs as
    /// `rope_interleave` says, YaRN's temperature in the softmax scale. Loaded by
    /// [`HfLlamaConfig::load_mla`], not `load_attention`.
    ///
    /// [`HfLlamaConfig::load_mla`]: crate::HfLlamaConfig::load_mla
    DeepseekV3,
}

impl ModelType {
    /// Every supported type.
    pub const ALL: [ModelType; 8] = [
        ModelType::Llama,
        ModelType::Mistral,
        ModelType::Qwen3,
        ModelType::Gemma2,
        ModelType::Gemma3Text,
        ModelType::GptOss,
        ModelType::DeepseekV2,
        ModelType::DeepseekV3,
    ];

    /// The `model_type` string of config.json.
    pub fn name(self) -> &'static str {
        match self {
            ModelType::Llama => "llama",
            ModelType::Mistral => "mistral",
            ModelType::Qwen3 => "qwen3",
            ModelType::Gemma2 => "gemma2",
            ModelType::Gemma3Text => "gemma3_text",
            ModelType::GptOss => "gpt_oss",
            ModelType::DeepseekV2 => "deepseek_v2",
            ModelType::DeepseekV3 => "deepseek_v3",
        }
    }

    /// The transformers class that reads such a config.json.
    pub fn class(self) -> &'static str {
        match self {
            ModelType::Llama => "LlamaConfig",
            ModelType::Mistral => "MistralConfig",
            ModelType::Qwen3 => "Qwen3Config",
            ModelType::Gemma2 => "Gemma2Config",
            ModelType::Gemma3Text => "Gemma3TextConfig",
            ModelType::GptOss => "GptOssConfig",
            ModelType::DeepseekV2 => "DeepseekV2Config",
            ModelType::DeepseekV3 => "DeepseekV3Config",
        }
    }

    /// The transformers module that computes the attention of such a config.
    pub fn attention_class(self) -> &'static str {
        match self {
            ModelType::Llama => "LlamaAttention",
            ModelType::Mistral => "MistralAttention",
            ModelType::Qwen3 => "Qwen3Attention",
            ModelType::Gemma2 => "Gemma2Attention",
            ModelType::Gemma3Text => "Gemma3Attention",
            ModelType::GptOss => "GptOssAttention",
            ModelType::DeepseekV2 => "DeepseekV2Attention",
            ModelType::DeepseekV3 => "DeepseekV3Attention",
        }
    }

    /// The type named `name`, if supported.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.name() == name)
    }

    /// Whether the model's attention is multi-head latent attention (DeepSeek-V2 and V3,
    /// chapter 12): a [`MultiHeadLatentAttention`](crate::MultiHeadLatentAttention),
    /// loaded by [`HfLlamaConfig::load_mla`](crate::HfLlamaConfig::load_mla), rather than a
    /// grouped-query layer.
    pub fn uses_mla(self) -> bool {
        matches!(self, ModelType::DeepseekV2 | ModelType::DeepseekV3)
    }

    /// Whether the class refuses `hidden_size % num_attention_heads != 0` even with an
    /// explicit `head_dim` (its `validate_architecture`): Llama, the Gemmas and
    /// DeepSeek-V2 do; Mistral, Qwen3, gpt-oss and DeepSeek-V3 do not.
    pub(super) fn needs_divisible_heads(self) -> bool {
        matches!(
            self,
            ModelType::Llama
                | ModelType::Gemma2
                | ModelType::Gemma3Text
                | ModelType::DeepseekV2
        )
    }

    /// The RoPE base when config.json gives none (`default_theta`).
    pub(super) fn default_rope_theta(self) -> f32 {
        match self {
            ModelType::GptOss => 150_000.0,
            ModelType::Gemma3Text => 1_000_000.0, // its full-attention layers
            _ => 10_000.0,
        }
    }

    /// `num_key_value_heads`: the class default when absent; `null` is
    /// `num_attention_heads` where the class's type allows it.
    ///
    /// DeepSeek's must then equal `num_attention_heads`: its attention expands every
    /// head's own key and value from the latent, and transformers' eager attention still
    /// repeats them `num_attention_heads // num_key_value_heads` times, which fails for
    /// any quotient but 1 (with the key absent, `DeepseekV3Config`'s default 128 works
    /// for DeepSeek-V3's own 128 heads only). A count with quotient 1 that is not the
    /// head count (3 for 4 heads) runs in transformers as if it were; it is refused too,
    /// as a config that does not say what it means.
    pub(super) fn kv_heads(
        self,
        v: Option<Option<Count>>,
        n_heads: usize,
        key: &Scope,
    ) -> Result<usize, String> {
        let (absent, on_null) = match self {
            ModelType::Llama | ModelType::DeepseekV2 => (n_heads, Some(n_heads)),
            ModelType::Mistral | ModelType::GptOss => (8, None),
            ModelType::Qwen3 => (32, Some(n_heads)),
            ModelType::Gemma2 | ModelType::Gemma3Text => (4, None),
            ModelType::DeepseekV3 => (128, Some(n_heads)),
        };
        let key = key.key("num_key_value_heads");
        let n_kv = self.value(count(v), absent, on_null, &key)?;
        // a zero head count is reported by the validator, by name
        if self.uses_mla() && n_heads != 0 && n_kv != n_heads {
            let given = if v.is_none() {
                format!("is absent, and {}'s default {n_kv}", self.class())
            } else {
                format!("= {n_kv}")
            };
            return Err(format!(
                "key `{key}` {given} must equal num_attention_heads = {n_heads}: \
                 multi-head latent attention gives every head its own key and value \
                 (transformers' {} repeats them num_attention_heads // \
                 num_key_value_heads times, and fails unless that is 1)",
                self.attention_class()
            ));
        }
        Ok(n_kv)
    }

    /// `head_dim`: the class default when absent (Llama and Mistral:
    /// `hidden_size / num_attention_heads`, also for `null`).
    pub(super) fn head_dim(
        self,
        v: Option<Option<Count>>,
        hidden: usize,
        n_heads: usize,
        key: &Scope,
    ) -> Result<usize, String> {
        // a zero head count is reported by the validator, by name
        let quotient = hidden.checked_div(n_heads).unwrap_or(0);
        match self {
            // MistralAttention: `config.head_dim or hidden_size // num_attention_heads`
            ModelType::Mistral if matches!(v, Some(Some(Count(0)))) => Ok(quotient),
            ModelType::Llama | ModelType::Mistral => {
                self.value(count(v), quotient, Some(quotient), &key.key("head_dim"))
            }
            ModelType::Qwen3 => self.value(count(v), 128, None, &key.key("head_dim")),
            ModelType::Gemma2 | ModelType::Gemma3Text => {
                self.value(count(v), 256, None, &key.key("head_dim"))
            }
            ModelType::GptOss => self.value(count(v), 64, None, &key.key("head_dim")),
            // read by `MlaFields::read` (it is `qk_rope_head_dim`); not called for these
            ModelType::DeepseekV2 | ModelType::DeepseekV3 => Ok(quotient),
        }
    }

    /// `attention_bias`: false when absent, except gpt-oss's true. Mistral has no such
    /// key: its projections never have biases.
    pub(super) fn attention_bias(
        self,
        v: Option<Option<Flag>>,
        key: &Scope,
        warnings: &mut Vec<String>,
    ) -> Result<bool, String> {
        let v = v.map(|o| o.map(|f| f.0));
        match self {
            // the crate's Llama reader always took null as absent
            ModelType::Llama => Ok(v.flatten().unwrap_or(false)),
            ModelType::Mistral => {
                if v == Some(Some(true)) {
                    warnings.push(format!(
                        "`{}` = true is ignored: MistralAttention has no biases",
                        key.key("attention_bias")
                    ));
                }
                Ok(false)
            }
            ModelType::GptOss => self.value(v, true, None, &key.key("attention_bias")),
            _ => self.value(v, false, None, &key.key("attention_bias")),
        }
    }

    /// A key as this class reads it: `absent` when config.json leaves it out; a `null`
    /// is `on_null`, or an error when the class's type has no `None`.
    pub(super) fn value<T>(
        self,
        v: Option<Option<T>>,
        absent: T,
        on_null: Option<T>,
        key: &str,
    ) -> Result<T, String> {
        match v {
            None => Ok(absent),
            Some(Some(v)) => Ok(v),
            Some(None) => on_null.ok_or_else(|| {
                format!("key `{key}` is null, which {} refuses for it", self.class())
            }),
        }
    }
}

/// A key whose type allows `None` (`int | None`), and whose class default is not `None`:
/// the value, `absent` when the key is absent, `None` when it is `null`.
fn absent_or_null<T>(v: Option<Option<T>>, absent: T) -> Option<T> {
    v.unwrap_or(Some(absent))
}

/// A tri-state count as plain numbers.
fn count(v: Option<Option<Count>>) -> Option<Option<usize>> {
    v.map(|o| o.map(|c| c.0))
}

/// A tri-state number as plain numbers.
fn number(v: Option<Option<Number>>) -> Option<Option<f32>> {
    v.map(|o| o.map(|n| n.0))
}

/// The kind of one decoder layer's attention (an entry of `layer_types`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LayerKind {
    /// `full_attention`: causal attention over every earlier token.
    Full,
    /// `sliding_attention`: the last `sliding_window` tokens only, itself included
    /// (chapter 9).
    Sliding,
}

impl LayerKind {
    /// transformers' name: `full_attention` or `sliding_attention`.
    pub fn name(self) -> &'static str {
        match self {
            LayerKind::Full => "full_attention",
            LayerKind::Sliding => "sliding_attention",
        }
    }
}

/// What a model family adds to Llama's attention keys (chapters 9 to 11), with its
/// config class's defaults applied. [`ModelFields::llama`] for a Llama config.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelFields {
    /// `model_type` (`llama` when absent; `gemma3`'s `text_config` reads as
    /// `gemma3_text`).
    pub model_type: ModelType,
    /// `sliding_window`: the keys a sliding layer's query sees, itself included. `None`
    /// for no window: `null`, Llama, Qwen3 without `use_sliding_window`. Absent: 4096
    /// (Mistral, Qwen3, Gemma), 128 (gpt-oss).
    pub sliding_window: Option<usize>,
    /// Each layer's kind: `layer_types`, or when absent the class's pattern (Gemma 2,
    /// gpt-oss: even layers slide; Gemma 3: all but every `sliding_window_pattern`-th
    /// (6); Qwen3: layers from `max_window_layers` on, if windowed). `None` for Llama and
    /// Mistral, whose layers are all alike (Mistral's all slide when `sliding_window` is
    /// set).
    pub layer_types: Option<Vec<LayerKind>>,
    /// `attn_logit_softcapping` (Gemma 2; 50 when absent, none for `null`): scores
    /// become `cap · tanh(s / cap)`. Gemma 3 never applies it, whatever the file says.
    pub attn_logit_softcapping: Option<f32>,
    /// `query_pre_attn_scalar` (Gemma 2 and 3; 256 when absent): the softmax scale is its
    /// power `-1/2` instead of `head_dim`'s.
    pub query_pre_attn_scalar: Option<usize>,
    /// QK-norm (Qwen3 `x̂·w`, Gemma 3 `x̂·(1+w)`) and its epsilon, `rms_norm_eps` (1e-6
    /// when absent); `None` for models without.
    pub qk_norm: Option<(RmsNormStyle, f32)>,
    /// Whether each layer has gpt-oss's learned sinks (`{prefix}sinks`, one logit per
    /// query head).
    pub learned_sinks: bool,
    /// YaRN scaling of every layer's RoPE (`rope_type` `yarn`: gpt-oss, by default;
    /// DeepSeek; Qwen3 and Mistral when config.json adds it).
    pub yarn: Option<YarnScaling>,
    /// Linear scaling of Gemma 3's full-attention layers' RoPE (`rope_type` `linear`:
    /// factor 8 in Gemma 3 4B, 12B and 27B); its sliding layers are never scaled.
    pub linear: Option<LinearScaling>,
    /// Gemma 3's sliding layers' RoPE base (`rope_parameters.sliding_attention`'s
    /// `rope_theta`, or `rope_local_base_freq`, 10 000 when absent); `None`: sliding
    /// layers rotate as the full ones.
    pub sliding_rope_theta: Option<f32>,
    /// DeepSeek's multi-head latent attention (`deepseek_v2`, `deepseek_v3`): its sizes
    /// and RoPE layout; `None` for the grouped-query models.
    pub mla: Option<MlaFields>,
}

impl ModelFields {
    /// Llama's: no window, no cap, no QK-norm, no sinks, the softmax scale
    /// `1/√head_dim`.
    pub fn llama() -> Self {
        Self {
            model_type: ModelType::Llama,
            sliding_window: None,
            layer_types: None,
            attn_logit_softcapping: None,
            query_pre_attn_scalar: None,
            qk_norm: None,
            learned_sinks: false,
            yarn: None,
            linear: None,
            sliding_rope_theta: None,
            mla: None,
        }
    }

    /// What a layer of `kind` does between its scores and its softmax: the window on
    /// sliding layers, Gemma's scale and Gemma 2's cap. gpt-oss's sinks are weights,
    /// read with the layer.
    pub fn score_options(&self, kind: LayerKind) -> ScoreOptions {
        ScoreOptions {
            // `query_pre_attn_scalar**-0.5` is a Python float; torch multiplies the f32
            // scores by it rounded to f32
            scale: self.query_pre_attn_scalar.map(|s| (s as f64).powf(-0.5) as f32),
            softcap: self.attn_logit_softcapping,
            window: match kind {
                LayerKind::Sliding => self.sliding_window,
                LayerKind::Full => None,
            },
            sink_tokens: 0,
            sinks: None,
        }
    }

    /// Reads the keys of `model_type` from `raw`, naming them under `scope` in errors
    /// and in `warnings`.
    pub(super) fn read(
        model_type: ModelType,
        raw: RawModel,
        scope: &Scope,
        warnings: &mut Vec<String>,
    ) -> Result<Self, String> {
        use ModelType::*;
        let m = model_type;
        let key = |k: &str| scope.key(k);
        let mut fields = Self { model_type, ..Self::llama() };
        // DeepSeek's keys are `MlaFields::read`'s: no window, cap, QK-norm or sinks
        if m == Llama || m.uses_mla() {
            return Ok(fields);
        }
        // Gemma's attention is causal unless this says otherwise (then it also halves
        // the window): not what this crate computes
        if matches!(m, Gemma2 | Gemma3Text)
            && raw.use_bidirectional_attention.flatten().is_some_and(|f| f.0)
        {
            return Err(format!(
                "`{}` = true is not supported: the attention is then not causal",
                key("use_bidirectional_attention")
            ));
        }
        let window = count(raw.sliding_window);
        let default_window = if m == GptOss { 128 } else { 4096 };
        let mut window = absent_or_null(window, default_window);
        if m == Qwen3 {
            // Qwen3Config: `sliding_window if use_sliding_window else None`
            let on = raw.use_sliding_window.map(|o| o.map(|f| f.0));
            if !m.value(on, false, None, &key("use_sliding_window"))? {
                window = None;
            }
        }
        if window == Some(0) {
            return Err(format!(
                "key `{}` must be at least 1 (a query sees itself), got 0",
                key("sliding_window")
            ));
        }
        fields.sliding_window = window;
        fields.layer_types = match m {
            Mistral => {
                if raw.layer_types.flatten().is_some() {
                    // transformers warns the same
                    warnings.push(format!(
                        "`{}` is ignored: MistralModel gives every layer the same attention",
                        key("layer_types")
                    ));
                }
                None
            }
            _ => Some(layer_types(m, &raw, window, scope)?),
        };
        if matches!(m, Gemma2 | Gemma3Text) {
            let s = count(raw.query_pre_attn_scalar);
            let s = m.value(s, 256, None, &key("query_pre_attn_scalar"))?;
            if s == 0 {
                let k = key("query_pre_attn_scalar");
                return Err(format!("key `{k}` must be at least 1, got 0"));
            }
            fields.query_pre_attn_scalar = Some(s);
        }
        let cap = number(raw.attn_logit_softcapping);
        match m {
            Gemma2 => {
                let k = key("attn_logit_softcapping");
                let cap = absent_or_null(cap, 50.0);
                if let Some(c) = cap.filter(|c| *c <= 0.0) {
                    return Err(format!("key `{k}` must be a number > 0, got {c}"));
                }
                fields.attn_logit_softcapping = cap;
            }
            Gemma3Text => {
                if let Some(Some(c)) = cap {
                    warnings.push(format!(
                        "`{}` = {c} is ignored: Gemma 3's attention never applies it (as in \
                         transformers)",
                        key("attn_logit_softcapping")
                    ));
                }
            }
            _ => {}
        }
        if matches!(m, Qwen3 | Gemma3Text) {
            let k = key("rms_norm_eps");
            let eps = m.value(number(raw.rms_norm_eps), 1e-6, None, &k)?;
            if eps < 0.0 {
                return Err(format!("key `{k}` must be a number >= 0, got {eps}"));
            }
            let style = match m {
                Qwen3 => RmsNormStyle::Weight,
                _ => RmsNormStyle::OnePlusWeight,
            };
            fields.qk_norm = Some((style, eps));
        }
        fields.learned_sinks = m == GptOss;
        Ok(fields)
    }
}

/// The keys of a DeepSeek-V2 or V3 `config.json` that size its multi-head latent
/// attention (chapter 12), with `DeepseekV3Config`'s and `DeepseekV2Config`'s defaults
/// (DeepSeek-V3's and V2's own sizes) applied.
///
/// The layer's head width is not `head_dim`: transformers overwrites that with
/// `qk_rope_head_dim`, which sizes only the RoPE tables ([`HfLlamaConfig::head_dim`]
/// holds it too). Queries and keys are `qk_nope_head_dim + qk_rope_head_dim` wide,
/// values `v_head_dim`.
///
/// [`HfLlamaConfig::head_dim`]: crate::HfLlamaConfig::head_dim
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MlaFields {
    /// `q_lora_rank` (1536 when absent): the width of the compressed query
    /// (`q_a_proj`, `q_a_layernorm`, `q_b_proj`); `null` for a plain `q_proj`
    /// (DeepSeek-V2-Lite).
    pub q_lora_rank: Option<usize>,
    /// `kv_lora_rank` (512): the width of the key/value latent the cache stores.
    pub kv_lora_rank: usize,
    /// `qk_nope_head_dim` (128): the part of each query and key head without position.
    pub qk_nope_head_dim: usize,
    /// `qk_rope_head_dim` (64): the part of each query and key head that RoPE rotates,
    /// one key part shared by all heads.
    pub qk_rope_head_dim: usize,
    /// `v_head_dim` (128): the width of each value head.
    pub v_head_dim: usize,
    /// Which dimensions RoPE rotates together: DeepSeek-V3's `rope_interleave` (true when
    /// absent: [`RopeLayout::Interleaved`], pairs `(2i, 2i + 1)`; false or `null`:
    /// [`RopeLayout::SplitHalves`]); always interleaved for DeepSeek-V2, whose attention
    /// does not read the key.
    pub rope_layout: RopeLayout,
}

impl MlaFields {
    /// The layer's sizes, for `hidden_size` and `num_attention_heads`.
    pub fn shape(&self, hidden_size: usize, num_attention_heads: usize) -> MlaShape {
        MlaShape {
            d_model: hidden_size,
            n_heads: num_attention_heads,
            q_lora_rank: self.q_lora_rank,
            kv_lora_rank: self.kv_lora_rank,
            qk_nope_head_dim: self.qk_nope_head_dim,
            qk_rope_head_dim: self.qk_rope_head_dim,
            v_head_dim: self.v_head_dim,
        }
    }

    /// Reads the MLA keys of a `model_type` that has them (`None` for the others), and
    /// checks config.json's own `head_dim` against `qk_rope_head_dim`.
    ///
    /// `DeepseekV3Config` overwrites `head_dim` with `qk_rope_head_dim`, but a `head_dim`
    /// in config.json is set again after that, and sizes the RoPE tables: any other value
    /// (or `null`) makes transformers' attention fail, so it is refused here.
    /// `DeepseekV2Config` declares the key and overwrites it for good: it is ignored.
    pub(super) fn read(
        m: ModelType,
        raw: &RawModel,
        config_head_dim: Option<Option<Count>>,
        scope: &Scope,
        warnings: &mut Vec<String>,
    ) -> Result<Option<Self>, String> {
        if !m.uses_mla() {
            return Ok(None);
        }
        let key = |k: &str| scope.key(k);
        let size = |v: Option<Option<Count>>, name: &str, default: usize| {
            m.value(count(v), default, None, &key(name)).map_err(|e| {
                // DeepseekV3Config's `v_head_dim: int | None` takes a null, which its
                // attention then cannot size kv_b_proj and o_proj with
                if m == ModelType::DeepseekV3 && name == "v_head_dim" {
                    format!(
                        "key `{}` is null, which {} cannot use (it sizes kv_b_proj and o_proj)",
                        key(name),
                        m.attention_class()
                    )
                } else {
                    e
                }
            })
        };
        let fields = Self {
            // `int | None`: null is the plain q_proj
            q_lora_rank: absent_or_null(count(raw.q_lora_rank), 1536),
            kv_lora_rank: size(raw.kv_lora_rank, "kv_lora_rank", 512)?,
            qk_nope_head_dim: size(raw.qk_nope_head_dim, "qk_nope_head_dim", 128)?,
            qk_rope_head_dim: size(raw.qk_rope_head_dim, "qk_rope_head_dim", 64)?,
            v_head_dim: size(raw.v_head_dim, "v_head_dim", 128)?,
            rope_layout: RopeLayout::Interleaved,
        };
        let interleave = raw.rope_interleave.map(|o| o.map(|f| f.0));
        match m {
            ModelType::DeepseekV3 => {
                // `if self.config.rope_interleave:` tests the value's truth
                if interleave == Some(None) {
                    warnings.push(format!(
                        "`{}` is null, which DeepseekV3Attention reads as false: RoPE \
                         rotates pairs (i, i + qk_rope_head_dim/2)",
                        key("rope_interleave")
                    ));
                }
                let rope = fields.qk_rope_head_dim;
                match config_head_dim {
                    Some(Some(Count(h))) if h != rope => {
                        return Err(format!(
                            "key `{}` = {h} must equal qk_rope_head_dim = {rope} (or be \
                             absent): transformers sizes DeepSeek-V3's RoPE tables by it, \
                             and its attention fails on any other width",
                            key("head_dim")
                        ));
                    }
                    Some(None) => {
                        return Err(format!(
                            "key `{}` is null, but must equal qk_rope_head_dim = {rope} (or \
                             be absent): transformers then sizes DeepSeek-V3's RoPE tables \
                             by hidden_size / num_attention_heads, and its attention fails",
                            key("head_dim")
                        ));
                    }
                    _ => {}
                }
                let rope_layout = if interleave.unwrap_or(Some(true)).unwrap_or(false) {
                    RopeLayout::Interleaved
                } else {
                    RopeLayout::SplitHalves
                };
                Ok(Some(Self { rope_layout, ..fields }))
            }
            _ => {
                if matches!(interleave, Some(Some(false)) | Some(None)) {
                    warnings.push(format!(
                        "`{}` is ignored: DeepseekV2Attention always rotates interleaved \
                         pairs (2i, 2i + 1)",
                        key("rope_interleave")
                    ));
                }
                Ok(Some(fields))
            }
        }
    }
}

/// `layer_types` as given (`attention` is transformers' legacy name for
/// `full_attention`), or the class's default pattern; every sliding layer must have a
/// window.
fn layer_types(
    m: ModelType,
    raw: &RawModel,
    window: Option<usize>,
    scope: &Scope,
) -> Result<Vec<LayerKind>, String> {
    let key = |k: &str| scope.key(k);
    let default_layers = match m {
        ModelType::Gemma2 | ModelType::Gemma3Text => 26,
        ModelType::GptOss => 36,
        _ => 32,
    };
    let n = m.value(
        count(raw.num_hidden_layers),
        default_layers,
        None,
        &key("num_hidden_layers"),
    )?;
    if n > MAX_LAYERS {
        return Err(format!(
            "key `{}` = {n} is more layers than this crate reads ({MAX_LAYERS})",
            key("num_hidden_layers")
        ));
    }
    let kinds: Vec<LayerKind> = match raw.layer_types.as_ref().and_then(Option::as_ref) {
        Some(names) => {
            if names.len() != n {
                return Err(format!(
                    "`{}` ({n}) must be equal to the number of `{}` ({})",
                    key("num_hidden_layers"),
                    key("layer_types"),
                    names.len()
                ));
            }
            names
                .iter()
                .enumerate()
                .map(|(i, Text(t))| match t.as_str() {
                    "full_attention" | "attention" => Ok(LayerKind::Full),
                    "sliding_attention" => Ok(LayerKind::Sliding),
                    other => Err(format!(
                        "key `{}[{i}]`: layer type `{other}` is not supported (only \
                         `full_attention` and `sliding_attention`)",
                        key("layer_types")
                    )),
                })
                .collect::<Result<_, _>>()?
        }
        None => {
            let kind = |sliding: bool| {
                if sliding { LayerKind::Sliding } else { LayerKind::Full }
            };
            match m {
                ModelType::Qwen3 => {
                    let k = key("max_window_layers");
                    let first = m.value(count(raw.max_window_layers), 28, None, &k)?;
                    (0..n).map(|i| kind(window.is_some() && i >= first)).collect()
                }
                ModelType::Gemma3Text => {
                    // `kwargs.get("sliding_window_pattern", 6)`: a private
                    // `_sliding_window_pattern` is not read
                    let k = key("sliding_window_pattern");
                    let p = m.value(count(raw.sliding_window_pattern), 6, None, &k)?;
                    if p == 0 {
                        return Err(format!("key `{k}` must be at least 1, got 0"));
                    }
                    (0..n).map(|i| kind(!(i + 1).is_multiple_of(p))).collect()
                }
                // Gemma 2, gpt-oss: `sliding_attention if (i + 1) % 2 else full_attention`
                _ => (0..n).map(|i| kind(i % 2 == 0)).collect(),
            }
        }
    };
    if window.is_none()
        && let Some(i) = kinds.iter().position(|k| *k == LayerKind::Sliding)
    {
        let why = if m == ModelType::Qwen3 {
            " (Qwen3 reads it only with use_sliding_window = true)"
        } else {
            ""
        };
        return Err(format!(
            "layer {i} is a sliding_attention layer but `{}` is null{why}: transformers \
             fails to build its mask",
            key("sliding_window")
        ));
    }
    Ok(kinds)
}

/// The keys of config.json that some model after Llama reads for its attention; serde
/// ignores all others. Each is `None` when absent and `Some(None)` when `null` (see
/// [`nullable`]): the classes tell the two apart.
#[derive(Deserialize)]
pub(super) struct RawModel {
    #[serde(default, deserialize_with = "nullable")]
    sliding_window: Option<Option<Count>>,
    #[serde(default, deserialize_with = "nullable")]
    use_sliding_window: Option<Option<Flag>>,
    #[serde(default, deserialize_with = "nullable")]
    max_window_layers: Option<Option<Count>>,
    #[serde(default, deserialize_with = "nullable")]
    num_hidden_layers: Option<Option<Count>>,
    #[serde(default, deserialize_with = "nullable")]
    layer_types: Option<Option<Vec<Text>>>,
    #[serde(default, deserialize_with = "nullable")]
    sliding_window_pattern: Option<Option<Count>>,
    #[serde(default, deserialize_with = "nullable")]
    attn_logit_softcapping: Option<Option<Number>>,
    #[serde(default, deserialize_with = "nullable")]
    query_pre_attn_scalar: Option<Option<Count>>,
    #[serde(default, deserialize_with = "nullable")]
    rms_norm_eps: Option<Option<Number>>,
    #[serde(default, deserialize_with = "nullable")]
    use_bidirectional_attention: Option<Option<Flag>>,
    // DeepSeek's multi-head latent attention (`MlaFields`)
    #[serde(default, deserialize_with = "nullable")]
    q_lora_rank: Option<Option<Count>>,
    #[serde(default, deserialize_with = "nullable")]
    kv_lora_rank: Option<Option<Count>>,
    #[serde(default, deserialize_with = "nullable")]
    qk_nope_head_dim: Option<Option<Count>>,
    #[serde(default, deserialize_with = "nullable")]
    qk_rope_head_dim: Option<Option<Count>>,
    #[serde(default, deserialize_with = "nullable")]
    v_head_dim: Option<Option<Count>>,
    #[serde(default, deserialize_with = "nullable")]
    rope_interleave: Option<Option<Flag>>,
}
