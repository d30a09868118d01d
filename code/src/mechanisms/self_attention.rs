//! The book's first steps: attention without weights, with trainable weights, and causal.

use nalgebra::DMatrix;
use rand::Rng;

use crate::mechanisms::linear::Linear;
use crate::mechanisms::sdpa::{HeadOutput, Mask, scaled_dot_product_attention};
use crate::mechanisms::softmax::softmax_rows;
use crate::support::batch::Batch;
use crate::support::error::{Result, shape_err};

/// A module mapping a batch `(batch, seq, d_in)` to `(batch, seq, d_out)`.
///
/// Implementors provide [`Attention::forward_one`] for one sequence;
/// [`Attention::forward`] checks the input width and runs it over the batch.
pub trait Attention {
    /// Width of the input rows.
    fn d_in(&self) -> usize;
    /// Width of the output rows.
    fn d_out(&self) -> usize;
    /// One sequence: `(seq, d_in) -> (seq, d_out)`.
    fn forward_one(&self, x: &DMatrix<f32>) -> Result<DMatrix<f32>>;
    /// A batch: `(batch, seq, d_in) -> (batch, seq, d_out)`.
    fn forward(&self, x: &Batch) -> Result<Batch> {
        if x.dim() != self.d_in() {
            return Err(shape_err(
                "Attention::forward input",
                &[None, None, Some(self.d_in())],
                &x.shape(),
            ));
        }
        x.try_map(|m| self.forward_one(m))
    }
}

// ANCHOR: simplified_self_attention
/// Self-attention with no trainable weights: every token's context vector is the average
/// of all tokens' embeddings, weighted by `softmax(x·xᵀ)`. `(seq, d) -> (seq, d)`.
///
/// No scaling and no mask: this is the book's very first step, before queries, keys and
/// values.
pub fn simplified_self_attention(x: &DMatrix<f32>) -> DMatrix<f32> {
    // (seq, d) · (d, seq) -> (seq, seq): every token's dot product with every token
    let scores = x * x.transpose();
    let weights = softmax_rows(&scores);
    // (seq, seq) · (seq, d) -> (seq, d)
    weights * x
}
// ANCHOR_END: simplified_self_attention

/// [`simplified_self_attention`] as an [`Attention`] module of width `d`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SimplifiedSelfAttention {
    /// Embedding width (input and output).
    pub d: usize,
}

impl Attention for SimplifiedSelfAttention {
    fn d_in(&self) -> usize {
        self.d
    }
    fn d_out(&self) -> usize {
        self.d
    }
    fn forward_one(&self, x: &DMatrix<f32>) -> Result<DMatrix<f32>> {
        if x.ncols() != self.d {
            let got = [x.nrows(), x.ncols()];
            return Err(shape_err(
                "SimplifiedSelfAttention input",
                &[None, Some(self.d)],
                &got,
            ));
        }
        Ok(simplified_self_attention(x))
    }
}

// ANCHOR: self_attention
/// Single-head self-attention with trainable query, key and value projections (Raschka's
/// `SelfAttention_v2`, and with `causal = true` his `CausalAttention`). `(seq, d_in) ->
/// (seq, d_out)`.
#[derive(Clone, Debug, PartialEq)]
pub struct SelfAttention {
    /// `W_q`: `(d_out, d_in)`.
    w_query: Linear,
    /// `W_k`: `(d_out, d_in)`.
    w_key: Linear,
    /// `W_v`: `(d_out, d_in)`.
    w_value: Linear,
    /// Whether each token sees only itself and earlier tokens.
    causal: bool,
}
// ANCHOR_END: self_attention

impl SelfAttention {
    /// `W_q`, `(d_out, d_in)`.
    pub fn w_query(&self) -> &Linear {
        &self.w_query
    }

    /// `W_k`, `(d_out, d_in)`.
    pub fn w_key(&self) -> &Linear {
        &self.w_key
    }

    /// `W_v`, `(d_out, d_in)`.
    pub fn w_value(&self) -> &Linear {
        &self.w_value
    }

    /// Whether each token sees only itself and earlier tokens.
    pub fn causal(&self) -> bool {
        self.causal
    }

    /// A module from three projections, which must all map `d_in -> d_out`.
    pub fn new(
        w_query: Linear,
        w_key: Linear,
        w_value: Linear,
        causal: bool,
    ) -> Result<Self> {
        for (name, w) in [("w_key", &w_key), ("w_value", &w_value)] {
            if w.weight().shape() != w_query.weight().shape() {
                let want = [Some(w_query.out_features()), Some(w_query.in_features())];
                let got = [w.out_features(), w.in_features()];
                return Err(shape_err(
                    format!("SelfAttention {name} weight (like w_query)"),
                    &want,
                    &got,
                ));
            }
        }
        Ok(Self { w_query, w_key, w_value, causal })
    }

    /// Randomly initialised like `nn.Linear(d_in, d_out, bias=qkv_bias)` three times.
    pub fn random(
        d_in: usize,
        d_out: usize,
        qkv_bias: bool,
        causal: bool,
        rng: &mut impl Rng,
    ) -> Result<Self> {
        Self::new(
            Linear::random(d_in, d_out, qkv_bias, rng)?,
            Linear::random(d_in, d_out, qkv_bias, rng)?,
            Linear::random(d_in, d_out, qkv_bias, rng)?,
            causal,
        )
    }

    // ANCHOR: self_attention_forward
    /// One sequence, returning the context `(seq, d_out)` and the weights `(seq, seq)`.
    pub fn forward_with_weights(&self, x: &DMatrix<f32>) -> Result<HeadOutput> {
        // (seq, d_in) -> (seq, d_out), three times
        let queries = self.w_query.forward(x)?;
        let keys = self.w_key.forward(x)?;
        let values = self.w_value.forward(x)?;
        let mask = if self.causal { Mask::CAUSAL } else { Mask::None };
        scaled_dot_product_attention(
            queries.as_view(),
            keys.as_view(),
            values.as_view(),
            mask,
        )
    }
    // ANCHOR_END: self_attention_forward
}

impl Attention for SelfAttention {
    fn d_in(&self) -> usize {
        self.w_query.in_features()
    }
    fn d_out(&self) -> usize {
        self.w_query.out_features()
    }
    fn forward_one(&self, x: &DMatrix<f32>) -> Result<DMatrix<f32>> {
        Ok(self.forward_with_weights(x)?.context)
    }
}
