//! Rotary position embeddings (RoPE), in the split-halves ("rotate_half") layout.
//!
//! RoPE encodes a token's position by rotating its query and key vectors: dimension pair
//! `i` of a head is rotated by the angle `pos · θ_i`, with `θ_i = base^(-2i / head_dim)`.
//! Because a dot product of two rotated vectors only depends on the *difference* of their
//! angles, `q·k` depends on the distance between the tokens, not on where they stand.
//!
//! **Layout.** This module pairs dimension `i` with `i + head_dim/2` (Hugging Face's
//! `rotate_half`, Raschka's book, candle's `rope`). Meta's original code pairs `2i` with
//! `2i + 1` ("interleaved"): same idea, different numbers for the same weights.
//!
//! **Precision.** Frequencies and angles are computed in `f32` exactly as PyTorch does it
//! (`1.0 / base ** (arange(0, d, 2).float() / d)`, then `positions.float() * inv_freq`),
//! so the tables match the reference implementations bit for bit or nearly. Computing
//! them in `f64` would be *more* accurate, but would differ from PyTorch's cos by about
//! 3e-4 at position 8 191. The reason to keep the f32 rounding of `pos · θ_i` is
//! agreement with the references (Meta's and Hugging Face's code), which is what lets the
//! tests use f32 tolerances; Meta's training code is not public, and llama.cpp, which
//! forms its angles by repeated multiplication, runs the same models well.

use nalgebra::DMatrix;

use crate::support::error::{AttnError, Result, check_range, divisible, nonzero};

/// Llama 3.1 / 3.2 frequency scaling ("rope_type": "llama3" in a Hugging Face config).
///
/// Long wavelengths (low frequencies) are divided by `factor`, short ones kept, and the
/// band in between blended smoothly, so that the slow pairs of a model trained on
/// `original_max_position_embeddings` tokens keep turning through angles it has seen,
/// over a longer context, without disturbing its short-range, high-frequency pairs. (The
/// long context of Llama 3.1 also came from continued training at long lengths: the
/// scaling alone does not make a model reach `factor` times further.) This is the
/// "NTK-by-parts" interpolation of the YaRN paper (Peng et al., 2023) with `α =
/// low_freq_factor`, `β = high_freq_factor` and without YaRN's attention temperature.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Llama3Scaling {
    /// How much the low frequencies are slowed down (8 for Llama 3.1, 32 for Llama 3.2).
    pub factor: f32,
    /// Wavelengths above `original / low_freq_factor` are scaled fully (1 in Llama 3.x).
    pub low_freq_factor: f32,
    /// Wavelengths below `original / high_freq_factor` are kept (4 in Llama 3.x).
    pub high_freq_factor: f32,
    /// The context the model was pre-trained with (8192 in Llama 3.x).
    pub original_max_position_embeddings: usize,
}

impl Llama3Scaling {
    /// Llama 3.1's values: factor 8, low 1, high 4, original context 8192.
    pub const LLAMA_3_1: Self = Self {
        factor: 8.0,
        low_freq_factor: 1.0,
        high_freq_factor: 4.0,
        original_max_position_embeddings: 8192,
    };
    /// Llama 3.2's values: factor 32, low 1, high 4, original context 8192.
    pub const LLAMA_3_2: Self = Self { factor: 32.0, ..Self::LLAMA_3_1 };

    /// Checks that the factors are finite and ordered (`factor >= 1`, `0 < low < high`)
    /// and the original context is at least 1; an error names the field
    /// (`rope_scaling.factor must be ...`).
    pub fn validate(&self) -> Result<()> {
        self.check("rope_scaling")
    }

    /// [`Llama3Scaling::validate`] with the fields named under `scope` (a config's key
    /// for them).
    pub(crate) fn check(&self, scope: &str) -> Result<()> {
        let bad = |field: &str, rule: &str, got: String| {
            Err(AttnError::Config(format!("{scope}.{field} must be {rule}, got {got}")))
        };
        if !(self.factor.is_finite() && self.factor >= 1.0) {
            return bad("factor", "a finite number >= 1", self.factor.to_string());
        }
        if !(self.low_freq_factor.is_finite() && self.low_freq_factor > 0.0) {
            return bad(
                "low_freq_factor",
                "a finite number > 0",
                self.low_freq_factor.to_string(),
            );
        }
        if !(self.high_freq_factor.is_finite()
            && self.high_freq_factor > self.low_freq_factor)
        {
            let rule = format!(
                "finite, with low_freq_factor < high_freq_factor (low_freq_factor = {})",
                self.low_freq_factor
            );
            return bad("high_freq_factor", &rule, self.high_freq_factor.to_string());
        }
        if self.original_max_position_embeddings == 0 {
            return bad("original_max_position_embeddings", "at least 1", "0".into());
        }
        Ok(())
    }

