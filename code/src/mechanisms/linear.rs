//! A linear layer with PyTorch's weight layout.

use nalgebra::{DMatrix, DVector, Dyn, MatrixView};
use rand::{Rng, RngExt};

use crate::fast::simd::{Kernel, dispatch};
use crate::support::batch::Batch;
use crate::support::error::{Result, nonzero, shape_err};

// ANCHOR: linear
/// A linear layer `y = x · Wᵀ + b`, stored like PyTorch's `nn.Linear`.
///
/// `weight` has shape `(out_features, in_features)`: one row per output feature. Keeping
/// PyTorch's layout means a `weight` tensor from a checkpoint or fixture is used as it
/// is, no transposing.
#[derive(Clone, Debug, PartialEq)]
pub struct Linear {
    /// `(out_features, in_features)`.
    weight: DMatrix<f32>,
    /// `(out_features,)`, or `None` for `bias=False`. Private, like `weight`:
    /// [`Linear::new`] checks that the two agree, and public fields would let a caller
    /// break that afterwards.
    bias: Option<DVector<f32>>,
}
// ANCHOR_END: linear

impl Linear {
    /// A layer from a `(out, in)` weight and an optional `(out,)` bias.
    pub fn new(weight: DMatrix<f32>, bias: Option<DVector<f32>>) -> Result<Self> {
        nonzero("Linear in_features", weight.ncols())?;
        nonzero("Linear out_features", weight.nrows())?;
        if let Some(b) = &bias
            && b.len() != weight.nrows()
        {
            return Err(shape_err("Linear bias", &[Some(weight.nrows())], &[b.len()]));
        }
        Ok(Self { weight, bias })
    }

    /// The weight, `(out_features, in_features)`.
    pub fn weight(&self) -> &DMatrix<f32> {
        &self.weight
    }

    /// The bias, `(out_features,)`, if the layer has one.
    pub fn bias(&self) -> Option<&DVector<f32>> {
        self.bias.as_ref()
    }

    // ANCHOR: linear_random
    /// A randomly initialised layer like `nn.Linear(d_in, d_out, bias)`: every weight
    /// (and bias) uniform in `[-1/√d_in, 1/√d_in)`. The numbers differ from PyTorch's
    /// (different generator); tests that compare with PyTorch load PyTorch's weights
    /// instead.
    pub fn random(
        d_in: usize,
        d_out: usize,
        bias: bool,
        rng: &mut impl Rng,
    ) -> Result<Self> {
        nonzero("Linear in_features", d_in)?;
        nonzero("Linear out_features", d_out)?;
        let bound = 1.0 / (d_in as f32).sqrt();
        let weight =
            DMatrix::from_fn(d_out, d_in, |_, _| rng.random_range(-bound..bound));
        let bias =
            bias.then(|| DVector::from_fn(d_out, |_, _| rng.random_range(-bound..bound)));
        Ok(Self { weight, bias })
    }
    // ANCHOR_END: linear_random

    /// `in_features`: the width of the input rows.
    pub fn in_features(&self) -> usize {
        self.weight.ncols()
    }

    /// `out_features`: the width of the output rows.
    pub fn out_features(&self) -> usize {
        self.weight.nrows()
    }

    // ANCHOR: linear_forward
    /// `(n, in_features) -> (n, out_features)`: `x · Wᵀ (+ b)`.
    pub fn forward(&self, x: &DMatrix<f32>) -> Result<DMatrix<f32>> {
        if x.ncols() != self.in_features() {
            let got = [x.nrows(), x.ncols()];
            return Err(shape_err(
                "Linear::forward input",
                &[None, Some(self.in_features())],
                &got,
            ));
        }
        // Many rows: nalgebra's blocked matrix product (matrixmultiply). A few rows (one
        // token while decoding): nalgebra would run one long running sum per output,
        // which loses precision over 4096 inputs; `few_rows_product` sums in blocks
        // instead, as the matrix product does.
        let mut y = if x.nrows() <= FEW_ROWS {
            few_rows_product(x, &self.weight)
        } else {
            x * w_transposed(&self.weight)
        };
        if let Some(b) = &self.bias {
            for mut row in y.row_iter_mut() {
                row += b.transpose();
            }
        }
        Ok(y)
    }
    // ANCHOR_END: linear_forward

