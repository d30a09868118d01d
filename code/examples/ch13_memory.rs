//! Chapter 13: the KV cache of Llama 3.1 8B and Llama 3.2 1B at full context in each
//! format, beside chapter 6's bf16 numbers.
extern crate attention;
// ANCHOR: example
use attention::serving::quant::{KvFormat, quantized_kv_bytes_per_layer};
use attention::{DType, Preset, kv_cache_bytes_per_layer};

fn main() {
    println!("one sequence at full context; scales, mins and int4's residual in 16 bits");
    let head = ("model", "format", "B/token/layer", "MiB/layer", "GiB, all", "of bf16");
    let (m, f, t, l, a, s) = head;
    println!("{m:13} {f:14} {t:>13} {l:>10} {a:>10} {s:>8}");
    for p in [Preset::LLAMA_3_1_8B, Preset::LLAMA_3_2_1B] {
        let (c, ctx, layers) =
            (p.config, p.config.context_length, p.n_layers.unwrap_or(1));
        let bf16 = kv_cache_bytes_per_layer(&c, 1, ctx, DType::BF16); // chapter 6's
        row(p.name, "bf16 (ch. 6)", bf16, ctx, layers, bf16);
        for format in [KvFormat::Int8, KvFormat::Fp8E4M3, KvFormat::KIVI] {
            let bytes = quantized_kv_bytes_per_layer(format, &c, 1, ctx, DType::BF16);
            row(p.name, &format.name(), bytes, ctx, layers, bf16);
        }
    }
    print_kivi_value_groups(); // what KIVI's own values, a pair per 32 channels, add
}
// ANCHOR_END: example

/// One line of the table: `bytes` for one layer at `context` tokens, per token, per
/// layer, for the model, and as a share of the bf16 cache.
fn row(
    model: &str,
    format: &str,
    bytes: u128,
    context: usize,
    layers: usize,
    bf16: u128,
) {
    let per_token = bytes as f64 / context as f64;
    let mib = bytes as f64 / (1u64 << 20) as f64;
    let gib = (bytes * layers as u128) as f64 / (1u64 << 30) as f64;
    let share = 100.0 * bytes as f64 / bf16 as f64;
    println!(
        "{model:13} {format:14} {per_token:13.1} {mib:12.1} {gib:10.3} {share:5.1} %"
    );
}

/// The int4 row again with KIVI's own value layout: a scale and a min (16 bits each) for
/// every `group` channels of a value row, where the crate keeps one pair per row. The
/// extra `head_dim / group − 1` pairs per row are added for every quantized token.
fn print_kivi_value_groups() {
    println!(
        "int4 G32 R128 with KIVI's value groups (a scale and a min per 32 channels):"
    );
    for p in [Preset::LLAMA_3_1_8B, Preset::LLAMA_3_2_1B] {
        let (c, ctx, layers) =
            (p.config, p.config.context_length, p.n_layers.unwrap_or(1));
        let KvFormat::Int4 { group, residual } = KvFormat::KIVI else { unreachable!() };
        let quantized = (ctx - residual) / group * group; // tokens held as codes
        let extra_pairs = (c.head_dim / group - 1) * c.n_kv_heads; // per token
        let extra = (quantized * extra_pairs * 2 * DType::BF16.size_bytes()) as u128;
        let ours = quantized_kv_bytes_per_layer(KvFormat::KIVI, &c, 1, ctx, DType::BF16);
        let bf16 = kv_cache_bytes_per_layer(&c, 1, ctx, DType::BF16);
        row(p.name, "KIVI's values", ours + extra, ctx, layers, bf16);
    }
}