    // ANCHOR: llama3_scaling
    /// Scales one inverse frequency `θ_i` the way Hugging Face's
    /// `_compute_llama3_parameters` does (in f32).
    pub fn scale(&self, inv_freq: f32) -> f32 {
        let original = self.original_max_position_embeddings as f32;
        // 8192: longer waves are slowed fully
        let low_freq_wavelen = original / self.low_freq_factor;
        // 2048: shorter waves are kept
        let high_freq_wavelen = original / self.high_freq_factor;
        let wavelen = 2.0 * std::f32::consts::PI / inv_freq;
        if wavelen < high_freq_wavelen {
            inv_freq
        } else if wavelen > low_freq_wavelen {
            inv_freq / self.factor
        } else {
            // s goes from 0 (at the long end of the band) to 1 (at the short end)
            let s = (original / wavelen - self.low_freq_factor)
                / (self.high_freq_factor - self.low_freq_factor);
            (1.0 - s) * inv_freq / self.factor + s * inv_freq
        }
    }
    // ANCHOR_END: llama3_scaling
}

// ANCHOR: rope_inv_freq
/// The RoPE inverse frequencies `θ_i = base^(-2i/head_dim)` for `i in 0..head_dim/2`, in
/// f32 like PyTorch.
///
/// Pair 0 turns by one radian per position; the last pair turns
/// `base^((head_dim−2)/head_dim)` times slower (almost `base` times for wide heads).
pub fn rope_inv_freq(head_dim: usize, base: f32) -> Result<Vec<f32>> {
    check_rope_params(head_dim, base)?;
    crate::support::error::checked_len("RoPE inverse frequencies", &[head_dim / 2])?;
    Ok((0..head_dim / 2)
        .map(|i| {
            // f32, as PyTorch's arange(...).float() / d
            let exponent = (2 * i) as f32 / head_dim as f32;
            // `f32::powf` is whatever the platform's libm gives, which differs between
            // platforms in the last bit. The f64 power rounded once to f32 is the
            // correctly rounded value on every platform. PyTorch's own f32 power is
            // accurate to 1 ulp; for Llama 3's heads (head_dim 64 and 128, base 500 000)
            // it is the correctly rounded value, and so equal to ours bit for bit (the
            // rope and Hugging Face fixtures test this).
            let power = (base as f64).powf(exponent as f64) as f32;
            1.0 / power // the f32 division, as PyTorch's 1.0 / (...)
        })
        .collect())
}
// ANCHOR_END: rope_inv_freq

fn check_rope_params(head_dim: usize, base: f32) -> Result<()> {
    nonzero("head_dim", head_dim)?;
    if !head_dim.is_multiple_of(2) {
        return Err(AttnError::OddHeadDim { head_dim });
    }
    if !(base.is_finite() && base > 1.0) {
        return Err(AttnError::Config(format!(
            "rope_theta must be a finite number > 1, got {base}"
        )));
    }
    Ok(())
}

/// Which dimensions of a head RoPE rotates together (chapter 7).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum RopeLayout {
    /// Pair `i` is dimensions `(i, i + head_dim/2)`: Hugging Face's `rotate_half`,
    /// Raschka, candle.
    #[default]
    SplitHalves,
    /// Pair `i` is dimensions `(2i, 2i + 1)`: Meta's original code, llama.cpp's GGUF,
    /// llama2.c.
    Interleaved,
}

// ANCHOR: rope_struct
/// Precomputed RoPE tables for positions `0 .. max_positions`.
#[derive(Clone, Debug, PartialEq)]
pub struct Rope {
    head_dim: usize,
    max_positions: usize,
    layout: RopeLayout,
    inv_freq: Vec<f32>,
    /// `cos(pos · θ_i)`, row-major `(max_positions, head_dim / 2)`: pair `i` of position
    /// `pos`.
    cos: Vec<f32>,
    /// `sin(pos · θ_i)`, same layout.
    sin: Vec<f32>,
}
// ANCHOR_END: rope_struct

impl Rope {
    // ANCHOR: rope_new
    /// Tables for `max_positions` positions of a head of width `head_dim` (even),
    /// frequency base `base` (`rope_theta`: 10 000 in Llama 2, 500 000 in Llama 3),
    /// optionally with Llama 3.x scaling.
    pub fn new(
        head_dim: usize,
        max_positions: usize,
        base: f32,
        scaling: Option<Llama3Scaling>,
    ) -> Result<Self> {
        nonzero("max_positions", max_positions)?;
        let mut inv_freq = rope_inv_freq(head_dim, base)?;
        if let Some(s) = scaling {
            s.validate()?;
            inv_freq.iter_mut().for_each(|f| *f = s.scale(*f));
        }
        let half = head_dim / 2;
        // (max_positions, head_dim/2) each, the size checked before anything is allocated
        let (mut cos, mut sin) = zero_tables(max_positions, half)?;
        for pos in 0..max_positions {
            for (i, &f) in inv_freq.iter().enumerate() {
                // the f32 product, as PyTorch forms `positions.float() * inv_freq`
                let angle = pos as f32 * f;
                cos[pos * half + i] = angle.cos();
                sin[pos * half + i] = angle.sin();
            }
        }
        let layout = RopeLayout::SplitHalves;
        Ok(Self { head_dim, max_positions, layout, inv_freq, cos, sin })
    }
    // ANCHOR_END: rope_new

