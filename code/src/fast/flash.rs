//! Tiled attention with an online softmax ("flash attention"), for prefill.
//!
//! Same inputs, outputs and errors as [`grouped_attention`](crate::grouped_attention),
//! but it never builds the `(seq, seq)` score matrix: queries are taken [`QUERY_BLOCK`]
//! rows at a time, keys [`key_block`] at a time, and each query row keeps a running
//! maximum and a running sum, so the softmax is finished on the fly. The two products of
//! a tile run in a register-tiled micro-kernel (the heart of every fast matrix product),
//! `MR` query rows at a time, so that each panel's scores stay in L1 from the product
//! through the softmax. Memory beyond the inputs and output is a few panels and blocks
//! per thread and one packed copy of the keys and of the values.

use std::ops::Range;

use nalgebra::{DMatrix, DMatrixView};

use crate::fast::online_softmax::online_softmax_tile;
use crate::fast::simd::{Kernel, SimdLevel, dispatch, simd_level};
use crate::fast::{
    AttentionInputs, FastKernel, KernelBody, split_over_threads, worth_threads,
};
use crate::variants::ScoreOptions;

/// Query rows per block. A block's queries share each key and value tile they read,
/// so larger blocks read the keys and values fewer times; its running statistics and
/// output rows stay in L2 meanwhile. A multiple of every micro-kernel's row count `MR`
/// (48 and 16), so that only one block, the first, has padding rows. 96 was as fast as
/// 192 here (measured), and pads less of a short block.
pub const QUERY_BLOCK: usize = 96;

/// Keys per tile at a SIMD level: a panel of `MR` query rows meets a tile's keys as one
/// `MR × key_block` block of scores, which stays in the core's L1 cache (32 to 48 KiB)
/// from the score product through the softmax to the value product: 27 KiB at AVX-512
/// (48 × 144), 12 KiB at AVX2 and the baseline (16 × 192). A multiple of the level's
/// micro-kernel column count `NR`. (At AVX-512, 192 keys made a 36 KiB panel and the
/// kernel 2 to 7 % slower; at AVX2, 144 keys made it 2 to 3 % slower: more tiles, each
/// rescaling its rows' outputs. Measured at seq 4096.)
pub const fn key_block(level: SimdLevel) -> usize {
    match level {
        SimdLevel::Avx512 => 144,
        SimdLevel::Avx2 | SimdLevel::Baseline => 192,
    }
}

/// Causal grouped-query attention by tiles with an online softmax: the same result as
/// [`grouped_attention`](crate::grouped_attention) (to f32 rounding), without the `(seq,
/// seq)` matrix.
///
/// Shapes, one row per token, heads side by side in the columns: `q (n_queries,
/// n_heads·head_dim)`, `k` and `v (n_keys, n_kv_heads·head_dim)`; query `i` sees keys `0
/// ..= query_offset + i`. Returns `(n_queries, n_heads·head_dim)`. Threads split the
/// query heads (each thread takes whole heads, so results do not depend on the number of
/// threads). The buffers are a few tiles per thread plus one packed copy of the keys and
/// of the values, allocated on first use and reused. The products run in a register-tiled
/// micro-kernel with fused multiply-adds where the CPU has them (AVX2, AVX-512; the
/// baseline path multiplies and adds separately): every path agrees with the
/// straightforward one within f32 rounding, none bit for bit.
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
#[derive(Clone, Debug)]
pub struct FlashBuffers {
    /// The keys packed in panels of `NR` keys: see [`pack_keys`].
    keys: Vec<f32>,
    /// The values packed in panels of `NR` features: see [`pack_values`].
    values: Vec<f32>,
    scratch: Vec<Scratch>,
    /// Chapter 9's options (window, soft-cap, scale, sinks), applied per tile.
    scores: ScoreOptions,
    /// How much of the causal future is skipped ([`CausalSkip::Panels`] unless a
    /// benchmark asks otherwise).
    skip: CausalSkip,
    /// Exponentials with fused multiply-adds where the CPU has them (on unless a
    /// benchmark turns it off).
    fused_exp: bool,
}

impl Default for FlashBuffers {
    fn default() -> Self {
        Self {
            keys: Vec::new(),
            values: Vec::new(),
            scratch: Vec::new(),
            scores: ScoreOptions::default(),
            skip: CausalSkip::Panels,
            fused_exp: true,
        }
    }
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

    /// The same kernel, skipping as much of the causal future as `skip` says
    /// ([`CausalSkip::Panels`] by default). The result is the same whatever the choice
    /// (skipped keys would be masked to `-inf`); only the time changes. It exists to
    /// measure what each step saves (`attn-bench --flash-variant`).
    pub fn with_causal_skip(mut self, skip: CausalSkip) -> Self {
        self.body.skip = skip;
        self
    }

