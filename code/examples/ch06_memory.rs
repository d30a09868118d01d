//! Chapter 6: how big the KV cache of real models gets, in bf16, at their full context.
extern crate attention;
// ANCHOR: example
use attention::{DType, Preset, kv_cache_bytes, kv_cache_bytes_per_layer};

fn main() {
    println!("KV cache in bf16, batch 1, full context:");
    print_header();
    for p in Preset::ALL {
        let Some(n_layers) = p.n_layers else { continue }; // SMALL: one layer's shape
        let c = p.config;
        // keys and values (2) · layers · positions · KV heads · head_dim · 2 bytes
        let per_token = kv_cache_bytes(&c, n_layers, 1, 1, DType::BF16);
        let total = kv_cache_bytes(&c, n_layers, 1, c.context_length, DType::BF16);
        print_row(&p, n_layers, per_token, total);
    }
    // Without GQA (one KV head per query head), Llama 3 8B's cache would be 4x bigger.
    let llama3 = Preset::LLAMA_3_8B.config;
    let mha = attention::AttentionConfig { n_kv_heads: llama3.n_heads, ..llama3 };
    let mha_bytes = kv_cache_bytes(&mha, 32, 1, 8192, DType::BF16);
    println!("Llama 3 8B with 32 KV heads instead of 8: {} GiB", mha_bytes / (1 << 30));
    let s = Preset::SMALL.config; // one layer's shape only: its cache per layer, in f32
    let per_layer = kv_cache_bytes_per_layer(&s, 1, s.context_length, DType::F32);
    let (kv, d, ctx) = (s.n_kv_heads, s.head_dim, s.context_length);
    print!("small model ({kv} KV heads of {d}), one layer, f32, ");
    println!("{ctx} positions: {} MiB", per_layer / (1 << 20));
    check_sizes(mha_bytes, per_layer);
}
// ANCHOR_END: example

const MIB: u128 = 1 << 20;
const GIB: u128 = 1 << 30;

/// The table's column titles.
fn print_header() {
    println!(
        "{:<14} {:>6} {:>8} {:>8} {:>9} {:>13} {:>10}",
        "model", "layers", "kv_heads", "head_dim", "context", "per token", "total"
    );
}

/// One model's row of the table: its shape, then the cache per token and in total.
fn print_row(p: &Preset, n_layers: usize, per_token: u128, total: u128) {
    let c = p.config;
    println!(
        "{:<14} {:>6} {:>8} {:>8} {:>9} {:>9} KiB {:>6.1} GiB",
        p.name,
        n_layers,
        c.n_kv_heads,
        c.head_dim,
        c.context_length,
        per_token / 1024,
        total as f64 / GIB as f64
    );
}

/// Every model's cache is the formula by hand, and per token times its positions; the
/// numbers the chapter quotes are exact.
fn check_sizes(mha_bytes: u128, small_per_layer: u128) {
    for p in Preset::ALL {
        let (c, Some(n_layers)) = (p.config, p.n_layers) else { continue };
        let per_token = kv_cache_bytes(&c, n_layers, 1, 1, DType::BF16);
        let total = kv_cache_bytes(&c, n_layers, 1, c.context_length, DType::BF16);
        // keys and values (2) · layers · positions · KV heads · head_dim · 2 bytes
        assert_eq!(
            total,
            (2 * n_layers * c.context_length * c.n_kv_heads * c.head_dim * 2) as u128
        );
        assert_eq!(total, per_token * c.context_length as u128);
    }
    let llama3 = Preset::LLAMA_3_8B.config;
    assert_eq!(kv_cache_bytes(&llama3, 32, 1, 8192, DType::BF16), GIB);
    let llama31 = Preset::LLAMA_3_1_8B.config;
    assert_eq!(kv_cache_bytes(&llama31, 32, 1, 131_072, DType::BF16), 16 * GIB);
    assert_eq!(mha_bytes, 4 * GIB);
    assert_eq!(small_per_layer, 2 * MIB);
}
