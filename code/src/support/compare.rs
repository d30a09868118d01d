//! Comparing our numbers with PyTorch's, with PyTorch's `assert_close` semantics.

use std::fmt;

use nalgebra::DMatrix;

use crate::support::batch::{Batch, matrix_to_row_major};

// ANCHOR: tolerance
/// An elementwise tolerance: `|got − want| <= atol + rtol · |want|`, as
/// `torch.testing.assert_close`.
///
/// Note the asymmetry: `want` (the reference) scales the relative part. `approx`'s
/// `assert_relative_eq!` means something else and defaults near `f32::EPSILON`; say what
/// you mean.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Tolerance {
    /// Relative part.
    pub rtol: f32,
    /// Absolute part.
    pub atol: f32,
}
// ANCHOR_END: tolerance

impl Tolerance {
    /// PyTorch's default for f32: `rtol = 1.3e-6`, `atol = 1e-5`.
    pub const F32: Self = Self { rtol: 1.3e-6, atol: 1e-5 };

    /// A tolerance with the given parts.
    pub const fn new(rtol: f32, atol: f32) -> Self {
        Self { rtol, atol }
    }
}

/// The element that is furthest outside the tolerance.
#[derive(Clone, Debug, PartialEq)]
pub struct Mismatch {
    /// Multi-dimensional index of the worst element (row-major shape given to
    /// [`compare`]).
    pub index: Vec<usize>,
    /// Our value there.
    pub got: f32,
    /// The reference value there.
    pub want: f32,
    /// `|got − want|`.
    pub diff: f32,
    /// What the tolerance allowed there.
    pub allowed: f32,
    /// How many elements were outside the tolerance.
    pub n_bad: usize,
    /// How many elements were compared.
    pub n_total: usize,
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} of {} elements differ; worst at index {:?}: got {:e}, want {:e}, |diff| \
                {:e} > allowed {:e}",
            self.n_bad,
            self.n_total,
            self.index,
            self.got,
            self.want,
            self.diff,
            self.allowed
        )
    }
}

/// Unravels a row-major flat index into a multi-dimensional one.
fn unravel(mut k: usize, shape: &[usize]) -> Vec<usize> {
    let mut index = vec![0; shape.len()];
    for (slot, &d) in index.iter_mut().zip(shape).rev() {
        *slot = k % d.max(1);
        k /= d.max(1);
    }
    index
}

// ANCHOR: compare
/// Compares `got` with `want` (both row-major of `shape`) elementwise under `tol`.
///
/// Equal infinities match; a NaN on either side never does. On failure, returns the worst
/// element (largest excess over the tolerance) with its index, so a failing test says
/// *where* and *by how much*.
pub fn compare(
    got: &[f32],
    want: &[f32],
    shape: &[usize],
    tol: Tolerance,
) -> Result<(), Mismatch> {
    if got.len() != want.len() || shape.iter().product::<usize>() != want.len() {
        return Err(Mismatch::lengths(got.len(), want.len()));
    }
    let allowed = |w: f32| tol.atol + tol.rtol * w.abs();
    let (mut worst, mut n_bad) = (None, 0);
    for (k, (&g, &w)) in got.iter().zip(want).enumerate() {
        let diff = (g - w).abs();
        // `g == w` also matches equal infinities; otherwise an infinity (whose `allowed`
        // is infinite too) or a NaN never matches
        if g == w || (diff <= allowed(w) && w.is_finite()) {
            continue;
        }
        n_bad += 1;
        let excess = if diff.is_nan() { f32::INFINITY } else { diff - allowed(w) };
        if worst.is_none_or(|(e, _)| excess > e) {
            worst = Some((excess, k));
        }
    }
    let Some((_, k)) = worst else { return Ok(()) };
    let n_total = want.len();
    let (index, got, want) = (unravel(k, shape), got[k], want[k]);
    let (diff, allowed) = ((got - want).abs(), allowed(want));
    Err(Mismatch { index, got, want, diff, allowed, n_bad, n_total })
}
// ANCHOR_END: compare

