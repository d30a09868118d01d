//! Runtime CPU dispatch: run plain Rust loops compiled for the widest SIMD this CPU has.
//!
//! The crate is built for the portable x86-64 baseline (SSE2), where the compiler may use
//! only 4-wide vector instructions. The hot loops of the fast kernels are written as
//! plain, branch-free Rust; `dispatch` runs such a kernel inside a function compiled with
//! AVX-512 (or AVX2) enabled, when the CPU has it, so the same source becomes 16-wide
//! code. The result is bit-identical on every path: the loops never reorder
//! floating-point operations and never use fused multiply-adds, so only the speed
//! changes.

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
