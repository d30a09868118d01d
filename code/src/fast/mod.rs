//! Chapter 8: fast attention. The same answers as
//! [`grouped_attention`](crate::grouped_attention), from kernels that never build the `(seq, seq)`
//! score matrix: [`flash`] for prefill (tiles of queries and keys), [`decode`] for a few queries
//! over a long cache, the [`online_softmax`] both finish the softmax with, and the SIMD plumbing
//! ([`simd`], [`fast_exp`]) that makes their loops wide.

pub mod decode;
pub mod fast_exp;
pub mod flash;
pub mod online_softmax;
pub mod simd;

use std::ops::Range;

/// How many of the `threads` a kernel was given to use on `units` independent units (heads or KV
/// heads), when the call holds `work` times the amount that pays for one extra thread: spawning a
/// thread costs tens of microseconds, so small calls stay on one.
pub(crate) fn worth_threads(threads: usize, units: usize, work: f64) -> usize {
    // `work` is finite and non-negative; the cast saturates for huge values.
    threads.min(units).min(1 + work as usize).max(1)
}

/// Splits `units` units of work (heads, or KV heads with their groups) over `scratch.len()` threads,
/// whole units per thread, as evenly as possible. `out` holds the units' outputs one after another,
/// all of the same length; thread `t` gets a range of units, exactly their part of `out`, and its own
/// scratch. The calling thread takes the last share. Results do not depend on the number of threads:
/// each unit is computed by one thread, the same way.
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
