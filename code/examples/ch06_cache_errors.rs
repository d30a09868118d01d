//! Chapter 6: a full cache and a wrong start_pos are errors with a message, never silent
//! damage.
extern crate attention;
extern crate nalgebra;
// ANCHOR: example
use attention::{AttnError, Fixture, LayerKvCache};
use nalgebra::DMatrix;

fn main() -> Result<(), AttnError> {
    // 1 sequence, room for 4 positions, 2 KV heads of head_dim 4: rows of 8 numbers
    let mut cache = LayerKvCache::new(1, 4, 2, 4)?;
    let rows = |n: usize| vec![DMatrix::from_element(n, 8, 1.0f32)];
    cache.append(0, &rows(3), &rows(3))?; // positions 0, 1, 2
    let err = cache.append(3, &rows(2), &rows(2)).unwrap_err();
    println!("append 2 to a cache holding 3 of 4:\n  {err}");
    assert_eq!(err, AttnError::CacheFull { capacity: 4, len: 3, adding: 2 });
    assert_eq!(cache.len(), 3); // nothing was written, nothing overwritten

    let fx = Fixture::load("kv_cache")?;
    // the fixture's module: 4 query heads, 2 KV heads, head_dim 4, RoPE base 10 000
    let gqa = fx.gqa()?;
    let x = fx.batch("x")?; // (2, 9, 12)
    // 2 sequences, 32 positions, shaped for the layer
    let mut cache = gqa.new_cache(2, 32)?;
    gqa.forward(&x.narrow_seq(0, 5)?, 0, Some(&mut cache))?; // prefill: positions 0..5

    // The next token is at position 5. Not advancing the offset, or advancing it twice:
    for wrong in [4, 6] {
        let err = gqa.forward(&x.narrow_seq(5, 1)?, wrong, Some(&mut cache)).unwrap_err();
        println!("decode at start_pos {wrong}:\n  {err}");
        assert_eq!(err, AttnError::CachePosition { start_pos: wrong, next_pos: 5 });
    }
    // A new sequence without resetting the cache first:
    let err = gqa.forward(&x.narrow_seq(0, 3)?, 0, Some(&mut cache)).unwrap_err();
    println!("new sequence, no reset:\n  {err}");
    assert!(matches!(err, AttnError::CachePosition { start_pos: 0, next_pos: 5 }));
    cache.reset(); // keeps the allocation, forgets the positions
    gqa.forward(&x.narrow_seq(0, 3)?, 0, Some(&mut cache))?;
    println!("after reset: the cache holds {} positions", cache.len());
    assert_eq!(cache.len(), 3);
    Ok(())
}
// ANCHOR_END: example
