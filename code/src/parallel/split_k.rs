//! Split-K decode (Flash-Decoding): the cached positions of a decode step cut into
//! splits, each split's partial state computed on its own thread, the states merged.
//!
//! Chapter 8's decode kernel splits a step's work by KV head, and a Llama 3 layer has
//! only 8 of them: at batch 1, a machine with more cores than KV heads leaves cores idle
//! however long the context. The keys are the long axis, so split them (Dao, Haziza,
//! Massa and Sizov, "Flash-Decoding for long-context inference", 2023). Two forms share
//! the splits, the threads and the merge:
//!
//! - [`SplitKDecode`], the readable one, built on [`attend_block`] and [`merge`];
//! - [`SplitKDecodeAttention`], the fast one, whose splits run chapter 8's decode kernel
//!   (blocks, online softmax, fast `exp`, SIMD dispatch) and stop before its division.
//!   `attn-bench` times it (case `decode_split_k`).

use std::ops::Range;

use nalgebra::DMatrix;

use crate::fast::decode::{DecodeScratch, decode_partial, read_mib};
use crate::fast::{AttentionInputs, worth_threads};
use crate::mechanisms::sdpa::check_grouped_args;
use crate::parallel::partial::{PartialAttention, attend_block, merge};
use crate::support::error::{AttnError, Result, nonzero};

/// The `splits` ranges of cache positions split-K cuts `n_keys` keys into: split `s` is
/// `n_keys·s/splits .. n_keys·(s+1)/splits`, so lengths differ by at most one and a split
/// may be empty when there are fewer keys than splits.
pub fn split_ranges(n_keys: usize, splits: usize) -> Vec<Range<usize>> {
    let at = |s: usize| (n_keys as u128 * s as u128 / splits.max(1) as u128) as usize;
    (0..splits).map(|s| at(s)..at(s + 1)).collect()
}

/// Split-K decode: causal grouped attention of a few queries over a long cache, the keys
/// cut into a fixed number of splits that up to `threads` threads compute.
///
/// **What it promises.** The output equals
/// [`grouped_attention`](crate::grouped_attention) within f32 rounding, and for a fixed
/// number of splits it is the same **bit for bit** whatever the number of threads: the
/// splits depend on `splits` only, each split's state is computed by one thread in the
/// same way, and the states are merged in split order, `((s₀ ⊕ s₁) ⊕ s₂) ⊕ …`, after
/// every thread has finished. Another number of splits rounds differently.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SplitKDecode {
    splits: usize,
    threads: usize,
}

impl SplitKDecode {
    /// `splits` splits of the keys (at least 1) on up to `threads` threads (at least 1;
    /// more threads than splits leave the extra ones unused).
    pub fn new(splits: usize, threads: usize) -> Result<Self> {
        nonzero("splits", splits)?;
        nonzero("threads", threads)?;
        Ok(Self { splits, threads })
    }

    /// Splits of the keys.
    pub fn splits(&self) -> usize {
        self.splits
    }

    /// Threads.
    pub fn threads(&self) -> usize {
        self.threads
    }

    // ANCHOR: split_k_partials
    /// The partial state of every split, in key order: what the threads compute. Same
    /// arguments, shapes and errors as [`grouped_attention`](crate::grouped_attention);
    /// the keys read are `0 .. query_offset + n_queries`, those the last query sees.
    pub fn partials(&self, x: AttentionInputs<'_>) -> Result<Vec<PartialAttention>> {
        check_grouped_args(
            "split_k_decode",
            x.q.shape(),
            &x.k,
            &x.v,
            x.heads,
            x.query_offset,
        )?;
        let ranges = split_ranges(x.query_offset + x.q.nrows(), self.splits);
        let threads = self.threads.min(self.splits);
        // one split: the keys of its range, which start at key range.start
        let one_split = |range: &Range<usize>, _: &mut ()| {
            let (k, v) = (x.k.rows_range(range.clone()), x.v.rows_range(range.clone()));
            attend_block(AttentionInputs { k, v, ..x }, range.start)
        };
        on_threads(&ranges, &mut vec![(); threads], one_split)
    }
    // ANCHOR_END: split_k_partials

