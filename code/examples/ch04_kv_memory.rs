//! Chapter 4: the KV cache's size for the starting project's default and the Llama 3
//! models, and what GQA saves over multi-head attention; computed by the crate.
extern crate attention;
// ANCHOR: example
use attention::{
    AttentionConfig, DType, Preset, gqa_kv_saving, kv_cache_bytes,
    kv_cache_bytes_per_layer,
};

/// Bytes in MiB or GiB, one decimal.
fn human(bytes: u128) -> String {
    let mib = bytes as f64 / (1024.0 * 1024.0);
    if mib < 1024.0 {
        format!("{mib:.1} MiB")
    } else {
        format!("{:.1} GiB", mib / 1024.0)
    }
}

fn main() {
    println!(
        "batch 1, full context; one layer in f32, the whole model in bf16 (as \
            checkpoints store it)"
    );
    println!(
        "{:<24} {:>5} {:>3} {:>7} {:>6} {:>10} {:>10} {:>10}",
        "model",
        "heads",
        "kv",
        "context",
        "saving",
        "layer f32",
        "model bf16",
        "MHA bf16"
    );
    for preset in Preset::ALL {
        let cfg = preset.config;
        // the same query heads with one KV head each: what caching the expanded K/V would
        // cost
        let mha = AttentionConfig { n_kv_heads: cfg.n_heads, ..cfg };
        let ctx = cfg.context_length;
        let layer = kv_cache_bytes_per_layer(&cfg, 1, ctx, DType::F32);
        let (model, model_mha) = match preset.n_layers {
            Some(n) => (
                human(kv_cache_bytes(&cfg, n, 1, ctx, DType::BF16)),
                human(kv_cache_bytes(&mha, n, 1, ctx, DType::BF16)),
            ),
            None => ("-".to_string(), "-".to_string()), // layer count not stated
        };
        let saving = format!("{:.0} %", 100.0 * gqa_kv_saving(&cfg));
        println!(
            "{:<24} {:>5} {:>3} {:>7} {:>6} {:>10} {:>10} {:>10}",
            preset.name,
            cfg.n_heads,
            cfg.n_kv_heads,
            ctx,
            saving,
            human(layer),
            model,
            model_mha
        );
    }

    let seed = Preset::SMALL.config;
    let seed_mha = AttentionConfig { n_kv_heads: seed.n_heads, ..seed };
    println!(
        "small model, one layer in f32: GQA {}, MHA {}",
        human(kv_cache_bytes_per_layer(&seed, 1, 1024, DType::F32)),
        human(kv_cache_bytes_per_layer(&seed_mha, 1, 1024, DType::F32))
    );

    // the key numbers, checked
    // 6 MiB
    assert_eq!(kv_cache_bytes_per_layer(&seed_mha, 1, 1024, DType::F32), 6 * 1024 * 1024);
    // 2 MiB
    assert_eq!(kv_cache_bytes_per_layer(&seed, 1, 1024, DType::F32), 2 * 1024 * 1024);
    assert!((gqa_kv_saving(&seed) - 2.0 / 3.0).abs() < 1e-12); // 12 heads share 4: 67 %
    let l8 = Preset::LLAMA_3_8B.config;
    assert!((gqa_kv_saving(&l8) - 0.75).abs() < 1e-12); // 32 heads share 8: 75 %
    assert_eq!(kv_cache_bytes(&l8, 32, 1, 8192, DType::BF16), 1 << 30); // 1 GiB
    let l31 = Preset::LLAMA_3_1_8B.config;
    assert_eq!(kv_cache_bytes(&l31, 32, 1, 131_072, DType::BF16), 16 << 30); // 16 GiB
    let l31_mha = AttentionConfig { n_kv_heads: 32, ..l31 };
    assert_eq!(kv_cache_bytes(&l31_mha, 32, 1, 131_072, DType::BF16), 64 << 30); // 64 GiB
}
// ANCHOR_END: example
