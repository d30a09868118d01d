//! Attention for decoding: one new token (or a few) against a long KV cache.
//!
//! Decoding does little arithmetic per byte: each cached key and value is used by only
//! the `group_size` query heads that share its KV head. So the time is the time to *read*
//! the cache, and the kernel's one job is to read every cached key and value exactly once
//! per KV head, in memory order, for all the query heads of its group together.
//!
//! The same loop can stop short of the softmax's final division and leave a partial state
//! `(m, ℓ, o)` per query row and head: chapter 16's split-K decode
//! ([`SplitKDecodeAttention`](crate::parallel::split_k::SplitKDecodeAttention)) computes
//! such states for ranges of the keys, on several threads, and merges them.

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

/// The buffers of [`DecodeAttention`], kept between calls: one per thread.
#[derive(Clone, Debug, Default)]
pub struct DecodeBuffers {
    scratch: Vec<DecodeScratch>,
}

/// One thread's buffers: a key block's scores, the output accumulators and the scaled
/// queries (`work`), and the row statistics `m` and `ℓ` of one group (`stats`, used by
/// [`DecodeAttention`] only: split-K writes them into its partial states).
#[derive(Clone, Debug, Default)]
pub(crate) struct DecodeScratch {
    work: Vec<f32>,
    stats: Vec<f32>,
}

impl KernelBody for DecodeBuffers {
    const NAME: &'static str = "decode_attention";

