//! Chapters 13 and 14: decode kernels that read the quantized and the paged caches in
//! place.
//!
//! [`attend_quantized`](crate::serving::quant::attend_quantized) dequantizes a whole
//! sequence into an f32 copy and [`PagedKvCache::attend`] gathers one: each decode step
//! writes and reads the cache's f32 size twice, when decoding is bound by *reading* the
//! cache (chapter 8). The kernels here read the cache where it lies, as chapter 8's
//! [`DecodeAttention`](crate::DecodeAttention) reads a contiguous one: each KV head once
//! for its whole group of query heads, in blocks of [`DECODE_BLOCK`] positions finished
//! with the online softmax.
//!
//! - [`QuantizedDecodeAttention`] reads a [`QuantizedKvCache`]'s codes and scales: a few
//!   rows at a time are turned into f32 in a small buffer ([`DEQUANT_ROWS`] rows, in the
//!   core's fastest cache), never the whole cache. int8 keeps its per-token scale out of
//!   the products, `score = scale_t · (q · codes_t)`, and folds the values' scales into
//!   the softmax weights; with AVX-512 it converts each code in a register, with no
//!   buffer at all. int4 (KIVI) dequantizes its keys with their group's per-channel
//!   scales and mins and its values with their own, exactly as the cache does, and
//!   reads the newest rows from the f32 residual. fp8 folds its per-tensor scales into
//!   the queries and the weights.
//! - [`PagedDecodeAttention`] walks a [`PagedKvCache`]'s block table: each block holds a
//!   KV head's rows as `head_dim` columns of `block_size` numbers, read in place. It is
//!   [`DecodeAttention`](crate::DecodeAttention) on the gathered rows **bit for bit**
//!   (the same products, sums and online softmax in the same order), without the gather.
//!
//! The quantized kernel equals the dequantize-then-attend path within f32 rounding, not
//! bit for bit: chapter 8's `exp` approximation and online softmax, dot products summed
//! in sixteen lanes and a tree, and int8's and fp8's scales applied once to a sum instead
//! of to each term. Neither kernel fuses a multiply and an add, and the AVX-512 paths do
//! the same operations in the same order as the portable code, so the results do not
//! depend on the SIMD level or the number of threads. `code/tests/serving_decode.rs`
//! states the tolerances and why.

use nalgebra::{DMatrix, DMatrixView, Dyn, U1};

use crate::fast::decode::DECODE_BLOCK;
use crate::fast::online_softmax::online_softmax_step;
use crate::fast::simd::{Kernel, SimdLevel, dispatch, simd_level};
use crate::fast::{split_over_threads, worth_threads};
use crate::mechanisms::mask::check_causal;
use crate::mechanisms::sdpa::HeadLayout;
use crate::serving::paged::{PagedKvCache, SeqId};
use crate::serving::quant::{QuantizedKvCache, RowCodes};
use crate::support::error::{AttnError, Result, nonzero, shape_err, try_zero_matrix};

/// Quantized rows turned into f32 at a time, per KV head: `DEQUANT_ROWS · head_dim` f32
/// (8 KiB at head_dim 64), which stay in the core's fastest cache while every query head
/// of the group reads them.
pub const DEQUANT_ROWS: usize = 32;

/// SIMD lanes of the partial sums (AVX-512's sixteen f32).
const LANES: usize = 16;

// ---------------------------------------------------------------------------------------
// The public kernels
// ---------------------------------------------------------------------------------------

/// Decode attention over a [`QuantizedKvCache`], reading its codes and scales in place.
///
/// Same semantics as [`attend_quantized`](crate::serving::quant::attend_quantized):
/// sequence `b`'s queries `q (n_queries, n_heads · head_dim)`, query `i` sees cache rows
/// `0 ..= query_offset + i`; the output is `(n_queries, n_heads · head_dim)`. Meant for a
/// few queries (one per step); threads split the KV heads, and the result does not depend
/// on their number.
///
/// ```
/// use attention::serving::decode_kernels::QuantizedDecodeAttention;
/// use attention::serving::quant::attend_quantized;
/// use attention::{HeadLayout, KvFormat, QuantizedKvCache, splitmix_matrix};
/// let heads = HeadLayout::new(6, 2, 16)?; // 6 query heads over 2 KV heads of 16
/// let mut cache = QuantizedKvCache::for_heads(KvFormat::Int8, 1, 300, heads)?;
/// let (k, v) = (splitmix_matrix(1, 300, 32, 1.0), splitmix_matrix(2, 300, 32, 1.0));
/// cache.append(0, &[k], &[v])?;
/// let q = splitmix_matrix(3, 1, 6 * 16, 1.0); // the newest token's query
/// let fast = QuantizedDecodeAttention::new().forward(&q, &cache, 0, heads, 299)?;
/// let slow = attend_quantized(&q, &cache, 0, heads, 299)?; // an f32 copy first
/// assert!((fast - slow).amax() < 1e-5);
/// # Ok::<(), attention::AttnError>(())
/// ```
#[derive(Clone, Debug)]
pub struct QuantizedDecodeAttention {
    threads: usize,
    scratch: Vec<Vec<f32>>,
}

/// Decode attention over a [`PagedKvCache`], walking the block table: no gather.
///
/// Same semantics as [`PagedKvCache::attend`]: the newest `n_queries` tokens of sequence
/// `id` (their keys and values appended) over all its positions, `q (n_queries, n_heads
/// · head_dim)` -> `(n_queries, n_heads · head_dim)`. Equal, bit for bit, to
/// [`DecodeAttention`](crate::DecodeAttention) on the gathered rows, for every block size
/// (block sizes that are multiples of 16 take the fast path). Threads split the KV heads.
///
/// ```
/// use attention::serving::decode_kernels::PagedDecodeAttention;
/// use attention::{AttentionInputs, DecodeAttention, HeadLayout, PagedKvCache, splitmix_matrix};
/// let heads = HeadLayout::new(6, 2, 16)?;
/// let mut pool = PagedKvCache::for_heads(20, 16, heads)?;
/// let id = pool.add_sequence();
/// let (k, v) = (splitmix_matrix(1, 300, 32, 1.0), splitmix_matrix(2, 300, 32, 1.0));
/// pool.append(id, 0, &k, &v)?; // 19 blocks
/// let q = splitmix_matrix(3, 1, 6 * 16, 1.0);
/// let paged = PagedDecodeAttention::new().forward(&pool, id, &q, heads)?;
/// let x = AttentionInputs { q: &q, k: k.as_view(), v: v.as_view(), heads, query_offset: 299 };
/// assert_eq!(paged, DecodeAttention::new().forward(x)?); // the same bits
/// # Ok::<(), attention::AttnError>(())
/// ```
#[derive(Clone, Debug)]
pub struct PagedDecodeAttention {
    threads: usize,
    scratch: Vec<Vec<f32>>,
}

macro_rules! kernel_shell {
    ($kernel:ident) => {
        impl Default for $kernel {
            fn default() -> Self {
                Self::new()
            }
        }

        impl $kernel {
            /// One thread.
            pub fn new() -> Self {
                Self { threads: 1, scratch: Vec::new() }
            }

            /// `threads` threads (at least 1), splitting the KV heads between them.
            pub fn with_threads(threads: usize) -> Result<Self> {
                nonzero("threads", threads)?;
                Ok(Self { threads, scratch: Vec::new() })
            }

            /// Number of threads.
            pub fn threads(&self) -> usize {
                self.threads
            }
        }
    };
}

kernel_shell!(QuantizedDecodeAttention);
kernel_shell!(PagedDecodeAttention);

impl QuantizedDecodeAttention {
    /// The attention of sequence `b`'s queries `q` over `cache`, into a new matrix (see
    /// the type's docs).
    pub fn forward(
        &mut self,
        q: &DMatrix<f32>,
        cache: &QuantizedKvCache,
        b: usize,
        heads: HeadLayout,
        query_offset: usize,
    ) -> Result<DMatrix<f32>> {
        let mut out = DMatrix::zeros(0, 0);
        self.forward_into(q, cache, b, heads, query_offset, &mut out)?;
        Ok(out)
    }

