//! The row softmax that turns attention scores into attention weights.

use nalgebra::DMatrix;

// ANCHOR: softmax_rows
/// Softmax over each row of `scores`, in place (`torch.softmax(scores, dim=-1)`).
///
/// Stable: each row's maximum is subtracted before `exp` (the factor `exp(-max)`
/// cancels, and `exp` cannot overflow). A fully masked row (all `-inf`) becomes zeros,
/// as PyTorch's `_safe_softmax`; a row holding a `NaN` or a `+inf` becomes all `NaN`.
pub fn softmax_rows_in_place(scores: &mut DMatrix<f32>) {
    // One row per query, normalised across its keys (the columns). nalgebra stores column
    // by column, so each pass walks whole columns, keeping a max and a sum per row.
    let mut max = vec![f32::NEG_INFINITY; scores.nrows()];
    for column in scores.column_iter() {
        for (m, &s) in max.iter_mut().zip(column.as_slice()) {
            *m = m.max(s); // ignores a NaN: the sum below catches it
        }
    }
    let mut sum = vec![0.0_f32; scores.nrows()];
    for mut column in scores.column_iter_mut() {
        let rows = column.as_mut_slice().iter_mut().zip(&max).zip(sum.iter_mut());
        for ((s, &m), total) in rows {
            // masked: weight 0 without exp, so no exp(-inf - (-inf)) = NaN
            *s = if *s == f32::NEG_INFINITY { 0.0 } else { (*s - m).exp() };
            *total += *s;
        }
    }
    for mut column in scores.column_iter_mut() {
        for (s, &total) in column.as_mut_slice().iter_mut().zip(&sum) {
            // 0: every key masked. (`total > 0.0` would also zero a NaN total.)
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
