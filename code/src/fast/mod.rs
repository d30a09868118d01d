//! Chapter 8: fast attention. The same answers as
//! [`grouped_attention`](crate::grouped_attention), from kernels that never build the
//! `(seq, seq)` score matrix: [`flash`] for prefill (tiles of queries and keys),
//! [`decode`] for a few queries over a long cache, the [`online_softmax`] both finish the
//! softmax with, and the SIMD plumbing ([`simd`], [`fast_exp`]) that makes their loops
//! wide.

pub mod decode;
pub mod fast_exp;
pub mod flash;
pub mod online_softmax;
pub mod simd;

use std::fmt::Debug;
use std::ops::Range;

use nalgebra::{DMatrix, DMatrixView};

use crate::mechanisms::sdpa::{HeadLayout, check_grouped_args};
use crate::support::error::{Result, nonzero, try_zero_matrix};

/// A fast attention kernel: its threads and its buffers, kept between calls. The kernels
/// are [`FlashAttention`](crate::FlashAttention) (prefill) and
/// [`DecodeAttention`](crate::DecodeAttention) (a few queries over a long cache); this
/// shell holds what they share (the thread count, the argument checks, the output
/// sizing), and each kernel's [`KernelBody`] holds its buffers and loop.
#[derive(Clone, Debug)]
pub struct FastKernel<B> {
    threads: usize,
    body: B,
}

impl<B: KernelBody> Default for FastKernel<B> {
    fn default() -> Self {
        Self::new()
    }
}

impl<B: KernelBody> FastKernel<B> {
    /// One thread.
    pub fn new() -> Self {
        Self { threads: 1, body: B::default() }
    }

    /// `threads` threads (at least 1), splitting the heads between them.
    pub fn with_threads(threads: usize) -> Result<Self> {
        nonzero("threads", threads)?;
        Ok(Self { threads, body: B::default() })
    }

    /// Number of threads.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Causal grouped attention into a new matrix: same shapes, semantics and errors as
    /// [`grouped_attention`](crate::grouped_attention), with the arguments named.
    pub fn forward(&mut self, x: AttentionInputs<'_>) -> Result<DMatrix<f32>> {
        let mut out = DMatrix::zeros(0, 0);
        self.forward_into(x, &mut out)?;
        Ok(out)
    }

    /// As [`FastKernel::forward`], written into `out`, which is resized to `q`'s shape
    /// only if it has another shape: with a right-sized `out` and warm buffers, a call
    /// allocates nothing.
    pub fn forward_into(
        &mut self,
        x: AttentionInputs<'_>,
        out: &mut DMatrix<f32>,
    ) -> Result<()> {
        check_grouped_args(B::NAME, x.q.shape(), &x.k, &x.v, x.heads, x.query_offset)?;
        if out.shape() != x.q.shape() {
            *out = try_zero_matrix(B::NAME, x.q.nrows(), x.q.ncols())?;
        }
        if x.q.nrows() > 0 {
            self.body.run(self.threads, x, out);
        }
        Ok(())
    }
}

/// The arguments of one attention call, as
/// [`grouped_attention`](crate::grouped_attention) takes them: `q (n_queries,
/// n_heads·head_dim)`, `k` and `v (n_keys, n_kv_heads·head_dim)`, the head layout, and
/// `query_offset` (query `i` sees keys `0 ..= query_offset + i`).
#[derive(Clone, Copy, Debug)]
pub struct AttentionInputs<'a> {
    /// The queries.
    pub q: &'a DMatrix<f32>,
    /// The keys.
    pub k: DMatrixView<'a, f32>,
    /// The values.
    pub v: DMatrixView<'a, f32>,
    /// How the query heads share the key/value heads.
    pub heads: HeadLayout,
    /// The number of keys before the first query's own position.
    pub query_offset: usize,
}

/// The part of a fast kernel that differs between kernels: its buffers and its loop.
pub trait KernelBody: Default + Clone + Debug {
    /// The name error messages use, e.g. `"flash_attention"`.
    const NAME: &'static str;

    /// Computes attention into `out`, on up to `threads` threads.
    /// [`FastKernel::forward_into`] has checked the inputs, sized `out` to `q`'s shape
    /// and made sure there is at least one query.
    fn run(&mut self, threads: usize, x: AttentionInputs<'_>, out: &mut DMatrix<f32>);
}

/// How many of the `threads` a kernel was given to use on `units` independent units
/// (heads or KV heads), when the call holds `work` times the amount that pays for one
/// extra thread: spawning a thread costs tens of microseconds, so small calls stay on
/// one.
pub(crate) fn worth_threads(threads: usize, units: usize, work: f64) -> usize {
    // `work` is finite and non-negative; the cast saturates for huge values.
    threads.min(units).min(1 + work as usize).max(1)
}

/// Splits `units` units of work (heads, or KV heads with their groups) over
/// `scratch.len()` threads, whole units per thread, as evenly as possible. `out` holds
/// the units' outputs one after another, all of the same length; thread `t` gets a range
/// of units, exactly their part of `out`, and its own scratch. The calling thread takes
/// the last share. Results do not depend on the number of threads: each unit is computed
/// by one thread, the same way.
pub(crate) fn split_over_threads<S: Send>(
    out: &mut [f32],
    units: usize,
    scratch: &mut [S],
    job: impl Fn(Range<usize>, &mut [f32], &mut S) + Sync,
) {
    let threads = scratch.len();
    debug_assert!(threads >= 1 && units >= threads && out.len().is_multiple_of(units));
    if threads == 1 {
        return job(0..units, out, &mut scratch[0]);
    }
    let unit_len = out.len() / units;
    let job = &job;
    std::thread::scope(|scope| {
        let mut rest = out;
        let mut first = 0;
        for (t, scratch) in scratch.iter_mut().enumerate() {
            let last = units * (t + 1) / threads;
            let (mine, tail) = rest.split_at_mut((last - first) * unit_len);
            rest = tail;
            let range = first..last;
            if t + 1 < threads {
                scope.spawn(move || job(range, mine, scratch));
            } else {
                job(range, mine, scratch);
            }
            first = last;
        }
    });
}