    /// As [`QuantizedDecodeAttention::forward`], written into `out`, which is resized to
    /// `q`'s shape only if it has another shape.
    ///
    /// Errors, before any work: `q` not `n_heads · head_dim` wide ([`AttnError::Shape`]);
    /// `heads` with other KV heads or head width than the cache
    /// ([`AttnError::CacheMismatch`]); no sequence `b` ([`AttnError::IndexOutOfRange`]);
    /// `query_offset + n_queries` past the rows the cache holds
    /// ([`AttnError::MissingKeys`]).
    pub fn forward_into(
        &mut self,
        q: &DMatrix<f32>,
        cache: &QuantizedKvCache,
        b: usize,
        heads: HeadLayout,
        query_offset: usize,
        out: &mut DMatrix<f32>,
    ) -> Result<()> {
        const WHO: &str = "QuantizedDecodeAttention";
        check_queries(WHO, q, heads)?;
        if heads.n_kv_heads() != cache.n_kv_heads()
            || heads.head_dim() != cache.head_dim()
        {
            return Err(AttnError::CacheMismatch(format!(
                "the cache holds {} KV heads of {}, the attention has {} of {}",
                cache.n_kv_heads(),
                cache.head_dim(),
                heads.n_kv_heads(),
                heads.head_dim()
            )));
        }
        if b >= cache.batch_size() {
            let (what, len) = ("QuantizedKvCache sequence", cache.batch_size());
            return Err(AttnError::IndexOutOfRange { what, index: b, len });
        }
        check_causal(q.nrows(), cache.len(), query_offset)?;
        if out.shape() != q.shape() {
            *out = try_zero_matrix(WHO, q.nrows(), q.ncols())?;
        }
        if q.nrows() == 0 {
            return Ok(());
        }
        let codes = (0..heads.n_kv_heads())
            .map(|h| Ok((cache.key_rows(b, h)?.codes(), cache.value_rows(b, h)?.codes())))
            .collect::<Result<Vec<_>>>()?;
        let problem = QuantDecode {
            shape: Shape::new(q, heads, query_offset),
            quantized: cache.quantized_len(),
            codes: &codes,
            residual_keys: cache.residual_keys(b)?,
            residual_values: cache.residual_values(b)?,
            avx512: simd_level() == SimdLevel::Avx512,
        };
        let n_keys = query_offset + q.nrows(); // checked above
        let bytes = Self::bytes_read(cache, n_keys);
        run_groups(&mut self.scratch, self.threads, &problem, bytes, out);
        Ok(())
    }

    /// Bytes of `cache` a decode step reads when its queries see rows `0 .. n_keys` of a
    /// sequence (the rows it holds, at most): codes, scales and mins (f32), and for int4
    /// the f32 residual rows, over all KV heads. The f32 cache of the same rows would be
    /// `2 · n_keys · n_kv_heads · head_dim · 4` bytes.
    pub fn bytes_read(cache: &QuantizedKvCache, n_keys: usize) -> u128 {
        let n = n_keys.min(cache.len()) as u128;
        let d = cache.head_dim() as u128;
        let coded = n.min(cache.quantized_len() as u128);
        let per_head = match cache.format() {
            // keys and values: a byte per number and an f32 scale per row
            crate::KvFormat::Int8 => 2 * coded * (d + 4),
            // one f32 scale for all keys, one for all values
            crate::KvFormat::Fp8E4M3 => 2 * coded * d,
            crate::KvFormat::Int4 { group, .. } => {
                let groups = coded.div_ceil(group as u128);
                let keys = coded * d / 2 + groups * d * 8; // scale and min per channel
                let values = coded * (d / 2 + 8); // scale and min per row
                keys + values + 2 * (n - coded) * d * 4 // and the f32 residual
            }
        };
        let fp8_scales = if cache.format() == crate::KvFormat::Fp8E4M3 { 8 } else { 0 };
        per_head * cache.n_kv_heads() as u128 + fp8_scales
    }
}

impl PagedDecodeAttention {
    /// The attention of sequence `id`'s newest `q.nrows()` tokens over its positions,
    /// into a new matrix (see the type's docs).
    pub fn forward(
        &mut self,
        cache: &PagedKvCache,
        id: SeqId,
        q: &DMatrix<f32>,
        heads: HeadLayout,
    ) -> Result<DMatrix<f32>> {
        let mut out = DMatrix::zeros(0, 0);
        self.forward_into(cache, id, q, heads, &mut out)?;
        Ok(out)
    }

    /// As [`PagedDecodeAttention::forward`], written into `out`, which is resized to
    /// `q`'s shape only if it has another shape.
    ///
    /// Errors, before any work: `q` not `n_heads · head_dim` wide ([`AttnError::Shape`]);
    /// `heads` whose `n_kv_heads · head_dim` is not the cache's row width
    /// ([`AttnError::CacheMismatch`]); an unknown or freed `id`
    /// ([`AttnError::UnknownSequence`]); more queries than positions
    /// ([`AttnError::MissingKeys`]).
    pub fn forward_into(
        &mut self,
        cache: &PagedKvCache,
        id: SeqId,
        q: &DMatrix<f32>,
        heads: HeadLayout,
        out: &mut DMatrix<f32>,
    ) -> Result<()> {
        const WHO: &str = "PagedDecodeAttention";
        check_queries(WHO, q, heads)?;
        if heads.kv_dim() != cache.kv_dim() {
            return Err(AttnError::CacheMismatch(format!(
                "the paged cache holds rows of width {}, the attention needs {} ({} KV \
                    heads of {})",
                cache.kv_dim(),
                heads.kv_dim(),
                heads.n_kv_heads(),
                heads.head_dim()
            )));
        }
        let (len, table) = (cache.len(id)?, cache.block_table(id)?);
        let query_offset = len.checked_sub(q.nrows()).ok_or(AttnError::MissingKeys {
            n_queries: q.nrows(),
            query_offset: 0,
            n_keys: len,
        })?;
        if out.shape() != q.shape() {
            *out = try_zero_matrix(WHO, q.nrows(), q.ncols())?;
        }
        if q.nrows() == 0 {
            return Ok(());
        }
        // each block's keys and values as the pool holds them: `kv_dim` columns of
        // `block_size` numbers
        let blocks = table
            .iter()
            .map(|&blk| {
                Ok((
                    block_slice(cache.block_keys(blk)?)?,
                    block_slice(cache.block_values(blk)?)?,
                ))
            })
            .collect::<Result<Vec<_>>>()?;
        let problem = PagedDecode {
            shape: Shape::new(q, heads, query_offset),
            block_size: cache.block_size(),
            blocks: &blocks,
        };
        run_groups(
            &mut self.scratch,
            self.threads,
            &problem,
            Self::bytes_read(len, heads),
            out,
        );
        Ok(())
    }

    /// Bytes a decode step reads from a paged cache of `n_keys` positions for `heads`:
    /// `2 · n_keys · n_kv_heads · head_dim · 4`, as from a contiguous f32 cache.
    pub fn bytes_read(n_keys: usize, heads: HeadLayout) -> u128 {
        2 * n_keys as u128 * heads.kv_dim() as u128 * 4
    }
}

/// A block as one slice, `kv_dim` columns of `block_size` numbers one after the other:
/// how the pool stores it (its view's columns are `block_size` apart, checked here).
fn block_slice(block: DMatrixView<'_, f32>) -> Result<&[f32]> {
    let (rows, n) = (block.nrows(), block.len());
    if block.strides() != (1, rows) {
        let msg = format!("a paged block whose columns are not {rows} apart");
        return Err(AttnError::Unsupported(msg));
    }
    // (rows, kv_dim) with columns `rows` apart is one run of `rows · kv_dim` numbers
    Ok(block.reshape_generic(Dyn(n), U1).data.into_slice())
}

