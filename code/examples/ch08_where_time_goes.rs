//! Chapter 8: what causal attention costs at 12 heads of head_dim 64, and what the flash
//! path keeps.
extern crate attention;
// ANCHOR: example
use attention::fast::decode::DECODE_BLOCK;
use attention::fast::flash::{QUERY_BLOCK, key_block};
use attention::fast::simd::SimdLevel;
use attention::{AttentionConfig, DType, kv_cache_bytes_per_layer};

fn main() -> Result<(), attention::AttnError> {
    let (n_heads, head_dim) = (12_u64, 64_u64);
    print_header();
    for seq in [1024_u64, 4096, 32768] {
        let all = 2 * n_heads * seq * seq * head_dim; // Q·Kᵀ and weights·V, all scores
        // causal: query i sees i + 1 keys; the softmax calls exp once for each of them
        let exp_calls = n_heads * seq * (seq + 1) / 2;
        let causal = 2 * exp_calls * head_dim; // half of `all`, plus the diagonal
        let one_head = 4 * seq * seq; // one head's (seq, seq) f32 scores, in bytes
        check_and_print_row(seq, n_heads, head_dim, [all, causal, exp_calls, one_head]);
    }
    // a tile of the flash path's scores, in bytes: its width depends on the SIMD level
    let tile = |level| QUERY_BLOCK * key_block(level) * 4;
    for level in [SimdLevel::Avx512, SimdLevel::Avx2] {
        let keys = key_block(level);
        print!("flash score tile, {level:?}: {QUERY_BLOCK} queries x {keys} keys");
        println!(" = {} KiB, whatever the seq", tile(level) / 1024);
    }
    let cfg = AttentionConfig::new(768, 12, 4, 4096, 500_000.0)?; // GQA 12/4
    let kv = kv_cache_bytes_per_layer(&cfg, 1, 4096, DType::F32); // read per new token
    print!("decode, GQA 12/4, 4096 cached positions: ");
    println!("{} MiB of keys and values per layer and token", kv >> 20);
    println!("the decode kernel reads them in blocks of {DECODE_BLOCK} positions");
    check_sizes(tile(SimdLevel::Avx512), tile(SimdLevel::Avx2), kv);
    Ok(())
}
// ANCHOR_END: example

/// The table's header: what each column counts.
fn print_header() {
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
}

/// Checks one row's counts (the causal part is half of all, plus the diagonal; the scores
/// are 4 bytes each), then prints them in G (10⁹), M (10⁶) and MiB.
fn check_and_print_row(seq: u64, n_heads: u64, head_dim: u64, counts: [u64; 4]) {
    let [all, causal, exp_calls, one_head] = counts;
    assert_eq!(2 * causal - all, 2 * n_heads * seq * head_dim);
    assert_eq!(one_head, 4 * (seq * seq));
    const MIB: f64 = (1u64 << 20) as f64;
    println!(
        "{seq:>6} {:>12.2} G {:>10.2} G {:>9.1} M {:>13.0} MiB {:>13.0} MiB",
        all as f64 / 1e9,
        causal as f64 / 1e9,
        exp_calls as f64 / 1e6,
        one_head as f64 / MIB,
        (n_heads * one_head) as f64 / MIB
    );
}

/// The flash tiles are 54 and 72 KiB; the KV cache of a layer is K and V, 4 KV heads,
/// 4096 positions, head_dim 64, 4 bytes each.
fn check_sizes(tile_avx512: usize, tile_avx2: usize, kv: u128) {
    assert_eq!((tile_avx512, tile_avx2), (54 * 1024, 72 * 1024));
    assert_eq!(kv, 2 * 4 * 4096 * 64 * 4);
}
