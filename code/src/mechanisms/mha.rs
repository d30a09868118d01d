//! Multi-head attention: several causal heads side by side, then an output projection.

use nalgebra::DMatrix;
use rand::Rng;

use crate::mechanisms::linear::Linear;
use crate::mechanisms::sdpa::{Mask, scaled_dot_product_attention};
use crate::mechanisms::self_attention::{Attention, SelfAttention};
use crate::support::error::{Result, divisible, shape_err};

// ANCHOR: mha_wrapper
/// `n_heads` independent causal [`SelfAttention`] heads whose outputs are concatenated
/// (Raschka's `MultiHeadAttentionWrapper`): `(seq, d_in) -> (seq, n_heads · head_out)`.
///
/// Easy to read and slow to run: each head projects the input on its own.
/// [`MultiHeadAttention`] computes the same thing with one projection per Q/K/V (see its
/// tests).
#[derive(Clone, Debug, PartialEq)]
pub struct MultiHeadAttentionWrapper {
    /// The heads, each a causal single-head attention with the same `d_in` and `d_out`.
    heads: Vec<SelfAttention>,
}
// ANCHOR_END: mha_wrapper

impl MultiHeadAttentionWrapper {
    /// Wraps heads, which must agree on `d_in` and `d_out` and be causal.
    pub fn new(heads: Vec<SelfAttention>) -> Result<Self> {
        crate::support::error::nonzero("n_heads", heads.len())?;
        let (d_in, d_out) = (heads[0].d_in(), heads[0].d_out());
        for (i, h) in heads.iter().enumerate() {
            if (h.d_in(), h.d_out()) != (d_in, d_out) {
                let what = format!("MultiHeadAttentionWrapper head {i} (d_out, d_in)");
                return Err(shape_err(
                    what,
                    &[Some(d_out), Some(d_in)],
                    &[h.d_out(), h.d_in()],
                ));
            }
        }
        Ok(Self { heads })
    }

    /// `n_heads` random causal heads, each `d_in -> head_out`.
    pub fn random(
        d_in: usize,
        head_out: usize,
        n_heads: usize,
        qkv_bias: bool,
        rng: &mut impl Rng,
    ) -> Result<Self> {
        let heads = (0..n_heads)
            .map(|_| SelfAttention::random(d_in, head_out, qkv_bias, true, rng))
            .collect::<Result<Vec<_>>>()?;
        Self::new(heads)
    }
}

impl MultiHeadAttentionWrapper {
    /// The heads.
    pub fn heads(&self) -> &[SelfAttention] {
        &self.heads
    }
}

impl Attention for MultiHeadAttentionWrapper {
    fn d_in(&self) -> usize {
        self.heads[0].d_in()
    }
    fn d_out(&self) -> usize {
        self.heads.len() * self.heads[0].d_out()
    }
    // ANCHOR: mha_wrapper_forward
    fn forward_one(&self, x: &DMatrix<f32>) -> Result<DMatrix<f32>> {
        let head_out = self.heads[0].d_out();
        let mut out = DMatrix::zeros(x.nrows(), self.d_out());
        for (h, head) in self.heads.iter().enumerate() {
            // each head: (seq, d_in) -> (seq, head_out), written into its block of
            // columns
            out.columns_mut(h * head_out, head_out).copy_from(&head.forward_one(x)?);
        }
        Ok(out)
    }
    // ANCHOR_END: mha_wrapper_forward
}

// ANCHOR: qkvo_weights
/// The four projections of an attention layer, by name: `w_key` and `w_value` have the
/// same shape, so as positional arguments they could be swapped and the layer would still
/// run.
#[derive(Clone, Debug, PartialEq)]
pub struct QkvoWeights {
    /// `W_q`: `(n_heads · head_dim, d_in)` (`(d_out, d_in)` in multi-head attention).
    pub w_query: Linear,
    /// `W_k`: `(d_out, d_in)` in multi-head attention; fewer rows in grouped-query
    /// attention (chapter 4), where keys have fewer heads than queries.
    pub w_key: Linear,
    /// `W_v`: the shape of `W_k`.
    pub w_value: Linear,
    /// `W_o`: `(d_out, n_heads · head_dim)`.
    pub out_proj: Linear,
}
// ANCHOR_END: qkvo_weights