/// Checks that `q` is `(n_queries, n_heads · head_dim)`.
fn check_queries(who: &str, q: &DMatrix<f32>, heads: HeadLayout) -> Result<()> {
    if q.ncols() != heads.q_dim() {
        let what = format!(
            "{who} queries ({} heads over {} KV heads of head_dim {})",
            heads.n_heads(),
            heads.n_kv_heads(),
            heads.head_dim()
        );
        return Err(shape_err(
            what,
            &[None, Some(heads.q_dim())],
            &[q.nrows(), q.ncols()],
        ));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// What both kernels share: the group loop, the online softmax, the output
// ---------------------------------------------------------------------------------------

/// The sizes of one decode call.
#[derive(Clone, Copy)]
struct Shape<'a> {
    /// The queries, column-major `(n_queries, n_heads · head_dim)`.
    q: &'a [f32],
    n_queries: usize,
    group_size: usize,
    n_kv_heads: usize,
    head_dim: usize,
    query_offset: usize,
}

impl<'a> Shape<'a> {
    fn new(q: &'a DMatrix<f32>, heads: HeadLayout, query_offset: usize) -> Self {
        Self {
            q: q.as_slice(),
            n_queries: q.nrows(),
            group_size: heads.group_size(),
            n_kv_heads: heads.n_kv_heads(),
            head_dim: heads.head_dim(),
            query_offset,
        }
    }

    /// Rows of a group: `group_size · n_queries`, row `t·m + i` query `i` of the group's
    /// head `t`.
    fn rows(&self) -> usize {
        self.group_size * self.n_queries
    }

    /// Keys the newest query sees: `query_offset + n_queries`.
    fn n_keys(&self) -> usize {
        self.query_offset + self.n_queries
    }
}

/// A decode kernel's part for one KV head: what it reads, and how.
trait GroupSource: Sync {
    /// The call's sizes.
    fn shape(&self) -> &Shape<'_>;

    /// Where query channel `c` goes in the kernel's own channel order (int4 keeps even
    /// channels, then odd ones: the low and the high nibbles of its bytes).
    #[inline(always)]
    fn channel_slot(&self, c: usize) -> usize {
        c
    }

    /// Multiplies the scaled queries before the scores, if the format wants (fp8's key
    /// scale).
    #[inline(always)]
    fn query_factor(&self) -> f32 {
        1.0
    }

    /// Fills `scores` (`rows` rows of `tile`, row-major) for positions `j0 .. j0 + len`
    /// of KV head `kv`: `q_r · k_j` for each row `r`, `q` already scaled by 1/√head_dim.
    fn scores(&self, kv: usize, j0: usize, len: usize, t: &mut Tile<'_>);

    /// Adds `Σ_j w_rj · v_j` for positions `j0 .. j0 + len` to every row's accumulator,
    /// the weights `w` in `t.scores` (it may change them).
    fn values(&self, kv: usize, j0: usize, len: usize, t: &mut Tile<'_>);
}

/// One thread's buffers for one KV head, carved from its scratch.
struct Tile<'s> {
    /// Positions per tile (the stride of a score row).
    tile: usize,
    rows: usize,
    d: usize,
    /// `(rows, tile)`: scores, then weights.
    scores: &'s mut [f32],
    /// `(rows, head_dim)` in the kernel's channel order.
    acc: &'s mut [f32],
    /// `(rows, head_dim)` scaled queries in the kernel's channel order.
    q: &'s mut [f32],
    /// Rows turned into f32 (quantized kernel) or lane partial sums (paged kernel).
    work: &'s mut [f32],
}

/// Floats of scratch one KV head needs besides its tile's scores.
fn work_len(rows: usize, d: usize) -> usize {
    // the dequantized rows and a group's scales and mins, or the paged kernel's LANES
    // partial sums per row and channel and four chunks' weights
    (DEQUANT_ROWS * d + 2 * d).max((d + 4) * rows * LANES)
}

/// Runs `problem` on up to `threads` threads, whole KV heads per thread; `bytes` (what
/// the call reads) decides whether threads pay.
fn run_groups<P: GroupSource>(
    scratch: &mut Vec<Vec<f32>>,
    threads: usize,
    problem: &P,
    bytes: u128,
    out: &mut DMatrix<f32>,
) {
    let n_kv_heads = problem.shape().n_kv_heads;
    // Threads only pay when each gets a few hundred microseconds of work: 2 MiB read.
    let threads = worth_threads(threads, n_kv_heads, bytes as f64 / f64::from(2 << 20));
    scratch.resize_with(threads, Vec::new);
    split_over_threads(out.as_mut_slice(), n_kv_heads, scratch, |kvs, out, scratch| {
        dispatch(GroupsJob { problem, kvs, out, scratch })
    });
}

/// One thread's share: the query heads of KV heads `kvs`, whose output columns are
/// exactly `out`.
struct GroupsJob<'p, P> {
    problem: &'p P,
    kvs: std::ops::Range<usize>,
    out: &'p mut [f32],
    scratch: &'p mut Vec<f32>,
}

impl<P: GroupSource> Kernel for GroupsJob<'_, P> {
    type Output = ();

    #[inline(always)]
    fn run(self) {
        let group_len = self.out.len() / self.kvs.len();
        for (kv, out) in self.kvs.zip(self.out.chunks_exact_mut(group_len)) {
            // head_dim as a constant where it usually is, so that the loops over a row
            // unroll and keep their sums in registers
            match self.problem.shape().head_dim {
                64 => attend_group::<P, 64>(self.problem, kv, out, self.scratch),
                128 => attend_group::<P, 128>(self.problem, kv, out, self.scratch),
                _ => attend_group::<P, 0>(self.problem, kv, out, self.scratch),
            }
        }
    }
}

// ANCHOR: decode_group_in_place
/// All query heads of KV head `kv` for all queries, `out` that group's output columns;
/// `D` is `head_dim` when not 0.
///
/// Chapter 8's decode loop with the reading left to `p`: per tile of positions the
/// scores of every row of the group, one online-softmax step per row, then the values.
#[inline(always)]
fn attend_group<P: GroupSource, const D: usize>(
    p: &P,
    kv: usize,
    out: &mut [f32],
    scratch: &mut Vec<f32>,
) {
    let s = p.shape();
    let (m, rows) = (s.n_queries, s.rows());
    let d = if D == 0 { s.head_dim } else { D };
    let n_keys = s.n_keys(); // checked: the cache holds them
    let tile = n_keys.min(DECODE_BLOCK);
    let work = work_len(rows, d);
    scratch.resize(rows * (tile + 2 * d + 2) + work, 0.0);
    let (scores, rest) = scratch.split_at_mut(rows * tile);
    let (acc, rest) = rest.split_at_mut(rows * d);
    let (q, rest) = rest.split_at_mut(rows * d);
    let (row_max, rest) = rest.split_at_mut(rows);
    let (row_sum, work) = rest.split_at_mut(rows);
    row_max.fill(f32::NEG_INFINITY);
    row_sum.fill(0.0);
    acc.fill(0.0);
    // the group's queries scaled by 1/√head_dim (rounded once to f32, as chapter 8's)
    let scale = (d as f64).powf(-0.5) as f32;
    let factor = p.query_factor();
    for (r, q_row) in q.chunks_exact_mut(d).enumerate() {
        let (t, i) = (r / m, r % m);
        for c in 0..d {
            let x = s.q[((kv * s.group_size + t) * d + c) * m + i] * scale;
            q_row[p.channel_slot(c)] = if factor == 1.0 { x } else { x * factor };
        }
    }
    let mut t = Tile { tile, rows, d, scores, acc, q, work };
    for j0 in (0..n_keys).step_by(tile) {
        let len = tile.min(n_keys - j0);
        p.scores(kv, j0, len, &mut t);
        for (r, w) in t.scores.chunks_exact_mut(tile).enumerate() {
            let visible = (s.query_offset + r % m + 1).saturating_sub(j0).min(len);
            let rescale = online_softmax_step(
                &mut w[..len],
                visible,
                &mut row_max[r],
                &mut row_sum[r],
            );
            if rescale != 1.0 {
                t.acc[r * d..(r + 1) * d].iter_mut().for_each(|a| *a *= rescale);
            }
        }
        p.values(kv, j0, len, &mut t);
    }
    for (r, (acc, &sum)) in t.acc.chunks_exact(d).zip(row_sum.iter()).enumerate() {
        let (g, i) = (r / m, r % m);
        for c in 0..d {
            out[(g * d + c) * m + i] = acc[p.channel_slot(c)] / sum;
        }
    }
}
// ANCHOR_END: decode_group_in_place

// Sixteen f32 as one value. The compiler keeps such a value in one AVX-512 register (two
// AVX2 ones) when the code handles it whole: loaded from a slice, combined lane by lane
// by the small functions below, stored back. (Indexing an array of them in a loop, or
// adding its lanes together in the same expression, makes it fall back to narrow or
// scalar code: measured.)
type V16 = [f32; LANES];

/// The first sixteen numbers of `s`.
#[inline(always)]
fn load(s: &[f32]) -> V16 {
    let mut v = [0.0; LANES];
    v.copy_from_slice(&s[..LANES]);
    v
}

/// `a + b · c`, lane by lane (a multiply, then an add: never fused).
#[inline(always)]
fn add_mul(a: V16, b: V16, c: V16) -> V16 {
    let mut o = [0.0; LANES];
    for l in 0..LANES {
        o[l] = a[l] + b[l] * c[l];
    }
    o
}

/// `a + b · c` for a number `b`.
#[inline(always)]
fn add_mul_n(a: V16, b: f32, c: V16) -> V16 {
    let mut o = [0.0; LANES];
    for l in 0..LANES {
        o[l] = a[l] + b * c[l];
    }
    o
}

/// `b · c` for a number `b`.
#[inline(always)]
fn mul_n(b: f32, c: V16) -> V16 {
    let mut o = [0.0; LANES];
    for l in 0..LANES {
        o[l] = b * c[l];
    }
    o
}

/// `q · x` as sixteen partial sums: element `j` in lane `j % 16`, in order.
#[inline(always)]
fn partial_sums(q: &[f32], x: &[f32]) -> V16 {
    let mut p = [0.0_f32; LANES];
    let (cq, cx) = (q.chunks_exact(LANES), x.chunks_exact(LANES));
    let (rq, rx) = (cq.remainder(), cx.remainder());
    for (q, x) in cq.zip(cx) {
        p = add_mul(p, load(q), load(x));
    }
    for (p, (&q, &x)) in p.iter_mut().zip(rq.iter().zip(rx)) {
        *p += q * x;
    }
    p
}

/// The sum of sixteen partial sums in a fixed tree: `h = p[l] + p[l + 8]`, `f = h[l] +
/// h[l + 4]`, then `(f₀ + f₂) + (f₁ + f₃)`.
#[inline(always)]
fn tree_sum(p: V16) -> f32 {
    // Optimisation barriers, free at run time: without them the compiler builds the
    // partial sums in narrow vectors, to suit the additions that follow.
    let p = std::hint::black_box(p);
    let mut h = [0.0_f32; 8];
    for l in 0..8 {
        h[l] = p[l] + p[l + 8];
    }
    let h = std::hint::black_box(h);
    let mut f = [0.0_f32; 4];
    for l in 0..4 {
        f[l] = h[l] + h[l + 4];
    }
    (f[0] + f[2]) + (f[1] + f[3])
}

