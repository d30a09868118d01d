//! Chapters 13 to 15: the cache for many users. A quantized KV cache (int8, int4 the KIVI
//! way, fp8 as Hugging Face's `Fp8QuantizedLayer`), a paged cache with prefix sharing,
//! and ragged batches (left padding, and the packed variable-length form).
pub mod decode_kernels; // chapters 13 and 14: decode kernels reading the caches in place
pub mod paged;
pub mod quant;
pub mod ragged;
