//! The row softmax that turns attention scores into attention weights.

use nalgebra::DMatrix;

// ANCHOR: softmax_rows
/// Softmax over each row of `scores` (PyTorch's `torch.softmax(scores, dim=-1)`), in
/// place.
///
/// Numerically stable: each row's maximum is subtracted before `exp`, which leaves the
/// result unchanged (the factor `exp(-max)` cancels) but keeps `exp` from overflowing to
/// `inf` on large scores.
///
/// A row whose entries are all `-inf` (every key masked) becomes all zeros, as PyTorch's
/// `_safe_softmax` does, instead of the `NaN`s that `exp(-inf - (-inf))` would give. A
/// purely causal mask never produces such a row; padding or sliding windows can. Any
/// other trouble shows, as in PyTorch: a row holding a `NaN` or a `+inf` becomes all
/// `NaN` (`exp(inf - inf)` is `NaN`), never a finite number that hides it.
pub fn softmax_rows_in_place(scores: &mut DMatrix<f32>) {
    // Each row is one query: normalise across the keys (the columns), never down a
    // column. nalgebra stores the matrix column by column, so the loops walk whole
    // columns in memory order and keep one running maximum and one running sum per row
    // (hopping along a row instead is much slower on long sequences; the numbers are the
    // same, bit for bit).
    let mut max = vec![f32::NEG_INFINITY; scores.nrows()];
    for column in scores.column_iter() {
        for (m, &s) in max.iter_mut().zip(column.as_slice()) {
            *m = m.max(s); // ignores a NaN: the sum below catches it
        }
    }
    let mut sum = vec![0.0_f32; scores.nrows()];
    for mut column in scores.column_iter_mut() {
        for ((s, &m), total) in
            column.as_mut_slice().iter_mut().zip(&max).zip(sum.iter_mut())
        {
            // A masked score gives weight 0 without calling exp (half the scores of a
            // causal mask, and no exp(-inf - (-inf)) = NaN in a fully masked row). A NaN
            // score, or a +inf one (exp(inf - inf)), makes the row's total NaN.
            *s = if *s == f32::NEG_INFINITY { 0.0 } else { (*s - m).exp() };
            *total += *s;
        }
    }
    for mut column in scores.column_iter_mut() {
        for (s, &total) in column.as_mut_slice().iter_mut().zip(&sum) {
            // A total of 0 means every key was masked: zeros, as PyTorch's
            // `_safe_softmax`. Not `total > 0.0`, which would also turn a NaN total into
            // zeros and hide it.
            *s = if total == 0.0 { 0.0 } else { *s / total };
        }
    }
}
// ANCHOR_END: softmax_rows

/// Softmax over each row, returning a new matrix. See [`softmax_rows_in_place`].
///
/// ```
/// use attention::softmax_rows;
/// let scores = nalgebra::dmatrix![1.0_f32, 2.0, 3.0; 0.0, 0.0, f32::NEG_INFINITY];
/// let w = softmax_rows(&scores);
/// assert!((w.row(0).sum() - 1.0).abs() < 1e-6);
/// assert_eq!(w.row(1).iter().copied().collect::<Vec<_>>(), [0.5, 0.5, 0.0]);
/// ```
pub fn softmax_rows(scores: &DMatrix<f32>) -> DMatrix<f32> {
    let mut out = scores.clone();
    softmax_rows_in_place(&mut out);
    out
}