/// `out[i] = q · x_i` for the rows `x_i` of `x` (`q.len()` numbers each): sixteen
/// partial sums per row ([`partial_sums`]), added in [`tree_sum`]'s order. With AVX-512
/// (and `head_dim` a multiple of 16) sixteen rows run together in
/// [`dot_rows16_avx512`]: adding the lanes of one register is slow, adding sixteen
/// registers' lanes into one register is not.
#[inline(always)]
fn dot_rows(q: &[f32], x: &[f32], out: &mut [f32], avx512: bool) {
    let d = q.len();
    let mut i = 0;
    if avx512 && d.is_multiple_of(LANES) {
        while i + LANES <= out.len() {
            let rows = &x[i * d..(i + LANES) * d];
            out[i..i + LANES].copy_from_slice(&dot_rows16(q, rows));
            i += LANES;
        }
    }
    for (o, x) in out[i..].iter_mut().zip(x[i * d..].chunks_exact(d)) {
        *o = tree_sum(partial_sums(q, x));
    }
}

/// `q · x_i` for sixteen rows, with AVX-512 (the caller has checked that the CPU has it,
/// and that `q.len()` is a multiple of 16 with `x` sixteen rows of it).
#[inline(always)]
fn dot_rows16(q: &[f32], x: &[f32]) -> V16 {
    #[cfg(target_arch = "x86_64")]
    {
        assert!(q.len().is_multiple_of(LANES) && x.len() == LANES * q.len());
        // SAFETY: only called when `simd_level()` detected AVX-512 (F, VL, BW, DQ); the
        // lengths are checked above
        unsafe { dot_rows16_avx512(q, x) }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        std::array::from_fn(|i| tree_sum(partial_sums(q, &x[i * q.len()..][..q.len()])))
    }
}

/// [`dot_rows16`] on int8 codes (AVX-512, as it).
#[inline(always)]
fn dot_rows16_i8(q: &[f32], codes: &[i8]) -> V16 {
    #[cfg(target_arch = "x86_64")]
    {
        assert!(q.len().is_multiple_of(LANES) && codes.len() == LANES * q.len());
        // SAFETY: only called when `simd_level()` detected AVX-512 (F, VL, BW, DQ); the
        // lengths are checked above
        unsafe { dot_rows16_i8_avx512(q, codes) }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let d = q.len();
        std::array::from_fn(|i| {
            let x: Vec<f32> =
                codes[i * d..(i + 1) * d].iter().map(|&c| c as f32).collect();
            tree_sum(partial_sums(q, &x))
        })
    }
}

/// [`partial_sums`] and [`tree_sum`] for sixteen rows in AVX-512 registers: the same
/// multiplies and additions on the same numbers as the portable code, so the same bits.
///
/// # Safety
/// The CPU has AVX-512F; `q.len()` is a multiple of 16 and `x.len() == 16 · q.len()`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn dot_rows16_avx512(q: &[f32], x: &[f32]) -> V16 {
    use std::arch::x86_64::{
        _mm512_add_ps, _mm512_loadu_ps, _mm512_mul_ps, _mm512_setzero_ps,
    };
    let d = q.len();
    // sixteen rows' partial sums side by side: sixteen independent chains of additions
    let mut rows = [_mm512_setzero_ps(); LANES];
    for c in (0..d).step_by(LANES) {
        // SAFETY: `c + 16 <= d`
        let qc = unsafe { _mm512_loadu_ps(q.as_ptr().add(c)) };
        for (r, p) in rows.iter_mut().enumerate() {
            // SAFETY: `(r + 1) · d <= x.len()`
            let xc = unsafe { _mm512_loadu_ps(x.as_ptr().add(r * d + c)) };
            *p = _mm512_add_ps(*p, _mm512_mul_ps(qc, xc));
        }
    }
    // SAFETY: the caller's CPU has AVX-512F
    unsafe { tree_sums16_avx512(rows) }
}

/// [`dot_rows16_avx512`] reading int8 codes, each turned into f32 in a register: the
/// same numbers as the codes converted first.
///
/// # Safety
/// The CPU has AVX-512F; `q.len()` is a multiple of 16 and `codes.len() >= 16 ·
/// q.len()`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn dot_rows16_i8_avx512(q: &[f32], codes: &[i8]) -> V16 {
    use std::arch::x86_64::{
        _mm_loadu_si128, _mm512_add_ps, _mm512_cvtepi8_epi32, _mm512_cvtepi32_ps,
        _mm512_loadu_ps, _mm512_mul_ps, _mm512_setzero_ps,
    };
    let d = q.len();
    let mut rows = [_mm512_setzero_ps(); LANES];
    for c in (0..d).step_by(LANES) {
        // SAFETY: `c + 16 <= d`
        let qc = unsafe { _mm512_loadu_ps(q.as_ptr().add(c)) };
        for (r, p) in rows.iter_mut().enumerate() {
            // SAFETY: `r · d + c + 16 <= codes.len()`
            let xc = unsafe {
                let at = codes.as_ptr().add(r * d + c);
                _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(at.cast())))
            };
            *p = _mm512_add_ps(*p, _mm512_mul_ps(qc, xc));
        }
    }
    // SAFETY: the caller's CPU has AVX-512F
    unsafe { tree_sums16_avx512(rows) }
}

/// [`tree_sum`] of sixteen registers of partial sums. Each level adds the two halves of
/// every row's lanes as [`tree_sum`] does (`l` and `l + 8`, then `l + 4`, `l + 2`, `l +
/// 1`) while packing two registers into one, so that after four levels one register
/// holds the sixteen sums (45 instructions); a permutation puts them in row order.
///
/// # Safety
/// The CPU has AVX-512F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn tree_sums16_avx512(rows: [std::arch::x86_64::__m512; LANES]) -> V16 {
    use std::arch::x86_64::{
        __m512, _mm512_add_ps, _mm512_permutexvar_ps, _mm512_set_epi32,
        _mm512_shuffle_f32x4, _mm512_shuffle_ps, _mm512_storeu_ps,
    };
    // 1: row pairs; lanes 0..8 of the result hold row 2i's p[l] + p[l + 8], lanes
    // 8..16 row 2i+1's
    let b: [__m512; 8] = std::array::from_fn(|i| {
        let (x, y) = (rows[2 * i], rows[2 * i + 1]);
        _mm512_add_ps(
            _mm512_shuffle_f32x4::<0x44>(x, y),
            _mm512_shuffle_f32x4::<0xEE>(x, y),
        )
    });
    // 2: quarter k of the result is row 4j + k's h[l] + h[l + 4]
    let c: [__m512; 4] = std::array::from_fn(|j| {
        let (x, y) = (b[2 * j], b[2 * j + 1]);
        _mm512_add_ps(
            _mm512_shuffle_f32x4::<0x88>(x, y),
            _mm512_shuffle_f32x4::<0xDD>(x, y),
        )
    });
    // 3: quarter k holds f[l] + f[l + 2] of rows 8m + k and 8m + 4 + k
    let e: [__m512; 2] = std::array::from_fn(|m| {
        let (x, y) = (c[2 * m], c[2 * m + 1]);
        _mm512_add_ps(_mm512_shuffle_ps::<0x44>(x, y), _mm512_shuffle_ps::<0xEE>(x, y))
    });
    // 4: lane 4k + j holds row 4j + k's sum
    let (x, y) = (e[0], e[1]);
    let sums =
        _mm512_add_ps(_mm512_shuffle_ps::<0x88>(x, y), _mm512_shuffle_ps::<0xDD>(x, y));
    // row i = 4j + k from lane 4k + j (`_mm512_set_epi32` lists lanes 15 down to 0)
    let order = _mm512_set_epi32(15, 11, 7, 3, 14, 10, 6, 2, 13, 9, 5, 1, 12, 8, 4, 0);
    let mut out = [0.0_f32; LANES];
    // SAFETY: `out` holds sixteen f32
    unsafe { _mm512_storeu_ps(out.as_mut_ptr(), _mm512_permutexvar_ps(order, sums)) };
    out
}

/// `Σ a[j]·b[j]` with sixteen partial sums added in order at the end: chapter 8's
/// decode kernel's own `dot`, so that the paged kernel's sums are its sums.
#[inline(always)]
fn dot_lanes(a: &[f32], b: &[f32]) -> f32 {
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

// ---------------------------------------------------------------------------------------
// The quantized cache
// ---------------------------------------------------------------------------------------

/// One quantized decode call: the codes of every KV head, and int4's f32 residual.
struct QuantDecode<'a> {
    shape: Shape<'a>,
    /// Rows `0 .. quantized` are codes; rows `quantized ..` are in the residual.
    quantized: usize,
    /// Per KV head: the keys' and the values' codes.
    codes: &'a [(RowCodes<'a>, RowCodes<'a>)],
    /// `(len − quantized, kv_dim)`: int4's newest keys in f32 (empty otherwise).
    residual_keys: DMatrixView<'a, f32>,
    /// Likewise for the values.
    residual_values: DMatrixView<'a, f32>,
    /// Whether the CPU has AVX-512 (and `ATTENTION_SIMD` lets the kernels use it).
    avx512: bool,
}

