//! Memory arithmetic the book quotes: how big a KV cache is, and what GQA saves.

use crate::mechanisms::config::AttentionConfig;

/// Element types a cache can be stored in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DType {
    /// 4 bytes.
    F32,
    /// 2 bytes (IEEE half).
    F16,
    /// 2 bytes (bfloat16, how Llama checkpoints are stored).
    BF16,
}

impl DType {
    /// Bytes per element.
    pub const fn size_bytes(self) -> usize {
        match self {
            DType::F32 => 4,
            DType::F16 | DType::BF16 => 2,
        }
    }
}

// ANCHOR: kv_cache_bytes
/// Bytes one layer's KV cache needs: keys **and** values (the 2), for every sequence of
/// the batch, every position of the context, every KV head and every dimension of a head.
///
/// `2 · batch · context · n_kv_heads · head_dim · bytes`. The query heads do not appear:
/// with GQA only the `n_kv_heads` shared heads are cached. Computed in `u128`,
/// saturating: no sizes, however large, wrap around to a small number.
pub fn kv_cache_bytes_per_layer(
    cfg: &AttentionConfig,
    batch: usize,
    context: usize,
    dtype: DType,
) -> u128 {
    [batch, context, cfg.n_kv_heads, cfg.head_dim, dtype.size_bytes()]
        .iter()
        .fold(2u128, |acc, &n| acc.saturating_mul(n as u128))
}
// ANCHOR_END: kv_cache_bytes

/// Bytes the whole model's KV cache needs: [`kv_cache_bytes_per_layer`] times `n_layers`.
pub fn kv_cache_bytes(
    cfg: &AttentionConfig,
    n_layers: usize,
    batch: usize,
    context: usize,
    dtype: DType,
) -> u128 {
    (n_layers as u128)
        .saturating_mul(kv_cache_bytes_per_layer(cfg, batch, context, dtype))
}

// ANCHOR: gqa_saving
/// The fraction of KV-cache memory GQA saves over multi-head attention with the same
/// query heads: `1 − n_kv_heads / n_heads` (0.667 for 12 query heads sharing 4 KV heads).
pub fn gqa_kv_saving(cfg: &AttentionConfig) -> f64 {
    1.0 - cfg.n_kv_heads as f64 / cfg.n_heads as f64
}
// ANCHOR_END: gqa_saving
