//! Zeroed `f32` buffers that start on a page, and so on a cache line, for the KV caches
//! the decode kernels stream (chapter 8's alignment trap).

use std::fmt;
use std::ops::{Deref, DerefMut};

use nalgebra::{DMatrixView, DMatrixViewMut, Dyn, U1};

use crate::support::error::{Result, checked_len, try_zeros_with_spare};

/// Bytes in a cache line on x86-64 cores and most Arm ones (Apple's M-series use 128).
pub const CACHE_LINE_BYTES: usize = 64;

/// `f32`s in a cache line: one 512-bit register, or two 256-bit ones.
pub const LINE_FLOATS: usize = CACHE_LINE_BYTES / 4;

/// Where an [`AlignedBuf`] starts: on a 4096-byte boundary, the size of a page on
/// x86-64 (a multiple of [`CACHE_LINE_BYTES`]).
pub const ALIGN_BYTES: usize = 4096;

/// `f32`s in [`ALIGN_BYTES`].
const ALIGN_FLOATS: usize = ALIGN_BYTES / 4;

// ANCHOR: aligned_buf
/// A zeroed `f32` buffer of fixed length whose first element starts a 4096-byte page,
/// and so a 64-byte cache line.
///
/// The trap it removes: a large `Vec<f32>` comes from glibc's `mmap` path, which puts a
/// 16-byte header at the start of the pages, so the floats start 16 bytes *into* a line;
/// every 16-float load of a column then straddles two lines and costs two. A decode
/// kernel that streams the whole cache pays it on every load (chapter 8 measures it). A
/// column of the buffer starts on a line too when the column length is a multiple of
/// [`LINE_FLOATS`]. (A page rather than a line because, measured, columns that start at
/// the same place in their pages were a few percent faster still.)
///
/// Derefs to `[f32]`; never grows, so the alignment holds for the buffer's life.
pub struct AlignedBuf {
    /// `len` floats from `start`, and up to `ALIGN_FLOATS - 1` spare ones around them.
    data: Vec<f32>,
    /// The first index of `data` on an [`ALIGN_BYTES`] boundary.
    start: usize,
    len: usize,
}
// ANCHOR_END: aligned_buf

impl AlignedBuf {
    /// `dims`' product of zeros (its size checked, its allocation fallible: too large
    /// is [`crate::AttnError::TooLarge`]), starting on a page.
    pub fn try_zeroed(what: impl fmt::Display, dims: &[usize]) -> Result<Self> {
        let len = checked_len(&what, dims)?;
        let data = try_zeros_with_spare(&what, dims, ALIGN_FLOATS - 1)?;
        Ok(Self::aligned_in(data, len))
    }

    /// `len` floats of `data` (which has `ALIGN_FLOATS - 1` spare ones) from its first
    /// page boundary.
    fn aligned_in(data: Vec<f32>, len: usize) -> Self {
        let start = first_aligned(&data);
        debug_assert!(start + len <= data.len());
        Self { data, start, len }
    }

    /// Rows `first_row .. first_row + n_rows` of the column-major `(stride, n_cols)`
    /// matrix the buffer holds (column `c` at `c · stride ..`), as a view: no copy.
    ///
    /// Crate-internal: it panics if the rows pass `stride` or the matrix passes the
    /// buffer, which the callers (the caches, which size both) rule out.
    pub(crate) fn rows(
        &self,
        first_row: usize,
        n_rows: usize,
        n_cols: usize,
        stride: usize,
    ) -> DMatrixView<'_, f32> {
        assert!(first_row + n_rows <= stride, "rows past the column length");
        let (rows, cols, stride) = (Dyn(n_rows), Dyn(n_cols), Dyn(stride));
        DMatrixView::from_slice_with_strides_generic(
            &self[first_row..],
            rows,
            cols,
            U1,
            stride,
        )
    }

    /// [`AlignedBuf::rows`], writable; the same panics, ruled out the same way.
    pub(crate) fn rows_mut(
        &mut self,
        first_row: usize,
        n_rows: usize,
        n_cols: usize,
        stride: usize,
    ) -> DMatrixViewMut<'_, f32> {
        assert!(first_row + n_rows <= stride, "rows past the column length");
        let (rows, cols, stride) = (Dyn(n_rows), Dyn(n_cols), Dyn(stride));
        let data = &mut self[first_row..];
        DMatrixViewMut::from_slice_with_strides_generic(data, rows, cols, U1, stride)
    }

    /// Whether the first element starts a page (and so a cache line).
    pub fn is_aligned(&self) -> bool {
        (self.as_ptr() as usize).is_multiple_of(ALIGN_BYTES)
    }
}

/// The index of `data`'s first float on an [`ALIGN_BYTES`] boundary. `align_offset`
/// counts in `f32`s and always succeeds for a 4-byte-aligned pointer; the `min` keeps a
/// buffer with its spare floats in bounds (and merely unaligned) were it ever not to.
fn first_aligned(data: &[f32]) -> usize {
    data.as_ptr().align_offset(ALIGN_BYTES).min(ALIGN_FLOATS - 1)
}

impl Deref for AlignedBuf {
    type Target = [f32];

    fn deref(&self) -> &[f32] {
        &self.data[self.start..self.start + self.len]
    }
}

impl DerefMut for AlignedBuf {
    fn deref_mut(&mut self) -> &mut [f32] {
        &mut self.data[self.start..self.start + self.len]
    }
}

/// A copy is a new allocation, with its own distance to the next line: it is aligned
/// again, not given the original's `start`.
impl Clone for AlignedBuf {
    fn clone(&self) -> Self {
        let mut copy = Self::aligned_in(vec![0.0; self.len + ALIGN_FLOATS - 1], self.len);
        copy.copy_from_slice(self);
        copy
    }
}

/// Equal when the `len` floats are: where they start in memory does not matter.
impl PartialEq for AlignedBuf {
    fn eq(&self, other: &Self) -> bool {
        **self == **other
    }
}

impl fmt::Debug for AlignedBuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AlignedBuf")
            .field("len", &self.len)
            .field("aligned", &self.is_aligned())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_on_a_page_and_stays_there_when_cloned_or_moved() {
        // sizes on both of the allocator's paths: the heap (small) and mmap (large)
        for len in [0, 1, 17, 1000, 3 << 20] {
            let mut a = AlignedBuf::try_zeroed("test", &[len]).unwrap();
            assert!(a.is_aligned(), "len {len}");
            assert_eq!(a.len(), len);
            assert!(a.iter().all(|&x| x == 0.0));
            if len > 0 {
                a[len - 1] = 7.0;
            }
            let b = a.clone();
            assert!(b.is_aligned() && b == a, "len {len}");
            let moved = Box::new(a); // the struct moves, its floats stay
            assert!(moved.is_aligned());
        }
    }

    #[test]
    fn too_large_is_an_error_not_an_abort() {
        let err = AlignedBuf::try_zeroed("test", &[usize::MAX, 2]).unwrap_err();
        assert!(matches!(err, crate::AttnError::TooLarge { .. }), "{err}");
    }
}
