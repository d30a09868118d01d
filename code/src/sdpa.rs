//! Scaled dot-product attention for one head, and the multi-head core that every module shares.

use nalgebra::{DMatrix, DMatrixView};

use crate::error::{AttnError, Result, divisible, shape_err};
use crate::mask::{apply_causal_mask, check_causal};
use crate::softmax::softmax_rows_in_place;

// ANCHOR: mask_enum
/// Which keys each query may see.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mask {
    /// Every query sees every key (the book's first, un-masked self-attention).
    None,
    /// Query `i` is the token at position `start_pos + i` and sees keys `0 ..= start_pos + i`.
    Causal {
        /// Position of the first query; `0` unless a KV cache holds earlier tokens.
        start_pos: usize,
    },
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
pub fn attention_weights(q: DMatrixView<f32>, k: DMatrixView<f32>, mask: Mask) -> Result<DMatrix<f32>> {
    if q.ncols() != k.ncols() {
        return Err(AttnError::Shape {
            context: "attention_weights: queries and keys need the same head_dim".into(),
            expected: format!("k of shape (_, {})", q.ncols()),
            got: format!("({}, {})", k.nrows(), k.ncols()),
        });
    }
    let head_dim = q.ncols();
    // (n_queries, head_dim) · (head_dim, n_keys) -> (n_queries, n_keys)
    let mut scores = q * k.transpose();
    // Scale *before* the softmax: with head_dim terms in each dot product the scores grow like
    // √head_dim, and large scores push the softmax to one-hot, where gradients vanish.
    scores /= (head_dim as f32).sqrt();
    if let Mask::Causal { start_pos } = mask {
        apply_causal_mask(&mut scores, start_pos)?;
    }
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
        return Err(shape_err(
            "scaled_dot_product_attention: one value row per key",
            format!("v of shape ({}, _)", k.nrows()),
            &[v.nrows(), v.ncols()],
        ));
    }
    let weights = attention_weights(q, k, mask)?;
    // (n_queries, n_keys) · (n_keys, d_v) -> (n_queries, d_v)
    let context = &weights * v;
    Ok(HeadOutput { context, weights })
}
// ANCHOR_END: scaled_dot_product_attention

// ANCHOR: grouped_attention
/// Causal attention of `n_heads` query heads over `n_kv_heads` key/value heads: the core of
/// multi-head attention (`n_kv_heads == n_heads`), grouped-query attention, and multi-query attention
/// (`n_kv_heads == 1`).
///
/// Shapes, one row per token, heads side by side in the columns:
/// `q (n_queries, n_heads·head_dim)`, `k` and `v (n_keys, n_kv_heads·head_dim)`;
/// returns `(n_queries, n_heads·head_dim)`, the heads' contexts side by side.
///
/// Query head `h` reads key/value head `h / group_size` with `group_size = n_heads / n_kv_heads`.
/// That is PyTorch's `repeat_interleave` order `[K1, K1, K2, K2]`, never `repeat`'s `[K1, K2, K1, K2]`;
/// and no head is copied: each is a column view of `k` and `v`.
pub fn grouped_attention(
    q: &DMatrix<f32>,
    k: DMatrixView<f32>,
    v: DMatrixView<f32>,
    n_heads: usize,
    n_kv_heads: usize,
    start_pos: usize,
) -> Result<DMatrix<f32>> {
    let head_dim =
        check_grouped_args("grouped_attention", q.shape(), &k, &v, n_heads, n_kv_heads, start_pos)?;
    let group_size = n_heads / n_kv_heads;
    let mut context = DMatrix::zeros(q.nrows(), q.ncols());
    for h in 0..n_heads {
        let kv = h / group_size; // repeat_interleave order: heads 0..group_size share KV head 0
        // (n, n_heads·head_dim) -> head h: (n, head_dim), a view of columns, no copy
        let q_h = q.columns(h * head_dim, head_dim);
        let k_h = k.columns(kv * head_dim, head_dim);
        let v_h = v.columns(kv * head_dim, head_dim);
        let out = scaled_dot_product_attention(q_h, k_h, v_h, Mask::Causal { start_pos })?;
        context.columns_mut(h * head_dim, head_dim).copy_from(&out.context);
    }
    Ok(context)
}
// ANCHOR_END: grouped_attention

/// Checks the arguments of a grouped attention call (`grouped_attention`, and the fast paths
/// `flash_attention` and `decode_attention`, which take the same ones) and returns `head_dim`:
/// `n_kv_heads` divides `n_heads`, `n_heads` divides the query width, `k` and `v` are
/// `(n_keys, n_kv_heads·head_dim)`, and the queries at `start_pos ..` have their keys.
pub(crate) fn check_grouped_args(
    who: &str,
    q_shape: (usize, usize),
    k: &DMatrixView<f32>,
    v: &DMatrixView<f32>,
    n_heads: usize,
    n_kv_heads: usize,
    start_pos: usize,
) -> Result<usize> {
    divisible("n_heads", n_heads, "n_kv_heads", n_kv_heads)?;
    divisible("q columns (n_heads * head_dim)", q_shape.1, "n_heads", n_heads)?;
    let head_dim = q_shape.1 / n_heads;
    let kv_cols = n_kv_heads * head_dim;
    if k.ncols() != kv_cols || v.ncols() != kv_cols || k.nrows() != v.nrows() {
        return Err(AttnError::Shape {
            context: format!("{who} with {n_kv_heads} KV heads of head_dim {head_dim}"),
            expected: format!("k and v of shape (n_keys, {kv_cols})"),
            got: format!("k ({}, {}), v ({}, {})", k.nrows(), k.ncols(), v.nrows(), v.ncols()),
        });
    }
    check_causal(q_shape.0, k.nrows(), start_pos)?;
    Ok(head_dim)
}
