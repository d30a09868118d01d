//! Exercise 8.2: how many score tiles the flash kernel skips for a causal prefill.
extern crate attention;
// ANCHOR: example
use attention::fast::flash::{KEY_BLOCK, QUERY_BLOCK};

fn main() {
    for seq in [1000_usize, 4096, 131_072] {
        let (q_blocks, k_blocks) = (seq.div_ceil(QUERY_BLOCK), seq.div_ceil(KEY_BLOCK));
        // query block i (rows i·QUERY_BLOCK ..) needs the key tiles up to its last row
        let computed: usize = (0..q_blocks)
            .map(|i| ((i * QUERY_BLOCK + QUERY_BLOCK).min(seq) - 1) / KEY_BLOCK + 1)
            .sum();
        let total = q_blocks * k_blocks;
        let skipped = 100.0 * (1.0 - computed as f64 / total as f64);
        println!(
            "seq {seq:>6}: {computed:>6} of {total:>6} tiles computed, {skipped:.0} % \
                skipped"
        );
    }
}
// ANCHOR_END: example
