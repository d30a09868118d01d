//! The KV cache: keys and values of past tokens, kept so each new token costs one row,
//! not a recompute.

mod sliding; // chapter 9: the cache of a sliding-window layer

use nalgebra::{DMatrix, DMatrixView};

use crate::mechanisms::sdpa::HeadLayout;
use crate::support::aligned::{AlignedBuf, LINE_FLOATS};
use crate::support::error::{AttnError, Result, check_range, nonzero, shape_err};

// ANCHOR: layer_kv_cache
/// One layer's cache: for every sequence of the batch, the keys and values of the
/// positions seen so far, **after RoPE** and **before** the GQA expansion (`n_kv_heads`
/// heads, not `n_heads`).
///
/// Allocated once to `capacity` positions; appending moves a fill mark, never
/// reallocates. Row `r` holds the token at absolute position `first_pos + r`, where
/// `first_pos` is the position of the first tokens appended (0 for a whole sequence).
#[derive(Clone, Debug, PartialEq)]
pub struct LayerKvCache {
    /// Per sequence: a column-major `(stride, n_kv_heads · head_dim)` matrix, rows
    /// `0 .. len` filled. A column is one channel of every position, contiguous.
    keys: Vec<AlignedBuf>,
    /// Same layout as `keys`.
    values: Vec<AlignedBuf>,
    len: usize,
    capacity: usize,
    /// Floats from one column to the next: `capacity` rounded up to whole cache lines,
    /// so that every column starts on a line, as the buffer does (a 16-float load that
    /// straddles two lines costs two: chapter 8).
    stride: usize,
    kv_dim: usize,
    /// The absolute position of row 0, fixed by the first append.
    first_pos: usize,
    /// Chapter 9: a sliding window (its width, and how many first rows stay) lets the
    /// cache drop rows no later query sees; `dropped` counts them.
    window: Option<(usize, usize)>,
    dropped: usize,
}
// ANCHOR_END: layer_kv_cache

impl LayerKvCache {
    /// A cache for `batch` sequences of up to `capacity` positions, rows of `n_kv_heads ·
    /// head_dim`.
    ///
    /// The size `2 · batch · capacity · n_kv_heads · head_dim · 4` bytes is checked
    /// before anything is allocated: a size that overflows or cannot be allocated is
    /// [`AttnError::TooLarge`], not an abort.
    pub fn new(
        batch: usize,
        capacity: usize,
        n_kv_heads: usize,
        head_dim: usize,
    ) -> Result<Self> {
        nonzero("batch", batch)?;
        nonzero("capacity", capacity)?;
        nonzero("n_kv_heads", n_kv_heads)?;
        nonzero("head_dim", head_dim)?;
        let what = format!(
            "LayerKvCache for {batch} sequences (2 × batch, capacity, n_kv_heads × \
                head_dim)"
        );
        crate::support::error::checked_len(
            &what,
            &[2, batch, capacity, n_kv_heads, head_dim],
        )?;
        let kv_dim = n_kv_heads * head_dim; // fits: checked above
        let stride = capacity.next_multiple_of(LINE_FLOATS); // fits: capacity < 2^34
        let mut keys = Vec::with_capacity(batch);
        let mut values = Vec::with_capacity(batch);
        for _ in 0..batch {
            keys.push(AlignedBuf::try_zeroed(&what, &[stride, kv_dim])?);
            values.push(AlignedBuf::try_zeroed(&what, &[stride, kv_dim])?);
        }
        Ok(Self {
            keys,
            values,
            len: 0,
            capacity,
            stride,
            kv_dim,
            first_pos: 0,
            window: None,
            dropped: 0,
        })
    }

    /// A cache shaped for `heads`' keys and values.
    pub fn for_heads(batch: usize, capacity: usize, heads: HeadLayout) -> Result<Self> {
        Self::new(batch, capacity, heads.n_kv_heads(), heads.head_dim())
    }

    /// Rows filled so far; the next token goes to row `len()`.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing has been appended since creation or the last
    /// [`LayerKvCache::reset`].
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Rows allocated.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Sequences in the batch.
    pub fn batch_size(&self) -> usize {
        self.keys.len()
    }

    /// Width of a cached row: `n_kv_heads · head_dim`.
    pub fn kv_dim(&self) -> usize {
        self.kv_dim
    }

