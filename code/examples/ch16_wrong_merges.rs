//! Chapter 16, traps: four wrong ways to combine partial attention, measured against the
//! right one. Averaging the splits' outputs, adding states without rescaling them to a
//! common maximum, merging in another order, and ring attention with an unmasked own
//! block.
extern crate attention;
extern crate nalgebra;
// ANCHOR: example
use attention::parallel::split_k::SplitKDecode;
use attention::{AttentionInputs, HeadLayout, grouped_attention, splitmix_matrix};

fn main() -> Result<(), attention::AttnError> {
    let heads = HeadLayout::new(8, 2, 16)?; // GQA 8/2, head_dim 16
    let q = splitmix_matrix(1, 4, heads.q_dim(), 2.0); // 4 queries at the cache's end
    let (k, v) = (splitmix_matrix(2, 1037, 32, 2.0), splitmix_matrix(3, 1037, 32, 2.0));
    let (kv, offset) = ((k.as_view(), v.as_view()), 1033); // 1037 keys in all
    let x = AttentionInputs { q: &q, k: kv.0, v: kv.1, heads, query_offset: offset };
    let right = SplitKDecode::new(4, 1)?.forward(x)?; // merged in split order
    let parts = SplitKDecode::new(4, 1)?.partials(x)?; // 4 splits of 259 or 260 keys
    let mean = parts.iter().map(|p| p.finish()).sum::<DMatrix<f32>>() / 4.0;
    print_error("mean of the splits' outputs", &mean, &right);
    print_error("sums added, not rescaled", &unscaled(&parts), &right);
    print_order(&merged_in_reverse(&parts)?, &right); // as threads might finish
    let (q, k, v) = (splitmix_matrix(4, 12, 128, 2.0), k.rows(0, 12), v.rows(0, 12));
    let causal = grouped_attention(&q, k, v, heads, 0)?; // 12 tokens on one device
    let ring = unmasked_own_block(&q, k, v, heads)?; // 3 devices of 4 tokens
    print_error("ring, own block unmasked", &ring, &causal);
    Ok(())
}
// ANCHOR_END: example

use attention::parallel::partial::{PartialAttention, attend_block, merge};
use nalgebra::{DMatrix, DMatrixView};

/// `Σ o / Σ ℓ` over the splits, each split's `o` and `ℓ` taken as they are: every split
/// measured its exponentials from its own maximum, so the terms are on different scales.
fn unscaled(parts: &[PartialAttention]) -> DMatrix<f32> {
    let o: DMatrix<f32> = parts.iter().map(|p| p.out().clone()).sum();
    let l: DMatrix<f32> = parts.iter().map(|p| p.sum().clone()).sum();
    let d = o.ncols() / l.ncols(); // head_dim
    DMatrix::from_fn(o.nrows(), o.ncols(), |i, c| o[(i, c)] / l[(i, c / d)])
}

/// What a ring of 3 devices of 4 tokens each computes when it skips the blocks from the
/// future but takes its own block without the causal mask: device `r`'s queries see keys
/// `0 .. 4(r + 1)`, their own block's later tokens included.
fn unmasked_own_block(
    q: &DMatrix<f32>,
    k: DMatrixView<f32>,
    v: DMatrixView<f32>,
    heads: HeadLayout,
) -> Result<DMatrix<f32>, attention::AttnError> {
    let mut out = DMatrix::zeros(q.nrows(), q.ncols());
    for first in [0, 4, 8] {
        let (q_r, end) = (q.rows(first, 4).into_owned(), first + 4);
        // query_offset = end − 1: every key before `end` is visible to every query
        let (k, v) = (k.rows(0, end), v.rows(0, end));
        let x = AttentionInputs { q: &q_r, k, v, heads, query_offset: end - 1 };
        out.rows_mut(first, 4).copy_from(&attend_block(x, 0)?.finish());
    }
    Ok(out)
}

/// The splits' states merged from the last to the first.
fn merged_in_reverse(
    parts: &[PartialAttention],
) -> Result<DMatrix<f32>, attention::AttnError> {
    let mut reversed = parts.iter().rev().cloned();
    let first = reversed.next().expect("at least one split");
    Ok(reversed.try_fold(first, |acc, s| merge(&acc, &s))?.finish())
}

/// The largest difference from the right output, to three digits (these errors are
/// large; rounding does not reach the third digit).
fn print_error(name: &str, got: &DMatrix<f32>, want: &DMatrix<f32>) {
    let diff = attention::max_abs_diff(got.as_slice(), want.as_slice());
    assert!(diff > 1e-2, "{name}: {diff}");
    println!("{name:<30} largest error {diff:.3}");
}

/// Merged in reverse split order: within rounding of split order, but not the same bits.
fn print_order(got: &DMatrix<f32>, want: &DMatrix<f32>) {
    let diff = attention::max_abs_diff(got.as_slice(), want.as_slice());
    assert!(diff < 1e-6 && got != want, "{diff}");
    println!("{:<30} largest error < 1e-6, other bits", "merged in reverse order");
}
