//! Exercise 13.2: the unquantized residual window of `KvFormat::KIVI` costs more than
//! int8 for short sequences. From which length is int4 (groups of 32, 128 to 159 tokens
//! counted in 16 bits) smaller than int8 for Llama 3.2 1B?
extern crate attention;
// ANCHOR: example
use attention::serving::quant::{KvFormat, quantized_kv_bytes_per_layer};
use attention::{DType, Preset};

fn main() {
    let c = Preset::LLAMA_3_2_1B.config;
    let bytes = |format, context| {
        quantized_kv_bytes_per_layer(format, &c, 1, context, DType::BF16)
    };
    let (int8, int4) = (KvFormat::Int8, KvFormat::KIVI);
    println!("tokens   int8 KiB/layer   int4 KiB/layer");
    for context in [64, 128, 256, 512, 1024, 131_072] {
        let kib = |f| bytes(f, context) as f64 / 1024.0;
        println!("{context:6} {:16.1} {:16.1}", kib(int8), kib(int4));
    }
    let larger = |n: &usize| bytes(int4, *n) >= bytes(int8, *n);
    let first = (1..=c.context_length).find(|n| !larger(n)).unwrap_or(0);
    let last = (1..=c.context_length).rev().find(larger).unwrap_or(0);
    println!("int4 is first smaller at {first} tokens, always from {} on", last + 1);
    assert!(0 < first && first <= last + 1);
}
// ANCHOR_END: example
