//! Chapter 14: two sequences share one pool of blocks; each takes a block only when its
//! last one is full, and gives its blocks back when it ends.
extern crate attention;
extern crate nalgebra;
// ANCHOR: example
use attention::AttnError;
use attention::serving::paged::{PagedKvCache, SeqId};
use nalgebra::DMatrix;

fn main() -> Result<(), AttnError> {
    // 8 blocks of 4 positions; 1 KV head of head_dim 2: rows of 2 numbers
    let mut cache = PagedKvCache::new(8, 4, 1, 2)?;
    let rows = |n: usize| DMatrix::from_element(n, 2, 1.0f32);
    let (a, b) = (cache.add_sequence(), cache.add_sequence());
    println!("seq  append  holds  block table  free blocks");
    // a prefill each, then one token per step in turns, as a server's batch decodes
    for (id, n) in [(a, 6), (b, 3), (a, 1), (b, 1), (a, 1), (b, 1), (a, 1)] {
        let start = cache.len(id)?; // the position of the sequence's next token
        cache.append(id, start, &rows(n), &rows(n))?;
        print_state(&cache, id, n)?;
    }
    cache.free(a)?; // its three blocks go back to the pool
    println!("a freed: free list {:?} (taken from the end)", cache.free_list());
    let c = cache.add_sequence();
    cache.append(c, 0, &rows(5), &rows(5))?;
    print_state(&cache, c, 5)?;
    Ok(())
}
// ANCHOR_END: example

/// One line of the table: the sequence's name, what it appended, its length, its block
/// table and the pool's free blocks.
fn print_state(cache: &PagedKvCache, id: SeqId, n: usize) -> Result<(), AttnError> {
    let name = ["a", "b", "c"][id.0];
    let (len, table) = (cache.len(id)?, format!("{:?}", cache.block_table(id)?));
    println!(
        "{name:<4} {:<7} {len:<6} {table:<12} {}",
        format!("+{n}"),
        cache.free_blocks()
    );
    Ok(())
}
