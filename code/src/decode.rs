//! Attention for decoding: one new token (or a few) against a long KV cache.
//!
//! Decoding does little arithmetic per byte: each cached key and value is used by only the
//! `group_size` query heads that share its KV head. So the time is the time to *read* the cache,
//! and the kernel's one job is to read every cached key and value exactly once per KV head, in
//! memory order, for all the query heads of its group together.

use std::ops::Range;

use nalgebra::{DMatrix, DMatrixView};

use crate::error::{Result, nonzero};
use crate::flash::online_softmax_step;
use crate::kv_cache::LayerKvCache;
use crate::sdpa::check_grouped_args;
use crate::simd::{Kernel, dispatch};

/// Cached positions per block: the scores of a block for a whole group stay in the fastest caches,
/// while each key or value column is read in long contiguous stretches.
pub const DECODE_BLOCK: usize = 2048;

/// Decode attention: causal grouped-query attention of a few new queries over the keys and values
/// of a KV cache, reading each cached key and value once per KV head.
///
/// Same shapes, semantics and errors as [`grouped_attention`](crate::grouped_attention):
/// `q (n_queries, n_heads·head_dim)`, `k` and `v (n_keys, n_kv_heads·head_dim)` (for example
/// [`LayerKvCache::keys`] and [`LayerKvCache::values`]), query `i` at position `start_pos + i`.
/// The keys are read in blocks of [`DECODE_BLOCK`] positions with an online softmax over the
/// blocks, so memory is `group_size · n_queries` rows of one block, whatever the context. Meant
/// for a few queries (one token per step is the usual case): it reads the keys one feature column
/// at a time, which suits few queries; prefill a long prompt with
/// [`flash_attention`](crate::flash_attention).
///
/// ```
/// use attention::{decode_attention, grouped_attention, init::splitmix_matrix};
/// let k = splitmix_matrix(2, 300, 2 * 8, 1.0); // 300 cached positions, 2 KV heads of head_dim 8
/// let v = splitmix_matrix(3, 300, 2 * 8, 1.0);
/// let q = splitmix_matrix(1, 1, 4 * 8, 1.0); // the token at position 299, 4 query heads
/// let fast = decode_attention(&q, k.as_view(), v.as_view(), 4, 2, 299)?;
/// let slow = grouped_attention(&q, k.as_view(), v.as_view(), 4, 2, 299)?;
/// assert!((fast - slow).amax() < 1e-5);
/// # Ok::<(), attention::AttnError>(())
/// ```
pub fn decode_attention(
    q: &DMatrix<f32>,
    k: DMatrixView<f32>,
    v: DMatrixView<f32>,
    n_heads: usize,
    n_kv_heads: usize,
    start_pos: usize,
) -> Result<DMatrix<f32>> {
    DecodeAttention::new().forward(q, k, v, n_heads, n_kv_heads, start_pos)
}

/// Decode attention with its buffers kept between calls, on one or more threads (threads split
/// the KV heads; results do not depend on the number of threads).
#[derive(Clone, Debug)]
pub struct DecodeAttention {
    threads: usize,
    /// One buffer per thread: scores of a key block, output accumulators, row statistics.
    scratch: Vec<Vec<f32>>,
}

impl Default for DecodeAttention {
    fn default() -> Self {
        Self::new()
    }
}

impl DecodeAttention {
    /// One thread.
    pub fn new() -> Self {
        Self { threads: 1, scratch: Vec::new() }
    }

    /// `threads` threads (at least 1).
    pub fn with_threads(threads: usize) -> Result<Self> {
        nonzero("threads", threads)?;
        Ok(Self { threads, scratch: Vec::new() })
    }

    /// Attention into a new matrix; see [`decode_attention`].
    pub fn forward(
        &mut self,
        q: &DMatrix<f32>,
        k: DMatrixView<f32>,
        v: DMatrixView<f32>,
        n_heads: usize,
        n_kv_heads: usize,
        start_pos: usize,
    ) -> Result<DMatrix<f32>> {
        let mut out = DMatrix::zeros(0, 0);
        self.forward_into(q, k, v, n_heads, n_kv_heads, start_pos, &mut out)?;
        Ok(out)
    }

    /// Attention over sequence `b` of a [`LayerKvCache`] that already holds the new tokens' keys
    /// and values (append first, as [`GroupedQueryAttention::forward_cached`](crate::GroupedQueryAttention::forward_cached)
    /// does): the queries sit at positions `cache.len() - n_queries ..`.
    pub fn forward_cache(
        &mut self,
        q: &DMatrix<f32>,
        cache: &LayerKvCache,
        b: usize,
        n_heads: usize,
        n_kv_heads: usize,
    ) -> Result<DMatrix<f32>> {
        let start_pos = cache.len().checked_sub(q.nrows()).ok_or_else(|| crate::AttnError::Shape {
            context: "DecodeAttention::forward_cache: the cache must hold the new tokens".into(),
            expected: format!("at least {} cached positions", q.nrows()),
            got: format!("{} positions", cache.len()),
        })?;
        self.forward(q, cache.keys(b)?, cache.values(b)?, n_heads, n_kv_heads, start_pos)
    }

