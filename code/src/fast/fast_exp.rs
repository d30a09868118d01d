//! A fast `exp` for f32 slices: a polynomial that the compiler turns into SIMD code.
//!
//! `f32::exp` calls the C library one value at a time (about 4 ns each). Attention at
//! sequence 1024 with 12 heads needs over six million of them, so the softmax would cost
//! as much as the two matrix products. The function below does the same job with a
//! handful of multiplies and adds and no branches: the compiler vectorises the loop, 16
//! values per AVX-512 instruction.
//!
//! Accuracy: relative error below [`EXP_MAX_REL_ERROR`] (`f32::EPSILON`, 1.19e-7) on
//! `-87.33 ..= 88.37`. A sweep over every f32 in that range against `f64::exp` finds
//! 9.90e-8 at most (at x = -71.05; 7.71e-8 with fused multiply-adds); the crate's tests
//! sweep every 997th. That is at most 1.2 units in the last place (ulp) of the result:
//! close to f32 precision, not at it (a correctly rounded `exp` is within half an ulp, a
//! relative error of at most 2⁻²⁴ ≈ 5.96e-8). Below the range the true value is a
//! subnormal number under `1.2e-38` and the result is `0`; above it the result is `+inf`.

#[cfg(target_arch = "x86_64")]
use crate::fast::{flash::micro_shape, simd::SimdLevel};

// ANCHOR: fast_exp
const LOG2_E: f32 = std::f32::consts::LOG2_E;
// ln 2 split in two so that n·LN2_HI is exact and r keeps its low bits.
const LN2_HI: f32 = 0.693_359_4;
const LN2_LO: f32 = -2.121_944_4e-4;
// Adding 1.5·2^23 rounds to the nearest integer (and leaves it in the low mantissa bits).
const ROUND: f32 = 12_582_912.0;
const LO: f32 = -87.336_55; // exp(LO) = 2^-126, the smallest normal f32
const HI: f32 = 88.376_26; // keeps 2^n ≤ 2^127
// exp(r) ≈ 1 + r·(1 + r·(c2 + r·(c3 + r·(c4 + r·(c5 + r·c6))))) on |r| ≤ ln 2 / 2:
// the coefficients from c6 down, a minimax fit (`scripts/fit_exp.py`).
const POLY: [f32; 7] = [
    1.381_453_2e-3,
    8.368_690_5e-3,
    4.166_838_5e-2,
    1.666_652_1e-1,
    0.499_999_94,
    1.0,
    1.0,
];

/// `exp(x)` in single precision, branch-free so that loops over it vectorise.
///
/// Write `x = n·ln 2 + r` with `n` an integer and `|r| <= ln 2 / 2`; then `exp(x) = 2^n ·
/// exp(r)`. `2^n` is built directly in the float's exponent bits, and `exp(r)` on that
/// short interval is a polynomial of degree 6 (a minimax fit, `scripts/fit_exp.py`),
/// evaluated by Horner's rule. Relative error at most 9.9e-8, 1.2 ulp: not correctly
/// rounded, but close (see [`EXP_MAX_REL_ERROR`]).
///
/// With `FMA`, each `a·b + c` is one fused multiply-add (one rounding, one instruction),
/// for loops compiled for a CPU that has it (the flash kernel's softmax, whose weights
/// use `exp_nonpositive_avx512` or `exp_nonpositive_avx2`: the same bits with fewer
/// instructions). Without, a multiply and an add, the same bits on every CPU:
/// [`exp_approx`].
#[inline(always)]
pub fn exp_approx_with<const FMA: bool>(x: f32) -> f32 {
    let madd = |a: f32, b: f32, c: f32| if FMA { a.mul_add(b, c) } else { a * b + c };
    let t = madd(x, LOG2_E, ROUND);
    let n = t - ROUND; // round(x / ln 2), as a float
    let r = madd(-n, LN2_LO, madd(-n, LN2_HI, x)); // x - n·ln 2
    let exp_r = POLY[1..].iter().fold(POLY[0], |p, &c| madd(p, r, c)); // Horner's rule
    // 2^n: the integer n sits in t's low mantissa bits; move it (+127 bias) into the
    // exponent field.
    let n_int = t.to_bits().wrapping_sub(ROUND.to_bits());
    let two_n = f32::from_bits(n_int.wrapping_add(127) << 23);
    // Outside LO ..= HI, n does not fit the exponent field and `y` is garbage: both
    // ends are replaced (a NaN `x` fails both tests and stays NaN).
    let y = exp_r * two_n;
    if x < LO {
        0.0
    } else if x > HI {
        f32::INFINITY
    } else {
        y
    }
}
// ANCHOR_END: fast_exp