impl Mismatch {
    /// `got` and `want` differ in length (or from the shape): a mismatch at the first
    /// missing index.
    fn lengths(got: usize, want: usize) -> Self {
        Mismatch {
            index: vec![got.min(want)],
            got: f32::NAN,
            want: f32::NAN,
            diff: f32::INFINITY,
            allowed: 0.0,
            n_bad: got.abs_diff(want).max(1),
            n_total: want,
        }
    }
}

/// The largest `|got − want|` over all elements (`inf` when the lengths differ), for
/// reporting.
pub fn max_abs_diff(got: &[f32], want: &[f32]) -> f32 {
    if got.len() != want.len() {
        return f32::INFINITY;
    }
    got.iter()
        .zip(want)
        .map(|(g, w)| if g == w { 0.0 } else { (g - w).abs() })
        .fold(0.0, f32::max)
}

/// Panics with the worst element unless `got` and `want` have the same shape and are
/// close under `tol`. For tests and examples; library code returns [`Mismatch`] through
/// [`compare`] instead.
///
/// # Panics
/// When the shapes differ or an element is outside the tolerance.
#[track_caller]
pub fn assert_matrix_close(got: &DMatrix<f32>, want: &DMatrix<f32>, tol: Tolerance) {
    assert_eq!(got.shape(), want.shape(), "shapes differ (got vs want)");
    let shape = [want.nrows(), want.ncols()];
    if let Err(m) =
        compare(&matrix_to_row_major(got), &matrix_to_row_major(want), &shape, tol)
    {
        panic!("matrices not close (rtol {}, atol {}): {m}", tol.rtol, tol.atol);
    }
}

/// [`assert_matrix_close`] for batches: index is `[batch, seq, dim]`.
///
/// # Panics
/// When the shapes differ or an element is outside the tolerance.
#[track_caller]
pub fn assert_batch_close(got: &Batch, want: &Batch, tol: Tolerance) {
    assert_eq!(got.shape(), want.shape(), "shapes differ (got vs want)");
    if let Err(m) = compare(&got.to_row_major(), &want.to_row_major(), &want.shape(), tol)
    {
        panic!("batches not close (rtol {}, atol {}): {m}", tol.rtol, tol.atol);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_the_worst_element_with_its_index() {
        let want = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
        let got = [1.0, 2.1, 3.0, 4.0, 5.0, 6.5];
        let m = compare(&got, &want, &[2, 3], Tolerance::F32).unwrap_err();
        assert_eq!(m.index, vec![1, 2]);
        assert_eq!((m.got, m.want, m.n_bad, m.n_total), (6.5, 6.0, 2, 6));
        assert!(m.to_string().contains("[1, 2]"));
    }

    #[test]
    fn tolerance_is_atol_plus_rtol_times_reference() {
        let tol = Tolerance::new(0.1, 0.0);
        assert!(compare(&[109.0], &[100.0], &[1], tol).is_ok());
        assert!(compare(&[111.0], &[100.0], &[1], tol).is_err());
        // relative to `want`, not `got`
        assert!(compare(&[100.0], &[109.0], &[1], tol).is_ok());
    }

    #[test]
    fn nan_never_matches_and_infinities_match_themselves() {
        assert!(compare(&[f32::NAN], &[f32::NAN], &[1], Tolerance::F32).is_err());
        assert!(
            compare(&[f32::NEG_INFINITY], &[f32::NEG_INFINITY], &[1], Tolerance::F32)
                .is_ok()
        );
        assert!(compare(&[0.0], &[f32::NEG_INFINITY], &[1], Tolerance::F32).is_err());
    }

    #[test]
    fn length_mismatch_is_an_error() {
        assert!(compare(&[1.0], &[1.0, 2.0], &[2], Tolerance::F32).is_err());
        assert!(compare(&[1.0, 2.0], &[1.0, 2.0], &[3], Tolerance::F32).is_err());
    }
}