    /// The same kernel, computing the softmax's exponentials with fused multiply-adds
    /// (`true`, the default) or with separate multiplies and adds (`false`) on CPUs that
    /// have FMA ([`exp_approx_with`](crate::fast::fast_exp::exp_approx_with)); `false`
    /// also leaves out AVX-512's `vscalefps` form, which computes the fused bits. The
    /// results differ in the last bits; it exists to measure what the fusion saves.
    pub fn with_fused_exp(mut self, fused: bool) -> Self {
        self.body.fused_exp = fused;
        self
    }
}

/// How much of the causal future [`FlashAttention`] leaves out: the steps of chapter 8's
/// table of optimizations, kept so that each can be measured. Every choice gives the
/// same result.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CausalSkip {
    /// Every key tile of every query block is computed, the future masked to `-inf`.
    None,
    /// The key tiles wholly in the future of a block of `QUERY_BLOCK` queries are
    /// skipped (FlashAttention-2); the tiles crossing the diagonal are masked.
    Blocks,
    /// As `Blocks`, and inside a block each panel of `MR` query rows also stops at its
    /// own last query.
    #[default]
    Panels,
}

/// The micro-kernel's register tile at each SIMD level: `(MR, NR)`, `MR` query rows (two
/// or three SIMD registers of f32) by `NR` columns (keys in the score product, value
/// features in the output product).
pub(crate) const fn micro_shape(level: SimdLevel) -> (usize, usize) {
    match level {
        // 3 × 16 lanes by 8: 24 of the 32 zmm registers. (2 × 16 by 8 loaded 10
        // registers for 16 multiply-adds, this one 11 for 24; with `key_block` made to
        // fit, the kernel ran 2 to 4 % faster at seq 4096; measured.)
        SimdLevel::Avx512 => (48, 8),
        SimdLevel::Avx2 => (16, 6), // 2 × 8 lanes by 6: 12 of the 16 ymm registers
        // 4 × 4 lanes by 2: 8 of the 16 xmm registers. 16 rows, not 8, so that the
        // softmax's loops over a panel's rows vectorise (over 8 they were scalar: the
        // kernel ran 1.3 times slower; measured)
        SimdLevel::Baseline => (16, 2),
    }
}

/// The largest panel of scores, `MR × key_block`, over the levels (AVX-512's).
const MAX_PANEL: usize = micro_shape(SimdLevel::Avx512).0 * key_block(SimdLevel::Avx512);

/// `n` rounded up to a multiple of `m`.
fn round_up(n: usize, m: usize) -> usize {
    n.div_ceil(m) * m
}

/// One thread's buffers: a block of queries of each head of a group (copied and scaled),
/// one panel of scores, the group's unnormalised output blocks, and per-row running
/// statistics.
#[derive(Clone, Debug, Default)]
struct Scratch {
    /// `group_size` query blocks, each `QUERY_BLOCK × head_dim`, column-major, padding
    /// rows zero.
    q_blocks: Vec<f32>,
    /// One panel of up to `MR × key_block` scores, column-major, turned into weights.
    scores: Vec<f32>,
    /// `group_size` output blocks, each `QUERY_BLOCK × padded head_dim`, column-major,
    /// not yet divided by the sums.
    out_blocks: Vec<f32>,
    /// Running maximum of each query row of each head in the group.
    row_max: Vec<f32>,
    /// Running sum of `exp(score - row_max)` of each row.
    row_sum: Vec<f32>,
    /// The factor `exp(old max - new max)` that rescales each row's accumulated output.
    rescale: Vec<f32>,
}

