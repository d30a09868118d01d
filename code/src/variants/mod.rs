//! Chapters 9 to 12: attention after Llama 3. Each model family changes one named thing
//! between the projections and the softmax, and each change is one field of
//! [`GroupedQueryAttention`](crate::GroupedQueryAttention) and one place in this module:
//!
//! | mechanism | models | item |
//! |---|---|---|
//! | sliding window, StreamingLLM sink tokens | Mistral, Gemma 2/3, gpt-oss, Qwen3 | [`ScoreOptions::window`], [`ScoreOptions::sink_tokens`], [`LayerKvCache::with_window`](crate::LayerKvCache::with_window) |
//! | logit soft-capping, another softmax scale | Gemma 2 | [`ScoreOptions::softcap`], [`ScoreOptions::scale`] |
//! | learned sinks | gpt-oss | [`ScoreOptions::sinks`] |
//! | QK-norm | Qwen3, Gemma 3 | [`QkNorm`] |
//! | multi-head latent attention | DeepSeek-V2, V3 | [`MultiHeadLatentAttention`], [`LatentCache`] |

pub mod mla;
pub mod qk_norm;
pub mod scores;

pub use mla::{
    LatentCache, MLA_NORM_EPS, MlaPath, MlaQuery, MlaShape, MlaWeights,
    MultiHeadLatentAttention,
};
pub use qk_norm::{QkNorm, RmsNormStyle, rms_norm_rows};
pub use scores::{ScoreOptions, attention_weights_with, grouped_attention_with};
