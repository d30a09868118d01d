//! Exercise 8.2: how many score tiles the flash kernel skips for a causal prefill.
extern crate attention;
// ANCHOR: example
use attention::fast::flash::{QUERY_BLOCK, key_block};
use attention::fast::simd::SimdLevel;

fn main() {
    for level in [SimdLevel::Avx512, SimdLevel::Avx2] {
        let key_block = key_block(level);
        println!("{level:?}: tiles of {QUERY_BLOCK} queries x {key_block} keys");
        for seq in [1000_usize, 4096, 131_072] {
            // The blocks end at rows short, short + 96, ..., seq: the short block (seq %
            // QUERY_BLOCK rows, if any) comes first.
            let short = seq % QUERY_BLOCK;
            let ends = (short..=seq).step_by(QUERY_BLOCK).filter(|&end| end > 0);
            // a block whose last query is row end - 1 needs the key tiles up to that key
            let computed: usize = ends.map(|end| end.div_ceil(key_block)).sum();
            let total = seq.div_ceil(QUERY_BLOCK) * seq.div_ceil(key_block);
            let skipped = 100.0 * (1.0 - computed as f64 / total as f64);
            println!(
                "  seq {seq:>6}: {computed:>6} of {total:>6} tiles computed, \
                    {skipped:.0} % skipped"
            );
        }
    }
}
// ANCHOR_END: example
