//! Exercise 16.2: Llama 3 70B's attention on 1 to 32 devices, tensor parallel: the KV
//! cache of 16 sequences of 8192 tokens and the attention weights, per device, in bf16.
extern crate attention;
// ANCHOR: example
use attention::DType;
use attention::parallel::LLAMA_3_70B;
use attention::parallel::tensor::kv_share;

fn main() -> Result<(), attention::AttnError> {
    let (cfg, layers) = (LLAMA_3_70B.config, 80u128);
    let tokens = 16 * 8192u128; // 16 sequences of 8192 tokens
    let gib = |bytes: u128| bytes as f64 / (1u128 << 30) as f64;
    println!("devices  KV cache per device  attention weights per device (GiB)");
    for devices in [1, 2, 4, 8, 16, 32] {
        let s = kv_share(&cfg, devices, DType::BF16)?;
        let cache = s.cache_bytes_per_device * tokens * layers;
        // q and o projections: the device's query heads, (q_heads·head_dim, d_model) each
        let q_o = 2 * (s.q_heads * cfg.head_dim * cfg.d_model * 2) as u128;
        let weights = (q_o + s.kv_weight_bytes_per_device) * layers;
        println!("{devices:>7}  {:>19.2}  {:>34.2}", gib(cache), gib(weights));
    }
    Ok(())
}
// ANCHOR_END: example