// ANCHOR: exp_avx512
/// [`exp_approx_with::<true>`](exp_approx_with) on the 16 lanes of an AVX-512
/// register, for inputs at most `HI` (88.37): the online softmax's `s - m`, which are
/// never above 0. The same bits, with two instructions in place of the last eight:
/// `vscalefps` multiplies by `2^n` directly (no integer arithmetic to build it), and
/// its zero-masking gives the `0` below `LO`. The upper select is not needed.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
fn exp_nonpositive_avx512(x: std::arch::x86_64::__m512) -> std::arch::x86_64::__m512 {
    use std::arch::x86_64::*;
    let t = _mm512_fmadd_ps(x, _mm512_set1_ps(LOG2_E), _mm512_set1_ps(ROUND));
    let n = _mm512_sub_ps(t, _mm512_set1_ps(ROUND));
    let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(LN2_HI), x); // -(n·LN2_HI) + x
    let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(LN2_LO), r);
    let mut exp_r = _mm512_set1_ps(POLY[0]);
    for c in &POLY[1..] {
        exp_r = _mm512_fmadd_ps(exp_r, r, _mm512_set1_ps(*c));
    }
    // Below LO (and at -inf) the lane is zeroed. A NaN compares unordered: "not less
    // than" is true for it, and NaN · 2^n stays NaN.
    let keep = _mm512_cmp_ps_mask::<_CMP_NLT_UQ>(x, _mm512_set1_ps(LO));
    _mm512_maskz_scalef_ps(keep, exp_r, n)
}
// ANCHOR_END: exp_avx512

/// The flash kernel's panel heights at AVX-512 and AVX2 (its micro-kernels' `MR`): the
/// softmax forms below take panels of exactly these.
#[cfg(target_arch = "x86_64")]
const ROWS_AVX512: usize = micro_shape(SimdLevel::Avx512).0;
#[cfg(target_arch = "x86_64")]
const ROWS_AVX2: usize = micro_shape(SimdLevel::Avx2).0;

/// Step 3 of the online softmax for a panel of 48 rows on AVX-512 (three registers):
/// each column of `tile` becomes `exp(s - shift)` row by row, added to `sum`. The same
/// operations in the same order as the portable loop of
/// [`online_softmax_tile`](crate::fast::online_softmax::online_softmax_tile),
/// so the same bits; `shift` must be the rows' maxima (or 0 for a row of `-inf`), so
/// that no `s - shift` is above 0.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
pub(crate) fn exp_sub_sum_columns_avx512(
    tile: &mut [f32],
    shift: &[f32; ROWS_AVX512],
    sum: &mut [f32; ROWS_AVX512],
) {
    use std::arch::x86_64::{_mm512_add_ps, _mm512_sub_ps};
    use std::arch::x86_64::{_mm512_loadu_ps as load, _mm512_storeu_ps as store};
    // SAFETY (every load and store): each pointer starts 16 floats of an array or chunk
    const R: usize = ROWS_AVX512 / 16; // registers of 16 rows
    let m: [_; R] = std::array::from_fn(|r| unsafe { load(shift[16 * r..].as_ptr()) });
    let mut l: [_; R] = std::array::from_fn(|r| unsafe { load(sum[16 * r..].as_ptr()) });
    for column in tile.chunks_exact_mut(ROWS_AVX512) {
        for ((rows, &m), l) in column.chunks_exact_mut(16).zip(&m).zip(&mut l) {
            let w =
                exp_nonpositive_avx512(_mm512_sub_ps(unsafe { load(rows.as_ptr()) }, m));
            unsafe { store(rows.as_mut_ptr(), w) };
            *l = _mm512_add_ps(*l, w);
        }
    }
    for (r, &l) in l.iter().enumerate() {
        unsafe { store(sum[16 * r..].as_mut_ptr(), l) };
    }
}