    fn run(&mut self, threads: usize, x: AttentionInputs<'_>, out: &mut DMatrix<f32>) {
        let n_kv_heads = x.heads.n_kv_heads();
        let problem = Decode::new(x);
        // Threads only pay when each gets a few hundred microseconds of work: 2 MiB of
        // keys and values.
        let threads = worth_threads(threads, n_kv_heads, read_mib(x) / 2.0);
        self.scratch.resize_with(threads, DecodeScratch::default);
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

/// Mebibytes of keys and values a decode call over `x` reads: the cached positions up to
/// the last query's own, all KV heads.
pub(crate) fn read_mib(x: AttentionInputs<'_>) -> f64 {
    let n_keys = (x.query_offset + x.q.nrows()) as f64; // checked: at most k.nrows()
    2.0 * n_keys * x.k.ncols() as f64 * 4.0 / f64::from(1 << 20)
}

/// The partial state `(m, ℓ, o)` of `x`'s queries over the keys `keys` only, for every
/// head: [`DecodeAttention`]'s loop without its final division, for split-K decode.
/// `max` and `sum` `(n_queries, n_heads)` and `out` `(n_queries, n_heads·head_dim)`,
/// column-major as nalgebra stores them (the layout of
/// [`PartialAttention`](crate::PartialAttention)), are overwritten; a row that sees none
/// of the keys is left empty (`m = −∞`, `ℓ = 0`, `o = 0`). The caller has checked `x`
/// (`check_grouped_args`) and that `keys` lies within `0 .. query_offset + n_queries`.
pub(crate) fn decode_partial(
    x: AttentionInputs<'_>,
    keys: Range<usize>,
    [max, sum, out]: [&mut [f32]; 3],
    scratch: &mut DecodeScratch,
) {
    if x.q.nrows() == 0 {
        return; // no query rows: nothing to compute
    }
    let problem = &Decode::new(x);
    let work = &mut scratch.work;
    dispatch(PartialJob { problem, keys, max, sum, out, work });
}

/// What [`Decode::attend_group`] leaves in its output columns.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Output {
    /// Attention, `o / ℓ`: [`DecodeAttention`].
    Attention,
    /// The unnormalized `o` of a partial state: split-K.
    Partial,
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

impl<'a> Decode<'a> {
    /// The inputs of one call, as the kernel reads them.
    fn new(x: AttentionInputs<'a>) -> Self {
        let AttentionInputs { q, k, v, heads, query_offset } = x;
        Decode {
            q: q.as_slice(),
            n_queries: q.nrows(),
            k,
            v,
            group_size: heads.group_size(),
            head_dim: heads.head_dim(),
            query_offset,
        }
    }
}

/// One thread's share of a [`DecodeAttention`] call: the query heads of KV heads `kvs`,
/// whose output columns are exactly `out`.
struct GroupsJob<'p, 'a> {
    problem: &'p Decode<'a>,
    kvs: Range<usize>,
    out: &'p mut [f32],
    scratch: &'p mut DecodeScratch,
}

impl Kernel for GroupsJob<'_, '_> {
    type Output = ();

    #[inline(always)]
    fn run(self) {
        let p = self.problem;
        let rows = p.group_size * p.n_queries;
        let keys = 0..p.query_offset + p.n_queries; // checked: at most k.nrows()
        let DecodeScratch { work, stats } = self.scratch;
        stats.resize(2 * rows, 0.0);
        let (row_max, row_sum) = stats.split_at_mut(rows);
        let group_len = self.out.len() / self.kvs.len();
        for (kv, out) in self.kvs.zip(self.out.chunks_exact_mut(group_len)) {
            let stats = [&mut *row_max, &mut *row_sum];
            p.attend_group(kv, keys.clone(), out, stats, Output::Attention, work);
        }
    }
}

/// Split-K's unit of work: the partial state of every head over the keys `keys`, into
/// `max`, `sum` and `out` (see [`decode_partial`]).
struct PartialJob<'p, 'a> {
    problem: &'p Decode<'a>,
    keys: Range<usize>,
    max: &'p mut [f32],
    sum: &'p mut [f32],
    out: &'p mut [f32],
    work: &'p mut Vec<f32>,
}

impl Kernel for PartialJob<'_, '_> {
    type Output = ();

    #[inline(always)]
    fn run(self) {
        let p = self.problem;
        let rows = p.group_size * p.n_queries; // at least 1: decode_partial checked
        // element h·m + i of max and sum is query i of head h = kv·group_size + t: KV
        // head kv's group is their slice kv·rows .. (kv+1)·rows, in the kernel's row
        // order t·m + i, and its group_size·head_dim output columns
        let groups = (self.out.chunks_exact_mut(rows * p.head_dim))
            .zip(self.max.chunks_exact_mut(rows).zip(self.sum.chunks_exact_mut(rows)));
        for (kv, (out, (row_max, row_sum))) in groups.enumerate() {
            let (keys, stats) = (self.keys.clone(), [row_max, row_sum]);
            p.attend_group(kv, keys, out, stats, Output::Partial, self.work);
        }
    }
}

impl Decode<'_> {
    // ANCHOR: decode_group
    /// All query heads of KV head `kv` for all queries, over the keys `keys`; `out` holds
    /// that group's output columns, `row_max` and `row_sum` receive its rows' `m` and
    /// `ℓ`.
    ///
    /// Keys come in blocks: the block's scores for every row of the group, then one
    /// online-softmax step per row (as in [`flash`](crate::fast::flash)), then the
    /// block's values. Each key and value column segment is read once, for all
    /// `group_size · n_queries` rows. `Output::Attention` divides by `ℓ` at the end;
    /// `Output::Partial` leaves the partial state `(m, ℓ, o)` of chapter 16's split-K.
    #[inline(always)]
    fn attend_group(
        &self,
        kv: usize,
        keys: Range<usize>,
        out: &mut [f32],
        [row_max, row_sum]: [&mut [f32]; 2],
        output: Output,
        work: &mut Vec<f32>,
    ) {
        let (d, m) = (self.head_dim, self.n_queries);
        let rows = self.group_size * m; // row t·m + i: query i of the group's head t
        let block = keys.len().clamp(1, DECODE_BLOCK);
        work.resize(rows * (block + 2 * d), 0.0);
        let (scores, rest) = work.split_at_mut(rows * block);
        let (acc, q_scaled) = rest.split_at_mut(rows * d);
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
        for j0 in keys.clone().step_by(block) {
            let len = block.min(keys.end - j0);
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
            // x / 1 is x exactly: a partial state keeps o as it is
            let l = if output == Output::Attention { row_sum[r] } else { 1.0 };
            for c in 0..d {
                out[(t * d + c) * m + i] = acc[r * d + c] / l;
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
