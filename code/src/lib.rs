//! # attention: Llama-3 style self-attention from scratch, on nalgebra
//!
//! The companion crate of the book *Attention from Scratch, in Rust*. Every mechanism the
//! book teaches is here, small enough to read, and checked against PyTorch's numbers:
//!
//! | step | items |
//! |---|---|
//! | first dot products | [`simplified_self_attention`], [`softmax_rows`] |
//! | trainable Q/K/V, causal masking | [`SelfAttention`], [`causal_mask`], [`scaled_dot_product_attention`] |
//! | multi-head attention | [`MultiHeadAttention`], [`MultiHeadAttentionWrapper`], [`QkvoWeights`] |
//! | grouped-query attention | [`HeadLayout`], [`grouped_attention`], [`GroupedQueryAttention`] |
//! | rotary position embeddings | [`Rope`], [`Llama3Scaling`] |
//! | KV cache | [`LayerKvCache`], [`GroupedQueryAttention::forward`] with a cache, [`GroupedQueryAttention::new_cache`] |
//! | Llama 3 in practice | [`HfLlamaConfig`], [`RopeLayout`], [`permute_meta_to_hf`], [`GroupedQueryAttention::forward_prefill_decode`], the `llama-attn` binary |
//! | shapes and memory | [`AttentionConfig`], [`Preset`], [`kv_cache_bytes`], [`gqa_kv_saving`] |
//! | attention after Llama 3 | [`ScoreOptions`] (sliding window, soft-cap, sinks), [`QkNorm`], [`LayerKvCache::with_window`] |
//! | serving many sequences | [`QuantizedKvCache`] ([`KvFormat`]: int8, int4, fp8), [`PagedKvCache`], [`PaddedBatch`], [`PackedBatch`], [`RaggedKvCache`] |
//! | across cores and devices | [`PartialAttention`], [`SplitKDecode`], [`SplitKDecodeAttention`], [`TensorParallel`], [`RingAttention`] (devices simulated by threads) |
//! | fast attention | [`FlashAttention`], [`DecodeAttention`] (one [`FastKernel`] shell), [`fast::online_softmax`], [`fast::fast_exp`] |
//!
//! ## Shapes and layout
//! A sequence is a `DMatrix<f32>` of shape `(seq, d)`: one **row** per token. A batch
//! `(batch, seq, d)` is a [`Batch`]. Multi-head tensors keep the heads side by side in
//! the columns: `(seq, n_heads · head_dim)`, head `h` owning columns `h·head_dim ..
//! (h+1)·head_dim`; nalgebra is column-major, so such a block of columns is contiguous
//! and viewing one head copies nothing. Weights follow PyTorch's `nn.Linear` layout
//! `(out_features, in_features)`.
//!
//! ## One layer, one forward
//! [`GroupedQueryAttention::forward`]`(x, start_pos, cache)` is the production path:
//! `start_pos` is the absolute position of the first token (what RoPE rotates by), the
//! optional cache holds the keys and values of earlier tokens, and the layer picks the
//! kernel ([`KernelChoice`]). The chapters' step-by-step functions
//! ([`scaled_dot_product_attention`], [`grouped_attention`], ...) stay available to read
//! and to compare with.
//!
//! ## Errors
//! Functions that can receive a bad shape, config, position or file return [`Result`]
//! with an [`AttnError`] that names the offending values.
//!
//! ```
//! use attention::{AttentionConfig, AttnError};
//! let err = AttentionConfig::new(768, 10, 2, 1024, 500_000.0).unwrap_err();
//! assert!(matches!(err, AttnError::NotDivisible { .. }));
//! assert_eq!(err.to_string(), "invalid config: d_model = 768 is not divisible by n_heads = 10");
//! ```

#![warn(missing_docs)]

pub mod fast;
pub mod hf;
pub mod mechanisms;
pub mod parallel;
pub mod serving;
pub mod support;
pub mod variants;

pub use fast::decode::DecodeAttention;
pub use fast::flash::{CausalSkip, FlashAttention};
pub use fast::{AttentionInputs, FastKernel};
pub use hf::meta_layout::{permute_hf_to_meta, permute_meta_to_hf};
pub use hf::{HfLlamaConfig, open_layer_tensors};
pub use hf::{LayerKind, ModelFields, ModelType};
pub use mechanisms::config::{AttentionConfig, Preset};
pub use mechanisms::gqa::{GroupedQueryAttention, KernelChoice};
pub use mechanisms::kv_cache::LayerKvCache;
pub use mechanisms::linear::Linear;
pub use mechanisms::mask::{apply_causal_mask, causal_mask};
pub use mechanisms::memory::{
    DType, gqa_kv_saving, kv_cache_bytes, kv_cache_bytes_per_layer,
};
pub use mechanisms::mha::{MultiHeadAttention, MultiHeadAttentionWrapper, QkvoWeights};
pub use mechanisms::rope::{
    LinearScaling, Llama3Scaling, Rope, RopeLayout, RopeScaling, YarnScaling,
    rope_inv_freq, yarn_get_mscale,
};
pub use mechanisms::sdpa::{
    HeadLayout, HeadOutput, Mask, attention_weights, grouped_attention,
    scaled_dot_product_attention,
};
pub use mechanisms::self_attention::{
    Attention, SelfAttention, SimplifiedSelfAttention, simplified_self_attention,
};
pub use mechanisms::softmax::{softmax_rows, softmax_rows_in_place};
pub use parallel::partial::PartialAttention;
pub use parallel::ring::RingAttention;
pub use parallel::split_k::{SplitKDecode, SplitKDecodeAttention};
pub use parallel::tensor::TensorParallel;
pub use serving::paged::{DEFAULT_BLOCK_SIZE, PagedKvCache, PoolUsage, SeqId, Workload};
pub use serving::quant::{KvFormat, QuantizedKvCache};
pub use serving::ragged::{
    PackedBatch, PaddedBatch, PaddingSide, RaggedKvCache, apply_rope_at,
    masked_grouped_attention, padding_causal_mask,
};
pub use support::batch::{Batch, matrix_from_row_major, matrix_to_row_major};
pub use support::compare::{
    Mismatch, Tolerance, assert_batch_close, assert_matrix_close, compare, max_abs_diff,
};
pub use support::error::{AttnError, Dims, Result};
pub use support::fixtures::{FIXTURE_DIR, Fixture, HfFixture};
pub use support::init::splitmix_matrix;
pub use support::io::{Tensor, TensorFile, save_tensors};
pub use support::show;
pub use variants::{
    LatentCache, MlaPath, MlaQuery, MlaShape, MlaWeights, MultiHeadLatentAttention,
    QkNorm, RmsNormStyle, ScoreOptions, attention_weights_with, grouped_attention_with,
};

/// The README's code, compiled and run as a doctest so the front page cannot drift from
/// the crate.
#[doc = include_str!("../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
