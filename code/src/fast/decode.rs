//! Attention for decoding: one new token (or a few) against a long KV cache.
//!
//! Decoding does little arithmetic per byte: each cached key and value is used by only
//! the `group_size` query heads that share its KV head. So the time is the time to *read*
//! the cache, and the kernel's one job is to read every cached key and value exactly once
//! per KV head, in memory order, for all the query heads of its group together.

use std::ops::Range;

use nalgebra::{DMatrix, DMatrixView};

use crate::fast::online_softmax::online_softmax_step;
use crate::fast::simd::{Kernel, dispatch};
use crate::fast::{
    AttentionInputs, FastKernel, KernelBody, split_over_threads, worth_threads,
};

/// Cached positions per block: the scores of a block for a whole group stay in the
/// fastest caches, while each key or value column is read in long contiguous stretches.
pub const DECODE_BLOCK: usize = 2048;

/// Decode attention: causal grouped-query attention of a few new queries over the keys
/// and values of a KV cache, reading each cached key and value once per KV head.
///
/// Same shapes, semantics and errors as [`grouped_attention`](crate::grouped_attention):
/// `q (n_queries, n_heads·head_dim)`, `k` and `v (n_keys, n_kv_heads·head_dim)` (for
/// example [`LayerKvCache::keys`](crate::LayerKvCache::keys) and
/// [`LayerKvCache::values`](crate::LayerKvCache::values)); query `i` sees keys `0 ..=
/// query_offset + i`. The keys are read in blocks of [`DECODE_BLOCK`] positions with an
/// online softmax over the blocks, so memory is `group_size · n_queries` rows of one
/// block, whatever the context. Meant for a few queries (one token per step is the usual
/// case): it reads the keys one feature column at a time, which suits few queries;
/// prefill a long prompt with [`FlashAttention`](crate::FlashAttention). Threads split
/// the KV heads (results do not depend on the number of threads).
///
/// ```
/// use attention::{AttentionInputs, DecodeAttention, HeadLayout, grouped_attention, splitmix_matrix};
/// let heads = HeadLayout::new(4, 2, 8)?; // 4 query heads over 2 KV heads, head_dim 8
/// let k = splitmix_matrix(2, 300, 2 * 8, 1.0); // 300 cached positions
/// let v = splitmix_matrix(3, 300, 2 * 8, 1.0);
/// let q = splitmix_matrix(1, 1, 4 * 8, 1.0); // the newest token: 299 keys before its own
/// let x = AttentionInputs { q: &q, k: k.as_view(), v: v.as_view(), heads, query_offset: 299 };
/// let fast = DecodeAttention::new().forward(x)?;
/// let slow = grouped_attention(&q, k.as_view(), v.as_view(), heads, 299)?;
/// assert!((fast - slow).amax() < 1e-5);
/// # Ok::<(), attention::AttnError>(())
/// ```
pub type DecodeAttention = FastKernel<DecodeBuffers>;

/// The buffers of [`DecodeAttention`], kept between calls: one per thread, holding the
/// scores of a key block, the output accumulators and the row statistics.
#[derive(Clone, Debug, Default)]
pub struct DecodeBuffers {
    scratch: Vec<Vec<f32>>,
}

impl KernelBody for DecodeBuffers {
    const NAME: &'static str = "decode_attention";

    fn run(&mut self, threads: usize, x: AttentionInputs<'_>, out: &mut DMatrix<f32>) {
        let AttentionInputs { q, k, v, heads, query_offset } = x;
        let (n_kv_heads, group_size, head_dim) =
            (heads.n_kv_heads(), heads.group_size(), heads.head_dim());
        let problem = Decode {
            q: q.as_slice(),
            n_queries: q.nrows(),
            k,
            v,
            group_size,
            head_dim,
            query_offset,
        };
        // Threads only pay when each gets a few hundred microseconds of work: 2 MiB of
        // keys and values.
        let bytes = 2 * (query_offset + q.nrows()) * k.ncols() * 4;
        let threads =
            worth_threads(threads, n_kv_heads, bytes as f64 / f64::from(2 << 20));
        self.scratch.resize_with(threads, Vec::new);
        // Whole KV heads (each with its group of query heads) per thread; each thread
        // owns its groups' output columns.
        let problem = &problem;
        split_over_threads(
            out.as_mut_slice(),
            n_kv_heads,
            &mut self.scratch,
            |kvs, out, scratch| dispatch(GroupsJob { problem, kvs, out, scratch }),
        );
    }
}

/// One decode call's inputs.
struct Decode<'a> {
    q: &'a [f32],
    n_queries: usize,
    k: DMatrixView<'a, f32>,
    v: DMatrixView<'a, f32>,
    group_size: usize,
    head_dim: usize,
    query_offset: usize,
}