/// The f32 value of an e4m3 byte, branch-free so that it vectorises, equal to
/// [`e4m3_to_f32`](crate::serving::quant::e4m3_to_f32) for every byte: the 7 bits of
/// exponent and mantissa moved under f32's exponent field (a subnormal e4m3 lands on a
/// subnormal f32), then scaled by `2^(127 − 7)`, exact. `0x7F` and `0xFF` are NaN.
#[inline(always)]
fn e4m3_value(code: u8) -> f32 {
    const REBIAS: f32 = 1.329_228e36; // 2^120
    let bits = ((code as u32 & 0x80) << 24) | ((code as u32 & 0x7F) << 20);
    let x = f32::from_bits(bits) * REBIAS;
    if code & 0x7F == 0x7F { f32::NAN } else { x }
}

impl QuantDecode<'_> {
    /// int4: the position of channel `c` in the kernel's order (even channels first).
    #[inline(always)]
    fn int4_slot(c: usize, d: usize) -> usize {
        c / 2 + (c % 2) * (d / 2)
    }

    /// Rows `a .. e` (all `< quantized`) of `codes` into f32, `(e − a, d)` row-major in
    /// `x` (the kernel's channel order); int4 keys dequantized with their group's scales
    /// and mins (`gscale`, `gmin` hold one group's, in the kernel's order, for `*group`).
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    fn rows_to_f32(
        codes: RowCodes<'_>,
        a: usize,
        e: usize,
        d: usize,
        x: &mut [f32],
        gscale: &mut [f32],
        gmin: &mut [f32],
        group_loaded: &mut usize,
    ) {
        match codes {
            RowCodes::Int8 { codes, .. } => {
                for (x, &c) in x.iter_mut().zip(&codes[a * d..e * d]) {
                    *x = c as f32;
                }
            }
            RowCodes::Fp8 { codes, .. } => {
                for (x, &c) in x.iter_mut().zip(&codes[a * d..e * d]) {
                    *x = e4m3_value(c);
                }
            }
            RowCodes::Int4 { codes, scales, mins, per_channel } => {
                let half = d / 2;
                let packed = &codes[a * half..e * half];
                match per_channel {
                    Some(group) => {
                        let (scales, mins) = (Int4Side { scales, mins }, (gscale, gmin));
                        int4_keys_to_f32(
                            packed,
                            a,
                            d,
                            group,
                            scales,
                            mins,
                            group_loaded,
                            x,
                        )
                    }
                    None => int4_values_to_f32(packed, d, &scales[a..e], &mins[a..e], x),
                }
            }
        }
    }
}

impl GroupSource for QuantDecode<'_> {
    fn shape(&self) -> &Shape<'_> {
        &self.shape
    }

    #[inline(always)]
    fn channel_slot(&self, c: usize) -> usize {
        match self.codes[0].0 {
            RowCodes::Int4 { .. } => Self::int4_slot(c, self.shape.head_dim),
            _ => c,
        }
    }

    #[inline(always)]
    fn query_factor(&self) -> f32 {
        match self.codes[0].0 {
            RowCodes::Fp8 { scale, .. } => scale,
            _ => 1.0,
        }
    }

    // ANCHOR: quantized_scores
    /// Codes first. int8 with AVX-512: sixteen rows at a time straight from the cache,
    /// then each score times its row's scale, `scale_t · (q · codes_t)`. Otherwise
    /// [`DEQUANT_ROWS`] rows at a time into f32 (int8 and fp8 the bare codes, int4 keys
    /// dequantized with their group's scales and mins), every row of the group dotted
    /// with each. Then int4's f32 residual, a column at a time as chapter 8 reads keys.
    #[inline(always)]
    fn scores(&self, kv: usize, j0: usize, len: usize, t: &mut Tile<'_>) {
        let (d, tile) = (t.d, t.tile);
        let coded_end = (j0 + len).min(self.quantized).max(j0);
        let (x, rest) = t.work.split_at_mut(DEQUANT_ROWS * d);
        let (gscale, gmin) = rest[..2 * d].split_at_mut(d);
        let mut group_loaded = usize::MAX;
        let keys = self.codes[kv].0;
        // int8 with AVX-512: sixteen rows at a time straight from the codes
        let mut fused_end = j0;
        if let RowCodes::Int8 { codes, scales } = keys
            && self.avx512
            && d.is_multiple_of(LANES)
        {
            fused_end = j0 + (coded_end - j0) / LANES * LANES;
            for (q, s) in t.q.chunks_exact(d).zip(t.scores.chunks_exact_mut(tile)) {
                for a in (j0..fused_end).step_by(LANES) {
                    let sums = dot_rows16_i8(q, &codes[a * d..(a + LANES) * d]);
                    s[a - j0..a - j0 + LANES].copy_from_slice(&sums);
                }
                let s = &mut s[..fused_end - j0];
                s.iter_mut().zip(&scales[j0..fused_end]).for_each(|(s, &k)| *s *= k);
            }
        }
        for a in (fused_end..coded_end).step_by(DEQUANT_ROWS) {
            let e = (a + DEQUANT_ROWS).min(coded_end);
            Self::rows_to_f32(keys, a, e, d, x, gscale, gmin, &mut group_loaded);
            for (q, s) in t.q.chunks_exact(d).zip(t.scores.chunks_exact_mut(tile)) {
                let s = &mut s[a - j0..e - j0];
                dot_rows(q, x, s, self.avx512);
                if let RowCodes::Int8 { scales, .. } = keys {
                    s.iter_mut().zip(&scales[a..e]).for_each(|(s, &k)| *s *= k);
                }
            }
        }
        if coded_end < j0 + len {
            let (from, to) = (coded_end - self.quantized, j0 + len - self.quantized);
            for c in 0..d {
                let col = self.residual_keys.column(kv * d + c);
                let k = &col.data.into_slice()[from..to];
                let slot = self.channel_slot(c);
                for (q, s) in t.q.chunks_exact(d).zip(t.scores.chunks_exact_mut(tile)) {
                    let (s, qc) = (&mut s[coded_end - j0..len], q[slot]);
                    if c == 0 {
                        s.iter_mut().zip(k).for_each(|(s, &k)| *s = qc * k);
                    } else {
                        s.iter_mut().zip(k).for_each(|(s, &k)| *s += qc * k);
                    }
                }
            }
        }
    }
    // ANCHOR_END: quantized_scores

    // ANCHOR: quantized_values
    /// The weights absorb what is per row: int8's scale (`w · scale_t`), fp8's per-tensor
    /// scale. Then the codes: int8 with AVX-512 straight from the cache, each code
    /// converted once in a register for up to three rows of the group; otherwise
    /// [`DEQUANT_ROWS`] rows at a time into f32 (int4 dequantized with its row's scale
    /// and min) and each row of the group adds its weighted rows. int4's residual last, a
    /// column at a time as chapter 8 reads values.
    #[inline(always)]
    fn values(&self, kv: usize, j0: usize, len: usize, t: &mut Tile<'_>) {
        let (d, tile) = (t.d, t.tile);
        let coded_end = (j0 + len).min(self.quantized).max(j0);
        let values = self.codes[kv].1;
        let coded = j0..coded_end; // may be empty: then the tile is all residual
        for w in t.scores.chunks_exact_mut(tile) {
            let w = &mut w[..coded.len()];
            match values {
                _ if coded.is_empty() => {}
                RowCodes::Int8 { scales, .. } => {
                    w.iter_mut().zip(&scales[coded.clone()]).for_each(|(w, &s)| *w *= s);
                }
                RowCodes::Fp8 { scale, .. } => w.iter_mut().for_each(|w| *w *= scale),
                RowCodes::Int4 { .. } => {} // dequantized row by row below
            }
        }
        if let RowCodes::Int8 { codes, .. } = values
            && self.avx512
            && d.is_multiple_of(4 * LANES)
        {
            add_weighted_int8(t.acc, t.scores, tile, codes, j0..coded_end, d);
        } else {
            let (x, rest) = t.work.split_at_mut(DEQUANT_ROWS * d);
            let (gscale, gmin) = rest[..2 * d].split_at_mut(d);
            let mut unused = usize::MAX;
            for a in (j0..coded_end).step_by(DEQUANT_ROWS) {
                let e = (a + DEQUANT_ROWS).min(coded_end);
                Self::rows_to_f32(values, a, e, d, x, gscale, gmin, &mut unused);
                for (acc, w) in t.acc.chunks_exact_mut(d).zip(t.scores.chunks_exact(tile))
                {
                    add_weighted_rows(acc, &w[a - j0..e - j0], x, d);
                }
            }
        }
        if coded_end < j0 + len {
            let (from, to) = (coded_end - self.quantized, j0 + len - self.quantized);
            for c in 0..d {
                let col = self.residual_values.column(kv * d + c);
                let v = &col.data.into_slice()[from..to];
                let slot = self.channel_slot(c);
                for (acc, w) in t.acc.chunks_exact_mut(d).zip(t.scores.chunks_exact(tile))
                {
                    acc[slot] += dot_lanes(&w[coded_end - j0..len], v);
                }
            }
        }
    }
    // ANCHOR_END: quantized_values
}

