//! [`Batch`]: PyTorch's `(batch, seq, d)` tensor as a list of `(seq, d)` nalgebra
//! matrices.
//!
//! nalgebra is a linear-algebra library: its matrices have two dimensions and are stored
//! **column-major**. PyTorch and NumPy store row-major. Every constructor here says which
//! order it expects; loading PyTorch data with a column-major constructor silently
//! transposes it, which a square test shape would never notice.

use nalgebra::DMatrix;

use crate::support::error::{AttnError, Dims, Result, checked_len, nonzero, shape_err};

/// A batch of sequences: `batch` matrices of the same shape `(seq, dim)`, one row per
/// token.
#[derive(Clone, Debug, PartialEq)]
pub struct Batch {
    items: Vec<DMatrix<f32>>,
}

/// Builds a `(rows, cols)` matrix from **row-major** data (the order PyTorch and NumPy
/// use).
///
/// ```
/// let m = attention::matrix_from_row_major(2, 3, &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]).unwrap();
/// assert_eq!(m[(0, 2)], 3.0); // row 0, column 2
/// assert!(attention::matrix_from_row_major(2, 3, &[1.0]).is_err());
/// ```
pub fn matrix_from_row_major(
    rows: usize,
    cols: usize,
    data: &[f32],
) -> Result<DMatrix<f32>> {
    let expected = checked_len("matrix_from_row_major", &[rows, cols])?;
    if data.len() != expected {
        let shape = Dims::exact(&[rows, cols]);
        return Err(AttnError::Length {
            what: "matrix_from_row_major".into(),
            shape,
            expected,
            got: data.len(),
        });
    }
    // `from_row_slice` reads row-major; `from_vec`/`from_column_slice` would read
    // column-major.
    Ok(DMatrix::from_row_slice(rows, cols, data))
}

/// Flattens a matrix to **row-major** order, the inverse of [`matrix_from_row_major`].
pub fn matrix_to_row_major(m: &DMatrix<f32>) -> Vec<f32> {
    // nalgebra iterates column-major; the transpose's column-major order is our row-major
    // order.
    m.transpose().as_slice().to_vec()
}

impl Batch {
    /// Wraps matrices that all have the same shape. An empty list is an error.
    pub fn new(items: Vec<DMatrix<f32>>) -> Result<Self> {
        nonzero("batch", items.len())?;
        let shape = items[0].shape();
        for (b, m) in items.iter().enumerate() {
            if m.shape() != shape {
                let want = [Some(shape.0), Some(shape.1)];
                return Err(shape_err(
                    format!("Batch::new item {b}"),
                    &want,
                    &[m.nrows(), m.ncols()],
                ));
            }
        }
        Ok(Self { items })
    }

    /// A batch holding one sequence.
    pub fn single(item: DMatrix<f32>) -> Self {
        Self { items: vec![item] }
    }

    /// Builds a `(batch, seq, dim)` batch from **row-major** data, as PyTorch lays out a
    /// 3-D tensor.
    pub fn from_row_major(
        batch: usize,
        seq: usize,
        dim: usize,
        data: &[f32],
    ) -> Result<Self> {
        nonzero("batch", batch)?;
        nonzero("seq", seq)?;
        nonzero("dim", dim)?;
        let expected = checked_len("Batch::from_row_major", &[batch, seq, dim])?;
        if data.len() != expected {
            let shape = Dims::exact(&[batch, seq, dim]);
            return Err(AttnError::Length {
                what: "Batch::from_row_major".into(),
                shape,
                expected,
                got: data.len(),
            });
        }
        let items = data
            .chunks_exact(seq * dim)
            .map(|chunk| DMatrix::from_row_slice(seq, dim, chunk))
            .collect();
        Ok(Self { items })
    }

    /// A batch of zeros of shape `(batch, seq, dim)`.
    pub fn zeros(batch: usize, seq: usize, dim: usize) -> Result<Self> {
        nonzero("batch", batch)?;
        nonzero("seq", seq)?;
        nonzero("dim", dim)?;
        checked_len("Batch::zeros", &[batch, seq, dim])?;
        let items = (0..batch)
            .map(|_| crate::support::error::try_zero_matrix("Batch::zeros", seq, dim))
            .collect::<Result<_>>()?;
        Ok(Self { items })
    }

    /// Flattens to row-major `(batch, seq, dim)` order, as PyTorch would store it.
    pub fn to_row_major(&self) -> Vec<f32> {
        self.items.iter().flat_map(matrix_to_row_major).collect()
    }

    /// `[batch, seq, dim]`.
    pub fn shape(&self) -> [usize; 3] {
        [self.batch_size(), self.seq_len(), self.dim()]
    }

    /// Number of sequences.
    pub fn batch_size(&self) -> usize {
        self.items.len()
    }

    /// Tokens per sequence.
    pub fn seq_len(&self) -> usize {
        self.items[0].nrows()
    }

    /// Features per token.
    pub fn dim(&self) -> usize {
        self.items[0].ncols()
    }

    /// The `(seq, dim)` matrices, one per sequence.
    pub fn items(&self) -> &[DMatrix<f32>] {
        &self.items
    }

    /// Tokens `start .. start + len` of every sequence: `(batch, len, dim)`.
    pub fn narrow_seq(&self, start: usize, len: usize) -> Result<Self> {
        if start.checked_add(len).is_none_or(|end| end > self.seq_len()) {
            return Err(AttnError::PositionOutOfRange {
                start_pos: start,
                len,
                max_positions: self.seq_len(),
            });
        }
        Ok(Self {
            items: self.items.iter().map(|m| m.rows(start, len).into_owned()).collect(),
        })
    }

    /// Concatenates batches along the sequence axis (PyTorch's `torch.cat(parts,
    /// dim=1)`).
    pub fn concat_seq(parts: &[Batch]) -> Result<Self> {
        nonzero("number of parts", parts.len())?;
        let [batch, _, dim] = parts[0].shape();
        for p in parts {
            if p.batch_size() != batch || p.dim() != dim {
                return Err(shape_err(
                    "Batch::concat_seq part",
                    &[Some(batch), None, Some(dim)],
                    &p.shape(),
                ));
            }
        }
        let total: usize = parts.iter().map(Batch::seq_len).sum();
        let items = (0..batch)
            .map(|b| {
                let mut m = DMatrix::zeros(total, dim);
                let mut row = 0;
                for p in parts {
                    let n = p.seq_len();
                    m.rows_mut(row, n).copy_from(&p.items[b]);
                    row += n;
                }
                m
            })
            .collect();
        Ok(Self { items })
    }

    /// Applies `f` to every sequence and collects the results into a new batch.
    pub fn try_map(
        &self,
        mut f: impl FnMut(&DMatrix<f32>) -> Result<DMatrix<f32>>,
    ) -> Result<Self> {
        Self::new(self.items.iter().map(&mut f).collect::<Result<Vec<_>>>()?)
    }
}