    /// Attention written into `out` (resized only if its shape differs from `q`'s).
    #[allow(clippy::too_many_arguments)]
    pub fn forward_into(
        &mut self,
        q: &DMatrix<f32>,
        k: DMatrixView<f32>,
        v: DMatrixView<f32>,
        n_heads: usize,
        n_kv_heads: usize,
        start_pos: usize,
        out: &mut DMatrix<f32>,
    ) -> Result<()> {
        let head_dim =
            check_grouped_args("decode_attention", q.shape(), &k, &v, n_heads, n_kv_heads, start_pos)?;
        if out.shape() != q.shape() {
            *out = DMatrix::zeros(q.nrows(), q.ncols());
        }
        if q.nrows() == 0 || head_dim == 0 {
            return Ok(());
        }
        let group_size = n_heads / n_kv_heads;
        let problem = Decode { q: q.as_slice(), n_queries: q.nrows(), k, v, group_size, head_dim, start_pos };
        // Threads only pay when each gets a few hundred microseconds of work: 2 MiB of keys and values.
        let bytes = 2 * (start_pos + q.nrows()) * k.ncols() * 4;
        let threads = self.threads.min(n_kv_heads).min(1 + bytes / (2 << 20));
        self.scratch.resize_with(threads, Vec::new);
        let group_len = group_size * head_dim * q.nrows(); // output columns of one KV head's group
        if threads == 1 {
            let scratch = &mut self.scratch[0];
            dispatch(GroupsJob { problem: &problem, kvs: 0..n_kv_heads, out: out.as_mut_slice(), scratch });
            return Ok(());
        }
        let problem = &problem;
        std::thread::scope(|scope| {
            let mut rest = out.as_mut_slice();
            let mut first = 0;
            for (t, scratch) in self.scratch.iter_mut().enumerate() {
                let last = n_kv_heads * (t + 1) / threads;
                let (mine, tail) = rest.split_at_mut((last - first) * group_len);
                rest = tail;
                let job = GroupsJob { problem, kvs: first..last, out: mine, scratch };
                if t + 1 < threads {
                    scope.spawn(move || dispatch(job));
                } else {
                    dispatch(job); // the calling thread takes the last share
                }
                first = last;
            }
        });
        Ok(())
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
    start_pos: usize,
}

/// One thread's share: the query heads of KV heads `kvs`, whose output columns are exactly `out`.
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
    /// All query heads of KV head `kv` for all queries; `out` holds that group's output columns.
    ///
    /// Keys come in blocks: the block's scores for every row of the group, then one online-softmax
    /// step per row (as in [`flash`](crate::flash)), then the block's values. Each key and value
    /// column segment is read once, for all `group_size · n_queries` rows.
    #[inline(always)]
    fn attend_group(&self, kv: usize, out: &mut [f32], scratch: &mut Vec<f32>) {
        let (d, m) = (self.head_dim, self.n_queries);
        let rows = self.group_size * m; // row t·m + i: query i of the group's head t
        let n_keys = self.start_pos + m; // checked: at most k.nrows()
        let block = n_keys.min(DECODE_BLOCK);
        scratch.resize(rows * (block + 2 * d + 2), 0.0);
        let (scores, rest) = scratch.split_at_mut(rows * block);
        let (acc, rest) = rest.split_at_mut(rows * d);
        let (q_scaled, stats) = rest.split_at_mut(rows * d);
        let (row_max, row_sum) = stats.split_at_mut(rows);
        row_max.fill(f32::NEG_INFINITY);
        row_sum.fill(0.0);
        acc.fill(0.0);
        // the group's queries, scaled by 1/√head_dim, one row of head_dim values each
        let scale = 1.0 / (d as f32).sqrt();
        for (r, q_row) in q_scaled.chunks_exact_mut(d).enumerate() {
            let (t, i) = (r / m, r % m);
            for (c, x) in q_row.iter_mut().enumerate() {
                *x = self.q[((kv * self.group_size + t) * d + c) * m + i] * scale;
            }
        }
        for j0 in (0..n_keys).step_by(block) {
            let len = block.min(n_keys - j0);
            // scores[r] = K[j0 .. j0+len] · q_r, built one key column (contiguous) at a time
            for c in 0..d {
                let k_col = &self.k.column(kv * d + c).data.into_slice()[j0..j0 + len];
                for (s, q_row) in scores.chunks_exact_mut(block).zip(q_scaled.chunks_exact(d)) {
                    let (s, q) = (&mut s[..len], q_row[c]);
                    if c == 0 {
                        s.iter_mut().zip(k_col).for_each(|(s, &k)| *s = q * k);
                    } else {
                        s.iter_mut().zip(k_col).for_each(|(s, &k)| *s += q * k);
                    }
                }
            }
            for (r, s) in scores.chunks_exact_mut(block).enumerate() {
                let visible = (self.start_pos + r % m + 1).saturating_sub(j0).min(len);
                let rescale = online_softmax_step(&mut s[..len], visible, &mut row_max[r], &mut row_sum[r]);
                if rescale != 1.0 {
                    acc[r * d..(r + 1) * d].iter_mut().for_each(|a| *a *= rescale);
                }
            }
            // acc[r] += weights[r] · V[j0 .. j0+len], one value column (contiguous) at a time
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
