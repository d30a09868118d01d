//! Tiled attention with an online softmax ("flash attention"), for prefill.
//!
//! Same inputs, outputs and errors as [`grouped_attention`](crate::grouped_attention),
//! but it never builds the `(seq, seq)` score matrix: queries are taken [`QUERY_BLOCK`]
//! rows at a time, keys [`KEY_BLOCK`] at a time, and each query row keeps a running
//! maximum and a running sum, so the softmax is finished on the fly. Memory beyond the
//! inputs and output is a few tiles per thread and one token-major copy of the values.

use std::ops::Range;

use nalgebra::{DMatrix, DMatrixView, Dyn, MatrixView, MatrixViewMut};

use crate::fast::online_softmax::online_softmax_tile;
use crate::fast::simd::{Kernel, dispatch};
use crate::fast::{
    AttentionInputs, FastKernel, KernelBody, split_over_threads, worth_threads,
};
use crate::variants::ScoreOptions;

/// Query rows per tile. Larger tiles spend less time copying operands into the
/// matrix-product kernel's layout per multiply-add; smaller ones waste less work on the
/// causal diagonal (a `QUERY_BLOCK × QUERY_BLOCK` triangle per block, half of it masked).
/// 128 was fastest here.
pub const QUERY_BLOCK: usize = 128;

/// Keys per tile: a score tile is `QUERY_BLOCK × KEY_BLOCK` f32, 256 KiB per query head,
/// which stays in the core's 1 MiB L2 cache while it is turned into weights and
/// multiplied by the values.
pub const KEY_BLOCK: usize = 512;

/// Causal grouped-query attention by tiles with an online softmax: the same result as
/// [`grouped_attention`](crate::grouped_attention) (to f32 rounding), without the `(seq,
/// seq)` matrix.
///
/// Shapes, one row per token, heads side by side in the columns: `q (n_queries,
/// n_heads·head_dim)`, `k` and `v (n_keys, n_kv_heads·head_dim)`; query `i` sees keys `0
/// ..= query_offset + i`. Returns `(n_queries, n_heads·head_dim)`. Threads split the
/// query heads (each thread takes whole heads, so results do not depend on the number of
/// threads). The buffers are a few tiles per thread plus one token-major copy of the
/// values, allocated on first use and reused.
///
/// ```
/// use attention::{AttentionInputs, FlashAttention, HeadLayout, grouped_attention, splitmix_matrix};
/// let heads = HeadLayout::new(4, 2, 8)?; // 4 query heads over 2 KV heads, head_dim 8
/// let q = splitmix_matrix(1, 70, 4 * 8, 1.0); // 70 tokens
/// let k = splitmix_matrix(2, 70, 2 * 8, 1.0);
/// let v = splitmix_matrix(3, 70, 2 * 8, 1.0);
/// let x = AttentionInputs { q: &q, k: k.as_view(), v: v.as_view(), heads, query_offset: 0 };
/// let fast = FlashAttention::new().forward(x)?;
/// let slow = grouped_attention(&q, k.as_view(), v.as_view(), heads, 0)?;
/// assert!((fast - slow).amax() < 1e-5);
/// # Ok::<(), attention::AttnError>(())
/// ```
pub type FlashAttention = FastKernel<FlashBuffers>;

/// The buffers of [`FlashAttention`], kept between calls.
#[derive(Clone, Debug, Default)]
pub struct FlashBuffers {
    /// The keys, column-major `(n_keys, n_kv_heads·head_dim)`, contiguous.
    keys: Vec<f32>,
    /// The values, token-major: `(n_keys, n_kv_heads·head_dim)` row-major.
    values: Vec<f32>,
    scratch: Vec<Scratch>,
    /// Chapter 9's options (window, soft-cap, scale, sinks), applied per tile.
    scores: ScoreOptions,
}

