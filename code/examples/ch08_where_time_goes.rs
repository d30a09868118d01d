//! Chapter 8: what causal attention costs at 12 heads of head_dim 64, and what the flash
//! path keeps.
extern crate attention;
// ANCHOR: example
use attention::fast::decode::DECODE_BLOCK;
use attention::fast::flash::{KEY_BLOCK, QUERY_BLOCK};
use attention::{AttentionConfig, DType, kv_cache_bytes_per_layer};

const MIB: f64 = (1u64 << 20) as f64;

fn main() -> Result<(), attention::AttnError> {
    let (n_heads, head_dim) = (12_u64, 64_u64);
    println!("12 heads of head_dim 64, one sequence, causal:");
    println!(
        "{:>6} {:>14} {:>12} {:>11} {:>17} {:>17}",
        "seq",
        "mult-adds, all",
        "causal part",
        "exp calls",
        "scores, one head",
        "scores, 12 heads"
    );
    for seq in [1024_u64, 4096, 32768] {
        // Q·Kᵀ and weights·V: seq² · head_dim multiply-adds each per head, if every score
        // is computed
        let all = 2 * n_heads * seq * seq * head_dim;
        // the scores the causal mask keeps: query i sees i + 1 keys, seq·(seq+1)/2 per
        // head
        let visible = n_heads * seq * (seq + 1) / 2;
        let causal = 2 * visible * head_dim;
        // half of all, plus the diagonal
        assert_eq!(2 * causal - all, 2 * n_heads * seq * head_dim);
        // the straightforward softmax calls exp once per visible score (a masked one
        // becomes 0 without it)
        let exps = visible;
        let one_head = seq * seq * 4; // f32 bytes
        assert_eq!(one_head, 4 * (seq * seq));
        println!(
            "{seq:>6} {:>12.2} G {:>10.2} G {:>9.1} M {:>13.0} MiB {:>13.0} MiB",
            all as f64 / 1e9,
            causal as f64 / 1e9,
            exps as f64 / 1e6,
            one_head as f64 / MIB,
            (n_heads * one_head) as f64 / MIB
        );
    }
    // the flash path keeps one score tile per query head of a KV group (and a copy of the
    // values)
    let tile = QUERY_BLOCK * KEY_BLOCK * 4;
    println!(
        "flash score tile: {QUERY_BLOCK} queries x {KEY_BLOCK} keys = {} KiB, whatever \
            the seq",
        tile / 1024
    );
    assert_eq!(tile, 256 * 1024);

    // decode: one new token reads every cached key and value of a layer once
    let cfg = AttentionConfig::new(768, 12, 4, 4096, 500_000.0)?;
    let kv = kv_cache_bytes_per_layer(&cfg, 1, 4096, DType::F32);
    assert_eq!(kv, 2 * 4 * 4096 * 64 * 4);
    println!(
        "decode, GQA 12/4, 4096 cached positions: {:.0} MiB of keys and values per \
            layer and token",
        kv as f64 / MIB
    );
    println!("the decode kernel reads them in blocks of {DECODE_BLOCK} positions");
    Ok(())
}
// ANCHOR_END: example
