//! Chapter 14: a fork appending into the shared, partly filled last block needs a free
//! block for the copy even when the row fits; with none free the append is refused and
//! changes nothing. Once the other holder is freed, the block is written in place.
extern crate attention;
extern crate nalgebra;
// ANCHOR: example
use attention::AttnError;
use attention::serving::paged::PagedKvCache;
use nalgebra::DMatrix;

fn main() -> Result<(), AttnError> {
    let mut cache = PagedKvCache::new(3, 4, 1, 2)?; // 3 blocks of 4 positions
    let rows = |n: usize| DMatrix::from_element(n, 2, 1.0f32);
    let a = cache.add_sequence();
    cache.append(a, 0, &rows(10), &rows(10))?; // all 3 blocks, the last with 2 free rows
    let c = cache.fork(a)?; // shares a's 3 blocks, takes none
    // the row fits in block 2, but block 2 is shared: c needs a free block to copy it to
    let refused = cache.append(c, 10, &rows(1), &rows(1)).unwrap_err();
    println!("c, a fork of a, appends into the shared last block:\n  {refused}");
    println!("  free blocks {}, c holds {} tokens", cache.free_blocks(), cache.len(c)?);
    cache.free(a)?; // c is block 2's only holder now
    cache.append(c, 10, &rows(1), &rows(1))?; // written in place: nothing to copy
    let (table, copies) = (cache.block_table(c)?, cache.copies());
    println!("a freed, c appends: ok, table {table:?}, blocks copied {copies}");
    assert_eq!(refused, AttnError::PoolExhausted { needed: 1, free: 0, n_blocks: 3 });
    Ok(())
}
// ANCHOR_END: example
