//! A linear layer with PyTorch's weight layout.

use nalgebra::{DMatrix, DVector};
use rand::{Rng, RngExt};

use crate::support::batch::Batch;
use crate::support::error::{Result, nonzero, shape_err};

// ANCHOR: linear
/// A linear layer `y = x · Wᵀ + b`, stored like PyTorch's `nn.Linear`.
///
/// `weight` has shape `(out_features, in_features)`: one row per output feature. Keeping PyTorch's
/// layout means a `weight` tensor from a checkpoint or fixture is used as it is, no transposing.
#[derive(Clone, Debug, PartialEq)]
pub struct Linear {
    /// `(out_features, in_features)`.
    weight: DMatrix<f32>,
    /// `(out_features,)`, or `None` for `bias=False`. Private, like `weight`: [`Linear::new`]
    /// checks that the two agree, and public fields would let a caller break that afterwards.
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
    /// A randomly initialised layer like `nn.Linear(d_in, d_out, bias)`: every weight (and bias)
    /// uniform in `[-1/√d_in, 1/√d_in)`. The numbers differ from PyTorch's (different generator);
    /// tests that compare with PyTorch load PyTorch's weights instead.
    pub fn random(d_in: usize, d_out: usize, bias: bool, rng: &mut impl Rng) -> Result<Self> {
        nonzero("Linear in_features", d_in)?;
        nonzero("Linear out_features", d_out)?;
        let bound = 1.0 / (d_in as f32).sqrt();
        let weight = DMatrix::from_fn(d_out, d_in, |_, _| rng.random_range(-bound..bound));
        let bias = bias.then(|| DVector::from_fn(d_out, |_, _| rng.random_range(-bound..bound)));
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
            return Err(shape_err("Linear::forward input", &[None, Some(self.in_features())], &got));
        }
        // `x * Wᵀ` with an owned transpose goes to nalgebra's fast matrix product; `x.tr_mul`-style
        // shortcuts would fall back to a loop 15-20x slower.
        let mut y = x * self.weight.transpose();
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
