//! Chapter 6: how big the KV cache of real models gets, in bf16, at their full context.
extern crate attention;
// ANCHOR: example
use attention::{DType, Preset, kv_cache_bytes, kv_cache_bytes_per_layer};

const MIB: u128 = 1 << 20;
const GIB: u128 = 1 << 30;

fn main() {
    println!("KV cache in bf16, batch 1, full context:");
    println!(
        "{:<14} {:>6} {:>8} {:>8} {:>9} {:>13} {:>10}",
        "model", "layers", "kv_heads", "head_dim", "context", "per token", "total"
    );
    for p in Preset::ALL {
        let c = p.config;
        let Some(n_layers) = p.n_layers else { continue }; // one layer's shape only
        let per_token = kv_cache_bytes(&c, n_layers, 1, 1, DType::BF16);
        let total = kv_cache_bytes(&c, n_layers, 1, c.context_length, DType::BF16);
        // keys and values (2) · layers · positions · KV heads · head_dim · 2 bytes
        assert_eq!(
            total,
            (2 * n_layers * c.context_length * c.n_kv_heads * c.head_dim * 2) as u128
        );
        assert_eq!(total, per_token * c.context_length as u128);
        println!(
            "{:<14} {n_layers:>6} {:>8} {:>8} {:>9} {:>9} KiB {:>6.1} GiB",
            p.name,
            c.n_kv_heads,
            c.head_dim,
            c.context_length,
            per_token / 1024,
            total as f64 / GIB as f64
        );
    }
    let llama3 = Preset::LLAMA_3_8B.config;
    assert_eq!(kv_cache_bytes(&llama3, 32, 1, 8192, DType::BF16), GIB);
    let llama31 = Preset::LLAMA_3_1_8B.config;
    assert_eq!(kv_cache_bytes(&llama31, 32, 1, 131_072, DType::BF16), 16 * GIB);

    // Without GQA (one KV head per query head), Llama 3 8B's cache would be n_heads /
    // n_kv_heads = 4x bigger.
    let mha = attention::AttentionConfig { n_kv_heads: llama3.n_heads, ..llama3 };
    let mha_bytes = kv_cache_bytes(&mha, 32, 1, 8192, DType::BF16);
    println!("Llama 3 8B with 32 KV heads instead of 8: {} GiB", mha_bytes / GIB);
    assert_eq!(mha_bytes, 4 * GIB);

    // The small model (one layer's shape, no layer count): one layer, f32, its 1024
    // positions.
    let seed = Preset::SMALL.config;
    let per_layer = kv_cache_bytes_per_layer(&seed, 1, seed.context_length, DType::F32);
    println!(
        "small model ({} KV heads of {}), one layer, f32, {} positions: {} MiB",
        seed.n_kv_heads,
        seed.head_dim,
        seed.context_length,
        per_layer / MIB
    );
    assert_eq!(per_layer, 2 * MIB);
}
// ANCHOR_END: example
