//! Runtime CPU dispatch: run plain Rust loops compiled for the widest SIMD this CPU has.
//!
//! The crate is built for the portable x86-64 baseline (SSE2), where the compiler may use
//! only 4-wide vector instructions. The hot loops of the fast kernels are written as
//! plain, branch-free Rust; `dispatch` runs such a kernel inside a function compiled with
//! AVX-512 (or AVX2) enabled, when the CPU has it, so the same source becomes 16-wide
//! code. The loops never reorder floating-point operations, so a loop without fused
//! multiply-adds gives the same bits on every path and only the speed changes; the flash
//! kernel, which fuses them where the CPU has FMA, differs from the baseline in the last
//! bits.

use std::sync::OnceLock;

/// The instruction-set levels the kernels are compiled for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SimdLevel {
    /// x86-64 with AVX-512 (F, VL, BW, DQ): 16 f32 lanes.
    Avx512,
    /// x86-64 with AVX2 and FMA: 8 f32 lanes.
    Avx2,
    /// Whatever the build targets (SSE2 on x86-64): 4 lanes, or plain scalar code.
    Baseline,
}

/// The widest level this CPU supports, detected once. The environment variable
/// `ATTENTION_SIMD=baseline` (or `avx2`) caps it, to test or time the narrower code
/// paths.
pub fn simd_level() -> SimdLevel {
    static LEVEL: OnceLock<SimdLevel> = OnceLock::new();
    *LEVEL.get_or_init(detect)
}

#[cfg(target_arch = "x86_64")]
fn detect() -> SimdLevel {
    // ATTENTION_SIMD=baseline or =avx2 caps the level: to test and time the narrower
    // paths.
    let cap = std::env::var("ATTENTION_SIMD").unwrap_or_default();
    if cap == "baseline" {
        return SimdLevel::Baseline;
    }
    let avx512 = is_x86_feature_detected!("avx512f")
        && is_x86_feature_detected!("avx512vl")
        && is_x86_feature_detected!("avx512bw")
        && is_x86_feature_detected!("avx512dq");
    if avx512 && cap != "avx2" {
        SimdLevel::Avx512
    } else if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
        SimdLevel::Avx2
    } else {
        SimdLevel::Baseline
    }
}

#[cfg(not(target_arch = "x86_64"))]
fn detect() -> SimdLevel {
    SimdLevel::Baseline
}

/// A piece of work whose hot loops should be compiled for the widest SIMD level.
///
/// Implementations mark [`Kernel::run`] `#[inline(always)]`, and everything it calls too:
/// then [`dispatch`] gets one copy of the whole loop nest per level. (A closure would not
/// do: the compiler is free to keep it out of line, compiled for the baseline.)
pub(crate) trait Kernel {
    /// What the work returns.
    type Output;
    /// Does the work.
    fn run(self) -> Self::Output;
}

