//! Chapter 8: what causal attention costs at 12 heads of head_dim 64, and what the flash path keeps.
extern crate attention;
// ANCHOR: example
use attention::decode::DECODE_BLOCK;
use attention::flash::{KEY_BLOCK, QUERY_BLOCK};
use attention::{AttentionConfig, DType, kv_cache_bytes_per_layer};

const MIB: f64 = (1u64 << 20) as f64;

fn main() -> Result<(), attention::AttnError> {
    let (n_heads, head_dim) = (12_u64, 64_u64);
    println!("12 heads of head_dim 64, one sequence, causal:");
    println!(
        "{:>6} {:>16} {:>14} {:>18} {:>18}",
        "seq", "multiply-adds", "exp calls", "scores, one head", "scores, 12 heads"
    );
    for seq in [1024_u64, 4096, 32768] {
        // Q·Kᵀ and weights·V: seq² · head_dim multiply-adds each per head; causal keeps about half
        let mads = 2 * n_heads * seq * seq * head_dim / 2;
        // the straightforward path exponentiates every score, masked ones included
        let exps = n_heads * seq * seq;
        let one_head = seq * seq * 4; // f32 bytes
        assert_eq!(one_head, 4 * (seq * seq));
        println!(
            "{seq:>6} {:>12.2} G {:>11.1} M {:>14.0} MiB {:>14.0} MiB",
            mads as f64 / 1e9,
            exps as f64 / 1e6,
            one_head as f64 / MIB,
            (n_heads * one_head) as f64 / MIB
        );
    }
    // the flash path keeps one score tile per query head of a KV group (and a copy of the values)
    let tile = QUERY_BLOCK * KEY_BLOCK * 4;
    println!(
        "flash score tile: {QUERY_BLOCK} queries x {KEY_BLOCK} keys = {} KiB, whatever the seq",
        tile / 1024
    );
    assert_eq!(tile, 256 * 1024);

    // decode: one new token reads every cached key and value of a layer once
    let cfg = AttentionConfig::new(768, 12, 4, 4096, 500_000.0)?;
    let kv = kv_cache_bytes_per_layer(&cfg, 1, 4096, DType::F32);
    assert_eq!(kv, 2 * 4 * 4096 * 64 * 4);
    println!(
        "decode, GQA 12/4, 4096 cached positions: {:.0} MiB of keys and values per layer and token",
        kv as f64 / MIB
    );
    println!("the decode kernel reads them in blocks of {DECODE_BLOCK} positions");
    Ok(())
}
// ANCHOR_END: example