impl FlashAttention {
    /// The same kernel applying `scores` ([`ScoreOptions`]) in every tile: the scale and
    /// the soft-cap to each score as it is computed, the window as a mask on the tiles
    /// that cross its edge (tiles wholly outside it are skipped), the learned sinks as
    /// each row's starting maximum and sum.
    pub fn with_scores(mut self, scores: ScoreOptions) -> Self {
        self.body.scores = scores;
        self
    }
}

/// One thread's tiles: the scores of every head of a group, and per-row running
/// statistics.
#[derive(Clone, Debug, Default)]
struct Scratch {
    /// `group_size` tiles of up to `QUERY_BLOCK × KEY_BLOCK` scores, column-major, turned
    /// into weights.
    scores: Vec<f32>,
    /// Running maximum of each query row of each head in the group.
    row_max: Vec<f32>,
    /// Running sum of `exp(score - row_max)` of each row.
    row_sum: Vec<f32>,
    /// The factor `exp(old max - new max)` that rescales each row's accumulated output.
    rescale: Vec<f32>,
}

impl Scratch {
    fn fit(&mut self, group_size: usize) {
        let rows = group_size * QUERY_BLOCK;
        self.scores.resize(rows * KEY_BLOCK, 0.0);
        self.row_max.resize(rows, 0.0);
        self.row_sum.resize(rows, 0.0);
        self.rescale.resize(rows, 0.0);
    }
}

impl KernelBody for FlashBuffers {
    const NAME: &'static str = "flash_attention";

    fn run(&mut self, threads: usize, x: AttentionInputs<'_>, out: &mut DMatrix<f32>) {
        let AttentionInputs { q, k, v, heads, query_offset } = x;
        // checked here, where the head count is known (an error cannot leave `run`)
        debug_assert!(self.scores.validate(heads.n_heads()).is_ok());
        let (n_heads, head_dim) = (heads.n_heads(), heads.head_dim());
        // The last query sees keys up to query_offset + n_queries - 1: later keys are
        // never read.
        let n_keys = query_offset + q.nrows();
        let kv_dim = v.ncols();
        // The keys as one contiguous column-major block (a view may have a longer column
        // stride), and the values token-major: the tile products read them in those
        // orders (`tile_update`).
        self.keys.clear();
        for c in 0..kv_dim {
            self.keys.extend_from_slice(k.column(c).rows(0, n_keys).data.into_slice());
        }
        self.values.resize(n_keys * kv_dim, 0.0);
        transpose_into(v.rows(0, n_keys), &mut self.values);
        let problem = Problem {
            q: q.as_slice(),
            seq: q.nrows(),
            keys: &self.keys,
            n_keys,
            values: &self.values,
            kv_dim,
            group_size: heads.group_size(),
            head_dim,
            query_offset,
            scale: self.scores.scale_for(head_dim),
            options: &self.scores,
        };
        // Threads only pay when each gets a few hundred microseconds of work (about 20
        // MFLOP).
        let flops = 4.0
            * (n_heads * head_dim * problem.seq) as f64
            * (query_offset as f64 + problem.seq as f64 / 2.0);
        let threads = worth_threads(threads, n_heads, flops / 2e7);
        self.scratch.resize_with(threads, Scratch::default);
        for s in &mut self.scratch {
            s.fit(problem.group_size);
        }
        // Whole heads per thread; each thread owns its heads' output columns
        // (column-major: one head's columns are one contiguous run of seq · head_dim
        // values).
        let problem = &problem;
        split_over_threads(
            out.as_mut_slice(),
            n_heads,
            &mut self.scratch,
            |heads, out, scratch| dispatch(HeadsJob { problem, heads, out, scratch }),
        );
    }
}

/// Copies a column-major view into a row-major buffer, 64 rows at a time (so both sides
/// stream).
fn transpose_into(src: DMatrixView<f32>, dst: &mut [f32]) {
    let (rows, cols) = src.shape();
    for r0 in (0..rows).step_by(64) {
        let n = 64.min(rows - r0);
        for c in 0..cols {
            for (r, &x) in (r0..r0 + n).zip(src.column(c).rows(r0, n).iter()) {
                dst[r * cols + c] = x;
            }
        }
    }
}