/// [`exp_approx_with::<true>`](exp_approx_with) on `K` AVX2 registers of 8 lanes, for
/// inputs at most `HI`, as [`exp_nonpositive_avx512`]: the same bits. AVX2 has no
/// `vscalefps`, so `2^n` is built in the exponent bits as the portable code does, and a
/// compare and an `and` give the `0` below `LO`; the upper select is dropped. Each step
/// is written for all `K` registers before the next: `K` independent chains of about 14
/// dependent instructions (Horner's rule alone is six), interleaved in the instruction
/// stream so that the core always has one ready to issue.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[inline]
fn exp_nonpositive_avx2<const K: usize>(
    x: [std::arch::x86_64::__m256; K],
) -> [std::arch::x86_64::__m256; K] {
    use std::arch::x86_64::*;
    let t = x.map(|x| _mm256_fmadd_ps(x, _mm256_set1_ps(LOG2_E), _mm256_set1_ps(ROUND)));
    let n = t.map(|t| _mm256_sub_ps(t, _mm256_set1_ps(ROUND)));
    let r: [_; K] = std::array::from_fn(|k| {
        let r = _mm256_fnmadd_ps(n[k], _mm256_set1_ps(LN2_HI), x[k]); // -(n·LN2_HI) + x
        _mm256_fnmadd_ps(n[k], _mm256_set1_ps(LN2_LO), r)
    });
    let mut exp_r = [_mm256_set1_ps(POLY[0]); K];
    for c in &POLY[1..] {
        for (e, &r) in exp_r.iter_mut().zip(&r) {
            *e = _mm256_fmadd_ps(*e, r, _mm256_set1_ps(*c));
        }
    }
    // 2^n: (t's bits - ROUND's bits + 127) << 23, the subtraction and the bias folded
    // into one wrapping addition
    let bias = _mm256_set1_epi32(127_u32.wrapping_sub(ROUND.to_bits()) as i32);
    std::array::from_fn(|k| {
        let two_n =
            _mm256_slli_epi32::<23>(_mm256_add_epi32(_mm256_castps_si256(t[k]), bias));
        let y = _mm256_mul_ps(exp_r[k], _mm256_castsi256_ps(two_n));
        // all ones where x is not below LO (a NaN included, which stays NaN), else 0
        let keep = _mm256_cmp_ps::<_CMP_NLT_UQ>(x[k], _mm256_set1_ps(LO));
        _mm256_and_ps(y, keep)
    })
}

/// [`exp_sub_sum_columns_avx512`] for a panel of 16 rows on AVX2 (two 8-lane registers),
/// with [`exp_nonpositive_avx2`]: the same bits as the portable loop. Two columns at a
/// time, four chains of exponentials: with one column (two chains) the loop waited on
/// their latency and took a third more time (a profile at seq 4096 on an AMD EPYC, Zen 4,
/// capped at AVX2; three and four columns gained no more than noise). AVX-512 needs no
/// such pairing: its 48-row panel already gives three chains of 16 lanes.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
pub(crate) fn exp_sub_sum_columns_avx2(
    tile: &mut [f32],
    shift: &[f32; ROWS_AVX2],
    sum: &mut [f32; ROWS_AVX2],
) {
    use std::arch::x86_64::{__m256, _mm256_add_ps, _mm256_sub_ps};
    use std::arch::x86_64::{_mm256_loadu_ps as load, _mm256_storeu_ps as store};
    const R: usize = ROWS_AVX2 / 8; // registers of 8 rows
    /// Whole columns of `chunk` in `K` registers at once: register `k` holds rows `8(k
    /// mod R) ..` of column `k / R`, in memory order, and the sums take the columns in
    /// order, as the portable loop does.
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    fn columns<const K: usize>(chunk: &mut [f32], m: &[__m256; R], l: &mut [__m256; R]) {
        assert_eq!(chunk.len(), 8 * K);
        let p = chunk.as_mut_ptr();
        // SAFETY (every load and store): inside `chunk`, asserted above
        let x = std::array::from_fn(|k| {
            _mm256_sub_ps(unsafe { load(p.add(8 * k)) }, m[k % R])
        });
        for (k, &w) in exp_nonpositive_avx2::<K>(x).iter().enumerate() {
            unsafe { store(p.add(8 * k), w) };
            l[k % R] = _mm256_add_ps(l[k % R], w);
        }
    }
    // SAFETY (loads and stores of the statistics): each pointer starts 8 floats of an array
    let m: [_; R] = std::array::from_fn(|r| unsafe { load(shift[8 * r..].as_ptr()) });
    let mut l: [_; R] = std::array::from_fn(|r| unsafe { load(sum[8 * r..].as_ptr()) });
    let mut pairs = tile.chunks_exact_mut(2 * ROWS_AVX2);
    for pair in &mut pairs {
        columns::<{ 2 * R }>(pair, &m, &mut l);
    }
    for column in pairs.into_remainder().chunks_exact_mut(ROWS_AVX2) {
        columns::<R>(column, &m, &mut l);
    }
    for (r, &l) in l.iter().enumerate() {
        unsafe { store(sum[8 * r..].as_mut_ptr(), l) };
    }
}

