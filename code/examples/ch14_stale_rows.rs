//! Chapter 14's second trap, measured: attention over every row of a sequence's blocks,
//! past its length, reads rows nobody wrote (zeros) or an earlier sequence's keys.
extern crate attention;
extern crate nalgebra;
// ANCHOR: example
use attention::serving::paged::{PagedKvCache, SeqId};
use attention::{AttnError, HeadLayout, grouped_attention, splitmix_matrix};

fn main() -> Result<(), AttnError> {
    let heads = HeadLayout::new(6, 2, 4)?; // 6 query heads over 2 KV heads of 4
    let q = splitmix_matrix(5, 1, 24, 1.0); // the newest token's query
    println!("the newest of 19 tokens attends over all 32 rows of its 2 blocks of 16:");
    for recycled in [false, true] {
        let mut pool = PagedKvCache::for_heads(4, 16, heads)?;
        if recycled {
            let old = pool.add_sequence(); // a sequence of 40 tokens, finished:
            append_random(&mut pool, old, 40, 1)?;
            pool.free(old)?; // its blocks are free again, its rows still in them
        }
        let id = pool.add_sequence();
        append_random(&mut pool, id, 19, 3)?; // 2 blocks, 13 rows past the end
        let right = pool.attend(id, &q, heads)?; // rows 0 .. len: 19 keys
        let (keys, values) = whole_blocks(&pool, id)?; // all 32 rows of its 2 blocks
        let wrong = grouped_attention(&q, keys.as_view(), values.as_view(), heads, 31)?;
        let diff = attention::max_abs_diff(wrong.as_slice(), right.as_slice());
        let rest = if recycled { "an old sequence's rows" } else { "zeros (a new pool)" };
        println!("  the 13 past its end hold {rest:<23} max error {diff:.3}");
    }
    Ok(())
}
// ANCHOR_END: example

/// Appends `n` random tokens (keys and values from `seed`) to sequence `id`, from
/// position 0.
fn append_random(
    pool: &mut PagedKvCache,
    id: SeqId,
    n: usize,
    seed: u64,
) -> Result<(), AttnError> {
    let (keys, values) =
        (splitmix_matrix(seed, n, 8, 1.0), splitmix_matrix(seed + 1, n, 8, 1.0));
    pool.append(id, 0, &keys, &values)
}

/// Every row of every block of sequence `id`'s table, its length ignored (the bug): two
/// `(blocks · block_size, kv_dim)` matrices.
fn whole_blocks(
    pool: &PagedKvCache,
    id: SeqId,
) -> Result<(nalgebra::DMatrix<f32>, nalgebra::DMatrix<f32>), AttnError> {
    let table = pool.block_table(id)?;
    let keys: Vec<_> =
        table.iter().map(|&b| pool.block_keys(b)).collect::<Result<_, _>>()?;
    let values: Vec<_> =
        table.iter().map(|&b| pool.block_values(b)).collect::<Result<_, _>>()?;
    let stack = |blocks: &[nalgebra::DMatrixView<f32>]| {
        let rows: Vec<_> = blocks.iter().flat_map(|b| b.row_iter()).collect();
        nalgebra::DMatrix::from_rows(&rows)
    };
    Ok((stack(&keys), stack(&values)))
}