/// The inputs of one call, shared by all threads.
struct Problem<'a> {
    /// Queries, column-major `(seq, n_heads·head_dim)`: for one feature, consecutive
    /// tokens are adjacent.
    q: &'a [f32],
    seq: usize,
    /// Keys `0 .. n_keys`, column-major `(n_keys, kv_dim)`: for one feature, consecutive
    /// tokens are adjacent.
    keys: &'a [f32],
    n_keys: usize,
    /// Values, row-major `(n_keys, kv_dim)`: for one token, consecutive features are
    /// adjacent.
    values: &'a [f32],
    kv_dim: usize,
    group_size: usize,
    head_dim: usize,
    query_offset: usize,
    /// The softmax scale, `1 / √head_dim` unless the options say otherwise.
    scale: f32,
    /// Window, soft-cap, sink tokens and learned sinks (chapter 9).
    options: &'a ScoreOptions,
}

/// One thread's share: query heads `heads`, whose output columns are exactly `out`.
struct HeadsJob<'p, 'a> {
    problem: &'p Problem<'a>,
    heads: Range<usize>,
    out: &'p mut [f32],
    scratch: &'p mut Scratch,
}

impl Kernel for HeadsJob<'_, '_> {
    type Output = ();

    #[inline(always)]
    fn run(self) {
        let p = self.problem;
        debug_assert_eq!(self.out.len(), self.heads.len() * p.seq * p.head_dim);
        let mut h = self.heads.start;
        while h < self.heads.end {
            // This thread's heads that share KV head `kv`: each K/V tile is reused while
            // it is hot.
            let kv = h / p.group_size;
            let group_end = self.heads.end.min((kv + 1) * p.group_size);
            for i0 in (0..p.seq).step_by(QUERY_BLOCK) {
                let rows = QUERY_BLOCK.min(p.seq - i0);
                let out = &mut self.out[(h - self.heads.start) * p.seq * p.head_dim..];
                p.attend_query_block(kv, h..group_end, i0, rows, out, self.scratch);
            }
            h = group_end;
        }
    }
}

/// A matrix inside a slice: element `(i, j)` is `data[i * row_stride + j * col_stride]`.
#[derive(Clone, Copy)]
struct Strided<'a> {
    data: &'a [f32],
    row_stride: usize,
    col_stride: usize,
}

impl<'a> Strided<'a> {
    /// The `(rows, cols)` matrix as a nalgebra view; panics if it does not lie inside
    /// `data`.
    fn view(self, rows: usize, cols: usize) -> StridedView<'a> {
        let (r, c) = (Dyn(self.row_stride), Dyn(self.col_stride));
        StridedView::from_slice_with_strides_generic(
            self.data,
            Dyn(rows),
            Dyn(cols),
            r,
            c,
        )
    }
}

/// A mutable [`Strided`].
struct StridedMut<'a> {
    data: &'a mut [f32],
    row_stride: usize,
    col_stride: usize,
}

/// A view with run-time strides: nalgebra's `DMatrixView` assumes a row stride of 1.
type StridedView<'a> = MatrixView<'a, f32, Dyn, Dyn, Dyn, Dyn>;
/// The mutable [`StridedView`].
type StridedViewMut<'a> = MatrixViewMut<'a, f32, Dyn, Dyn, Dyn, Dyn>;

/// `c = alpha · a · b + beta · c` for `a (m, k)`, `b (k, n)`, `c (m, n)` with any
/// strides.
///
/// The tiles live inside larger slices (a block of rows of one head's columns, a
/// transposed block of keys), so they are nalgebra views with run-time strides. nalgebra
/// checks that each view lies inside its slice and that the output's strides do not
/// alias, and its `gemm` hands products with every dimension above 5 to the same
/// `matrixmultiply` kernel as its own `*`: the tile products run at full speed with no
/// `unsafe` here. With `beta = 0`, `c`'s old contents are never read.
#[inline(always)]
fn product(
    (m, k, n): (usize, usize, usize),
    alpha: f32,
    a: Strided,
    b: Strided,
    beta: f32,
    c: StridedMut,
) {
    let (a, b) = (a.view(m, k), b.view(k, n));
    let mut c = StridedViewMut::from_slice_with_strides_generic(
        c.data,
        Dyn(m),
        Dyn(n),
        Dyn(c.row_stride),
        Dyn(c.col_stride),
    );
    c.gemm(alpha, &a, &b, beta);
}