    /// Applies [`Linear::forward`] to every sequence of a batch.
    pub fn forward_batch(&self, x: &Batch) -> Result<Batch> {
        x.try_map(|m| self.forward(m))
    }
}

/// Inputs of at most this many rows take [`few_rows_product`]: nalgebra's matrix product
/// leaves its fast path (the `matrixmultiply` crate) when a side is 5 or less.
const FEW_ROWS: usize = 5;

/// Input features per partial sum in [`few_rows_product`]: the depth of
/// `matrixmultiply`'s f32 blocks, so that a few rows are summed the way many rows are.
const SUM_BLOCK: usize = 256;

/// `Wᵀ` as a view of `W`'s own storage, strides swapped: `(in, out)`, nothing copied.
fn w_transposed(w: &DMatrix<f32>) -> MatrixView<'_, f32, Dyn, Dyn, Dyn, Dyn> {
    let (n_out, n_in) = w.shape();
    // element (i, o) of Wᵀ is W[(o, i)], at o + i·n_out in W's column-major storage
    MatrixView::from_slice_with_strides_generic(
        w.as_slice(),
        Dyn(n_in),
        Dyn(n_out),
        Dyn(n_out),
        Dyn(1),
    )
}

/// `x · Wᵀ` for an `x` of a few rows, reading each column of `W` (one input feature,
/// contiguous) once for all rows.
///
/// Why not nalgebra's product: for a side of 5 or less it adds `x[i]·W[o, i]` into one
/// running f32 sum per output, input after input. Over Llama's 4096 inputs the rounding
/// errors of that long chain grow about eight times larger than those of the blocked
/// matrix product used for many rows (measured against f64: 1.6e-5 against 1.9e-6 on
/// 8B-shaped projections, enough to fail PyTorch's `assert_close`). Here each block of
/// [`SUM_BLOCK`] inputs is summed into a fresh partial sum, and the partial sums are
/// added up: the matrix product's order.
fn few_rows_product(x: &DMatrix<f32>, w: &DMatrix<f32>) -> DMatrix<f32> {
    struct FewRows<'a> {
        x: &'a DMatrix<f32>,
        w: &'a DMatrix<f32>,
    }
    impl Kernel for FewRows<'_> {
        type Output = DMatrix<f32>;

        #[inline(always)]
        fn run(self) -> DMatrix<f32> {
            let (n, (n_out, n_in)) = (self.x.nrows(), self.w.shape());
            if n == 0 || n_out == 0 {
                return DMatrix::zeros(n, n_out);
            }
            // row r of the result at r·n_out .. (r+1)·n_out: outputs contiguous, as W's
            // columns
            let mut total = vec![0.0_f32; n * n_out];
            let mut partial = vec![0.0_f32; n * n_out];
            let ws = self.w.as_slice();
            for i0 in (0..n_in).step_by(SUM_BLOCK) {
                partial.fill(0.0);
                for i in i0..n_in.min(i0 + SUM_BLOCK) {
                    // W[.., i]: input feature i
                    let w_col = &ws[i * n_out..(i + 1) * n_out];
                    for (r, p_row) in partial.chunks_exact_mut(n_out).enumerate() {
                        let x_ri = self.x[(r, i)];
                        p_row.iter_mut().zip(w_col).for_each(|(p, &w)| *p += x_ri * w);
                    }
                }
                total.iter_mut().zip(&partial).for_each(|(t, &p)| *t += p);
            }
            DMatrix::from_fn(n, n_out, |r, o| total[r * n_out + o])
        }
    }
    dispatch(FewRows { x, w })
}