/// Runs `kernel` compiled for the widest SIMD level of this CPU (see the module docs).
#[inline(always)]
pub(crate) fn dispatch<K: Kernel>(kernel: K) -> K::Output {
    #[cfg(target_arch = "x86_64")]
    match simd_level() {
        // SAFETY: `simd_level` returned this level only after detecting every feature it
        // enables.
        SimdLevel::Avx512 => return unsafe { run_avx512(kernel) },
        // SAFETY: as above, AVX2 and FMA were detected.
        SimdLevel::Avx2 => return unsafe { run_avx2(kernel) },
        SimdLevel::Baseline => {}
    }
    kernel.run()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512vl,avx512bw,avx512dq,avx2,fma,bmi1,bmi2")]
unsafe fn run_avx512<K: Kernel>(kernel: K) -> K::Output {
    kernel.run()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,bmi1,bmi2")]
unsafe fn run_avx2<K: Kernel>(kernel: K) -> K::Output {
    kernel.run()
}

/// Independent FMA chains of the peak measurement: more than latency (4 cycles) × units
/// (2), fewer than the registers (16 ymm, 32 zmm).
#[cfg(target_arch = "x86_64")]
const CHAINS: usize = 12;

/// `CHAINS` independent chains of `iterations` fused multiply-adds on 16-lane registers:
/// enough chains to cover the FMA units' latency (4 cycles, 2 units). Written with
/// intrinsics: as plain loops the compiler vectorized across the chains instead, with
/// gathers and scatters through memory, twenty times slower (measured).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn fma_chains_avx512(iterations: usize, x: f32, y: f32) -> f32 {
    use std::arch::x86_64::{_mm512_fmadd_ps, _mm512_reduce_add_ps, _mm512_set1_ps};
    let (vx, vy) = (_mm512_set1_ps(x), _mm512_set1_ps(y));
    let mut acc = [_mm512_set1_ps(1.0); CHAINS];
    for _ in 0..iterations {
        for a in acc.iter_mut() {
            *a = _mm512_fmadd_ps(*a, vx, vy); // 16 FMAs: 32 flops
        }
    }
    acc.iter().map(|&a| _mm512_reduce_add_ps(a)).sum()
}

/// As [`fma_chains_avx512`] on 8-lane AVX2 registers.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn fma_chains_avx2(iterations: usize, x: f32, y: f32) -> f32 {
    use std::arch::x86_64::{_mm256_fmadd_ps, _mm256_set1_ps, _mm256_storeu_ps};
    let (vx, vy) = (_mm256_set1_ps(x), _mm256_set1_ps(y));
    let mut acc = [_mm256_set1_ps(1.0); CHAINS];
    for _ in 0..iterations {
        for a in acc.iter_mut() {
            *a = _mm256_fmadd_ps(*a, vx, vy); // 8 FMAs: 16 flops
        }
    }
    let mut lanes = [0.0_f32; 8];
    let mut sum = 0.0;
    for a in acc {
        // SAFETY: `lanes` holds the 8 floats the store writes
        unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), a) };
        sum += lanes.iter().sum::<f32>();
    }
    sum
}

/// The core's measured FMA throughput in GFLOP/s (one thread, f32, the widest SIMD level
/// [`simd_level`] allows; 0 at the baseline level, which has no FMA): twelve independent
/// chains of fused multiply-adds with no memory traffic, timed for at least `min_time`.
/// The ceiling a matrix-product kernel on this core can approach; the flash kernel's
/// achieved rate is compared with it.
pub fn fma_peak_gflops(min_time: std::time::Duration) -> f64 {
    #[cfg(not(target_arch = "x86_64"))]
    return {
        let _ = min_time; // no FMA loop for other CPUs yet
        0.0
    };
    #[cfg(target_arch = "x86_64")]
    let (x, y) = (std::hint::black_box(0.999_999), std::hint::black_box(1e-7));
    #[cfg(target_arch = "x86_64")]
    let (lanes, run): (usize, fn(usize, f32, f32) -> f32) = match simd_level() {
        // SAFETY (both): `simd_level` returned this level only after detecting the
        // features the function enables
        SimdLevel::Avx512 => (16, |n, x, y| unsafe { fma_chains_avx512(n, x, y) }),
        SimdLevel::Avx2 => (8, |n, x, y| unsafe { fma_chains_avx2(n, x, y) }),
        SimdLevel::Baseline => return 0.0,
    };
    #[cfg(target_arch = "x86_64")]
    {
        std::hint::black_box(run(1_000, x, y)); // warm up (frequency, caches)
        let mut iterations = 100_000;
        loop {
            let start = std::time::Instant::now();
            std::hint::black_box(run(iterations, x, y));
            let elapsed = start.elapsed();
            if elapsed >= min_time || iterations > usize::MAX / 4 {
                let flops = 2.0 * (CHAINS * lanes) as f64 * iterations as f64;
                return flops / elapsed.as_secs_f64() / 1e9;
            }
            iterations *= 2;
        }
    }
}