    /// Attention of `x`: the splits' partial states merged in split order
    /// ([`merge_in_split_order`]), `(n_queries, n_heads·head_dim)`.
    pub fn forward(&self, x: AttentionInputs<'_>) -> Result<DMatrix<f32>> {
        merge_in_split_order(self.partials(x)?)
    }
}

// ANCHOR: split_k_threads
/// Runs `one_split` on every split's key range, on `scratch.len()` threads (at least
/// one), each with its own scratch: thread `t` takes the splits `splits·t/threads ..
/// splits·(t+1)/threads`, the calling thread the last share. The results come back in
/// split order, once every thread has finished, whatever order they finished in.
fn on_threads<T: Send, S: Send>(
    ranges: &[Range<usize>],
    scratch: &mut [S],
    one_split: impl Fn(&Range<usize>, &mut S) -> Result<T> + Sync,
) -> Result<Vec<T>> {
    let (splits, threads) = (ranges.len(), scratch.len());
    let share = |t: usize| &ranges[splits * t / threads..splits * (t + 1) / threads];
    let run = |t: usize, s: &mut S| -> Result<Vec<T>> {
        share(t).iter().map(|range| one_split(range, s)).collect()
    };
    let run = &run;
    let (last, others) = scratch.split_last_mut().expect("at least one thread");
    let per_thread: Vec<Result<Vec<T>>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (others.iter_mut().enumerate())
            .map(|(t, s)| scope.spawn(move || run(t, s)))
            .collect();
        let mine = run(threads - 1, last);
        handles.into_iter().map(join).chain([mine]).collect()
    });
    // thread t's results are those of its share: concatenated in thread order, they are
    // in split order
    let mut results = Vec::with_capacity(splits);
    for result in per_thread {
        results.extend(result?);
    }
    Ok(results)
}
// ANCHOR_END: split_k_threads

// ANCHOR: split_k_forward
/// The splits' partial states merged left to right, in split order (never in the order
/// the threads finish), then divided by the sums: `(n_queries, n_heads·head_dim)`. An
/// error if there is no state, or if two states differ in shape.
pub fn merge_in_split_order(states: Vec<PartialAttention>) -> Result<DMatrix<f32>> {
    let mut states = states.into_iter();
    let Some(first) = states.next() else {
        return Err(AttnError::Config("split-K: no partial state to merge".to_string()));
    };
    let merged = states.try_fold(first, |acc, s| merge(&acc, &s))?;
    Ok(merged.finish())
}
// ANCHOR_END: split_k_forward

/// Split-K decode at chapter 8's speed: the splits, threads and merge of
/// [`SplitKDecode`], each split's partial state computed by the loop of
/// [`DecodeAttention`](crate::DecodeAttention) over that split's keys (blocks of
/// [`DECODE_BLOCK`](crate::fast::decode::DECODE_BLOCK), online softmax, fast `exp`, the
/// CPU's widest SIMD), stopped before its division. Buffers are kept between calls.
///
/// **What it promises.** The promise of [`SplitKDecode`]: for a fixed number of splits,
/// the same bits on any number of threads. The output equals
/// [`grouped_attention`](crate::grouped_attention) within the rounding of chapter 8's
/// decode kernel (its `exp` approximation, sums in sixteen lanes), and with one split it
/// is [`DecodeAttention`](crate::DecodeAttention)'s output bit for bit: the same loop
/// over all the keys, then the same division.
///
/// Same arguments, shapes and errors as [`grouped_attention`](crate::grouped_attention),
/// and one more: a split needs at least one key, so more splits than keys read
/// (`query_offset + n_queries`) is an error.
///
/// ```
/// use attention::parallel::split_k::SplitKDecodeAttention;
/// use attention::{AttentionInputs, HeadLayout, grouped_attention, splitmix_matrix};
/// let heads = HeadLayout::new(6, 2, 8)?; // 6 query heads over 2 KV heads, head_dim 8
/// let k = splitmix_matrix(2, 500, 2 * 8, 1.0); // 500 cached positions
/// let v = splitmix_matrix(3, 500, 2 * 8, 1.0);
/// let q = splitmix_matrix(1, 1, 6 * 8, 1.0); // the newest token: 499 keys before it
/// let x = AttentionInputs { q: &q, k: k.as_view(), v: v.as_view(), heads, query_offset: 499 };
/// let two_threads = SplitKDecodeAttention::new(3, 2)?.forward(x)?; // 3 splits
/// let one_thread = SplitKDecodeAttention::new(3, 1)?.forward(x)?;
/// assert_eq!(two_threads, one_thread); // the same bits
/// let slow = grouped_attention(&q, k.as_view(), v.as_view(), heads, 499)?;
/// assert!((two_threads - slow).amax() < 1e-5);
/// # Ok::<(), attention::AttnError>(())
/// ```
#[derive(Clone, Debug)]
pub struct SplitKDecodeAttention {
    splits: usize,
    threads: usize,
    /// One per thread: a key block's scores and the scaled queries.
    scratch: Vec<DecodeScratch>,
}

