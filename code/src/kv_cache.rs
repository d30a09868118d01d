//! The KV cache: keys and values of past tokens, kept so each new token costs one row, not a recompute.

use nalgebra::{DMatrix, DMatrixView};

use crate::error::{AttnError, Result, fmt_shape, nonzero};

// ANCHOR: layer_kv_cache
/// One layer's cache: for every sequence of the batch, the keys and values of the positions seen so
/// far, **after RoPE** and **before** the GQA expansion (`n_kv_heads` heads, not `n_heads`).
///
/// Allocated once to `capacity` positions; appending moves a fill mark, never reallocates.
#[derive(Clone, Debug, PartialEq)]
pub struct LayerKvCache {
    /// Per sequence: `(capacity, n_kv_heads · head_dim)`, rows `0 .. len` filled.
    keys: Vec<DMatrix<f32>>,
    /// Same layout as `keys`.
    values: Vec<DMatrix<f32>>,
    len: usize,
    capacity: usize,
    kv_dim: usize,
}
// ANCHOR_END: layer_kv_cache

impl LayerKvCache {
    /// A cache for `batch` sequences of up to `capacity` positions, rows of `n_kv_heads · head_dim`.
    pub fn new(batch: usize, capacity: usize, n_kv_heads: usize, head_dim: usize) -> Result<Self> {
        nonzero("batch", batch)?;
        nonzero("capacity", capacity)?;
        nonzero("n_kv_heads", n_kv_heads)?;
        nonzero("head_dim", head_dim)?;
        let kv_dim = n_kv_heads * head_dim;
        Ok(Self {
            keys: vec![DMatrix::zeros(capacity, kv_dim); batch],
            values: vec![DMatrix::zeros(capacity, kv_dim); batch],
            len: 0,
            capacity,
            kv_dim,
        })
    }

    /// Positions filled so far; the next token goes to position `len()`.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing has been appended since creation or the last [`LayerKvCache::reset`].
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Positions allocated.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Sequences in the batch.
    pub fn batch_size(&self) -> usize {
        self.keys.len()
    }

    // ANCHOR: kv_cache_append
    /// Appends the keys and values of new tokens, one `(n_new, n_kv_heads · head_dim)` matrix per
    /// sequence. Checks everything first: on error the cache is unchanged, and appending past the
    /// capacity is [`AttnError::CacheFull`], never an overwrite of old positions.
    pub fn append(&mut self, keys: &[DMatrix<f32>], values: &[DMatrix<f32>]) -> Result<()> {
        let batch = self.keys.len();
        let n_new = keys.first().map_or(0, |k| k.nrows());
        for (name, part) in [("keys", keys), ("values", values)] {
            if part.len() != batch {
                return Err(AttnError::Shape {
                    context: format!("LayerKvCache::append {name}"),
                    expected: format!("{batch} matrices (one per sequence)"),
                    got: format!("{} matrices", part.len()),
                });
            }
            if let Some(m) = part.iter().find(|m| m.shape() != (n_new, self.kv_dim)) {
                return Err(AttnError::Shape {
                    context: format!("LayerKvCache::append {name}"),
                    expected: fmt_shape(&[n_new, self.kv_dim]),
                    got: fmt_shape(&[m.nrows(), m.ncols()]),
                });
            }
        }
        if self.len + n_new > self.capacity {
            return Err(AttnError::CacheFull { capacity: self.capacity, len: self.len, adding: n_new });
        }
        for b in 0..batch {
            self.keys[b].rows_mut(self.len, n_new).copy_from(&keys[b]);
            self.values[b].rows_mut(self.len, n_new).copy_from(&values[b]);
        }
        self.len += n_new;
        Ok(())
    }
    // ANCHOR_END: kv_cache_append

    /// The filled keys of sequence `b`: a `(len, n_kv_heads · head_dim)` view, no copy.
    pub fn keys(&self, b: usize) -> Result<DMatrixView<'_, f32>> {
        self.check_batch(b)?;
        Ok(self.keys[b].rows(0, self.len))
    }

    /// The filled values of sequence `b`: a `(len, n_kv_heads · head_dim)` view, no copy.
    pub fn values(&self, b: usize) -> Result<DMatrixView<'_, f32>> {
        self.check_batch(b)?;
        Ok(self.values[b].rows(0, self.len))
    }

    fn check_batch(&self, b: usize) -> Result<()> {
        if b >= self.keys.len() {
            return Err(AttnError::Shape {
                context: "LayerKvCache sequence index".into(),
                expected: format!("an index below the batch size {}", self.keys.len()),
                got: b.to_string(),
            });
        }
        Ok(())
    }

    /// Forgets every position (keeps the allocation), ready for a new sequence.
    pub fn reset(&mut self) {
        self.len = 0;
    }
}

/// A model's cache: one [`LayerKvCache`] per layer, all of the same shape.
#[derive(Clone, Debug, PartialEq)]
pub struct KvCache {
    layers: Vec<LayerKvCache>,
}

impl KvCache {
    /// `n_layers` caches for `batch` sequences of up to `capacity` positions.
    pub fn new(
        n_layers: usize,
        batch: usize,
        capacity: usize,
        n_kv_heads: usize,
        head_dim: usize,
    ) -> Result<Self> {
        nonzero("n_layers", n_layers)?;
        let layer = LayerKvCache::new(batch, capacity, n_kv_heads, head_dim)?;
        Ok(Self { layers: vec![layer; n_layers] })
    }

    /// The cache of layer `i`.
    pub fn layer_mut(&mut self, i: usize) -> Result<&mut LayerKvCache> {
        let n = self.layers.len();
        self.layers.get_mut(i).ok_or_else(|| AttnError::Shape {
            context: "KvCache layer index".into(),
            expected: format!("an index below n_layers {n}"),
            got: i.to_string(),
        })
    }

    /// Number of layers.
    pub fn n_layers(&self) -> usize {
        self.layers.len()
    }

    /// Resets every layer.
    pub fn reset(&mut self) {
        self.layers.iter_mut().for_each(LayerKvCache::reset);
    }
}
