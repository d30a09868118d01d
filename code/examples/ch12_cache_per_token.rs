//! Chapter 12: KV-cache size per token for DeepSeek-V3's attention shape, stored as MHA,
//! GQA, MQA or MLA, and for Llama 3 70B.
extern crate attention;
// ANCHOR: example
use attention::MlaShape;

fn main() {
    let s = MlaShape::DEEPSEEK_V3; // 128 heads; q/k heads 128 + 64, values 128
    let per_head = s.qk_head_dim() + s.v_head_dim; // a key and a value: 320 numbers
    let rows = [
        ("MHA, 128 KV heads", s.n_heads * per_head, 61),
        ("GQA, 8 KV heads", 8 * per_head, 61),
        ("MQA, 1 KV head", per_head, 61),
        ("MLA: latent 512 + RoPE key 64", s.cache_width(), 61),
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
}
// ANCHOR_END: example
