//! Hugging Face Llama checkpoints: `config.json` and one layer's attention weights.
//!
//! A Hugging Face Llama checkpoint is a folder with a `config.json` (the shapes) and one
//! or more `*.safetensors` files (the weights, usually bf16), the attention of layer `L`
//! stored as `model.layers.L.self_attn.{q,k,v,o}_proj.weight`. This module reads the
//! shapes into [`HfLlamaConfig`] and one layer into a
//! [`GroupedQueryAttention`](crate::GroupedQueryAttention), checking every shape against
//! the config, so that the layer's output can be compared with transformers'
//! `LlamaAttention`. The same loader reads the later models of chapters 9 to 11
//! (Mistral, Qwen3, Gemma 2 and 3, gpt-oss), whose extra keys [`variants`] reads, and
//! DeepSeek-V2's and V3's multi-head latent attention (chapter 12), loaded into a
//! [`MultiHeadLatentAttention`](crate::MultiHeadLatentAttention) by
//! [`HfLlamaConfig::load_mla`].
//!
//! Hugging Face stores q/k weights already permuted for the split-halves RoPE layout,
//! which is the one [`Rope::apply`](crate::Rope::apply) implements (see
//! [`crate::hf::meta_layout`] for Meta's interleaved layout).

pub mod checkpoint;
pub mod config;
pub mod meta_layout;
pub mod variants;

pub use checkpoint::{layer_index, open_layer_tensors};
pub use config::{
    DEFAULT_PREFIX, HfLlamaConfig, MAX_ROPE_TABLE_ENTRIES, SUPPORTED_MODEL_TYPES,
};
pub use variants::{LayerKind, MlaFields, ModelFields, ModelType};