    /// The absolute position of row 0 (0 until the first append says otherwise).
    pub fn first_pos(&self) -> usize {
        self.first_pos
    }

    /// The absolute position the next token must have: `first_pos() + len()`, plus the
    /// rows a sliding-window cache has dropped.
    pub fn next_pos(&self) -> usize {
        // bounded: first_pos + dropped + len was checked by the last append
        self.first_pos + self.dropped + self.len
    }

    // ANCHOR: kv_cache_append
    /// Appends the keys and values of new tokens at absolute positions `start_pos ..`,
    /// one `(n_new, n_kv_heads · head_dim)` matrix per sequence.
    ///
    /// Later appends must continue the first (`start_pos == next_pos()`): that catches a
    /// RoPE offset not advanced, or advanced twice ([`AttnError::CachePosition`]). On any
    /// error the cache is unchanged; a full cache is [`AttnError::CacheFull`], never an
    /// overwrite of old positions.
    pub fn append(
        &mut self,
        start_pos: usize,
        keys: &[DMatrix<f32>],
        values: &[DMatrix<f32>],
    ) -> Result<()> {
        let n_new = self.check_shapes(keys, values)?;
        if !self.is_empty() && start_pos != self.next_pos() {
            let next_pos = self.next_pos();
            return Err(AttnError::CachePosition { start_pos, next_pos });
        }
        // every position the cache will hold must exist: no overflow past usize::MAX
        let first_pos = if self.is_empty() { start_pos } else { self.first_pos };
        check_range(first_pos, self.dropped + self.len + n_new, usize::MAX)?;
        if n_new > self.capacity - self.len {
            self.drop_unseen_rows(n_new)?; // a sliding window's cache (chapter 9)
        }
        let (len, kv_dim, stride) = (self.len, self.kv_dim, self.stride);
        for b in 0..self.keys.len() {
            self.keys[b].rows_mut(len, n_new, kv_dim, stride).copy_from(&keys[b]);
            self.values[b].rows_mut(len, n_new, kv_dim, stride).copy_from(&values[b]);
        }
        self.first_pos = first_pos;
        self.len += n_new;
        Ok(())
    }
    // ANCHOR_END: kv_cache_append

    /// Checks that `keys` and `values` hold one `(n_new, kv_dim)` matrix per sequence of
    /// the batch, and returns `n_new`.
    fn check_shapes(
        &self,
        keys: &[DMatrix<f32>],
        values: &[DMatrix<f32>],
    ) -> Result<usize> {
        let batch = self.keys.len();
        let n_new = keys.first().map_or(0, |k| k.nrows());
        for (name, part) in [("keys", keys), ("values", values)] {
            if part.len() != batch {
                return Err(shape_err(
                    format!("LayerKvCache::append {name}: one matrix per sequence"),
                    &[Some(batch)],
                    &[part.len()],
                ));
            }
            if let Some(m) = part.iter().find(|m| m.shape() != (n_new, self.kv_dim)) {
                let what = format!("LayerKvCache::append {name}");
                return Err(shape_err(
                    what,
                    &[Some(n_new), Some(self.kv_dim)],
                    &[m.nrows(), m.ncols()],
                ));
            }
        }
        Ok(n_new)
    }

    /// The filled keys of sequence `b`: a `(len, n_kv_heads · head_dim)` view, no copy.
    pub fn keys(&self, b: usize) -> Result<DMatrixView<'_, f32>> {
        self.check_batch(b)?;
        Ok(self.keys[b].rows(0, self.len, self.kv_dim, self.stride))
    }

    /// The filled values of sequence `b`: a `(len, n_kv_heads · head_dim)` view, no copy.
    pub fn values(&self, b: usize) -> Result<DMatrixView<'_, f32>> {
        self.check_batch(b)?;
        Ok(self.values[b].rows(0, self.len, self.kv_dim, self.stride))
    }

    fn check_batch(&self, b: usize) -> Result<()> {
        if b >= self.keys.len() {
            return Err(AttnError::IndexOutOfRange {
                what: "LayerKvCache sequence",
                index: b,
                len: self.keys.len(),
            });
        }
        Ok(())
    }

    /// Forgets every position (keeps the allocation), ready for a new sequence.
    pub fn reset(&mut self) {
        self.len = 0;
        self.first_pos = 0;
        self.dropped = 0;
    }
}