impl Scratch {
    fn fit(&mut self, group_size: usize, head_dim: usize, padded_dim: usize) {
        let rows = group_size * QUERY_BLOCK;
        self.q_blocks.resize(rows * head_dim, 0.0);
        self.scores.resize(MAX_PANEL, 0.0);
        self.out_blocks.resize(rows * padded_dim, 0.0);
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
        let level = simd_level();
        let (_, nr) = micro_shape(level);
        // The last query sees keys up to query_offset + n_queries - 1: later keys are
        // never read.
        let n_keys = query_offset + q.nrows();
        let (k, v) = (k.rows(0, n_keys), v.rows(0, n_keys));
        // `NR` a constant, so that each panel's copy has a fixed size (the shapes of
        // `micro_shape`, as in `HeadsJob::run`)
        let (kv, packed) = ((k, v), (&mut self.keys, &mut self.values));
        match level {
            SimdLevel::Avx512 => pack_both::<8>(kv, head_dim, packed),
            SimdLevel::Avx2 => pack_both::<6>(kv, head_dim, packed),
            SimdLevel::Baseline => pack_both::<2>(kv, head_dim, packed),
        }
        let problem = Problem {
            q: q.as_slice(),
            seq: q.nrows(),
            keys: &self.keys,
            values: &self.values,
            n_keys,
            padded_keys: round_up(n_keys, nr),
            group_size: heads.group_size(),
            head_dim,
            padded_dim: round_up(head_dim, nr),
            query_offset,
            scale: self.scores.scale_for(head_dim),
            options: &self.scores,
            skip: self.skip,
            fused_exp: self.fused_exp,
            level,
        };
        // Threads only pay when each gets a few hundred microseconds of work (about 20
        // MFLOP).
        let flops = 4.0
            * (n_heads * head_dim * problem.seq) as f64
            * (query_offset as f64 + problem.seq as f64 / 2.0);
        let threads = worth_threads(threads, n_heads, flops / 2e7);
        self.scratch.resize_with(threads, Scratch::default);
        for s in &mut self.scratch {
            s.fit(problem.group_size, head_dim, problem.padded_dim);
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

// ANCHOR: flash_pack
/// Packs the keys `k (n_keys, n_kv_heads·head_dim)` for the score product: for each KV
/// head, panels of `NR` keys, each panel `head_dim × NR` with the `NR` keys of one
/// feature side by side, so the micro-kernel reads one panel from front to back. Keys
/// past `n_keys` in the last panel are zero. Done once per call; every query block reuses
/// it.
fn pack_keys<const NR: usize>(
    k: DMatrixView<f32>,
    head_dim: usize,
    packed: &mut Vec<f32>,
) {
    let (n_keys, kv_dim) = k.shape();
    let panels = n_keys.div_ceil(NR);
    resize_for_overwrite(packed, kv_dim * panels * NR);
    let (packed, _) = packed.as_chunks_mut::<NR>(); // one NR-wide run per [f32; NR]
    // [kv head][panel][feature][key in panel]
    for (col, column) in k.column_iter().enumerate() {
        let (kv, c) = (col / head_dim, col % head_dim);
        let (keys, last) = column.as_slice().as_chunks::<NR>();
        for (p, keys) in keys.iter().enumerate() {
            // a copy of a fixed size: NR moves (of a runtime size, a call to memmove per
            // panel, 3 % of the kernel's time; measured)
            packed[(kv * panels + p) * head_dim + c] = *keys;
        }
        if !last.is_empty() {
            let run = &mut packed[(kv * panels + panels - 1) * head_dim + c];
            run.fill(0.0); // past the last key
            run[..last.len()].copy_from_slice(last);
        }
    }
}

/// Packs the values `v (n_keys, n_kv_heads·head_dim)` for the output product: for each KV
/// head, panels of `NR` features (the last padded with zero features), each panel
/// `n_keys × NR` with the `NR` features of one key side by side.
fn pack_values<const NR: usize>(
    v: DMatrixView<f32>,
    head_dim: usize,
    packed: &mut Vec<f32>,
) {
    let (n_keys, kv_dim) = v.shape();
    let panels = head_dim.div_ceil(NR);
    resize_for_overwrite(packed, kv_dim / head_dim * panels * n_keys * NR);
    // [kv head][panel][key][feature in panel]
    for (at, panel) in packed.chunks_exact_mut(n_keys * NR).enumerate() {
        let (kv, f) = (at / panels, at % panels);
        let first = kv * head_dim + f * NR;
        let features = NR.min(head_dim - f * NR);
        // the panel's columns (a padding feature reads the first one, then is zeroed)
        let columns: [_; NR] = std::array::from_fn(|n| v.column(first + n % features));
        let columns: [&[f32]; NR] = std::array::from_fn(|n| columns[n].as_slice());
        // key by key, reading the panel's columns side by side: writes stream
        let (rows, _) = panel.as_chunks_mut::<NR>();
        for (key, row) in rows.iter_mut().enumerate() {
            *row =
                std::array::from_fn(|n| if n < features { columns[n][key] } else { 0.0 });
        }
    }
}

/// Gives `packed` length `len` for a packing that writes every element: the old values
/// stay unless the length changes (zeroing megabytes that the packing overwrites next
/// would be wasted work).
fn resize_for_overwrite(packed: &mut Vec<f32>, len: usize) {
    if packed.len() != len {
        packed.clear();
        packed.resize(len, 0.0);
    }
}
// ANCHOR_END: flash_pack

/// [`pack_keys`] and [`pack_values`] with the same `NR`.
fn pack_both<const NR: usize>(
    (k, v): (DMatrixView<f32>, DMatrixView<f32>),
    head_dim: usize,
    (keys, values): (&mut Vec<f32>, &mut Vec<f32>),
) {
    debug_assert_eq!(micro_shape(simd_level()).1, NR);
    pack_keys::<NR>(k, head_dim, keys);
    pack_values::<NR>(v, head_dim, values);
}

/// The inputs of one call, shared by all threads.
struct Problem<'a> {
    /// Queries, column-major `(seq, n_heads·head_dim)`: for one feature, consecutive
    /// tokens are adjacent.
    q: &'a [f32],
    seq: usize,
    /// Keys `0 .. n_keys`, packed by [`pack_keys`].
    keys: &'a [f32],
    /// Values `0 .. n_keys`, packed by [`pack_values`].
    values: &'a [f32],
    n_keys: usize,
    /// `n_keys` rounded up to whole key panels.
    padded_keys: usize,
    group_size: usize,
    head_dim: usize,
    /// `head_dim` rounded up to whole value panels.
    padded_dim: usize,
    query_offset: usize,
    /// The softmax scale, `1 / √head_dim` unless the options say otherwise.
    scale: f32,
    /// Window, soft-cap, sink tokens and learned sinks (chapter 9).
    options: &'a ScoreOptions,
    /// How much of the causal future to skip.
    skip: CausalSkip,
    /// Fused multiply-adds in the exponentials (where `FMA`).
    fused_exp: bool,
    /// The SIMD level the keys and values were packed for.
    level: SimdLevel,
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
        // One copy of the loops per register tile; `FMA` only where the CPU has it.
        match self.problem.level {
            SimdLevel::Avx512 => self.run_with::<48, 8, true>(),
            SimdLevel::Avx2 => self.run_with::<16, 6, true>(),
            SimdLevel::Baseline => self.run_with::<16, 2, false>(),
        }
    }
}

impl HeadsJob<'_, '_> {
    #[inline(always)]
    fn run_with<const MR: usize, const NR: usize, const FMA: bool>(self) {
        let p = self.problem;
        debug_assert_eq!(micro_shape(p.level), (MR, NR));
        debug_assert_eq!(self.out.len(), self.heads.len() * p.seq * p.head_dim);
        let mut h = self.heads.start;
        while h < self.heads.end {
            // This thread's heads that share KV head `kv`: each K/V tile is reused while
            // it is hot.
            let kv = h / p.group_size;
            let group_end = self.heads.end.min((kv + 1) * p.group_size);
            // The short block, if there is one, goes first: its padding rows then meet
            // the fewest keys.
            let mut rows = match p.seq % QUERY_BLOCK {
                0 => QUERY_BLOCK,
                short => short,
            };
            let mut i0 = 0;
            while i0 < p.seq {
                let out = &mut self.out[(h - self.heads.start) * p.seq * p.head_dim..];
                let block = Block { kv, group: h..group_end, i0, rows };
                p.attend_query_block::<MR, NR, FMA>(block, out, self.scratch);
                (i0, rows) = (i0 + rows, QUERY_BLOCK);
            }
            h = group_end;
        }
    }
}

/// A block of queries: rows `i0 .. i0 + rows` of query heads `group`, which all read KV
/// head `kv`.
struct Block {
    kv: usize,
    group: Range<usize>,
    i0: usize,
    rows: usize,
}

/// Where a tile sits: head `t` of the block's group (reading KV head `kv`), query rows
/// from `i0` (`padded_rows` of them, the block's rows and zero padding), keys `j0 .. j0 +
/// cols`.
#[derive(Clone, Copy)]
struct TileAt {
    t: usize,
    kv: usize,
    i0: usize,
    j0: usize,
    padded_rows: usize,
    cols: usize,
    /// The first tile this query block visits: the output block holds nothing yet.
    first: bool,
}

// ANCHOR: flash_micro_kernel
/// The micro-kernel: one `MR × NR` block `C` of a product, held in registers.
///
/// `C[i, n] (+)= Σ_p a[p·lda + i] · b[p·NR + n]` for `p < depth`, where `C[i, n]` is
/// `c[n·ldc + i]`; with `accumulate` the sum is added to `C`, without it replaces `C`
/// (whose old values are not read). `a` is column-major (`MR` consecutive rows of each of
/// `depth` columns, `lda` apart), `b` a packed panel (`NR` values per step, side by
/// side). Each step loads `MR` values of `a` (a few SIMD registers), broadcasts each of
/// the `NR` values of `b`, and does `MR · NR` multiply-adds into accumulators that stay
/// in registers for all `depth` steps: `MR · NR` multiply-adds per `MR + NR` loads, where
/// a dot product does one per two loads. With `FMA` each multiply-add is one fused
/// instruction (one rounding); without, a multiply and an add.
#[inline(always)]
fn micro_kernel<const MR: usize, const NR: usize, const FMA: bool>(
    depth: usize,
    (a, lda): (&[f32], usize),
    b: &[f32],
    (c, ldc): (&mut [f32], usize),
    accumulate: bool,
) {
    #[cfg(target_arch = "x86_64")]
    if FMA && (MR, NR) == micro_shape(SimdLevel::Avx512) {
        // SAFETY: this shape with FMA runs only when `simd_level` detected AVX-512
        return unsafe { micro_kernel_avx512(depth, (a, lda), b, (c, ldc), accumulate) };
    } else if FMA && (MR, NR) == micro_shape(SimdLevel::Avx2) {
        // SAFETY: this shape with FMA runs only when `simd_level` detected AVX2 and FMA
        return unsafe { micro_kernel_avx2(depth, (a, lda), b, (c, ldc), accumulate) };
    }
    micro_kernel_portable::<MR, NR, FMA>(depth, (a, lda), b, (c, ldc), accumulate)
}

/// [`micro_kernel`] as plain loops: the baseline level's form, and the definition the
/// SIMD forms are tested against (the same sums in the same order, bit for bit).
#[inline(always)]
fn micro_kernel_portable<const MR: usize, const NR: usize, const FMA: bool>(
    depth: usize,
    (a, lda): (&[f32], usize),
    b: &[f32],
    (c, ldc): (&mut [f32], usize),
    accumulate: bool,
) {
    // The accumulators: a local array of constant size, which the compiler keeps in
    // registers at the baseline level's 16 × 2. (Summed in place in `c`, every
    // multiply-add loaded and stored its accumulator: the kernel ran three times slower
    // there; measured.)
    let mut acc = [[0.0_f32; MR]; NR]; // acc[n][i] = C[i, n]
    if accumulate {
        for (n, acc) in acc.iter_mut().enumerate() {
            acc.copy_from_slice(&c[n * ldc..][..MR]);
        }
    }
    for (p, b) in b[..depth * NR].chunks_exact(NR).enumerate() {
        let a = &a[p * lda..][..MR];
        for (acc, &b) in acc.iter_mut().zip(b) {
            for (c, &a) in acc.iter_mut().zip(a) {
                *c = if FMA { a.mul_add(b, *c) } else { *c + a * b };
            }
        }
    }
    for (n, acc) in acc.iter().enumerate() {
        c[n * ldc..][..MR].copy_from_slice(acc);
    }
}
// ANCHOR_END: flash_micro_kernel

// ANCHOR: flash_micro_kernel_avx512
/// [`micro_kernel`] for AVX-512, `MR = 48` rows (three 16-lane registers) by `NR = 8`:
/// the same sums, with the 24 accumulators named as registers and the loop over `p`
/// outermost. Written as plain Rust, the compiler kept such accumulators in memory and
/// ran scalar multiply-adds, ten times slower (measured).
///
/// # Safety
/// The CPU must have AVX-512F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn micro_kernel_avx512(
    depth: usize,
    (a, lda): (&[f32], usize),
    b: &[f32],
    (c, ldc): (&mut [f32], usize),
    accumulate: bool,
) {
    use std::arch::x86_64::{__m512, _mm512_fmadd_ps, _mm512_set1_ps, _mm512_setzero_ps};
    use std::arch::x86_64::{_mm512_loadu_ps as load, _mm512_storeu_ps as store};
    const NR: usize = micro_shape(SimdLevel::Avx512).1; // 8 columns
    const R: usize = micro_shape(SimdLevel::Avx512).0 / 16; // 48 rows: 3 registers of 16
    // every access below is inside these bounds
    assert!(b.len() >= depth * NR && c.len() >= (NR - 1) * ldc + 16 * R);
    assert!(depth == 0 || a.len() >= (depth - 1) * lda + 16 * R);
    let (a, b, c) = (a.as_ptr(), b.as_ptr(), c.as_mut_ptr());
    // SAFETY (all loads and stores): inside the bounds asserted above
    let mut acc = [[_mm512_setzero_ps(); R]; NR]; // acc[n][r]: rows 16r .. 16r + 16
    if accumulate {
        for (n, acc) in acc.iter_mut().enumerate() {
            *acc = std::array::from_fn(|r| unsafe { load(c.add(n * ldc + 16 * r)) });
        }
    }
    for p in 0..depth {
        let a: [__m512; R] =
            std::array::from_fn(|r| unsafe { load(a.add(p * lda + 16 * r)) });
        for (n, acc) in acc.iter_mut().enumerate() {
            let b = _mm512_set1_ps(unsafe { *b.add(p * NR + n) });
            for (acc, &a) in acc.iter_mut().zip(&a) {
                *acc = _mm512_fmadd_ps(a, b, *acc);
            }
        }
    }
    for (n, acc) in acc.iter().enumerate() {
        for (r, &acc) in acc.iter().enumerate() {
            unsafe { store(c.add(n * ldc + 16 * r), acc) };
        }
    }
}
// ANCHOR_END: flash_micro_kernel_avx512

