//! Chapter 4: the KV cache's size for the starting project's default and the Llama 3
//! models, and what GQA saves over multi-head attention; computed by the crate.
extern crate attention;
// ANCHOR: example
use attention::DType::{BF16, F32};
use attention::kv_cache_bytes_per_layer;
use attention::{AttentionConfig, Preset, gqa_kv_saving, kv_cache_bytes};

fn main() {
    print_header(); // batch 1, full context; one layer in f32, the whole model in bf16
    for preset in Preset::ALL {
        let (cfg, ctx) = (preset.config, preset.config.context_length);
        // the same query heads, one KV head each: what caching expanded K/V would cost
        let mha = AttentionConfig { n_kv_heads: cfg.n_heads, ..cfg };
        let layer = kv_cache_bytes_per_layer(&cfg, 1, ctx, F32); // a batch of 1
        // n_layers · one layer, in bf16 as checkpoints store it (None: no layer count)
        let model = |cfg| preset.n_layers.map(|n| kv_cache_bytes(cfg, n, 1, ctx, BF16));
        print_row(&preset, gqa_kv_saving(&cfg), layer, model(&cfg), model(&mha));
    }

    let small = Preset::SMALL.config;
    let small_mha = AttentionConfig { n_kv_heads: small.n_heads, ..small };
    let one_layer = |cfg| kv_cache_bytes_per_layer(cfg, 1, 1024, F32);
    let (gqa, mha) = (one_layer(&small), one_layer(&small_mha));
    println!("small model, one layer in f32: GQA {}, MHA {}", human(gqa), human(mha));
    check_key_numbers(gqa, mha);
}
// ANCHOR_END: example

/// Bytes in MiB or GiB, one decimal.
fn human(bytes: u128) -> String {
    let mib = bytes as f64 / (1024.0 * 1024.0);
    if mib < 1024.0 {
        format!("{mib:.1} MiB")
    } else {
        format!("{:.1} GiB", mib / 1024.0)
    }
}

/// The table's title and column headings.
fn print_header() {
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
}

/// One row of the table: the model's shape, the saving, and the three cache sizes ("-"
/// where the model's layer count is not stated).
fn print_row(
    preset: &Preset,
    saving: f64,
    layer: u128,
    model: Option<u128>,
    mha: Option<u128>,
) {
    let cfg = preset.config;
    let or_dash = |b: Option<u128>| b.map_or_else(|| "-".to_string(), human);
    println!(
        "{:<24} {:>5} {:>3} {:>7} {:>6} {:>10} {:>10} {:>10}",
        preset.name,
        cfg.n_heads,
        cfg.n_kv_heads,
        cfg.context_length,
        format!("{:.0} %", 100.0 * saving),
        human(layer),
        or_dash(model),
        or_dash(mha)
    );
}

/// The numbers the chapter quotes, checked: the small model's one layer at 1024 tokens in
/// f32 (`gqa`, `mha`), the savings, and Llama 3's whole-model caches in bf16.
fn check_key_numbers(gqa: u128, mha: u128) {
    let seed = Preset::SMALL.config;
    assert_eq!(mha, 6 * 1024 * 1024); // 6 MiB
    assert_eq!(gqa, 2 * 1024 * 1024); // 2 MiB
    assert!((gqa_kv_saving(&seed) - 2.0 / 3.0).abs() < 1e-12); // 12 heads share 4: 67 %
    let l8 = Preset::LLAMA_3_8B.config;
    assert!((gqa_kv_saving(&l8) - 0.75).abs() < 1e-12); // 32 heads share 8: 75 %
    assert_eq!(kv_cache_bytes(&l8, 32, 1, 8192, BF16), 1 << 30); // 1 GiB
    let l31 = Preset::LLAMA_3_1_8B.config;
    assert_eq!(kv_cache_bytes(&l31, 32, 1, 131_072, BF16), 16 << 30); // 16 GiB
    let l31_mha = AttentionConfig { n_kv_heads: 32, ..l31 };
    assert_eq!(kv_cache_bytes(&l31_mha, 32, 1, 131_072, BF16), 64 << 30); // 64 GiB
}
