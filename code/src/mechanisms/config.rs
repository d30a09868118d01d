//! Attention shapes of real models, validated.

use crate::mechanisms::rope::Llama3Scaling;
use crate::support::error::{AttnError, Result, divisible, nonzero};

// ANCHOR: attention_config
/// The shape of one attention layer.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AttentionConfig {
    /// Embedding width: input and output of the layer (`hidden_size` in Hugging Face configs).
    pub d_model: usize,
    /// Query heads (`num_attention_heads`).
    pub n_heads: usize,
    /// Key/value heads (`num_key_value_heads`); `n_heads` must be a multiple.
    pub n_kv_heads: usize,
    /// Width of each head; `n_heads · head_dim` is the width of the queries.
    pub head_dim: usize,
    /// Longest sequence the model handles (`max_position_embeddings`); sizes the RoPE tables and cache.
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

    // ANCHOR: config_validate
    /// Checks that the sizes fit together: no zero sizes, `n_heads · head_dim == d_model`,
    /// `n_kv_heads` divides `n_heads`, `head_dim` even (RoPE rotates pairs), a sane RoPE base and scaling.
    pub fn validate(&self) -> Result<()> {
        nonzero("d_model", self.d_model)?;
        nonzero("n_heads", self.n_heads)?;
        nonzero("n_kv_heads", self.n_kv_heads)?;
        nonzero("head_dim", self.head_dim)?;
        nonzero("context_length", self.context_length)?;
        divisible("d_model", self.d_model, "n_heads", self.n_heads)?;
        if self.n_heads * self.head_dim != self.d_model {
            return Err(AttnError::Config(format!(
                "n_heads * head_dim = {} * {} = {} must equal d_model = {}",
                self.n_heads,
                self.head_dim,
                self.n_heads * self.head_dim,
                self.d_model
            )));
        }
        divisible("n_heads", self.n_heads, "n_kv_heads", self.n_kv_heads)?;
        if !self.head_dim.is_multiple_of(2) {
            return Err(AttnError::OddHeadDim { head_dim: self.head_dim });
        }
        if !(self.rope_theta.is_finite() && self.rope_theta > 1.0) {
            return Err(AttnError::Config(format!(
                "rope_theta must be a finite number > 1, got {}",
                self.rope_theta
            )));
        }
        if let Some(s) = &self.rope_scaling {
            s.validate()?;
        }
        Ok(())
    }
    // ANCHOR_END: config_validate

    /// Query heads per key/value head.
    pub fn group_size(&self) -> usize {
        self.n_heads / self.n_kv_heads
    }
}

/// A named model shape: an [`AttentionConfig`] and, where the model has one, its number of layers.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Preset {
    /// Human-readable name, e.g. "Llama 3 8B".
    pub name: &'static str,
    /// The attention shape.
    pub config: AttentionConfig,
    /// Transformer blocks in the model; `None` for [`Preset::SMALL`], which is one layer's shape only.
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
    /// A small model of Llama 3's shape: d_model 768, 12 heads, 4 KV heads, head_dim 64, context
    /// 1024, RoPE base 500 000 (the default of the Go project this book started from).
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
    pub const LLAMA_3_8B: Self =
        Self { name: "Llama 3 8B", config: llama(4096, 32, 128, 8192, None), n_layers: Some(32) };
    /// Llama 3.1 8B: as Llama 3 8B with 131 072 positions and RoPE scaling factor 8.
    pub const LLAMA_3_1_8B: Self = Self {
        name: "Llama 3.1 8B",
        config: llama(4096, 32, 128, 131_072, Some(Llama3Scaling::LLAMA_3_1)),
        n_layers: Some(32),
    };
    /// Llama 3.2 1B: 32 heads of 64, 8 KV heads, 131 072 positions, RoPE scaling factor 32, 16 layers.
    pub const LLAMA_3_2_1B: Self = Self {
        name: "Llama 3.2 1B",
        config: llama(2048, 32, 64, 131_072, Some(Llama3Scaling::LLAMA_3_2)),
        n_layers: Some(16),
    };
    /// Llama 3.2 3B: 24 heads of 128, 8 KV heads, 131 072 positions, RoPE scaling factor 32, 28 layers.
    pub const LLAMA_3_2_3B: Self = Self {
        name: "Llama 3.2 3B",
        config: llama(3072, 24, 128, 131_072, Some(Llama3Scaling::LLAMA_3_2)),
        n_layers: Some(28),
    };

    /// Every preset, smallest first.
    pub const ALL: [Self; 5] =
        [Self::SMALL, Self::LLAMA_3_2_1B, Self::LLAMA_3_2_3B, Self::LLAMA_3_8B, Self::LLAMA_3_1_8B];
}
