//! Exercise 9.2: the KV cache of Gemma 3 27B at 128k tokens, with five of every six
//! layers sliding over 1024 tokens, against all 62 layers global.
extern crate attention;
// ANCHOR: example
use attention::{DType, kv_cache_bytes};

fn main() {
    let shape = gemma3_27b(); // 16 KV heads of 128 (its published config)
    let (n_layers, context, window) = (62, 131_072, 1024);
    // layer i is global iff (i + 1) % 6 == 0, the others slide over the window
    let global = (0..n_layers).filter(|i| (i + 1) % 6 == 0).count();
    let local = n_layers - global;
    let gib = |b: u128| b as f64 / (1u128 << 30) as f64;
    let all_global = kv_cache_bytes(&shape, n_layers, 1, context, DType::BF16);
    // a sliding layer's cache holds the window: the W − 1 rows before a token, and it
    let mixed = kv_cache_bytes(&shape, global, 1, context, DType::BF16)
        + kv_cache_bytes(&shape, local, 1, window, DType::BF16);
    let saved = 100.0 * (1.0 - mixed as f64 / all_global as f64);
    println!("layers: {global} global, {local} sliding over {window} tokens");
    println!("KV cache at {context} tokens, bf16, one sequence:");
    println!("  all 62 layers global:  {:6.2} GiB", gib(all_global));
    println!("  Gemma 3's pattern:     {:6.2} GiB", gib(mixed));
    println!("  saved:                 {saved:6.1} %");
    assert!(mixed * 5 < all_global);
}
// ANCHOR_END: example

/// Gemma 3 27B's attention shape: 5376 wide, 32 query heads and 16 KV heads of 128,
/// 131 072 positions.
fn gemma3_27b() -> attention::AttentionConfig {
    attention::AttentionConfig {
        d_model: 5376,
        n_heads: 32,
        n_kv_heads: 16,
        head_dim: 128,
        context_length: 131_072,
        rope_theta: 1_000_000.0,
        rope_scaling: None,
    }
}
