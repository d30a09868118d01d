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
            // scores[r] = K[j0 .. j0+len] · q_r, from the key columns (contiguous):
            // FEATURES of them per pass over a chunk of each row (see `add_products`)
            let k_col = |c: usize, j: usize, n: usize| {
                &self.k.column(kv * d + c).data.into_slice()[j0 + j..][..n]
            };
            let mut c = 0;
            while c < d {
                // FEATURES columns, or the last few one at a time (head_dim 5, say)
                let wide = c + FEATURES <= d;
                let first = c == 0;
                for j in (0..len).step_by(SCORE_CHUNK) {
                    let n = SCORE_CHUNK.min(len - j);
                    for (s, q_row) in
                        scores.chunks_exact_mut(block).zip(q_scaled.chunks_exact(d))
                    {
                        let s = &mut s[j..j + n];
                        if wide {
                            let q: [f32; FEATURES] =
                                std::array::from_fn(|f| q_row[c + f]);
                            let k = std::array::from_fn(|f| k_col(c + f, j, n));
                            add_products(s, q, k, first);
                        } else {
                            add_products(s, [q_row[c]], [k_col(c, j, n)], first);
                        }
                    }
                }
                c += if wide { FEATURES } else { 1 };
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
            // acc[r] += weights[r] · V[j0 .. j0+len], FEATURES value columns (each
            // contiguous) at a time: each weight is loaded once for all of them
            let v_col =
                |c: usize| &self.v.column(kv * d + c).data.into_slice()[j0..j0 + len];
            let mut c = 0;
            while c < d {
                let wide = c + FEATURES <= d;
                for (r, s) in scores.chunks_exact(block).enumerate() {
                    let acc = &mut acc[r * d + c..];
                    if wide {
                        let dots = dots::<FEATURES>(
                            &s[..len],
                            std::array::from_fn(|f| v_col(c + f)),
                        );
                        acc.iter_mut().zip(dots).for_each(|(a, x)| *a += x);
                    } else {
                        acc[0] += dots(&s[..len], [v_col(c)])[0];
                    }
                }
                c += if wide { FEATURES } else { 1 };
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

/// Key or value feature columns per pass of the decode loops. One column per pass, the
/// scores were loaded and stored again for every feature and each weight loaded again for
/// every value column: the loops ran on the L1 cache's loads and stores, not on reading
/// the cache, and decoding read it at a fifth of one core's bandwidth. Four per pass took
/// about half the time at context 32 768 (13.2 to 13.9 ms before, 7.3 to 7.5 after, one
/// thread, GQA 12/4, on an AMD EPYC, Zen 4); eight were no faster.
const FEATURES: usize = 4;

/// Keys per chunk of the score loop: `FEATURES` key columns and a chunk of each row's
/// scores stay in the L1 cache while every row of the group passes over them.
const SCORE_CHUNK: usize = 512;

/// `s[j] = Σ_f q[f]·k[f][j]` (with `first`) or `s[j] += Σ_f q[f]·k[f][j]`, the terms
/// added one at a time in `f` order: the same bits as one pass per feature, with one load
/// and one store of `s` per `F` features.
#[inline(always)]
fn add_products<const F: usize>(s: &mut [f32], q: [f32; F], k: [&[f32]; F], first: bool) {
    const LANES: usize = 16;
    let n = s.len();
    let k = k.map(|k| &k[..n]); // every column as long as `s`: no bounds checks below
    // Sixteen scores at a time through a local array. (Written on `s` in place, the
    // compiler could not tell that `s` and the key columns do not overlap: it checked at
    // run time, and a profile found a tenth of the samples in its scalar fallback loop.
    // A local array has nothing to check.)
    let mut chunks = s.chunks_exact_mut(LANES);
    for (i, s) in (&mut chunks).enumerate() {
        let j = i * LANES;
        let k: [&[f32; LANES]; F] = k.map(|k| k[j..j + LANES].try_into().expect("LANES"));
        let mut t: [f32; LANES] = s.try_into().expect("LANES");
        for l in 0..LANES {
            t[l] = if first { q[0] * k[0][l] } else { t[l] + q[0] * k[0][l] };
            for f in 1..F {
                t[l] += q[f] * k[f][l];
            }
        }
        s.copy_from_slice(&t);
    }
    let j0 = n / LANES * LANES;
    for (j, s) in (j0..).zip(chunks.into_remainder()) {
        let mut t = if first { q[0] * k[0][j] } else { *s + q[0] * k[0][j] };
        for f in 1..F {
            t += q[f] * k[f][j];
        }
        *s = t;
    }
}

/// `[Σ_j a[j]·b[f][j]; F]`, each with sixteen partial sums (so that the loop
/// vectorises) added in the same order as for one dot product alone: the same bits, with
/// `a` loaded once for all `F`.
#[inline(always)]
fn dots<const F: usize>(a: &[f32], b: [&[f32]; F]) -> [f32; F] {
    const LANES: usize = 16;
    let n = a.len() / LANES * LANES;
    let b = b.map(|b| &b[..a.len()]);
    let mut partial = [[0.0_f32; LANES]; F];
    for j in (0..n).step_by(LANES) {
        let x = &a[j..j + LANES];
        for (partial, b) in partial.iter_mut().zip(&b) {
            let y = &b[j..j + LANES];
            for l in 0..LANES {
                partial[l] += x[l] * y[l];
            }
        }
    }
    for (partial, b) in partial.iter_mut().zip(&b) {
        for (p, (&x, &y)) in partial.iter_mut().zip(a[n..].iter().zip(&b[n..])) {
            *p += x * y;
        }
    }
    partial.map(|p| p.iter().sum())
}

#[cfg(test)]
mod tests {
    use super::{FEATURES, add_products, dots};

    fn values(n: usize, seed: u32) -> Vec<f32> {
        (0..n as u32).map(|i| ((i * 37 + seed * 11) % 101) as f32 / 7.0 - 7.0).collect()
    }

    /// `FEATURES` columns per pass give the bits of one pass per column, on lengths with
    /// and without a remainder after the 16-lane chunks.
    #[test]
    fn passes_over_several_features_keep_the_bits_of_one_feature_at_a_time() {
        for n in [1, 16, 37, 512] {
            let q: [f32; FEATURES] = std::array::from_fn(|f| 0.3 - 0.17 * f as f32);
            let cols: Vec<Vec<f32>> =
                (0..FEATURES as u32).map(|f| values(n, f)).collect();
            let k: [&[f32]; FEATURES] = std::array::from_fn(|f| &cols[f][..]);
            for first in [true, false] {
                let (mut wide, mut one) = (values(n, 9), values(n, 9));
                add_products(&mut wide, q, k, first);
                for f in 0..FEATURES {
                    add_products(&mut one, [q[f]], [k[f]], first && f == 0);
                }
                let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&wide), bits(&one), "n {n}, first {first}");
            }
            let a = values(n, 5);
            let wide = dots(&a, k);
            for f in 0..FEATURES {
                assert_eq!(wide[f].to_bits(), dots(&a, [k[f]])[0].to_bits(), "n {n}");
            }
        }
    }
}
