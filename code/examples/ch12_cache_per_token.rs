//! Chapter 12: KV-cache size per token for DeepSeek-V3's attention, read from its config,
//! stored as MHA, GQA, MQA or MLA, and for Llama 3 70B.
extern crate attention;
extern crate serde_json;
// ANCHOR: example
use attention::{FIXTURE_DIR, HfLlamaConfig};

fn main() -> Result<(), attention::AttnError> {
    let path = format!("{FIXTURE_DIR}/configs/deepseek_v3.json"); // DeepSeek-V3's config
    let s = HfLlamaConfig::from_file(&path)?.mla_shape()?; // 128 heads of 128 + 64, v 128
    let layers = num_hidden_layers(&path); // 61
    let per_head = s.qk_head_dim() + s.v_head_dim; // a key and a value: 320 numbers
    let rows = [
        ("MHA, 128 KV heads", s.n_heads * per_head, layers),
        ("GQA, 8 KV heads", 8 * per_head, layers),
        ("MQA, 1 KV head", per_head, layers),
        ("MLA: latent 512 + RoPE key 64", s.cache_width(), layers),
        // Llama 3 70B (published config): 80 layers, 8 KV heads of 128
        ("Llama 3 70B: GQA, 8 KV heads", 2 * 8 * 128, 80),
    ];
    let head = ("bf16, all layers", "numbers/token/layer", "KiB/token", "GiB at 128k");
    println!("{:30} {:>19} {:>11} {:>13}", head.0, head.1, head.2, head.3);
    for (name, numbers, layers) in rows {
        let bytes = numbers * layers * 2; // per token, all layers, bf16
        let gib = (bytes * 131_072) as f64 / (1u64 << 30) as f64;
        let kib = bytes as f64 / 1024.0;
        println!("{name:30} {numbers:19} {kib:11.1} {gib:13.2}");
    }
    Ok(())
}
// ANCHOR_END: example

/// `num_hidden_layers` from the config file (the attention loader reads one layer and
/// does not need it).
fn num_hidden_layers(path: &str) -> usize {
    let text = std::fs::read_to_string(path).unwrap();
    let config: serde_json::Value = serde_json::from_str(&text).unwrap();
    config["num_hidden_layers"].as_u64().unwrap() as usize
}
