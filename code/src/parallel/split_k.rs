//! Split-K decode (Flash-Decoding): the cached positions of a decode step cut into
//! splits, each split's partial state computed on its own thread, the states merged.
//!
//! Chapter 8's decode kernel splits a step's work by KV head, and a Llama 3 layer has
//! only 8 of them: at batch 1, a machine with more cores than KV heads leaves cores idle
//! however long the context. The keys are the long axis, so split them (Dao, Haziza,
//! Massa and Sizov, "Flash-Decoding for long-context inference", 2023). This module is
//! the readable form, built on [`attend_block`] and [`merge`]; nothing in it is timed.

use std::ops::Range;

use nalgebra::DMatrix;

use crate::fast::AttentionInputs;
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
        // thread t computes splits splits·t/threads .. splits·(t+1)/threads
        let share = |t: usize| self.splits * t / threads..self.splits * (t + 1) / threads;
        let one_split = |range: &Range<usize>| {
            let (k, v) = (x.k.rows_range(range.clone()), x.v.rows_range(range.clone()));
            attend_block(AttentionInputs { k, v, ..x }, range.start)
        };
        let per_thread: Vec<Result<Vec<PartialAttention>>> =
            std::thread::scope(|scope| {
                let handles: Vec<_> = (0..threads)
                    .map(|t| {
                        let mine = &ranges[share(t)];
                        scope.spawn(move || mine.iter().map(one_split).collect())
                    })
                    .collect();
                handles.into_iter().map(join).collect()
            });
        // thread t's states are splits share(t): concatenated in thread order, they are
        // in split order
        let mut states = Vec::with_capacity(self.splits);
        for result in per_thread {
            states.extend(result?);
        }
        Ok(states)
    }
    // ANCHOR_END: split_k_partials

    // ANCHOR: split_k_forward
    /// Attention of `x`: the splits' partial states merged left to right, in split order
    /// (never in the order the threads finish), then divided by the sums:
    /// `(n_queries, n_heads·head_dim)`.
    pub fn forward(&self, x: AttentionInputs<'_>) -> Result<DMatrix<f32>> {
        let mut states = self.partials(x)?.into_iter();
        let first = states.next().expect("at least one split");
        let merged = states.try_fold(first, |acc, s| merge(&acc, &s))?;
        Ok(merged.finish())
    }
    // ANCHOR_END: split_k_forward
}

/// A scoped thread's result; a panic inside it (a bug, not bad input) becomes an error.
pub(crate) fn join<T>(handle: std::thread::ScopedJoinHandle<'_, Result<T>>) -> Result<T> {
    handle.join().unwrap_or_else(|_| {
        Err(AttnError::Config("a simulated device's thread panicked".to_string()))
    })
}