impl SplitKDecodeAttention {
    /// `splits` splits of the keys (at least 1) on up to `threads` threads (at least 1).
    /// Small calls use fewer threads, as chapter 8's kernels do (a thread pays from 2 MiB
    /// of keys and values); the output does not depend on it.
    pub fn new(splits: usize, threads: usize) -> Result<Self> {
        nonzero("splits", splits)?;
        nonzero("threads", threads)?;
        Ok(Self { splits, threads, scratch: Vec::new() })
    }

    /// Splits of the keys.
    pub fn splits(&self) -> usize {
        self.splits
    }

    /// Threads, at most.
    pub fn threads(&self) -> usize {
        self.threads
    }

    // ANCHOR: split_k_fast
    /// The partial state of every split, in key order, each computed by chapter 8's
    /// decode loop over the split's keys (see the type's documentation for the errors).
    pub fn partials(&mut self, x: AttentionInputs<'_>) -> Result<Vec<PartialAttention>> {
        check_grouped_args(
            "split_k_decode_attention",
            x.q.shape(),
            &x.k,
            &x.v,
            x.heads,
            x.query_offset,
        )?;
        let n_keys = x.query_offset + x.q.nrows(); // checked: at most k.nrows()
        if self.splits > n_keys {
            return Err(AttnError::Config(format!(
                "split_k_decode_attention: {} splits of {n_keys} keys (a split needs \
                 a key)",
                self.splits
            )));
        }
        let ranges = split_ranges(n_keys, self.splits);
        // a thread pays from 2 MiB of keys and values, as in chapter 8's kernel
        let threads = worth_threads(self.threads, self.splits, read_mib(x) / 2.0);
        self.scratch.resize_with(threads, DecodeScratch::default);
        on_threads(&ranges, &mut self.scratch, |keys, scratch| {
            let mut state = PartialAttention::empty(x.q.nrows(), x.heads)?;
            decode_partial(x, keys.clone(), state.parts_mut(), scratch);
            Ok(state)
        })
    }
    // ANCHOR_END: split_k_fast

    /// Attention of `x`: the splits' partial states merged in split order
    /// ([`merge_in_split_order`]), `(n_queries, n_heads·head_dim)`.
    pub fn forward(&mut self, x: AttentionInputs<'_>) -> Result<DMatrix<f32>> {
        merge_in_split_order(self.partials(x)?)
    }
}

/// A scoped thread's result; a panic inside it (a bug, not bad input) becomes an error.
pub(crate) fn join<T>(handle: std::thread::ScopedJoinHandle<'_, Result<T>>) -> Result<T> {
    handle.join().unwrap_or_else(|_| {
        Err(AttnError::Config("a simulated device's thread panicked".to_string()))
    })
}
