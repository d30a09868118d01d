//! Exercise 6.1: four sequences of 128k tokens on Llama 3.1 8B: does the cache fit on an
//! 80 GB card?
extern crate attention;
// ANCHOR: example
use attention::{DType, Preset, kv_cache_bytes};

fn main() {
    let p = Preset::LLAMA_3_1_8B; // 32 layers, 8 KV heads of 128
    let (batch, context) = (4, 131_072);
    let cache =
        kv_cache_bytes(&p.config, p.n_layers.unwrap(), batch, context, DType::BF16);
    // 8.03 B parameters in bf16 (the model card's count)
    let weights = 8_030_000_000_u128 * 2;
    let card = 80_000_000_000_u128; // "80 GB" is decimal
    let gib = |b: u128| b as f64 / (1u128 << 30) as f64;
    println!("KV cache, batch {batch} x {context} tokens, bf16: {:.1} GiB", gib(cache));
    println!("weights, bf16:                             {:.1} GiB", gib(weights));
    println!(
        "together {:.1} GiB; an 80 GB card holds {:.1} GiB",
        gib(cache + weights),
        gib(card)
    );
    assert!(cache + weights > card); // and activations still need room
}
// ANCHOR_END: example
