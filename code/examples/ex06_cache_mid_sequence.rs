//! Exercise 6.2: a cache whose first token sits at position 100 gives the cache-less
//! forward.
extern crate attention;
extern crate rand;
// ANCHOR: example
use attention::{Batch, GroupedQueryAttention, Rope, max_abs_diff, splitmix_matrix};
use rand::{SeedableRng, rngs::StdRng};

fn main() -> Result<(), attention::AttnError> {
    let mut rng = StdRng::seed_from_u64(6);
    let rope = Rope::new(4, 128, 10_000.0, None)?; // head_dim 4, up to 128 positions
    let gqa = GroupedQueryAttention::random(12, 16, 4, 2, Some(rope), &mut rng)?;
    let x = Batch::single(splitmix_matrix(7, 6, 12, 1.0)); // 6 tokens: (1, 6, 12)
    let full = gqa.forward(&x, 100, None)?; // at positions 100..106

    let mut cache = gqa.new_cache(1, 6)?; // row r will hold position 100 + r
    let mut steps = vec![gqa.forward(&x.narrow_seq(0, 4)?, 100, Some(&mut cache))?];
    for t in 4..6 {
        // one at a time: start_pos counts positions (100 + t), the mask rows (t)
        steps.push(gqa.forward(&x.narrow_seq(t, 1)?, 100 + t, Some(&mut cache))?);
    }
    let (cached, first_pos) = (Batch::concat_seq(&steps)?, cache.first_pos());
    let diff = max_abs_diff(&cached.to_row_major(), &full.to_row_major());
    println!("cache from position {first_pos}: max |cached - full| = {diff:.1e}");
    assert!(diff < 1e-5);
    // and a step at a position that does not continue the cache is refused
    let err = gqa.forward(&x.narrow_seq(5, 1)?, 105, Some(&mut cache)).unwrap_err();
    println!("{err}");
    Ok(())
}
// ANCHOR_END: example
