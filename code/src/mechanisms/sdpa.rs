//! Scaled dot-product attention for one head, and the multi-head core that every module
//! shares.

use nalgebra::{DMatrix, DMatrixView};

use crate::mechanisms::mask::{apply_causal_mask, check_causal};
use crate::mechanisms::softmax::softmax_rows_in_place;
use crate::support::error::{Result, divisible, nonzero, shape_err, try_zero_matrix};

// ANCHOR: mask_enum
/// Which keys each query may see.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mask {
    /// Every query sees every key (the book's first, un-masked self-attention).
    None,
    /// Query `i` sees keys `0 ..= query_offset + i`.
    Causal {
        /// Keys before the first query's own key: `0` unless a KV cache holds earlier
        /// tokens.
        query_offset: usize,
    },
}

impl Mask {
    /// The causal mask of a fresh sequence (no cached keys): query `i` sees keys
    /// `0 ..= i`.
    pub const CAUSAL: Mask = Mask::Causal { query_offset: 0 };

    /// Hides the keys this mask forbids: `-inf` in `scores (n_queries, n_keys)`, in
    /// place.
    pub fn apply(self, scores: &mut DMatrix<f32>) -> Result<()> {
        match self {
            Mask::None => Ok(()),
            Mask::Causal { query_offset } => apply_causal_mask(scores, query_offset),
        }
    }
}
// ANCHOR_END: mask_enum

/// What one head of attention produces.
#[derive(Clone, Debug, PartialEq)]
pub struct HeadOutput {
    /// `(n_queries, d_v)`: one context vector per query.
    pub context: DMatrix<f32>,
    /// `(n_queries, n_keys)`: the softmax weights, each row sums to 1.
    pub weights: DMatrix<f32>,
}

// ANCHOR: attention_weights
/// The attention weights `softmax(q·kᵀ / √head_dim)` of one head, `(n_queries, n_keys)`.
///
/// `q` is `(n_queries, head_dim)`, `k` is `(n_keys, head_dim)`: one row per token.
pub fn attention_weights(
    q: DMatrixView<f32>,
    k: DMatrixView<f32>,
    mask: Mask,
) -> Result<DMatrix<f32>> {
    if q.ncols() != k.ncols() {
        let what = "attention_weights: keys need the queries' head_dim";
        return Err(shape_err(what, &[None, Some(q.ncols())], &[k.nrows(), k.ncols()]));
    }
    let head_dim = q.ncols();
    // (n_queries, head_dim) · (head_dim, n_keys) -> (n_queries, n_keys), allocated
    // fallibly: a score matrix larger than memory is an error, not an abort
    let mut scores = try_zero_matrix("attention scores", q.nrows(), k.nrows())?;
    scores.gemm(1.0, &q, &k.transpose(), 0.0); // scores = q·kᵀ
    // Scale *before* the softmax: with head_dim terms in each dot product the scores grow
    // like √head_dim, and large scores push the softmax to one-hot, where gradients
    // vanish.
    scores /= (head_dim as f32).sqrt();
    mask.apply(&mut scores)?; // -inf where a query may not look (chapter 2)
    softmax_rows_in_place(&mut scores);
    Ok(scores)
}
// ANCHOR_END: attention_weights

// ANCHOR: scaled_dot_product_attention
/// Scaled dot-product attention for one head: `softmax(q·kᵀ / √head_dim) · v`.
///
/// Shapes: `q (n_queries, head_dim)`, `k (n_keys, head_dim)`, `v (n_keys, d_v)`;
/// returns the context `(n_queries, d_v)` and the weights `(n_queries, n_keys)`.
/// Views let a caller pass one head's columns of a larger matrix without copying.
pub fn scaled_dot_product_attention(
    q: DMatrixView<f32>,
    k: DMatrixView<f32>,
    v: DMatrixView<f32>,
    mask: Mask,
) -> Result<HeadOutput> {
    if v.nrows() != k.nrows() {
        let what = "scaled_dot_product_attention: one value row per key";
        return Err(shape_err(what, &[Some(k.nrows()), None], &[v.nrows(), v.ncols()]));
    }
    let weights = attention_weights(q, k, mask)?;
    // (n_queries, n_keys) · (n_keys, d_v) -> (n_queries, d_v)
    let context = &weights * v;
    Ok(HeadOutput { context, weights })
}
// ANCHOR_END: scaled_dot_product_attention

// ANCHOR: head_layout
/// How the heads of a grouped-query layer are laid out: `n_heads` query heads of width
/// `head_dim`, sharing `n_kv_heads` key/value heads in groups of `group_size = n_heads /
/// n_kv_heads`.
///
/// Multi-head attention is `n_kv_heads == n_heads`; multi-query attention is `n_kv_heads
/// == 1`. The fields are private: a `HeadLayout` exists only once [`HeadLayout::new`] has
/// checked it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeadLayout {
    n_heads: usize,
    n_kv_heads: usize,
    head_dim: usize,
}
// ANCHOR_END: head_layout

