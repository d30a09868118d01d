//! The online softmax: a softmax finished block by block, keeping per query row a running
//! maximum `m` and a running sum `l` of `exp(score - m)`. When a block raises the
//! maximum, everything accumulated so far (the sum, and the kernel's output rows) is
//! multiplied by `exp(m_old - m_new)`, so that all terms share the new maximum. Shared by
//! the flash kernel (a tile of rows at once) and the decode kernel (one row at a time).
//!
//! A NaN score is not taken as a maximum (`s > m` is false for it, and `f32::max` skips
//! it) but its `exp` makes the row's sum NaN, so the kernel's final division spreads it
//! over the row, as PyTorch's softmax does.

use crate::fast::fast_exp::{exp_approx, exp_approx_with, exp_sub_sum, max_of};
#[cfg(target_arch = "x86_64")]
use crate::fast::fast_exp::{exp_sub_sum_columns_avx2, exp_sub_sum_columns_avx512};
#[cfg(target_arch = "x86_64")]
use crate::fast::simd::{SimdLevel, simd_level};

// ANCHOR: online_softmax_tile
/// One tile of the online softmax, for every query row of the tile at once.
///
/// `tile` holds scaled scores, column-major with `ROWS` rows: each column is one key,
/// seen by all the rows (a hidden key's score is `-inf`). For each row this updates the
/// running maximum `m` and sum `l` and turns the scores into `exp(score - m_new)`;
/// `rescale` receives `exp(m_old - m_new)`, the factor that brings everything accumulated
/// so far to the new maximum. Every loop runs down a column, `ROWS` rows at a time (the
/// flash kernel's panel: two SIMD registers). `FMA`: the exponentials with fused
/// multiply-adds ([`exp_approx_with`]), for code compiled for a CPU that has them.
#[inline(always)]
pub fn online_softmax_tile<const FMA: bool, const ROWS: usize>(
    tile: &mut [f32],
    row_max: &mut [f32; ROWS],
    row_sum: &mut [f32; ROWS],
    rescale: &mut [f32; ROWS],
) {
    // Local copies of the statistics, which stay in registers while the loops run down
    // the columns. (Updated in place, each column stored them and the next loaded them
    // back, a chain through memory: the flash kernel ran 7 % slower; measured.)
    let (old_max, mut max, mut sum) = (*row_max, *row_max, *row_sum);
    // 1. The new maximum of each row.
    for column in tile.chunks_exact(ROWS) {
        for (m, &s) in max.iter_mut().zip(column) {
            *m = if s > *m { s } else { *m }; // one `max` instruction; skips a NaN score
        }
    }
    // 2. Rescale factors; the old sums shrink by the same factor as the old outputs will.
    let mut shift = [0.0_f32; ROWS];
    for i in 0..ROWS {
        // a row that saw nothing yet subtracts 0, not -inf (-inf - -inf is NaN)
        let seen = max[i] != f32::NEG_INFINITY;
        shift[i] = if seen { max[i] } else { 0.0 };
        let factor = exp_approx_with::<FMA>(old_max[i] - shift[i]);
        rescale[i] = if seen { factor } else { 1.0 };
        sum[i] *= rescale[i];
    }
    // 3. Weights exp(s - m) and their sums. On AVX-512 (panels of 48 rows, which the
    // `try_into`s check) and on AVX2 (16 rows), forms written for the register width,
    // without the upper clamp (no `s - m` is above 0): the same bits.
    #[allow(unused_labels)] // no `break` on CPUs other than x86-64
    'weights: {
        #[cfg(target_arch = "x86_64")]
        if FMA
            && simd_level() == SimdLevel::Avx512
            && let (Ok(shift), Ok(sum)) =
                ((&shift[..]).try_into(), (&mut sum[..]).try_into())
        {
            // SAFETY: `simd_level` detected AVX-512
            unsafe { exp_sub_sum_columns_avx512(tile, shift, sum) };
            break 'weights;
        }
        #[cfg(target_arch = "x86_64")]
        if FMA
            && simd_level() == SimdLevel::Avx2
            && let (Ok(shift), Ok(sum)) =
                ((&shift[..]).try_into(), (&mut sum[..]).try_into())
        {
            // SAFETY: `simd_level` detected AVX2 and FMA
            unsafe { exp_sub_sum_columns_avx2(tile, shift, sum) };
            break 'weights;
        }
        for column in tile.chunks_exact_mut(ROWS) {
            for ((s, &m), l) in column.iter_mut().zip(&shift).zip(&mut sum) {
                *s = exp_approx_with::<FMA>(*s - m);
                *l += *s;
            }
        }
    }
    (*row_max, *row_sum) = (max, sum);
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