/// Where a tile sits: query head `h` (reading KV head `kv`), query rows from `i0`, keys
/// from `j0`.
#[derive(Clone, Copy)]
struct TileAt {
    h: usize,
    kv: usize,
    i0: usize,
    j0: usize,
    /// The first tile this query block visits: the output holds nothing yet.
    first: bool,
}

/// A query block's running softmax statistics, one entry per row (see
/// [`online_softmax_tile`]).
struct RowStats<'a> {
    max: &'a mut [f32],
    sum: &'a mut [f32],
    rescale: &'a mut [f32],
}

impl Problem<'_> {
    // ANCHOR: flash_query_block
    /// Query rows `i0 .. i0 + rows` of heads `group` (all reading KV head `kv`), over
    /// every key they see. `out` starts at the first head of `group`'s output columns.
    #[inline(always)]
    fn attend_query_block(
        &self,
        kv: usize,
        group: Range<usize>,
        i0: usize,
        rows: usize,
        out: &mut [f32],
        s: &mut Scratch,
    ) {
        let (d, seq) = (self.head_dim, self.seq);
        self.start_rows(group.clone(), s); // nothing seen yet (or a learned sink, ch. 10)
        // Causal: the block's last query sees keys up to query_offset + i0 + rows - 1; no
        // later key is read. A sliding window (chapter 9): the block's first query sees
        // no key before `window_start`, so tiles wholly before it are skipped.
        let key_end = self.query_offset + i0 + rows;
        let window_start = self.options.window_start(self.query_offset + i0);
        let mut first = true;
        for j0 in (0..key_end).step_by(KEY_BLOCK) {
            let cols = KEY_BLOCK.min(key_end - j0);
            if j0 + cols <= window_start && j0 >= self.options.sink_tokens {
                continue;
            }
            for (t, h) in group.clone().enumerate() {
                let tile = &mut s.scores[t * QUERY_BLOCK * KEY_BLOCK..][..rows * cols];
                let stat = t * QUERY_BLOCK..t * QUERY_BLOCK + rows;
                let stats = RowStats {
                    max: &mut s.row_max[stat.clone()],
                    sum: &mut s.row_sum[stat.clone()],
                    rescale: &mut s.rescale[stat],
                };
                let o = &mut out[t * d * seq + i0..];
                self.tile_update(TileAt { h, kv, i0, j0, first }, tile, stats, o);
            }
            first = false;
        }
        // Divide by the softmax denominators, now complete.
        for t in 0..group.len() {
            let sums = &s.row_sum[t * QUERY_BLOCK..t * QUERY_BLOCK + rows];
            for c in 0..d {
                let o = &mut out[(t * d + c) * seq + i0..][..rows];
                for (x, &l) in o.iter_mut().zip(sums) {
                    *x /= l;
                }
            }
        }
    }
    // ANCHOR_END: flash_query_block

    // ANCHOR: flash_tile
    /// One tile: query rows `i0 ..` of head `h` against keys `j0 ..` of KV head `kv`.
    /// `tile` has room for `rows × cols` scores; `out` starts at row `i0` of head `h`'s
    /// columns.
    #[inline(always)]
    fn tile_update(
        &self,
        at: TileAt,
        tile: &mut [f32],
        stats: RowStats,
        out: &mut [f32],
    ) {
        let TileAt { h, kv, i0, j0, first } = at;
        let (d, seq, n_keys) = (self.head_dim, self.seq, self.n_keys);
        let rows = stats.max.len();
        let cols = tile.len() / rows;
        // tile = Q_tile · K_tileᵀ · scale: (rows, cols), column-major
        let q_tile =
            Strided { data: &self.q[h * d * seq + i0..], row_stride: 1, col_stride: seq };
        let k_tile_t = Strided {
            data: &self.keys[kv * d * n_keys + j0..],
            row_stride: n_keys,
            col_stride: 1,
        };
        let scores = StridedMut { data: tile, row_stride: 1, col_stride: rows };
        product((rows, d, cols), self.scale, q_tile, k_tile_t, 0.0, scores);
        self.cap_and_window(tile, rows, i0, j0); // chapter 9; nothing for Llama
        // Causal mask, on the tiles that cross the diagonal only: key j0 + j is in the
        // future of the first (j0 + j) - (query_offset + i0) rows of column j.
        let first_own_key = self.query_offset + i0;
        if j0 + cols > first_own_key + 1 {
            for (j, column) in tile.chunks_exact_mut(rows).enumerate() {
                let hidden = (j0 + j).saturating_sub(first_own_key).min(rows);
                column[..hidden].fill(f32::NEG_INFINITY);
            }
        }
        online_softmax_tile(tile, stats.max, stats.sum, stats.rescale);
        // out_tile = rescale · out_tile + weights · V_tile. On the first key tile
        // out_tile holds whatever was there before, and β = 0 ignores it.
        if !first {
            for c in 0..d {
                for (x, &a) in
                    out[c * seq..c * seq + rows].iter_mut().zip(&*stats.rescale)
                {
                    *x *= a;
                }
            }
        }
        let weights = Strided { data: tile, row_stride: 1, col_stride: rows };
        let v_tile = Strided {
            data: &self.values[j0 * self.kv_dim + kv * d..],
            row_stride: self.kv_dim,
            col_stride: 1,
        };
        let out_tile = StridedMut { data: out, row_stride: 1, col_stride: seq };
        product(
            (rows, cols, d),
            1.0,
            weights,
            v_tile,
            if first { 0.0 } else { 1.0 },
            out_tile,
        );
    }
    // ANCHOR_END: flash_tile

    // ANCHOR: flash_start_rows
    /// Sets each query row's running maximum and sum before its first tile. Without a
    /// learned sink: `-inf` and 0, nothing seen yet. With one, each row starts as if it
    /// had seen one score, the sink logit: maximum `sink`, sum `exp(sink - sink) = 1`,
    /// and no value added to the output. The online softmax does the rest.
    #[inline(always)]
    fn start_rows(&self, group: Range<usize>, s: &mut Scratch) {
        for (t, h) in group.enumerate() {
            let sink = self.options.sinks.as_ref().map(|s| s[h]);
            let rows = t * QUERY_BLOCK..(t + 1) * QUERY_BLOCK;
            s.row_max[rows.clone()].fill(sink.unwrap_or(f32::NEG_INFINITY));
            s.row_sum[rows].fill(if sink.is_some() { 1.0 } else { 0.0 });
        }
    }
    // ANCHOR_END: flash_start_rows

    // ANCHOR: flash_cap_and_window
    /// Chapter 9's options on one tile of scaled scores (`rows` query rows from `i0`,
    /// keys from `j0`, column-major): the soft-cap on every score, computed while the
    /// tile is in cache (a kernel that never writes scores out has to do it here), then
    /// `-inf` for each key that has slid out of a row's window.
    #[inline(always)]
    fn cap_and_window(&self, tile: &mut [f32], rows: usize, i0: usize, j0: usize) {
        let o = self.options;
        if o.softcap.is_some() {
            tile.iter_mut().for_each(|s| *s = o.cap(*s));
        }
        let Some(w) = o.window else { return };
        let first_query = self.query_offset + i0;
        for (j, column) in tile.chunks_exact_mut(rows).enumerate() {
            let key = j0 + j;
            if key >= o.sink_tokens {
                // rows from `query = key + w` on have moved past this key
                let gone = key.saturating_add(w).saturating_sub(first_query).min(rows);
                column[gone..].fill(f32::NEG_INFINITY);
            }
        }
    }
    // ANCHOR_END: flash_cap_and_window
}