impl HeadLayout {
    /// Checks that every size is at least 1, that `n_kv_heads` divides `n_heads`, and
    /// that the query and key widths `n_heads · head_dim` fit in a `usize`.
    pub fn new(n_heads: usize, n_kv_heads: usize, head_dim: usize) -> Result<Self> {
        nonzero("n_heads", n_heads)?;
        nonzero("head_dim", head_dim)?;
        divisible("n_heads", n_heads, "n_kv_heads", n_kv_heads)?;
        crate::support::error::checked_len("query row", &[n_heads, head_dim])?;
        Ok(Self { n_heads, n_kv_heads, head_dim })
    }

    /// The layout of `n_heads` query heads over a query width `q_dim` (`head_dim = q_dim
    /// / n_heads`).
    pub fn from_q_dim(q_dim: usize, n_heads: usize, n_kv_heads: usize) -> Result<Self> {
        divisible("query width (n_heads * head_dim)", q_dim, "n_heads", n_heads)?;
        Self::new(n_heads, n_kv_heads, q_dim / n_heads)
    }

    /// Query heads.
    pub fn n_heads(&self) -> usize {
        self.n_heads
    }

    /// Key/value heads.
    pub fn n_kv_heads(&self) -> usize {
        self.n_kv_heads
    }

    /// Width of each head.
    pub fn head_dim(&self) -> usize {
        self.head_dim
    }

    /// Query heads per key/value head: `n_heads / n_kv_heads`.
    pub fn group_size(&self) -> usize {
        self.n_heads / self.n_kv_heads
    }

    /// Width of the queries: `n_heads · head_dim`.
    pub fn q_dim(&self) -> usize {
        self.n_heads * self.head_dim
    }

    /// Width of the keys and of the values: `n_kv_heads · head_dim`.
    pub fn kv_dim(&self) -> usize {
        self.n_kv_heads * self.head_dim
    }

    /// The key/value head that query head `h` reads: `h / group_size`
    /// (`repeat_interleave` order).
    pub fn kv_head(&self, h: usize) -> usize {
        h / self.group_size()
    }
}

// ANCHOR: grouped_attention
/// Causal attention of `n_heads` query heads over `n_kv_heads` key/value heads: MHA
/// (`n_kv_heads == n_heads`), GQA, MQA (`n_kv_heads == 1`). Heads side by side in the
/// columns: `q (n_queries, n_heads·head_dim)`, `k`, `v (n_keys, n_kv_heads·head_dim)`
/// -> `(n_queries, n_heads·head_dim)`; query `i` sees keys `0 ..= query_offset + i`.
///
/// Query head `h` reads KV head `h / group_size`: PyTorch's `repeat_interleave` order
/// `[K0, K0, K1, K1]`, never `repeat`'s `[K0, K1, K0, K1]`, and no head is copied.
pub fn grouped_attention(
    q: &DMatrix<f32>,
    k: DMatrixView<f32>,
    v: DMatrixView<f32>,
    heads: HeadLayout,
    query_offset: usize,
) -> Result<DMatrix<f32>> {
    check_grouped_args("grouped_attention", q.shape(), &k, &v, heads, query_offset)?;
    let d = heads.head_dim();
    let mut context = DMatrix::zeros(q.nrows(), q.ncols());
    let causal = Mask::Causal { query_offset };
    for h in 0..heads.n_heads() {
        let kv = heads.kv_head(h); // heads 0 .. group_size share KV head 0
        // (n, n_heads·head_dim) -> head h: (n, head_dim), a view of columns, no copy
        let q_h = q.columns(h * d, d);
        let (k_h, v_h) = (k.columns(kv * d, d), v.columns(kv * d, d));
        let out = scaled_dot_product_attention(q_h, k_h, v_h, causal)?;
        context.columns_mut(h * d, d).copy_from(&out.context);
    }
    Ok(context)
}
// ANCHOR_END: grouped_attention

/// Checks the arguments of a grouped attention call (`grouped_attention`, and the fast
/// paths `FlashAttention::forward` and `DecodeAttention::forward`, which take the same
/// ones): `q` is `(n_queries, n_heads·head_dim)`, `k` and `v` are `(n_keys,
/// n_kv_heads·head_dim)`, and the queries at `query_offset ..` have their keys.
pub(crate) fn check_grouped_args(
    who: &str,
    q_shape: (usize, usize),
    k: &DMatrixView<f32>,
    v: &DMatrixView<f32>,
    heads: HeadLayout,
    query_offset: usize,
) -> Result<()> {
    let (q_dim, kv_dim) = (heads.q_dim(), heads.kv_dim());
    let what = |name: &str| {
        format!(
            "{who} {name} ({} heads over {} KV heads of head_dim {})",
            heads.n_heads, heads.n_kv_heads, heads.head_dim
        )
    };
    if q_shape.1 != q_dim {
        return Err(shape_err(
            what("queries"),
            &[None, Some(q_dim)],
            &[q_shape.0, q_shape.1],
        ));
    }
    if k.ncols() != kv_dim {
        return Err(shape_err(
            what("keys"),
            &[None, Some(kv_dim)],
            &[k.nrows(), k.ncols()],
        ));
    }
    if v.shape() != k.shape() {
        return Err(shape_err(
            what("values"),
            &[Some(k.nrows()), Some(kv_dim)],
            &[v.nrows(), v.ncols()],
        ));
    }
    check_causal(q_shape.0, k.nrows(), query_offset)
}