/// One thread's share: the query heads of KV heads `kvs`, whose output columns are
/// exactly `out`.
struct GroupsJob<'p, 'a> {
    problem: &'p Decode<'a>,
    kvs: Range<usize>,
    out: &'p mut [f32],
    scratch: &'p mut Vec<f32>,
}

impl Kernel for GroupsJob<'_, '_> {
    type Output = ();

    #[inline(always)]
    fn run(self) {
        let group_len = self.out.len() / self.kvs.len();
        for (kv, out) in self.kvs.zip(self.out.chunks_exact_mut(group_len)) {
            self.problem.attend_group(kv, out, self.scratch);
        }
    }
}

impl Decode<'_> {
    // ANCHOR: decode_group
    /// All query heads of KV head `kv` for all queries; `out` holds that group's output
    /// columns.
    ///
    /// Keys come in blocks: the block's scores for every row of the group, then one
    /// online-softmax step per row (as in [`flash`](crate::fast::flash)), then the
    /// block's values. Each key and value column segment is read once, for all
    /// `group_size · n_queries` rows.
    #[inline(always)]
    fn attend_group(&self, kv: usize, out: &mut [f32], scratch: &mut Vec<f32>) {
        let (d, m) = (self.head_dim, self.n_queries);
        let rows = self.group_size * m; // row t·m + i: query i of the group's head t
        let n_keys = self.query_offset + m; // checked: at most k.nrows()
        let block = n_keys.min(DECODE_BLOCK);
        scratch.resize(rows * (block + 2 * d + 2), 0.0);
        let (scores, rest) = scratch.split_at_mut(rows * block);
        let (acc, rest) = rest.split_at_mut(rows * d);
        let (q_scaled, stats) = rest.split_at_mut(rows * d);
        let (row_max, row_sum) = stats.split_at_mut(rows);
        row_max.fill(f32::NEG_INFINITY);
        row_sum.fill(0.0);
        acc.fill(0.0);
        // the group's queries, one row of head_dim values each, scaled by 1/√head_dim
        // (rounded once to f32, as transformers' scale is)
        let scale = (d as f64).powf(-0.5) as f32;
        for (r, q_row) in q_scaled.chunks_exact_mut(d).enumerate() {
            let (t, i) = (r / m, r % m);
            for (c, x) in q_row.iter_mut().enumerate() {
                *x = self.q[((kv * self.group_size + t) * d + c) * m + i] * scale;
            }
        }
        for j0 in (0..n_keys).step_by(block) {
            let len = block.min(n_keys - j0);
            // scores[r] = K[j0 .. j0+len] · q_r, built one key column (contiguous) at a
            // time
            for c in 0..d {
                let k_col = &self.k.column(kv * d + c).data.into_slice()[j0..j0 + len];
                for (s, q_row) in
                    scores.chunks_exact_mut(block).zip(q_scaled.chunks_exact(d))
                {
                    let (s, q) = (&mut s[..len], q_row[c]);
                    if c == 0 {
                        s.iter_mut().zip(k_col).for_each(|(s, &k)| *s = q * k);
                    } else {
                        s.iter_mut().zip(k_col).for_each(|(s, &k)| *s += q * k);
                    }
                }
            }
            for (r, s) in scores.chunks_exact_mut(block).enumerate() {
                let visible = (self.query_offset + r % m + 1).saturating_sub(j0).min(len);
                let rescale = online_softmax_step(
                    &mut s[..len],
                    visible,
                    &mut row_max[r],
                    &mut row_sum[r],
                );
                if rescale != 1.0 {
                    acc[r * d..(r + 1) * d].iter_mut().for_each(|a| *a *= rescale);
                }
            }
            // acc[r] += weights[r] · V[j0 .. j0+len], one value column (contiguous) at a
            // time
            for c in 0..d {
                let v_col = &self.v.column(kv * d + c).data.into_slice()[j0..j0 + len];
                for (r, s) in scores.chunks_exact(block).enumerate() {
                    acc[r * d + c] += dot(&s[..len], v_col);
                }
            }
        }
        for r in 0..rows {
            let (t, i) = (r / m, r % m);
            for c in 0..d {
                out[(t * d + c) * m + i] = acc[r * d + c] / row_sum[r];
            }
        }
    }
    // ANCHOR_END: decode_group
}

/// `Σ a[j]·b[j]` with sixteen partial sums, so that the loop vectorises.
#[inline(always)]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    const LANES: usize = 16;
    let mut partial = [0.0_f32; LANES];
    let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for l in 0..LANES {
            partial[l] += x[l] * y[l];
        }
    }
    for (p, (&x, &y)) in partial.iter_mut().zip(ra.iter().zip(rb)) {
        *p += x * y;
    }
    partial.iter().sum()
}
