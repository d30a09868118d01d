//! The online softmax: a softmax finished block by block, keeping per query row a running
//! maximum `m` and a running sum `l` of `exp(score - m)`. When a block raises the
//! maximum, everything accumulated so far (the sum, and the kernel's output rows) is
//! multiplied by `exp(m_old - m_new)`, so that all terms share the new maximum. Shared by
//! the flash kernel (a tile of rows at once) and the decode kernel (one row at a time).
//!
//! A NaN score is not taken as a maximum (`>` and `f32::max` skip it) but its `exp` makes
//! the row's sum NaN, so the kernel's final division spreads it over the row, as
//! PyTorch's softmax does.

use crate::fast::fast_exp::{exp_approx, exp_approx_with, exp_sub_sum, max_of};

// ANCHOR: online_softmax_tile
/// One tile of the online softmax, for every query row of the tile at once.
///
/// `tile` holds scaled scores, column-major with `rows = row_max.len()` rows: each column
/// is one key, seen by all the rows (a hidden key's score is `-inf`). For each row this
/// updates the running maximum `m` and sum `l` and turns the scores into `exp(score -
/// m_new)`; `rescale` receives `exp(m_old - m_new)`, the factor that brings everything
/// accumulated so far to the new maximum. Every loop runs down a column, so it works on
/// 16 rows per SIMD instruction. `FMA`: the exponentials with fused multiply-adds
/// ([`exp_approx_with`]), for code compiled for a CPU that has them.
#[inline(always)]
pub fn online_softmax_tile<const FMA: bool>(
    tile: &mut [f32],
    row_max: &mut [f32],
    row_sum: &mut [f32],
    rescale: &mut [f32],
) {
    let rows = row_max.len();
    // 1. The new maximum of each row (kept in `rescale` for a moment).
    rescale.copy_from_slice(row_max);
    for column in tile.chunks_exact(rows) {
        for (m, &s) in rescale.iter_mut().zip(column) {
            *m = m.max(s); // skips a NaN score; a plain `if s > m` became masked stores
        }
    }
    // 2. Rescale factors; the old sums shrink by the same factor as the old outputs will.
    for ((m, l), new_max) in
        row_max.iter_mut().zip(row_sum.iter_mut()).zip(rescale.iter_mut())
    {
        let factor = if *new_max == f32::NEG_INFINITY {
            1.0
        } else {
            exp_approx_with::<FMA>(*m - *new_max)
        };
        *l *= factor;
        *m = *new_max;
        *new_max = factor;
    }
    // 3. Weights exp(s - m) and their sums.
    for column in tile.chunks_exact_mut(rows) {
        for ((s, &m), l) in column.iter_mut().zip(&*row_max).zip(row_sum.iter_mut()) {
            // a row that saw nothing yet
            let shift = if m == f32::NEG_INFINITY { 0.0 } else { m };
            *s = exp_approx_with::<FMA>(*s - shift);
            *l += *s;
        }
    }
}
// ANCHOR_END: online_softmax_tile

// ANCHOR: online_softmax_step
/// One key block of the online softmax for a single query row: the form the decode kernel
/// uses.
///
/// `row` holds the row's scaled scores for this block; the first `visible` keys are
/// visible to the query (the rest lie in its future). Turns `row` into `exp(score -
/// new_max)` (zero for hidden keys), updates the running maximum and sum, and returns
/// `exp(old_max - new_max)`: the factor that rescales everything accumulated so far, so
/// that all terms share the new maximum.
#[inline(always)]
pub fn online_softmax_step(
    row: &mut [f32],
    visible: usize,
    row_max: &mut f32,
    row_sum: &mut f32,
) -> f32 {
    let (seen, hidden) = row.split_at_mut(visible.min(row.len()));
    hidden.fill(0.0);
    if seen.is_empty() {
        return 1.0; // nothing new for this row: keep what it has
    }
    let new_max = row_max.max(max_of(seen));
    let rescale = exp_approx(*row_max - new_max); // exp(-inf) = 0 on the first block
    let block_sum = exp_sub_sum(seen, new_max);
    *row_sum = *row_sum * rescale + block_sum;
    *row_max = new_max;
    rescale
}
// ANCHOR_END: online_softmax_step
