//! Chapters 1 to 6: the attention mechanisms, step by step, each small enough to read.
//!
//! | chapter | files |
//! |---|---|
//! | 1 attention intuition | [`softmax`], [`self_attention`] (`simplified_self_attention`, `SelfAttention`) |
//! | 2 causal masking | [`mask`], [`sdpa`] (`scaled_dot_product_attention`) |
//! | 3 multi-head attention | [`mha`], [`linear`] |
//! | 4 grouped-query attention | [`sdpa`] (`HeadLayout`, `grouped_attention`), [`gqa`], [`config`], [`memory`] |
//! | 5 RoPE | [`rope`] |
//! | 6 KV cache | [`kv_cache`], [`gqa`] (`forward` with a cache) |

pub mod config;
pub mod gqa;
pub mod kv_cache;
pub mod linear;
pub mod mask;
pub mod memory;
pub mod mha;
pub mod rope;
pub mod sdpa;
pub mod self_attention;
pub mod softmax;
