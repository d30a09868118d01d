//! Attention shapes of real models, validated.

use crate::mechanisms::rope::Llama3Scaling;
use crate::support::error::{AttnError, Result, divisible, nonzero};

// ANCHOR: attention_config
/// The shape of one attention layer.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AttentionConfig {
    /// Embedding width: input and output of the layer (`hidden_size` in Hugging Face
    /// configs).
    pub d_model: usize,
    /// Query heads (`num_attention_heads`).
    pub n_heads: usize,
    /// Key/value heads (`num_key_value_heads`); `n_heads` must be a multiple.
    pub n_kv_heads: usize,
    /// Width of each head; `n_heads · head_dim` is the width of the queries.
    pub head_dim: usize,
    /// Longest sequence the model handles (`max_position_embeddings`); sizes the RoPE
    /// tables and cache.
    pub context_length: usize,
    /// RoPE frequency base (`rope_theta`).
    pub rope_theta: f32,
    /// Llama 3.1/3.2 RoPE frequency scaling, if any.
    pub rope_scaling: Option<Llama3Scaling>,
}
// ANCHOR_END: attention_config

impl AttentionConfig {
    /// A config with `head_dim = d_model / n_heads`, no RoPE scaling, validated.
    pub fn new(
        d_model: usize,
        n_heads: usize,
        n_kv_heads: usize,
        context_length: usize,
        rope_theta: f32,
    ) -> Result<Self> {
        nonzero("d_model", d_model)?;
        divisible("d_model", d_model, "n_heads", n_heads)?;
        let cfg = Self {
            d_model,
            n_heads,
            n_kv_heads,
            head_dim: d_model / n_heads,
            context_length,
            rope_theta,
            rope_scaling: None,
        };
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks that the sizes fit together: no zero sizes, `n_heads · head_dim ==
    /// d_model`, `n_kv_heads` divides `n_heads`, `head_dim` even (RoPE rotates pairs), a
    /// sane RoPE base and scaling.
    pub fn validate(&self) -> Result<()> {
        let q_width = self.check_shape(&FieldNames::CRATE)?;
        // this crate's layers are square: the heads' outputs, side by side, are d_model
        // wide again
        if q_width != self.d_model {
            return Err(AttnError::Config(format!(
                "n_heads * head_dim = {} * {} = {q_width} must equal d_model = {}",
                self.n_heads, self.head_dim, self.d_model
            )));
        }
        Ok(())
    }

    // ANCHOR: config_validate
    /// The checks every attention shape needs, whatever its fields are called (`names`):
    /// this crate's [`AttentionConfig::validate`] and the Hugging Face config of
    /// chapter 7 both run them, so a rule is written once. Returns the
    /// width of the queries, `n_heads · head_dim`, which need not equal `d_model` here
    /// (Hugging Face allows an explicit `head_dim`).
    pub(crate) fn check_shape(&self, names: &FieldNames) -> Result<usize> {
        nonzero(names.d_model, self.d_model)?;
        nonzero(names.n_heads, self.n_heads)?;
        nonzero(names.n_kv_heads, self.n_kv_heads)?;
        nonzero(names.head_dim, self.head_dim)?;
        nonzero(names.context_length, self.context_length)?;
        divisible(names.d_model, self.d_model, names.n_heads, self.n_heads)?;
        divisible(names.n_heads, self.n_heads, names.n_kv_heads, self.n_kv_heads)?;
        let q_width = self.checked_q_width(names)?; // sizes near usize::MAX
        if !self.head_dim.is_multiple_of(2) {
            return Err(AttnError::OddHeadDim { head_dim: self.head_dim });
        }
        if !(self.rope_theta.is_finite() && self.rope_theta > 1.0) {
            let theta = self.rope_theta;
            let msg = format!("rope_theta must be a finite number > 1, got {theta}");
            return Err(AttnError::Config(msg));
        }
        if let Some(s) = &self.rope_scaling {
            s.check(names.rope_scaling)?;
        }
        Ok(q_width)
    }
    // ANCHOR_END: config_validate

    /// `n_heads · head_dim`, checked. A hostile `head_dim` (2⁶² with 4 heads) wraps the
    /// product to 0 in release builds and panics in debug: multiply checked, and check
    /// that q_proj's `n_heads · head_dim · d_model` elements can be counted at all.
    fn checked_q_width(&self, names: &FieldNames) -> Result<usize> {
        let q_width = self.n_heads.checked_mul(self.head_dim).ok_or_else(|| {
            AttnError::Config(format!(
                "{} * {} = {} * {} does not fit in usize",
                names.n_heads, names.head_dim, self.n_heads, self.head_dim
            ))
        })?;
        if q_width.checked_mul(self.d_model).is_none() {
            return Err(AttnError::Config(format!(
                "the query projection's {} * {} * {} = {} * {} * {} weights do not fit \
                    in usize",
                names.n_heads,
                names.head_dim,
                names.d_model,
                self.n_heads,
                self.head_dim,
                self.d_model
            )));
        }
        Ok(q_width)
    }

    /// Query heads per key/value head.
    pub fn group_size(&self) -> usize {
        self.n_heads / self.n_kv_heads
    }
}

/// What the fields of an attention shape are called in error messages: this crate's names
/// (`d_model`, `n_heads`, ...) or a Hugging Face config's (`hidden_size`,
/// `num_attention_heads`, ...).
#[derive(Clone, Copy, Debug)]
pub(crate) struct FieldNames {
    pub(crate) d_model: &'static str,
    pub(crate) n_heads: &'static str,
    pub(crate) n_kv_heads: &'static str,
    pub(crate) head_dim: &'static str,
    pub(crate) context_length: &'static str,
    /// The object holding the llama3 scaling (`rope_scaling`, or `rope_parameters` in
    /// transformers 5).
    pub(crate) rope_scaling: &'static str,
}

impl FieldNames {
    /// [`AttentionConfig`]'s own field names.
    pub(crate) const CRATE: Self = Self {
        d_model: "d_model",
        n_heads: "n_heads",
        n_kv_heads: "n_kv_heads",
        head_dim: "head_dim",
        context_length: "context_length",
        rope_scaling: "rope_scaling",
    };
    /// The keys of a Hugging Face Llama `config.json`.
    pub(crate) const HF: Self = Self {
        d_model: "hidden_size",
        n_heads: "num_attention_heads",
        n_kv_heads: "num_key_value_heads",
        head_dim: "head_dim",
        context_length: "max_position_embeddings",
        rope_scaling: "rope_scaling",
    };
}

/// A named model shape: an [`AttentionConfig`] and, where the model has one, its number
/// of layers.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Preset {
    /// Human-readable name, e.g. "Llama 3 8B".
    pub name: &'static str,
    /// The attention shape.
    pub config: AttentionConfig,
    /// Transformer blocks in the model; `None` for [`Preset::SMALL`], which is one
    /// layer's shape only.
    pub n_layers: Option<usize>,
}