/// `exp(x)` by [`exp_approx_with`] without fused multiply-adds: the same bits on every
/// CPU and SIMD level.
#[inline(always)]
pub fn exp_approx(x: f32) -> f32 {
    exp_approx_with::<false>(x)
}

/// A bound on the relative error of [`exp_approx`] against the exact `exp` on `-87.33 ..=
/// 88.37`: `f32::EPSILON` (1.19e-7); the largest error over every f32 of the range is
/// 9.90e-8, 1.2 ulp of the result (a correctly rounded result would be within 0.5 ulp).
pub const EXP_MAX_REL_ERROR: f32 = f32::EPSILON;

/// Replaces every `x` in `xs` by `exp(x)` using [`exp_approx`].
///
/// ```
/// let mut xs = [0.0_f32, 1.0, -1.0, -200.0];
/// attention::fast::fast_exp::exp_in_place(&mut xs);
/// assert_eq!(xs[0], 1.0);
/// assert!((xs[1] - std::f32::consts::E).abs() < 1e-6);
/// assert_eq!(xs[3], 0.0);
/// ```
pub fn exp_in_place(xs: &mut [f32]) {
    struct ExpAll<'a>(&'a mut [f32]);
    impl crate::fast::simd::Kernel for ExpAll<'_> {
        type Output = ();
        #[inline(always)]
        fn run(self) {
            for x in self.0.iter_mut() {
                *x = exp_approx(*x);
            }
        }
    }
    crate::fast::simd::dispatch(ExpAll(xs))
}

// ANCHOR: exp_sub_sum
/// Replaces every `x` in `xs` by `exp(x - max)` and returns their sum: the inner step of
/// a numerically stable softmax. Sixteen partial sums, one per SIMD lane, keep the loop
/// vectorised (a single running sum would force the additions into one long chain, in
/// order).
#[inline(always)]
pub fn exp_sub_sum(xs: &mut [f32], max: f32) -> f32 {
    const LANES: usize = 16;
    for x in xs.iter_mut() {
        *x = exp_approx(*x - max);
    }
    let mut partial = [0.0_f32; LANES];
    let mut chunks = xs.chunks_exact(LANES);
    for chunk in &mut chunks {
        for (p, &x) in partial.iter_mut().zip(chunk) {
            *p += x;
        }
    }
    for (p, &x) in partial.iter_mut().zip(chunks.remainder()) {
        *p += x;
    }
    partial.iter().sum()
}
// ANCHOR_END: exp_sub_sum

/// The largest element of `xs` (`-inf` for an empty slice), vectorised like
/// [`exp_sub_sum`].
#[inline(always)]
pub fn max_of(xs: &[f32]) -> f32 {
    const LANES: usize = 16;
    let mut partial = [f32::NEG_INFINITY; LANES];
    let mut chunks = xs.chunks_exact(LANES);
    for chunk in &mut chunks {
        for (p, &x) in partial.iter_mut().zip(chunk) {
            *p = if x > *p { x } else { *p };
        }
    }
    for (p, &x) in partial.iter_mut().zip(chunks.remainder()) {
        *p = if x > *p { x } else { *p };
    }
    partial.iter().copied().fold(f32::NEG_INFINITY, |a, b| if b > a { b } else { a })
}
