//! Chapter 14: an exhausted pool, a wrong position, a freed and an unknown sequence are
//! typed errors that change nothing.
extern crate attention;
extern crate nalgebra;
// ANCHOR: example
use attention::AttnError;
use attention::serving::paged::{PagedKvCache, SeqId};
use nalgebra::DMatrix;

fn main() -> Result<(), AttnError> {
    let mut cache = PagedKvCache::new(3, 4, 1, 2)?; // 3 blocks of 4 positions
    let rows = |n: usize| DMatrix::from_element(n, 2, 1.0f32);
    let (a, b) = (cache.add_sequence(), cache.add_sequence());
    cache.append(a, 0, &rows(10), &rows(10))?; // 3 blocks, the last with 2 free rows
    let exhausted = cache.append(b, 0, &rows(1), &rows(1)).unwrap_err();
    report("b's first token", &exhausted, &cache);
    let position = cache.append(a, 9, &rows(1), &rows(1)).unwrap_err();
    report("a appends at position 9", &position, &cache);
    cache.free(a)?; // its three blocks go back to the pool
    let freed = cache.free(a).unwrap_err(); // as any other use of a
    report("a freed twice", &freed, &cache);
    let unknown = cache.append(SeqId(7), 0, &rows(1), &rows(1)).unwrap_err();
    report("sequence 7 appends", &unknown, &cache);
    cache.append(b, 0, &rows(1), &rows(1))?;
    report("b's first token again", &"ok", &cache);
    check_errors(&exhausted, &position, &freed, &unknown)
}
// ANCHOR_END: example

/// Prints what was tried, the error (or "ok"), and then the pool: its free blocks and
/// the length of every sequence not freed.
fn report(what: &str, outcome: &dyn std::fmt::Display, cache: &PagedKvCache) {
    let names = ["a", "b"];
    let lengths: Vec<String> = cache
        .sequences()
        .map(|id| format!("{} {}", names[id.0], cache.len(id).unwrap_or(0)))
        .collect();
    println!("{what}:\n  {outcome}");
    println!("  free blocks {}; lengths {}", cache.free_blocks(), lengths.join(", "));
}

/// Each error is the variant its message says.
fn check_errors(
    exhausted: &AttnError,
    position: &AttnError,
    freed: &AttnError,
    unknown: &AttnError,
) -> Result<(), AttnError> {
    assert_eq!(*exhausted, AttnError::PoolExhausted { needed: 1, free: 0, n_blocks: 3 });
    assert_eq!(*position, AttnError::CachePosition { start_pos: 9, next_pos: 10 });
    assert_eq!(*freed, AttnError::UnknownSequence { id: 0, freed: true });
    assert_eq!(*unknown, AttnError::UnknownSequence { id: 7, freed: false });
    Ok(())
}
