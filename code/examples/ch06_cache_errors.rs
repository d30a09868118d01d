//! Chapter 6: a full cache and a wrong start_pos are errors with a message, never silent
//! damage.
extern crate attention;
extern crate nalgebra;
// ANCHOR: example
use attention::{AttnError, Fixture, LayerKvCache};

fn main() -> Result<(), AttnError> {
    // 1 sequence, room for 4 positions, 2 KV heads of head_dim 4: rows of 8 numbers
    let mut small = LayerKvCache::new(1, 4, 2, 4)?;
    let rows = |n: usize| vec![nalgebra::DMatrix::from_element(n, 8, 1.0f32)];
    small.append(0, &rows(3), &rows(3))?; // positions 0, 1, 2
    let full = small.append(3, &rows(2), &rows(2)).unwrap_err(); // and writes nothing
    println!("append 2 to a cache holding 3 of 4:\n  {full}");
    let fx = Fixture::load("kv_cache")?; // a GQA layer: 4 query heads, 2 KV heads of 4
    let (gqa, x) = (fx.gqa()?, fx.batch("x")?); // x: (batch 2, seq 9, d_in 12)
    let mut cache = gqa.new_cache(2, 32)?; // 2 sequences, 32 positions
    gqa.forward(&x.narrow_seq(0, 5)?, 0, Some(&mut cache))?; // prefill: positions 0..5
    for wrong in [4, 6] {
        // the next token is at 5: the offset not advanced, or advanced twice
        let err = gqa.forward(&x.narrow_seq(5, 1)?, wrong, Some(&mut cache)).unwrap_err();
        println!("decode at start_pos {wrong}:\n  {err}");
        assert_eq!(err, AttnError::CachePosition { start_pos: wrong, next_pos: 5 });
    }
    let no_reset = gqa.forward(&x.narrow_seq(0, 3)?, 0, Some(&mut cache)).unwrap_err();
    println!("new sequence, no reset:\n  {no_reset}");
    cache.reset(); // keeps the allocation, forgets the positions
    gqa.forward(&x.narrow_seq(0, 3)?, 0, Some(&mut cache))?;
    println!("after reset: the cache holds {} positions", cache.len());
    check_errors(&small, &full, &no_reset, &cache)
}
// ANCHOR_END: example

/// Each error is the variant its message says, the full cache kept its 3 rows, and the
/// reset cache holds just the new sequence.
fn check_errors(
    small: &LayerKvCache,
    full: &AttnError,
    no_reset: &AttnError,
    cache: &LayerKvCache,
) -> Result<(), AttnError> {
    assert_eq!(*full, AttnError::CacheFull { capacity: 4, len: 3, adding: 2 });
    assert_eq!(small.len(), 3); // nothing was written, nothing overwritten
    assert!(matches!(no_reset, AttnError::CachePosition { start_pos: 0, next_pos: 5 }));
    assert_eq!(cache.len(), 3);
    Ok(())
}