// ANCHOR: mha
/// Multi-head causal self-attention (Raschka's `MultiHeadAttention`): `(seq, d_in) ->
/// (seq, d_out)`.
///
/// One projection each for Q, K and V maps `d_in -> d_out`; the `d_out` columns are then
/// read as `n_heads` heads of `head_dim = d_out / n_heads` columns each, attended
/// separately, put side by side again and mixed by the output projection `d_out ->
/// d_out`.
#[derive(Clone, Debug, PartialEq)]
pub struct MultiHeadAttention {
    /// `w_query`, `w_key`, `w_value` `(d_out, d_in)`; `out_proj` `(d_out, d_out)`, with a
    /// bias as in `nn.Linear`'s default.
    weights: QkvoWeights,
    /// Number of heads; `head_dim = d_out / n_heads`. The fields are private: `new`
    /// checks that the shapes fit and that `n_heads` divides `d_out`, which public fields
    /// would let a caller undo.
    n_heads: usize,
}
// ANCHOR_END: mha

impl MultiHeadAttention {
    /// A module from its four projections; checks that the shapes fit and that `n_heads`
    /// divides `d_out`.
    pub fn new(weights: QkvoWeights, n_heads: usize) -> Result<Self> {
        let QkvoWeights { w_query, w_key, w_value, out_proj } = &weights;
        let (d_out, d_in) = w_query.weight().shape();
        divisible("d_out", d_out, "n_heads", n_heads)?;
        for (name, w, want) in [
            ("w_key", w_key, (d_out, d_in)),
            ("w_value", w_value, (d_out, d_in)),
            ("out_proj", out_proj, (d_out, d_out)),
        ] {
            if w.weight().shape() != want {
                let got = [w.out_features(), w.in_features()];
                return Err(shape_err(
                    format!("MultiHeadAttention {name} weight"),
                    &[Some(want.0), Some(want.1)],
                    &got,
                ));
            }
        }
        Ok(Self { weights, n_heads })
    }

    /// Randomly initialised like Raschka's `MultiHeadAttention(d_in, d_out, ...,
    /// num_heads, qkv_bias)`.
    pub fn random(
        d_in: usize,
        d_out: usize,
        n_heads: usize,
        qkv_bias: bool,
        rng: &mut impl Rng,
    ) -> Result<Self> {
        divisible("d_out", d_out, "n_heads", n_heads)?;
        // drawn in this order (Q, K, V, O): fields are evaluated as written
        let weights = QkvoWeights {
            w_query: Linear::random(d_in, d_out, qkv_bias, rng)?,
            w_key: Linear::random(d_in, d_out, qkv_bias, rng)?,
            w_value: Linear::random(d_in, d_out, qkv_bias, rng)?,
            out_proj: Linear::random(d_out, d_out, true, rng)?,
        };
        Self::new(weights, n_heads)
    }

    /// Number of heads.
    pub fn n_heads(&self) -> usize {
        self.n_heads
    }

    /// The four projections.
    pub fn weights(&self) -> &QkvoWeights {
        &self.weights
    }

    /// Width of one head, `d_out / n_heads`.
    pub fn head_dim(&self) -> usize {
        self.weights.w_query.out_features() / self.n_heads
    }

    // ANCHOR: mha_context
    /// The heads' contexts side by side, before the output projection:
    /// `(seq, d_in) -> (seq, d_out)`.
    pub fn context(&self, x: &DMatrix<f32>) -> Result<DMatrix<f32>> {
        // (seq, d_in) -> (seq, d_out) = (seq, n_heads·head_dim)
        let queries = self.weights.w_query.forward(x)?;
        let keys = self.weights.w_key.forward(x)?;
        let values = self.weights.w_value.forward(x)?;
        let (d, causal) = (self.head_dim(), Mask::CAUSAL);
        let mut context = DMatrix::zeros(x.nrows(), queries.ncols()); // (seq, d_out)
        for h in 0..self.n_heads {
            // head h: columns h·d .. (h+1)·d of each, (seq, head_dim) views, no copy
            let q_h = queries.columns(h * d, d);
            let (k_h, v_h) = (keys.columns(h * d, d), values.columns(h * d, d));
            let head = scaled_dot_product_attention(q_h, k_h, v_h, causal)?;
            // back into the same columns: the heads side by side again
            context.columns_mut(h * d, d).copy_from(&head.context);
        }
        Ok(context)
    }
    // ANCHOR_END: mha_context
}

impl Attention for MultiHeadAttention {
    fn d_in(&self) -> usize {
        self.weights.w_query.in_features()
    }
    fn d_out(&self) -> usize {
        self.weights.out_proj.out_features()
    }
    fn forward_one(&self, x: &DMatrix<f32>) -> Result<DMatrix<f32>> {
        // (seq, d_out) -> (seq, d_out): mix the heads
        self.weights.out_proj.forward(&self.context(x)?)
    }
}
