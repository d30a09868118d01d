//! Exercise 4.2: Llama 3.2 1B's KV cache at 8192 tokens in bf16, with GQA and as MHA.
extern crate attention;
// ANCHOR: example
use attention::{AttentionConfig, DType, Preset, kv_cache_bytes};

fn main() {
    let p = Preset::LLAMA_3_2_1B;
    let (cfg, n_layers) = (p.config, p.n_layers.unwrap()); // 16 layers, 8 KV heads of 64
    let mha_cfg = AttentionConfig { n_kv_heads: cfg.n_heads, ..cfg }; // 32 KV heads
    let bytes = |cfg| kv_cache_bytes(cfg, n_layers, 1, 8192, DType::BF16); // one sequence
    let (gqa, mha) = (bytes(&cfg), bytes(&mha_cfg));
    // by hand: keys and values · layers · positions · KV heads · head_dim · 2 bytes
    assert_eq!(gqa, 2 * 16 * 8192 * 8 * 64 * 2);
    let mib = |b: u128| b as f64 / (1 << 20) as f64;
    println!("Llama 3.2 1B, 8192 tokens, bf16: {:.0} MiB with 8 KV heads", mib(gqa));
    println!(
        "the same with 32 KV heads (MHA): {:.0} MiB, {}x as much",
        mib(mha),
        mha / gqa
    );
}
// ANCHOR_END: example
