//! Exercise 12.1: multiply-adds of one decode step of one DeepSeek-V3 layer at a context
//! of 4096 tokens, expanded and absorbed.
extern crate attention;
// ANCHOR: example
use attention::MlaShape;

fn main() {
    let s = MlaShape::DEEPSEEK_V3;
    let (h, r, t) = (s.n_heads as u64, s.kv_lora_rank as u64, 4096_u64);
    let (nope, rope, v) =
        (s.qk_nope_head_dim as u64, s.qk_rope_head_dim as u64, s.v_head_dim as u64);
    // expanded: every cached latent through kv_b_proj, then ordinary attention
    let expand = t * r * h * (nope + v);
    let attend = h * t * (nope + rope) + h * t * v; // scores, weighted values
    // absorbed: map each query into the latent space, attend over latents, map back
    let absorbed = h * nope * r + h * t * (r + rope) + h * t * r + h * r * v;
    let g = |n: u64| n as f64 / 1e9;
    println!(
        "expanded: {:.2} G (expanding the latents) + {:.3} G (attention)",
        g(expand),
        g(attend)
    );
    println!("absorbed: {:.3} G", g(absorbed));
    println!("ratio: {:.0}x", (expand + attend) as f64 / absorbed as f64);
}
// ANCHOR_END: example
