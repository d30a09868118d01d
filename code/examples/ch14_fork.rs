//! Chapter 14: two sequences forked from one prompt share its blocks; the first to write
//! into the shared last block gets a copy of it (copy-on-write).
extern crate attention;
extern crate nalgebra;
// ANCHOR: example
use attention::AttnError;
use attention::serving::paged::{PagedKvCache, SeqId};
use nalgebra::DMatrix;

fn main() -> Result<(), AttnError> {
    let mut cache = PagedKvCache::new(8, 4, 1, 2)?; // 8 blocks of 4 positions
    let rows = |n: usize, x: f32| DMatrix::from_element(n, 2, x);
    let prompt = cache.add_sequence();
    cache.append(prompt, 0, &rows(6, 0.0), &rows(6, 0.0))?; // a prompt of 6 tokens
    let (a, b) = (cache.fork(prompt)?, cache.fork(prompt)?); // no row copied
    print_state(&cache, "a and b forked", &[prompt, a, b])?;
    cache.free(prompt)?; // its blocks stay: a and b hold them
    print_state(&cache, "prompt freed", &[a, b])?;
    // block 1 is shared and has room: a gets a copy, then writes its token 6 there
    cache.append(a, 6, &rows(1, 1.0), &rows(1, 1.0))?;
    print_state(&cache, "a appends", &[a, b])?;
    // block 1 is b's alone now: b writes into it in place
    cache.append(b, 6, &rows(1, 2.0), &rows(1, 2.0))?;
    print_state(&cache, "b appends", &[a, b])?;
    let (keys_a, keys_b) = (cache.gather(a)?.0, cache.gather(b)?.0);
    let (x, y) = (keys_a[(6, 0)], keys_b[(6, 0)]);
    println!("position 6's key: a reads {x}, b reads {y}; copies: {}", cache.copies());
    Ok(())
}
// ANCHOR_END: example

/// The block tables of `ids` and the reference count of every block in use.
fn print_state(cache: &PagedKvCache, what: &str, ids: &[SeqId]) -> Result<(), AttnError> {
    let names = ["prompt", "a", "b"];
    let mut line = format!("{what:<15}");
    for &id in ids {
        line += &format!(" {} {:?}", names[id.0], cache.block_table(id)?);
    }
    let held: Vec<String> = (0..cache.n_blocks())
        .filter(|&b| cache.ref_count(b).is_ok_and(|n| n > 0))
        .map(|b| Ok(format!("{b}:{}", cache.ref_count(b)?)))
        .collect::<Result<_, AttnError>>()?;
    println!("{line:<44} counts {}", held.join(" "));
    Ok(())
}
