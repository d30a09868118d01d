//! Exercise 12.2: DeepSeek-V2-Lite's cache per token against multi-head attention with
//! the same heads.
extern crate attention;
// ANCHOR: example
use attention::MlaShape;

fn main() {
    // DeepSeek-V2-Lite's published config: 27 layers, 16 heads, no query compression
    let lite = MlaShape {
        d_model: 2048,
        n_heads: 16,
        q_lora_rank: None,
        kv_lora_rank: 512,
        qk_nope_head_dim: 128,
        qk_rope_head_dim: 64,
        v_head_dim: 128,
    };
    let layers = 27;
    let mla = lite.cache_width() * layers * 2; // bf16 bytes per token
    let mha = lite.n_heads * (lite.qk_head_dim() + lite.v_head_dim) * layers * 2;
    println!(
        "MLA: {} numbers per token and layer, {:.1} KiB per token",
        lite.cache_width(),
        mla as f64 / 1024.0
    );
    println!(
        "MHA: {} numbers per token and layer, {:.1} KiB per token",
        mha / layers / 2,
        mha as f64 / 1024.0
    );
    println!("MLA keeps {:.1} % of it", 100.0 * mla as f64 / mha as f64);
}
// ANCHOR_END: example