const fn llama(
    d_model: usize,
    n_heads: usize,
    head_dim: usize,
    context_length: usize,
    scaling: Option<Llama3Scaling>,
) -> AttentionConfig {
    AttentionConfig {
        d_model,
        n_heads,
        n_kv_heads: 8,
        head_dim,
        context_length,
        rope_theta: 500_000.0,
        rope_scaling: scaling,
    }
}

impl Preset {
    /// A small model of Llama 3's shape: d_model 768, 12 heads, 4 KV heads, head_dim 64,
    /// context 1024, RoPE base 500 000 (the default of the Go project this book started
    /// from).
    pub const SMALL: Self = Self {
        name: "small (768 wide)",
        config: AttentionConfig {
            d_model: 768,
            n_heads: 12,
            n_kv_heads: 4,
            head_dim: 64,
            context_length: 1024,
            rope_theta: 500_000.0,
            rope_scaling: None,
        },
        n_layers: None,
    };
    /// Llama 3 8B: 32 heads of 128, 8 KV heads, 8192 positions, 32 layers.
    pub const LLAMA_3_8B: Self = Self {
        name: "Llama 3 8B",
        config: llama(4096, 32, 128, 8192, None),
        n_layers: Some(32),
    };
    /// Llama 3.1 8B: as Llama 3 8B with 131 072 positions and RoPE scaling factor 8.
    pub const LLAMA_3_1_8B: Self = Self {
        name: "Llama 3.1 8B",
        config: llama(4096, 32, 128, 131_072, Some(Llama3Scaling::LLAMA_3_1)),
        n_layers: Some(32),
    };
    /// Llama 3.2 1B: 32 heads of 64, 8 KV heads, 131 072 positions, RoPE scaling factor
    /// 32, 16 layers.
    pub const LLAMA_3_2_1B: Self = Self {
        name: "Llama 3.2 1B",
        config: llama(2048, 32, 64, 131_072, Some(Llama3Scaling::LLAMA_3_2)),
        n_layers: Some(16),
    };
    /// Llama 3.2 3B: 24 heads of 128, 8 KV heads, 131 072 positions, RoPE scaling factor
    /// 32, 28 layers.
    pub const LLAMA_3_2_3B: Self = Self {
        name: "Llama 3.2 3B",
        config: llama(3072, 24, 128, 131_072, Some(Llama3Scaling::LLAMA_3_2)),
        n_layers: Some(28),
    };

    /// Every preset, smallest first.
    pub const ALL: [Self; 5] = [
        Self::SMALL,
        Self::LLAMA_3_2_1B,
        Self::LLAMA_3_2_3B,
        Self::LLAMA_3_8B,
        Self::LLAMA_3_1_8B,
    ];
}
