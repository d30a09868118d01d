//! A counter-based random initialiser that Python and Rust compute bit for bit the same.
//!
//! `rand`'s generators cannot reproduce PyTorch's, so fixtures normally carry PyTorch's
//! weights. For the default config (d_model 768) those weights would weigh 6 MB; instead
//! the generator in `scripts/` and this module both derive every weight from its index
//! with SplitMix64, and only the inputs and PyTorch's outputs are stored.

use nalgebra::DMatrix;

/// One step of SplitMix64 (Steele, Lea and Flood 2014) on `z`.
pub fn splitmix64(z: u64) -> u64 {
    let mut z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Element `k` (row-major index) of the uniform tensor `seed`: in `[-bound, bound)`.
///
/// `u = (splitmix64(seed · 2³² + k) >> 40) / 2²⁴` is exact in f32; the value is formed in
/// f64 and rounded once to f32, as the Python generator does.
pub fn splitmix_uniform(seed: u64, k: u64, bound: f64) -> f32 {
    let u = (splitmix64((seed << 32).wrapping_add(k)) >> 40) as f64 / (1u64 << 24) as f64;
    ((2.0 * u - 1.0) * bound) as f32
}

/// A `(rows, cols)` matrix whose row-major element `k` is [`splitmix_uniform`]`(seed, k,
/// bound)`.
pub fn splitmix_matrix(seed: u64, rows: usize, cols: usize, bound: f64) -> DMatrix<f32> {
    DMatrix::from_fn(rows, cols, |r, c| {
        splitmix_uniform(seed, (r * cols + c) as u64, bound)
    })
}
