//! Chapter 16: attention across devices, simulated with threads and channels. The same
//! online-softmax merge as chapter 8's kernels, applied to partial results computed in
//! different places: split-K decode, tensor parallelism over heads, ring attention.
//!
//! Nothing here runs on a GPU or times anything: "devices" are threads of this process
//! and "links" are `std::sync::mpsc` channels, which keep the pattern and the volume of
//! the communication (counted in bytes by the code) but none of its cost.
//!
//! - [`partial`]: partial attention states `(m, ℓ, o)` and [`partial::merge`];
//! - [`split_k`]: split-K decode (Flash-Decoding), the keys split across threads;
//! - [`comm`]: simulated devices in a ring, and the ring all-reduce;
//! - [`tensor`]: tensor parallelism over heads, one all-reduce per layer;
//! - [`ring`]: sequence parallelism as ring attention.

pub mod comm;
pub mod partial;
pub mod ring;
pub mod split_k;
pub mod tensor;

use crate::mechanisms::config::{AttentionConfig, Preset};

/// Llama 3 70B as published (`config.json` of `meta-llama/Meta-Llama-3-70B`: hidden size
/// 8192, 64 attention heads, 8 key/value heads, 80 layers, 8192 positions, RoPE base 500
/// 000): head_dim 128. Only this chapter's tables use it.
pub const LLAMA_3_70B: Preset = Preset {
    name: "Llama 3 70B",
    config: AttentionConfig {
        d_model: 8192,
        n_heads: 64,
        n_kv_heads: 8,
        head_dim: 128,
        context_length: 8192,
        rope_theta: 500_000.0,
        rope_scaling: None,
    },
    n_layers: Some(80),
};
