//! Partial attention states and the rule that merges them.
//!
//! Attention over a set of keys can stop before the division by the softmax sum and keep,
//! per query row and head, three things: the largest score `m`, the sum `ℓ` of
//! `exp(score − m)`, and the unnormalized output `o = Σ exp(score − m)·v`. Two such
//! states over disjoint sets of keys merge into the state over their union, exactly as
//! chapter 8's online softmax folds a new block into its running `m` and `ℓ`. Split-K
//! decode, tensor parallelism's heads and ring attention all end in this merge.

use nalgebra::DMatrix;

use crate::fast::AttentionInputs;
use crate::mechanisms::sdpa::HeadLayout;
use crate::support::error::{Result, check_range, shape_err, try_zero_matrix};

// ANCHOR: partial_attention
/// Attention over *some* of the keys, not yet normalized: for each query row `i` and
/// query head `h`, over the keys seen so far,
///
/// - `max[(i, h)]` = `m`, the largest scaled score (`-inf` when no key was seen),
/// - `sum[(i, h)]` = `ℓ = Σ exp(s_j − m)`,
/// - `out.row(i)`, head `h`'s columns = `o = Σ exp(s_j − m) · v_j`.
///
/// `o / ℓ` is attention over the keys seen ([`PartialAttention::finish`]). Heads sit side
/// by side in `out`'s columns, as everywhere in the crate.
#[derive(Clone, Debug, PartialEq)]
pub struct PartialAttention {
    /// `(n_queries, n_heads)`: the running maximum `m`.
    max: DMatrix<f32>,
    /// `(n_queries, n_heads)`: the running sum `ℓ`.
    sum: DMatrix<f32>,
    /// `(n_queries, n_heads·head_dim)`: the unnormalized output `o`.
    out: DMatrix<f32>,
    /// Width of each head in `out`.
    head_dim: usize,
}
// ANCHOR_END: partial_attention

impl PartialAttention {
    /// The state over no keys at all: `m = −∞`, `ℓ = 0`, `o = 0`, for `n_queries` rows
    /// of `heads`. It is the merge's identity: `merge(empty, a) == a`, bit for bit.
    pub fn empty(n_queries: usize, heads: HeadLayout) -> Result<Self> {
        let n_heads = heads.n_heads();
        let mut max = try_zero_matrix("PartialAttention max", n_queries, n_heads)?;
        max.fill(f32::NEG_INFINITY);
        Ok(Self {
            max,
            sum: try_zero_matrix("PartialAttention sum", n_queries, n_heads)?,
            out: try_zero_matrix("PartialAttention out", n_queries, heads.q_dim())?,
            head_dim: heads.head_dim(),
        })
    }

    /// Query rows.
    pub fn n_queries(&self) -> usize {
        self.max.nrows()
    }

    /// Query heads.
    pub fn n_heads(&self) -> usize {
        self.max.ncols()
    }

    /// `(n_queries, n_heads)`: the running maximum `m` of each row and head.
    pub fn max(&self) -> &DMatrix<f32> {
        &self.max
    }

    /// `(n_queries, n_heads)`: the running sum `ℓ` of each row and head.
    pub fn sum(&self) -> &DMatrix<f32> {
        &self.sum
    }

    /// `(n_queries, n_heads·head_dim)`: the unnormalized output `o`.
    pub fn out(&self) -> &DMatrix<f32> {
        &self.out
    }

    /// Attention over the keys seen: `o / ℓ` per row and head, `(n_queries,
    /// n_heads·head_dim)`. A row that saw no key (`ℓ = 0`) gets zeros, as the crate's
    /// softmax gives a fully masked row (chapter 2).
    pub fn finish(&self) -> DMatrix<f32> {
        let d = self.head_dim;
        DMatrix::from_fn(self.out.nrows(), self.out.ncols(), |i, c| {
            let l = self.sum[(i, c / d)];
            if l == 0.0 { 0.0 } else { self.out[(i, c)] / l }
        })
    }

    /// `[max, sum, out]` as flat column-major slices, to be overwritten by a kernel that
    /// computes a state in place (split-K's `fast::decode::decode_partial`).
    pub(crate) fn parts_mut(&mut self) -> [&mut [f32]; 3] {
        [self.max.as_mut_slice(), self.sum.as_mut_slice(), self.out.as_mut_slice()]
    }

    /// Folds `other` (over other keys) into `self`: `*self = merge(self, other)`.
    pub fn merge_from(&mut self, other: &PartialAttention) -> Result<()> {
        *self = merge(self, other)?;
        Ok(())
    }

    /// An error unless `other` has the same rows, heads and head width.
    fn check_same_shape(&self, other: &PartialAttention) -> Result<()> {
        let shape = |s: &Self| [s.n_queries(), s.n_heads(), s.head_dim];
        if shape(self) != shape(other) {
            let want = shape(self).map(Some);
            return Err(shape_err(
                "merge: partial states (n_queries, n_heads, head_dim)",
                &want,
                &shape(other),
            ));
        }
        Ok(())
    }
}