/// `acc += Σ_i w[i] · x_i` for the rows `x_i` of `x` (`d` numbers each), each channel's
/// terms added in row order: 64 channels at a time in four registers, so that four
/// chains of additions run side by side (one chain would wait on each addition).
#[inline(always)]
fn add_weighted_rows(acc: &mut [f32], w: &[f32], x: &[f32], d: usize) {
    let mut k = 0;
    while k + 4 * LANES <= d {
        let (mut a0, mut a1) = (load(&acc[k..]), load(&acc[k + LANES..]));
        let (mut a2, mut a3) = (load(&acc[k + 2 * LANES..]), load(&acc[k + 3 * LANES..]));
        for (&w, x) in w.iter().zip(x.chunks_exact(d)) {
            let x = &x[k..k + 4 * LANES];
            a0 = add_mul_n(a0, w, load(x));
            a1 = add_mul_n(a1, w, load(&x[LANES..]));
            a2 = add_mul_n(a2, w, load(&x[2 * LANES..]));
            a3 = add_mul_n(a3, w, load(&x[3 * LANES..]));
        }
        for (n, a) in [a0, a1, a2, a3].iter().enumerate() {
            acc[k + n * LANES..][..LANES].copy_from_slice(a);
        }
        k += 4 * LANES;
    }
    while k + LANES <= d {
        let mut a = load(&acc[k..]);
        for (&w, x) in w.iter().zip(x.chunks_exact(d)) {
            a = add_mul_n(a, w, load(&x[k..]));
        }
        acc[k..k + LANES].copy_from_slice(&a);
        k += LANES;
    }
    for c in k..d {
        for (&w, x) in w.iter().zip(x.chunks_exact(d)) {
            acc[c] += w * x[c];
        }
    }
}

/// int8 values with AVX-512 (the caller has checked that the CPU has it and that `d` is
/// a multiple of 64): for every row `r` of the group, `acc_r += Σ_j w_rj · codes_j` over
/// the positions `rows` (`w` the scores rows, `tile` apart, from position `rows.start`).
/// The same products and sums, in the same order, as converting the codes to f32 and
/// calling [`add_weighted_rows`]; but each code is converted once, in a register, and
/// used by three rows of the group at a time.
#[inline(always)]
fn add_weighted_int8(
    acc: &mut [f32],
    w: &[f32],
    tile: usize,
    codes: &[i8],
    rows: std::ops::Range<usize>,
    d: usize,
) {
    let n_rows = acc.len() / d;
    let mut r = 0;
    while r < n_rows {
        let take = (n_rows - r).min(3);
        let (acc, w) = (&mut acc[r * d..(r + take) * d], &w[r * tile..]);
        match take {
            3 => int8_rows::<3>(acc, w, tile, codes, rows.clone(), d),
            2 => int8_rows::<2>(acc, w, tile, codes, rows.clone(), d),
            _ => int8_rows::<1>(acc, w, tile, codes, rows.clone(), d),
        }
        r += take;
    }
}

/// [`add_weighted_int8`] for `R` rows.
#[inline(always)]
fn int8_rows<const R: usize>(
    acc: &mut [f32],
    w: &[f32],
    tile: usize,
    codes: &[i8],
    rows: std::ops::Range<usize>,
    d: usize,
) {
    assert!(acc.len() == R * d && w.len() >= (R - 1) * tile + rows.len());
    assert!(d.is_multiple_of(4 * LANES) && codes.len() >= rows.end * d);
    #[cfg(target_arch = "x86_64")]
    // SAFETY: only called when `simd_level()` detected AVX-512; the sizes are checked
    // above
    unsafe {
        int8_rows_avx512::<R>(acc, w, tile, codes, rows, d)
    }
    #[cfg(not(target_arch = "x86_64"))]
    for (i, j) in rows.enumerate() {
        for r in 0..R {
            let w = w[r * tile + i];
            for (a, &c) in acc[r * d..(r + 1) * d].iter_mut().zip(&codes[j * d..]) {
                *a += w * c as f32;
            }
        }
    }
}

/// See [`int8_rows`].
///
/// # Safety
/// The CPU has AVX-512F; the sizes are as [`int8_rows`] checks.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn int8_rows_avx512<const R: usize>(
    acc: &mut [f32],
    w: &[f32],
    tile: usize,
    codes: &[i8],
    rows: std::ops::Range<usize>,
    d: usize,
) {
    use std::arch::x86_64::{
        __m512, _mm_loadu_si128, _mm512_add_ps, _mm512_cvtepi8_epi32, _mm512_cvtepi32_ps,
        _mm512_loadu_ps, _mm512_mul_ps, _mm512_set1_ps, _mm512_storeu_ps,
    };
    for block in (0..d).step_by(4 * LANES) {
        // R rows × 64 channels of sums in registers
        let mut sums: [[__m512; 4]; R] = std::array::from_fn(|r| {
            // SAFETY: `acc` holds R rows of d
            std::array::from_fn(|k| unsafe {
                _mm512_loadu_ps(acc.as_ptr().add(r * d + block + k * LANES))
            })
        });
        for (i, j) in rows.clone().enumerate() {
            // SAFETY: `(j + 1) · d <= codes.len()`
            let x: [__m512; 4] = std::array::from_fn(|k| unsafe {
                let at = codes.as_ptr().add(j * d + block + k * LANES);
                _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(at.cast())))
            });
            for (r, sums) in sums.iter_mut().enumerate() {
                let wr = _mm512_set1_ps(w[r * tile + i]);
                for (s, &x) in sums.iter_mut().zip(&x) {
                    *s = _mm512_add_ps(*s, _mm512_mul_ps(wr, x));
                }
            }
        }
        for (r, sums) in sums.iter().enumerate() {
            for (k, &s) in sums.iter().enumerate() {
                // SAFETY: as the loads above
                unsafe {
                    _mm512_storeu_ps(acc.as_mut_ptr().add(r * d + block + k * LANES), s)
                };
            }
        }
    }
}

/// An int4 side's scales and mins, as the cache lends them.
#[derive(Clone, Copy)]
struct Int4Side<'a> {
    scales: &'a [f32],
    mins: &'a [f32],
}

/// int4 keys `packed` (rows `first ..`, `d / 2` bytes each) dequantized into `x` in the
/// kernel's channel order (even channels, then odd): `code · scale + min` of the row's
/// group, per channel, exactly as `QuantizedRows::dequantize_row`. `group_scales` holds
/// one group's scales and mins in that order, for group `*loaded`.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn int4_keys_to_f32(
    packed: &[u8],
    first: usize,
    d: usize,
    group: usize,
    side: Int4Side<'_>,
    group_scales: (&mut [f32], &mut [f32]),
    loaded: &mut usize,
    x: &mut [f32],
) {
    // `half` hidden from the optimiser: known, it unrolls the loops below completely and
    // then fails to vectorise them (measured: two and a half times slower)
    let (half, (gscale, gmin)) = (std::hint::black_box(d / 2), group_scales);
    for (row, (x, bytes)) in
        x.chunks_exact_mut(d).zip(packed.chunks_exact(half)).enumerate()
    {
        let g = (first + row) / group;
        if *loaded != g {
            for (to, from) in [(&mut *gscale, side.scales), (&mut *gmin, side.mins)] {
                let from = &from[g * d..(g + 1) * d];
                let (even, odd) = to.split_at_mut(half);
                for (t, pair) in
                    even.iter_mut().zip(odd.iter_mut()).zip(from.chunks_exact(2))
                {
                    (*t.0, *t.1) = (pair[0], pair[1]);
                }
            }
            *loaded = g;
        }
        let (lo, hi) = x.split_at_mut(half);
        let (sl, sh) = gscale.split_at(half);
        let (ml, mh) = gmin.split_at(half);
        // two simple loops, so that each vectorises
        for ((x, &b), (&s, &m)) in lo.iter_mut().zip(bytes).zip(sl.iter().zip(ml)) {
            *x = (b & 0x0F) as f32 * s + m;
        }
        for ((x, &b), (&s, &m)) in hi.iter_mut().zip(bytes).zip(sh.iter().zip(mh)) {
            *x = (b >> 4) as f32 * s + m;
        }
    }
}

/// int4 values `packed` (`d / 2` bytes a row) dequantized into `x` in the kernel's
/// channel order: `code · scale + min` of the row, exactly as
/// `QuantizedRows::dequantize_row`. (Folding the scale and min into the weights instead
/// would cancel: `Σ w·s·code` and `Σ w·min` are both large, their difference small.)
#[inline(always)]
fn int4_values_to_f32(
    packed: &[u8],
    d: usize,
    scales: &[f32],
    mins: &[f32],
    x: &mut [f32],
) {
    let half = std::hint::black_box(d / 2); // see `int4_keys_to_f32`
    let rows = x.chunks_exact_mut(d).zip(packed.chunks_exact(half));
    for ((x, bytes), (&s, &m)) in rows.zip(scales.iter().zip(mins)) {
        let (lo, hi) = x.split_at_mut(half);
        for (x, &b) in lo.iter_mut().zip(bytes) {
            *x = (b & 0x0F) as f32 * s + m;
        }
        for (x, &b) in hi.iter_mut().zip(bytes) {
            *x = (b >> 4) as f32 * s + m;
        }
    }
}