/// [`micro_kernel`] for AVX2, `MR = 16` rows (two 8-lane registers) by `NR = 6`: as
/// [`micro_kernel_avx512`] with half-width registers, 12 accumulators of the 16
/// registers. (Three registers of rows by four, 12 accumulators too, left no register
/// free for the loads: the compiler shuffled and spilled registers, at half the speed.)
///
/// # Safety
/// The CPU must have AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn micro_kernel_avx2(
    depth: usize,
    (a, lda): (&[f32], usize),
    b: &[f32],
    (c, ldc): (&mut [f32], usize),
    accumulate: bool,
) {
    use std::arch::x86_64::{__m256, _mm256_fmadd_ps, _mm256_set1_ps, _mm256_setzero_ps};
    use std::arch::x86_64::{_mm256_loadu_ps as load, _mm256_storeu_ps as store};
    const NR: usize = micro_shape(SimdLevel::Avx2).1; // 6 columns
    const R: usize = micro_shape(SimdLevel::Avx2).0 / 8; // 16 rows: 2 registers of 8
    assert!(b.len() >= depth * NR && c.len() >= (NR - 1) * ldc + 8 * R);
    assert!(depth == 0 || a.len() >= (depth - 1) * lda + 8 * R);
    let (a, b, c) = (a.as_ptr(), b.as_ptr(), c.as_mut_ptr());
    // SAFETY (all loads and stores): inside the bounds asserted above
    let mut acc = [[_mm256_setzero_ps(); R]; NR]; // acc[n][r]: rows 8r .. 8r + 8
    if accumulate {
        for (n, acc) in acc.iter_mut().enumerate() {
            *acc = std::array::from_fn(|r| unsafe { load(c.add(n * ldc + 8 * r)) });
        }
    }
    for p in 0..depth {
        let a: [__m256; R] =
            std::array::from_fn(|r| unsafe { load(a.add(p * lda + 8 * r)) });
        for (n, acc) in acc.iter_mut().enumerate() {
            let b = _mm256_set1_ps(unsafe { *b.add(p * NR + n) });
            for (acc, &a) in acc.iter_mut().zip(&a) {
                *acc = _mm256_fmadd_ps(a, b, *acc);
            }
        }
    }
    for (n, acc) in acc.iter().enumerate() {
        for (r, &acc) in acc.iter().enumerate() {
            unsafe { store(c.add(n * ldc + 8 * r), acc) };
        }
    }
}