// ANCHOR: attend_block
/// The partial state of `x.q`'s queries over one block of keys: `x.k` and `x.v`
/// `(n_block, n_kv_heads·head_dim)` hold keys `first_key .. first_key + n_block` of the
/// sequence.
/// `x.query_offset` counts, as everywhere in the crate, the keys of the whole sequence
/// before the first query, so query `i` sees key `first_key + j` when `first_key + j ≤
/// query_offset + i`. A block wholly in a query's future leaves that row empty.
pub fn attend_block(
    x: AttentionInputs<'_>,
    first_key: usize,
) -> Result<PartialAttention> {
    let AttentionInputs { q, k, v, heads, query_offset } = x;
    check_block_args(&x)?;
    check_range(first_key, k.nrows(), usize::MAX)?; // key indices exist
    check_range(query_offset, q.nrows(), usize::MAX)?; // query positions exist
    let (d, n_block) = (heads.head_dim(), k.nrows());
    let mut state = PartialAttention::empty(q.nrows(), heads)?;
    for h in 0..heads.n_heads() {
        let kv = heads.kv_head(h); // repeat_interleave order, as chapter 4
        let (q_h, k_h, v_h) =
            (q.columns(h * d, d), k.columns(kv * d, d), v.columns(kv * d, d));
        // (n_queries, head_dim) · (head_dim, n_block) -> (n_queries, n_block)
        let mut weights = try_zero_matrix("attend_block scores", q.nrows(), n_block)?;
        weights.gemm(1.0, &q_h, &k_h.transpose(), 0.0);
        weights /= (d as f32).sqrt();
        for i in 0..q.nrows() {
            // keys first_key .. first_key + visible are in query i's past (or itself)
            let visible = (query_offset + i + 1).saturating_sub(first_key).min(n_block);
            let m =
                (0..visible).map(|j| weights[(i, j)]).fold(f32::NEG_INFINITY, f32::max);
            let mut l = 0.0;
            for j in 0..n_block {
                let w = if j < visible { (weights[(i, j)] - m).exp() } else { 0.0 };
                weights[(i, j)] = w;
                l += w;
            }
            (state.max[(i, h)], state.sum[(i, h)]) = (m, l);
        }
        // (n_queries, n_block) · (n_block, head_dim) -> (n_queries, head_dim), not
        // divided by ℓ
        state.out.columns_mut(h * d, d).copy_from(&(&weights * v_h));
    }
    Ok(state)
}
// ANCHOR_END: attend_block

/// The shapes [`attend_block`] needs: `q (_, n_heads·head_dim)`, `k` and `v` of the same
/// shape `(_, n_kv_heads·head_dim)`.
fn check_block_args(x: &AttentionInputs<'_>) -> Result<()> {
    let (q_dim, kv_dim) = (x.heads.q_dim(), x.heads.kv_dim());
    if x.q.ncols() != q_dim {
        return Err(shape_err(
            "attend_block queries",
            &[None, Some(q_dim)],
            &[x.q.nrows(), x.q.ncols()],
        ));
    }
    if x.k.ncols() != kv_dim || x.v.shape() != x.k.shape() {
        let (bad, what) = if x.k.ncols() != kv_dim {
            (x.k.shape(), "keys")
        } else {
            (x.v.shape(), "values")
        };
        return Err(shape_err(
            format!("attend_block {what}"),
            &[Some(x.k.nrows()), Some(kv_dim)],
            &[bad.0, bad.1],
        ));
    }
    Ok(())
}

// ANCHOR: merge
/// The state over the keys of `a` and of `b` (disjoint sets), from the two states.
///
/// Per row and head: `m = max(m_a, m_b)`; each side's sum and output carry the factor
/// `exp(−m_side)`, and multiplying by `exp(m_side − m)` brings them to the common
/// `exp(−m)`: `ℓ = e^(m_a − m)·ℓ_a + e^(m_b − m)·ℓ_b`, `o = e^(m_a − m)·o_a + e^(m_b −
/// m)·o_b`. Chapter 8's online-softmax step is this rule with `b` the state of one new
/// block. Commutative bit for bit (each sum has two terms, and f32 addition commutes);
/// associative only up to rounding.
pub fn merge(a: &PartialAttention, b: &PartialAttention) -> Result<PartialAttention> {
    a.check_same_shape(b)?;
    let d = a.head_dim;
    let mut merged = a.clone();
    for h in 0..a.n_heads() {
        for i in 0..a.n_queries() {
            let (m_a, m_b) = (a.max[(i, h)], b.max[(i, h)]);
            let m = m_a.max(m_b);
            if m == f32::NEG_INFINITY {
                continue; // neither side saw a key: the row stays empty
            }
            let (alpha, beta) = ((m_a - m).exp(), (m_b - m).exp()); // exp(−inf) = 0
            merged.max[(i, h)] = m;
            merged.sum[(i, h)] = alpha * a.sum[(i, h)] + beta * b.sum[(i, h)];
            for c in h * d..(h + 1) * d {
                merged.out[(i, c)] = alpha * a.out[(i, c)] + beta * b.out[(i, c)];
            }
        }
    }
    Ok(merged)
}
// ANCHOR_END: merge