    /// The same tables, rotating pairs in `layout`.
    pub fn with_layout(mut self, layout: RopeLayout) -> Self {
        self.layout = layout;
        self
    }

    /// Which dimensions are rotated together.
    pub fn layout(&self) -> RopeLayout {
        self.layout
    }

    /// Width of the heads these tables rotate.
    pub fn head_dim(&self) -> usize {
        self.head_dim
    }

    /// Number of positions in the tables; valid positions are `0 .. max_positions`.
    pub fn max_positions(&self) -> usize {
        self.max_positions
    }

    /// The (possibly scaled) inverse frequencies `θ_i`, one per dimension pair.
    pub fn inv_freq(&self) -> &[f32] {
        &self.inv_freq
    }

    /// `(cos, sin)` of pair `i` at position `pos`, or an error past the tables.
    pub fn cos_sin(&self, pos: usize, i: usize) -> Result<(f32, f32)> {
        check_range(pos, 1, self.max_positions)?;
        let half = self.head_dim / 2;
        if i >= half {
            return Err(AttnError::IndexOutOfRange {
                what: "RoPE dimension pair",
                index: i,
                len: half,
            });
        }
        Ok((self.cos[pos * half + i], self.sin[pos * half + i]))
    }

    /// Rotates every head of `x` in place, in this table's [`RopeLayout`]: `x` is `(seq,
    /// n_heads · head_dim)`, row `t` is the token at position `start_pos + t`, and head
    /// `h` owns columns `h·head_dim .. (h+1)·head_dim`.
    pub fn apply(&self, x: &mut DMatrix<f32>, start_pos: usize) -> Result<()> {
        divisible("columns of the RoPE input", x.ncols(), "head_dim", self.head_dim)?;
        check_range(start_pos, x.nrows(), self.max_positions)?;
        match self.layout {
            RopeLayout::SplitHalves => self.rotate_split_halves(x, start_pos),
            RopeLayout::Interleaved => self.rotate_interleaved(x, start_pos),
        }
        Ok(())
    }

    // ANCHOR: rope_apply
    /// The split-halves rotation (checked by [`Rope::apply`]): pair `(i, i + head_dim/2)`
    /// of each head turns by the angle `pos · θ_i`: `x1' = x1·cos − x2·sin`, `x2' =
    /// x2·cos + x1·sin`.
    fn rotate_split_halves(&self, x: &mut DMatrix<f32>, start_pos: usize) {
        let half = self.head_dim / 2;
        for head in 0..x.ncols() / self.head_dim {
            let first = head * self.head_dim;
            for t in 0..x.nrows() {
                let row = (start_pos + t) * half;
                for i in 0..half {
                    let (c, s) = (self.cos[row + i], self.sin[row + i]);
                    let x1 = x[(t, first + i)];
                    let x2 = x[(t, first + half + i)];
                    x[(t, first + i)] = x1 * c - x2 * s;
                    x[(t, first + half + i)] = x2 * c + x1 * s;
                }
            }
        }
    }
    // ANCHOR_END: rope_apply

    // ANCHOR: rope_apply_interleaved
    /// Meta's **interleaved** rotation (checked by [`Rope::apply`]): pair `(2i, 2i + 1)`
    /// of each head turns by the angle `pos · θ_i`. Same tables, and so the same angles,
    /// as split-halves.
    fn rotate_interleaved(&self, x: &mut DMatrix<f32>, start_pos: usize) {
        let half = self.head_dim / 2;
        for t in 0..x.nrows() {
            let row = (start_pos + t) * half;
            for i in 0..half {
                let (c, s) = (self.cos[row + i], self.sin[row + i]);
                for head in 0..x.ncols() / self.head_dim {
                    let (a, b) =
                        (head * self.head_dim + 2 * i, head * self.head_dim + 2 * i + 1);
                    let (x1, x2) = (x[(t, a)], x[(t, b)]);
                    x[(t, a)] = x1 * c - x2 * s;
                    x[(t, b)] = x2 * c + x1 * s;
                }
            }
        }
    }
    // ANCHOR_END: rope_apply_interleaved
}

/// Zeroed cos and sin tables of `(max_positions, half)` entries each. Their joint size is
/// checked first, and each is allocated fallibly: a size that cannot be is an error,
/// never an abort.
fn zero_tables(max_positions: usize, half: usize) -> Result<(Vec<f32>, Vec<f32>)> {
    use crate::support::error::{checked_len, try_zeros};
    let what = "RoPE cos and sin tables (2, max_positions, head_dim/2)";
    checked_len(what, &[2, max_positions, half])?;
    let cos = try_zeros("RoPE cos table", &[max_positions, half])?;
    Ok((cos, try_zeros("RoPE sin table", &[max_positions, half])?))
}