impl Problem<'_> {
    // ANCHOR: flash_query_block
    /// One block of queries of every head of `b.group`, over every key they see. `out`
    /// starts at the first head of the group's output columns.
    #[inline(always)]
    fn attend_query_block<const MR: usize, const NR: usize, const FMA: bool>(
        &self,
        b: Block,
        out: &mut [f32],
        s: &mut Scratch,
    ) {
        let (d, seq, i0, rows) = (self.head_dim, self.seq, b.i0, b.rows);
        let padded_rows = round_up(rows, MR); // whole micro-kernel rows
        self.pack_queries(&b, padded_rows, s);
        self.start_rows(b.group.clone(), s); // nothing seen yet (or a learned sink)
        // Causal: the block's last query sees keys up to query_offset + i0 + rows - 1; no
        // later key is read. A sliding window (chapter 9): the block's first query sees
        // no key before `window_start`, so tiles wholly before it are skipped.
        let key_end = if self.skip == CausalSkip::None {
            self.n_keys
        } else {
            self.query_offset + i0 + rows
        };
        let window_start = self.options.window_start(self.query_offset + i0);
        let key_block = key_block(self.level);
        let mut first = true;
        for j0 in (0..key_end).step_by(key_block) {
            let cols = key_block.min(key_end - j0);
            if j0 + cols <= window_start && j0 >= self.options.sink_tokens {
                continue;
            }
            for t in 0..b.group.len() {
                let at = TileAt { t, kv: b.kv, i0, j0, padded_rows, cols, first };
                self.tile_update::<MR, NR, FMA>(at, s);
            }
            first = false;
        }
        // Divide by the softmax denominators, now complete, into the output columns.
        for t in 0..b.group.len() {
            let sums = &s.row_sum[t * QUERY_BLOCK..][..rows];
            let acc = &s.out_blocks[t * QUERY_BLOCK * self.padded_dim..];
            for c in 0..d {
                let o = &mut out[(t * d + c) * seq + i0..][..rows];
                let acc = &acc[c * padded_rows..][..rows];
                for ((x, &a), &l) in o.iter_mut().zip(acc).zip(sums) {
                    *x = a / l;
                }
            }
        }
    }
    // ANCHOR_END: flash_query_block

    /// Copies the block's queries of each head of the group into `s.q_blocks`:
    /// `padded_rows × head_dim`, column-major, rows past `b.rows` zero.
    #[inline(always)]
    fn pack_queries(&self, b: &Block, padded_rows: usize, s: &mut Scratch) {
        let (d, seq) = (self.head_dim, self.seq);
        for (t, h) in b.group.clone().enumerate() {
            let block = &mut s.q_blocks[t * QUERY_BLOCK * d..][..padded_rows * d];
            for (c, dst) in block.chunks_exact_mut(padded_rows).enumerate() {
                let src = &self.q[(h * d + c) * seq + b.i0..][..b.rows];
                // the softmax scale, applied once per query rather than once per score
                dst[..b.rows].iter_mut().zip(src).for_each(|(x, &q)| *x = q * self.scale);
                dst[b.rows..].fill(0.0);
            }
        }
    }

    // ANCHOR: flash_tile
    /// One tile: the block's queries of head `t` of the group against keys `j0 .. j0 +
    /// cols` of KV head `kv`, folded into that head's running statistics and output
    /// block. The tile is done `MR` query rows at a time (a *panel*): the panel's scores
    /// (`MR × cols`, at most 24 KiB) are computed, masked, turned into weights and
    /// multiplied by the values while they are in the L1 cache.
    #[inline(always)]
    fn tile_update<const MR: usize, const NR: usize, const FMA: bool>(
        &self,
        at: TileAt,
        s: &mut Scratch,
    ) {
        let TileAt { t, kv, i0, j0, padded_rows, cols, first } = at;
        let (d, padded_dim) = (self.head_dim, self.padded_dim);
        let q_block = &s.q_blocks[t * QUERY_BLOCK * d..][..padded_rows * d];
        let out_block = &mut s.out_blocks[t * QUERY_BLOCK * padded_dim..];
        for i in (0..padded_rows).step_by(MR) {
            // Causal, per panel: no key after the panel's last query is computed (a
            // panel with none left is done; its first tile never is: see the caller).
            let last_query = self.query_offset + i0 + i + MR - 1;
            let cols = match self.skip {
                CausalSkip::Panels if j0 > last_query => continue,
                CausalSkip::Panels => cols.min(last_query + 1 - j0),
                CausalSkip::None | CausalSkip::Blocks => cols,
            };
            // 1. scores = Q_panel · K_tileᵀ: (MR, cols), column-major (the last key panel
            // may run past `cols`: those columns are computed and ignored)
            let panel = &mut s.scores[..MR * round_up(cols, NR)];
            self.score_panel::<MR, NR, FMA>((&q_block[i..], padded_rows), kv, j0, panel);
            let panel = &mut panel[..MR * cols];
            self.cap_and_window(panel, MR, i0 + i, j0); // chapter 9; nothing for Llama
            // 2. Causal mask, on the panels that cross the diagonal only: key j0 + j is
            // in the future of the first (j0 + j) - (query_offset + i0 + i) rows of
            // column j.
            let first_own_key = self.query_offset + i0 + i;
            if j0 + cols > first_own_key + 1 {
                for (j, column) in panel.chunks_exact_mut(MR).enumerate() {
                    let hidden = (j0 + j).saturating_sub(first_own_key).min(MR);
                    column[..hidden].fill(f32::NEG_INFINITY);
                }
            }
            // 3. The online softmax turns the scores into weights, for the panel's `MR`
            // rows at once. (Taken 8 rows at a time, one AVX2 register, its loops were
            // unrolled into scalar code: the kernel ran 1.5 times slower.)
            let rows = t * QUERY_BLOCK + i..t * QUERY_BLOCK + i + MR;
            let [max, sum, rescale]: [&mut [f32; MR]; 3] =
                [&mut s.row_max, &mut s.row_sum, &mut s.rescale]
                    .map(|v| (&mut v[rows.clone()]).try_into().expect("MR rows"));
            if self.fused_exp {
                online_softmax_tile::<FMA, MR>(panel, max, sum, rescale);
            } else {
                online_softmax_tile::<false, MR>(panel, max, sum, rescale);
            }
            // 4. out_panel = rescale · out_panel + weights · V_tile
            let out = &mut out_block[i..];
            if !first {
                // a local copy: the compiler cannot tell that `rescale` and `out` do not
                // overlap, and reloaded it one value at a time (measured)
                let rescale = *rescale;
                for c in 0..padded_dim {
                    let o = &mut out[c * padded_rows..][..MR];
                    o.iter_mut().zip(&rescale).for_each(|(o, &r)| *o *= r);
                }
            }
            self.value_panel::<MR, NR, FMA>(panel, kv, j0, (out, padded_rows), !first);
        }
    }
    // ANCHOR_END: flash_tile

    // ANCHOR: flash_products
    /// `panel = Q_panel · K_tileᵀ` (the queries carry the scale) for the keys `j0 ..` of
    /// KV head `kv`, `panel.len() / MR` of them (a whole number of key panels); `q` holds
    /// the panel's `MR` rows of each feature, `lda` apart. One micro-kernel per `NR`
    /// keys, each summing over the `head_dim` features.
    #[inline(always)]
    fn score_panel<const MR: usize, const NR: usize, const FMA: bool>(
        &self,
        (q, lda): (&[f32], usize),
        kv: usize,
        j0: usize,
        panel: &mut [f32],
    ) {
        let d = self.head_dim;
        let keys = &self.keys[(kv * self.padded_keys + j0) * d..]; // j0: whole key panels
        for (keys, scores) in keys.chunks(d * NR).zip(panel.chunks_exact_mut(MR * NR)) {
            micro_kernel::<MR, NR, FMA>(d, (q, lda), keys, (scores, MR), false);
        }
    }

    /// `out += weights · V_tile` (or `=`, without `accumulate`) for `MR` query rows,
    /// `out` holding their outputs of each feature `ldo` apart, the values those of keys
    /// `j0 .. j0 + cols` of KV head `kv` (`cols = weights.len() / MR`). One micro-kernel
    /// per `NR` features, each summing over the `cols` keys.
    #[inline(always)]
    fn value_panel<const MR: usize, const NR: usize, const FMA: bool>(
        &self,
        weights: &[f32],
        kv: usize,
        j0: usize,
        (out, ldo): (&mut [f32], usize),
        accumulate: bool,
    ) {
        let cols = weights.len() / MR;
        let panels = self.padded_dim / NR;
        for f in 0..panels {
            let values = &self.values[((kv * panels + f) * self.n_keys + j0) * NR..];
            let out = &mut out[f * NR * ldo..];
            micro_kernel::<MR, NR, FMA>(
                cols,
                (weights, MR),
                values,
                (out, ldo),
                accumulate,
            );
        }
    }
    // ANCHOR_END: flash_products

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

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic values in about `-1 .. 1`.
    fn values(n: usize, seed: u32) -> Vec<f32> {
        let mut x = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                (x as f32 / u32::MAX as f32) * 2.0 - 1.0
            })
            .collect()
    }

    /// Runs `kernel` and the portable form on the same operands; both must give the same
    /// bits, for every depth (none, one, odd, a tile's) and with or without accumulating.
    fn same_bits<const MR: usize, const NR: usize>(
        kernel: impl Fn(usize, (&[f32], usize), &[f32], (&mut [f32], usize), bool),
    ) {
        let (lda, ldc) = (MR + 5, MR + 3); // strides wider than the block
        for depth in [0, 1, 7, 64, 193] {
            for accumulate in [false, true] {
                let a = values(depth * lda + MR, depth as u32);
                let b = values(depth * NR, depth as u32 + 1);
                let mut want = values(NR * ldc, 7);
                let mut got = want.clone();
                micro_kernel_portable::<MR, NR, true>(
                    depth,
                    (&a, lda),
                    &b,
                    (&mut want, ldc),
                    accumulate,
                );
                kernel(depth, (&a, lda), &b, (&mut got, ldc), accumulate);
                let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&got), bits(&want), "depth {depth}, {accumulate}");
            }
        }
    }

    #[test]
    #[cfg(target_arch = "x86_64")]
    fn simd_micro_kernels_equal_the_portable_one_bit_for_bit() {
        // whatever ATTENTION_SIMD says: test every form this CPU can run
        if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
            // SAFETY: AVX2 and FMA were detected
            same_bits::<16, 6>(|d, a, b, c, acc| unsafe {
                micro_kernel_avx2(d, a, b, c, acc)
            });
        }
        if is_x86_feature_detected!("avx512f") {
            // SAFETY: AVX-512F was detected
            same_bits::<48, 8>(|d, a, b, c, acc| unsafe {
                micro_kernel_avx512(d, a, b, c, acc)
            });
        }
    }
}