// ---------------------------------------------------------------------------------------
// The paged cache
// ---------------------------------------------------------------------------------------

/// One paged decode call: the sequence's blocks in table order.
struct PagedDecode<'a> {
    shape: Shape<'a>,
    block_size: usize,
    /// Per entry of the block table: the block's keys and values, each `kv_dim` columns
    /// of `block_size` numbers.
    blocks: &'a [(&'a [f32], &'a [f32])],
}

/// A run of positions inside one block: positions `start .. start + len` of the
/// sequence are rows `row .. row + len` of block entry `entry` of the table.
#[derive(Clone, Copy)]
struct Run {
    start: usize,
    len: usize,
    entry: usize,
    row: usize,
}

impl PagedDecode<'_> {
    /// The runs of positions `j0 .. j0 + len`, each inside one block, in order; with
    /// `max` > 0 no run is longer than `max` nor crosses a multiple of `max` (chunks of
    /// sixteen positions for the fast path).
    #[inline(always)]
    fn runs(&self, j0: usize, len: usize, max: usize) -> impl Iterator<Item = Run> + '_ {
        let bs = self.block_size;
        let mut p = j0;
        std::iter::from_fn(move || {
            if p >= j0 + len {
                return None;
            }
            let (entry, row) = (p / bs, p % bs);
            let mut end = (p - row + bs).min(j0 + len); // the end of p's block
            if let Some(k) = p.checked_div(max) {
                end = end.min((k + 1) * max); // the next multiple of `max`
            }
            let run = Run { start: p, len: end - p, entry, row };
            p = end;
            Some(run)
        })
    }

    /// KV head `kv`'s part of a block: `head_dim` columns of `block_size` numbers.
    #[inline(always)]
    fn head<'b>(&self, block: &'b [f32], kv: usize, d: usize) -> &'b [f32] {
        &block[kv * d * self.block_size..(kv + 1) * d * self.block_size]
    }

    /// Whether the fast path applies: blocks start on multiples of sixteen positions.
    fn aligned(&self) -> bool {
        self.block_size.is_multiple_of(LANES)
    }
}

impl GroupSource for PagedDecode<'_> {
    fn shape(&self) -> &Shape<'_> {
        &self.shape
    }

    // ANCHOR: paged_scores
    /// For every row, `q · k_j` summed over the channels in order, as chapter 8's kernel
    /// sums it (`s = q₀k₀; s += q₁k₁; ...`), so that the scores are its scores. Fast
    /// path: eight chunks of sixteen positions at a time (then four, then one), each
    /// from its own block, their sixteen sums in registers for the whole loop over the
    /// channels: eight blocks' reads in flight at once, where four were a few percent
    /// slower on the Zen 4 (interleaved, AVX-512; the same at AVX2); otherwise a run of
    /// a block at a time, a column at a time.
    #[inline(always)]
    fn scores(&self, kv: usize, j0: usize, len: usize, t: &mut Tile<'_>) {
        let (d, tile, bs) = (t.d, t.tile, self.block_size);
        let full = if self.aligned() { len / LANES * LANES } else { 0 };
        if full > 0 {
            let chunk = |i: usize| {
                let p = j0 + i * LANES;
                let head = self.head(self.blocks[p / bs].0, kv, d);
                &head[p % bs..]
            };
            let chunks = full / LANES;
            for (q, s) in t.q.chunks_exact(d).zip(t.scores.chunks_exact_mut(tile)) {
                let mut i = 0;
                while i + 8 <= chunks {
                    let ks = [
                        chunk(i),
                        chunk(i + 1),
                        chunk(i + 2),
                        chunk(i + 3),
                        chunk(i + 4),
                        chunk(i + 5),
                        chunk(i + 6),
                        chunk(i + 7),
                    ];
                    let sums = chunk_scores8(q, ks, bs);
                    for (n, sum) in sums.iter().enumerate() {
                        s[(i + n) * LANES..][..LANES].copy_from_slice(sum);
                    }
                    i += 8;
                }
                while i + 4 <= chunks {
                    let ks = [chunk(i), chunk(i + 1), chunk(i + 2), chunk(i + 3)];
                    let sums = chunk_scores4(q, ks, bs);
                    for (n, sum) in sums.iter().enumerate() {
                        s[(i + n) * LANES..][..LANES].copy_from_slice(sum);
                    }
                    i += 4;
                }
                for i in i..chunks {
                    let sum = chunk_scores1(q, chunk(i), bs);
                    s[i * LANES..][..LANES].copy_from_slice(&sum);
                }
            }
        }
        for run in self.runs(j0 + full, len - full, 0) {
            let head = self.head(self.blocks[run.entry].0, kv, d);
            for c in 0..d {
                let k = &head[c * bs + run.row..][..run.len];
                for (q, s) in t.q.chunks_exact(d).zip(t.scores.chunks_exact_mut(tile)) {
                    let (s, qc) = (&mut s[run.start - j0..][..run.len], q[c]);
                    if c == 0 {
                        s.iter_mut().zip(k).for_each(|(s, &k)| *s = qc * k);
                    } else {
                        s.iter_mut().zip(k).for_each(|(s, &k)| *s += qc * k);
                    }
                }
            }
        }
    }
    // ANCHOR_END: paged_scores

    // ANCHOR: paged_values
    /// `Σ_j w_rj · v_jc` for every row and channel, position `j` added into lane `(j −
    /// j0) % 16` of that sum's sixteen partial sums, in order, and the lanes added in
    /// order at the end of the tile: exactly the sums of chapter 8's `dot` over a
    /// contiguous column. Fast path: four chunks of sixteen positions at a time, each
    /// from its own block, each value column read in place once for all the rows (four
    /// blocks read side by side keep the memory busier than one); otherwise a position
    /// at a time.
    #[inline(always)]
    fn values(&self, kv: usize, j0: usize, len: usize, t: &mut Tile<'_>) {
        let (d, tile, bs, rows) = (t.d, t.tile, self.block_size, t.rows);
        // (head_dim, rows, LANES): channel c's partial sums of every row side by side
        let (part, rest) = t.work.split_at_mut(d * rows * LANES);
        // (rows, 4, LANES): the weights of the chunks at hand
        let w_chunks = &mut rest[..rows * 4 * LANES];
        part.fill(0.0);
        let full = if self.aligned() { len / LANES * LANES } else { 0 };
        let chunk = |i: usize| {
            let p = j0 + i * LANES;
            &self.head(self.blocks[p / bs].1, kv, d)[p % bs..]
        };
        let mut i = 0;
        while i < full / LANES {
            let n = if i + 4 <= full / LANES { 4 } else { 1 };
            for (w, s) in
                w_chunks.chunks_exact_mut(4 * LANES).zip(t.scores.chunks_exact(tile))
            {
                w[..n * LANES].copy_from_slice(&s[i * LANES..(i + n) * LANES]);
            }
            if n == 4 {
                let [c0, c1, c2, c3] =
                    [chunk(i), chunk(i + 1), chunk(i + 2), chunk(i + 3)]
                        .map(|k| k.chunks(bs));
                let columns = c0.zip(c1).zip(c2.zip(c3));
                for (part, ((k0, k1), (k2, k3))) in
                    part.chunks_exact_mut(rows * LANES).zip(columns)
                {
                    let (v0, v1, v2, v3) = (load(k0), load(k1), load(k2), load(k3));
                    for (p, w) in
                        part.chunks_exact_mut(LANES).zip(w_chunks.chunks_exact(4 * LANES))
                    {
                        let mut sum = add_mul(load(p), load(w), v0);
                        sum = add_mul(sum, load(&w[LANES..]), v1);
                        sum = add_mul(sum, load(&w[2 * LANES..]), v2);
                        sum = add_mul(sum, load(&w[3 * LANES..]), v3);
                        p.copy_from_slice(&sum);
                    }
                }
            } else {
                for (part, k) in
                    part.chunks_exact_mut(rows * LANES).zip(chunk(i).chunks(bs))
                {
                    let v = load(k);
                    for (p, w) in
                        part.chunks_exact_mut(LANES).zip(w_chunks.chunks_exact(4 * LANES))
                    {
                        p.copy_from_slice(&add_mul(load(p), load(w), v));
                    }
                }
            }
            i += n;
        }
        for run in self.runs(j0 + full, len - full, 0) {
            let head = &self.head(self.blocks[run.entry].1, kv, d)[run.row..];
            let from = run.start - j0;
            for (part, column) in part.chunks_exact_mut(rows * LANES).zip(head.chunks(bs))
            {
                let v = &column[..run.len];
                for (p, s) in
                    part.chunks_exact_mut(LANES).zip(t.scores.chunks_exact(tile))
                {
                    for (j, (&w, &v)) in s[from..from + run.len].iter().zip(v).enumerate()
                    {
                        p[(from + j) % LANES] += w * v;
                    }
                }
            }
        }
        for (c, part) in part.chunks_exact(rows * LANES).enumerate() {
            for (r, p) in part.chunks_exact(LANES).enumerate() {
                t.acc[r * d + c] += p.iter().sum::<f32>();
            }
        }
    }
    // ANCHOR_END: paged_values
}

/// The scores of four chunks of sixteen positions for one row `q`: chunk `n`'s key
/// column `c` starts at `ks[n][c · stride]`. The sums run over the channels in order,
/// four sixteen-lane sums kept in registers.
#[inline(always)]
fn chunk_scores4(q: &[f32], ks: [&[f32]; 4], stride: usize) -> [V16; 4] {
    let [k0, k1, k2, k3] = ks.map(|k| k.chunks(stride));
    let columns = k0.zip(k1).zip(k2.zip(k3));
    let mut sums = [[0.0; LANES]; 4];
    for (c, (&qc, ((c0, c1), (c2, c3)))) in q.iter().zip(columns).enumerate() {
        let [a0, a1, a2, a3] = &mut sums;
        if c == 0 {
            (*a0, *a1, *a2, *a3) = (
                mul_n(qc, load(c0)),
                mul_n(qc, load(c1)),
                mul_n(qc, load(c2)),
                mul_n(qc, load(c3)),
            );
        } else {
            *a0 = add_mul_n(*a0, qc, load(c0));
            *a1 = add_mul_n(*a1, qc, load(c1));
            *a2 = add_mul_n(*a2, qc, load(c2));
            *a3 = add_mul_n(*a3, qc, load(c3));
        }
    }
    sums
}

/// [`chunk_scores4`] for eight chunks: eight named sums, as there (an array indexed in
/// a loop is not kept in registers). At AVX2 they fill all sixteen registers and the
/// loads spill, yet measured no slower there than four.
#[inline(always)]
fn chunk_scores8(q: &[f32], ks: [&[f32]; 8], stride: usize) -> [V16; 8] {
    let mut sums = [[0.0; LANES]; 8];
    let [k0, k1, k2, k3, k4, k5, k6, k7] = ks;
    for (c, &qc) in q.iter().enumerate() {
        let o = c * stride;
        let [a0, a1, a2, a3, a4, a5, a6, a7] = &mut sums;
        let l = |k: &[f32]| load(&k[o..]);
        if c == 0 {
            (*a0, *a1, *a2, *a3) =
                (mul_n(qc, l(k0)), mul_n(qc, l(k1)), mul_n(qc, l(k2)), mul_n(qc, l(k3)));
            (*a4, *a5, *a6, *a7) =
                (mul_n(qc, l(k4)), mul_n(qc, l(k5)), mul_n(qc, l(k6)), mul_n(qc, l(k7)));
        } else {
            *a0 = add_mul_n(*a0, qc, l(k0));
            *a1 = add_mul_n(*a1, qc, l(k1));
            *a2 = add_mul_n(*a2, qc, l(k2));
            *a3 = add_mul_n(*a3, qc, l(k3));
            *a4 = add_mul_n(*a4, qc, l(k4));
            *a5 = add_mul_n(*a5, qc, l(k5));
            *a6 = add_mul_n(*a6, qc, l(k6));
            *a7 = add_mul_n(*a7, qc, l(k7));
        }
    }
    sums
}

/// [`chunk_scores4`] for one chunk.
#[inline(always)]
fn chunk_scores1(q: &[f32], k: &[f32], stride: usize) -> V16 {
    let mut a = [0.0; LANES];
    for (c, (&qc, column)) in q.iter().zip(k.chunks(stride)).enumerate() {
        a = if c == 0 { mul_n(qc, load(column)) } else { add_mul_n(a, qc, load(column)) };
    }
    a
}

// ---------------------------------------------------------------------------------------
// The machine's read bandwidth
// ---------------------------------------------------------------------------------------

/// One core's read bandwidth in GB/s (10⁹ bytes a second) on a buffer of `bytes` bytes
/// (rounded down to a multiple of 256), read again and again for at least `min_time`:
/// a sum of f32 with 64 partial sums, compiled for the widest SIMD level, so that the
/// loads are the limit. Beside a decode kernel's achieved GB/s it says how close the
/// kernel gets to what the memory (or the cache level the buffer fits in) delivers.
pub fn read_bandwidth_gb_per_s(
    bytes: usize,
    min_time: std::time::Duration,
) -> Result<f64> {
    let n = bytes / 256 * 64;
    nonzero("bandwidth buffer (at least 256 bytes)", n)?;
    let mut buf = crate::support::error::try_zeros("read_bandwidth buffer", &[n])?;
    buf.iter_mut().enumerate().for_each(|(i, x)| *x = (i % 7) as f32); // touch every page
    struct Sum<'a>(&'a [f32]);
    impl Kernel for Sum<'_> {
        type Output = f32;
        #[inline(always)]
        fn run(self) -> f32 {
            let mut p = [0.0_f32; 64];
            for chunk in self.0.chunks_exact(64) {
                for l in 0..64 {
                    p[l] += chunk[l];
                }
            }
            p.iter().sum()
        }
    }
    std::hint::black_box(dispatch(Sum(&buf))); // warm up: pages, caches
    let (mut reads, start) = (0u64, std::time::Instant::now());
    while reads == 0 || start.elapsed() < min_time {
        std::hint::black_box(dispatch(Sum(std::hint::black_box(&buf))));
        reads += 1;
    }
    Ok(reads as f64 * (n * 4) as f64 / start.elapsed().as_secs_f64() / 1e9)
}

#[cfg(test)]
mod tests {
    //! The AVX-512 paths against the portable code they stand for, bit for bit: the
    //! portable code is what AVX2 and baseline CPUs run, so equal bits here mean results
    //! that do not depend on the SIMD level. (On a CPU without AVX-512 both sides run the
    //! portable code and the tests say nothing.)

    use super::*;
    use crate::support::init::splitmix_uniform;

    fn numbers(seed: u64, n: usize, bound: f64) -> Vec<f32> {
        (0..n).map(|i| splitmix_uniform(seed, i as u64, bound)).collect()
    }

    fn codes(seed: u64, n: usize) -> Vec<i8> {
        numbers(seed, n, 127.0).iter().map(|&x| x.round() as i8).collect()
    }

    fn same_bits(got: &[f32], want: &[f32], what: &str) {
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            assert_eq!(g.to_bits(), w.to_bits(), "{what}: element {i}: {g} against {w}");
        }
    }

    #[test]
    fn sixteen_rows_at_once_are_the_portable_sums() {
        let avx512 = simd_level() == SimdLevel::Avx512;
        for d in [16, 64, 128] {
            let (q, x) = (numbers(1, d, 1.0), numbers(2, 37 * d, 3.0));
            let (mut fast, mut slow) = (vec![0.0; 37], vec![0.0; 37]);
            dot_rows(&q, &x, &mut fast, avx512);
            dot_rows(&q, &x, &mut slow, false);
            same_bits(&fast, &slow, &format!("dot_rows, d {d}"));
            if avx512 {
                let c = codes(3, 16 * d);
                let x: Vec<f32> = c.iter().map(|&c| c as f32).collect();
                let mut want = vec![0.0; 16];
                dot_rows(&q, &x, &mut want, false);
                same_bits(&dot_rows16_i8(&q, &c), &want, &format!("int8 rows, d {d}"));
            }
        }
    }

    #[test]
    fn int8_values_from_registers_are_the_portable_sums() {
        if simd_level() != SimdLevel::Avx512 {
            return;
        }
        let (d, tile, n) = (128, 40, 37);
        for rows in [1, 2, 3, 5] {
            let (w, c) = (numbers(4, rows * tile, 1.0), codes(5, (n + 3) * d));
            let start = numbers(6, rows * d, 1.0);
            let mut fast = start.clone();
            add_weighted_int8(&mut fast, &w, tile, &c, 3..3 + n, d);
            let mut slow = start;
            let x: Vec<f32> = c[3 * d..].iter().map(|&c| c as f32).collect();
            for (acc, w) in slow.chunks_exact_mut(d).zip(w.chunks_exact(tile)) {
                add_weighted_rows(acc, &w[..n], &x, d);
            }
            same_bits(&fast, &slow, &format!("{rows} rows"));
        }
    }

    /// The branch-free e4m3 decoding is the cache's own, for all 256 bytes.
    #[test]
    fn e4m3_bytes_decode_as_the_cache_does() {
        for code in 0..=255u8 {
            let (got, want) =
                (e4m3_value(code), crate::serving::quant::e4m3_to_f32(code));
            if want.is_nan() {
                assert!(got.is_nan(), "{code:#04x}: {got}");
            } else {
                assert_eq!(got.to_bits(), want.to_bits(), "{code:#04x}: {got} {want}");
            }
        }
    }
}
