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
//!
//! **Scaling.** Models with a context longer than the one they were pre-trained with slow
//! their slow pairs down: [`Llama3Scaling`] (Llama 3.1 / 3.2) and [`YarnScaling`] (gpt-oss,
//! DeepSeek-V3), both the "NTK-by-parts" recipe of the YaRN paper; YaRN also scales the
//! tables by an attention factor. [`Rope::with_scaling`] builds tables with either.
//! [`LinearScaling`] (Gemma 3's full-attention layers) slows *every* pair by the same
//! factor, the older "position interpolation"; [`Rope::with_linear_scaling`] builds its
//! tables.

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

/// YaRN frequency scaling ("rope_type": "yarn" in a Hugging Face config): the RoPE scaling
/// of gpt-oss and DeepSeek-V3 (Peng et al., 2023, "YaRN: Efficient Context Window
/// Extension of Large Language Models").
///
/// **Same idea as [`Llama3Scaling`].** Both are "NTK-by-parts": pairs that turn many
/// times within the original context keep their frequency (extrapolation), pairs that turn
/// less than about once are slowed by `factor` (interpolation), and a linear ramp blends
/// the band in between. They differ in how the band is drawn:
///
/// - Llama 3 measures each pair by its **wavelength** `λ_i = 2π/θ_i` against `original /
///   low_freq_factor` and `original / high_freq_factor`, and its blend is linear in the
///   rotation count `original / λ_i`.
/// - YaRN counts **rotations over the original context**, `r_i = original · θ_i / 2π`:
///   pairs with `r_i > beta_fast` (32) are kept, pairs with `r_i < beta_slow` (1) slowed.
///   It turns the two counts into two pair indices, the *correction range* (see
///   [`YarnScaling::correction_range`]), and its blend is linear in the **pair index** `i`
///   between them.
///
/// **Plus a temperature.** YaRN also sharpens attention as the context grows: it multiplies
/// the cos and sin tables by an *attention factor* (`0.1 · ln(factor) + 1` by default, see
/// [`YarnScaling::attention_factor`]). Both the query and the key are rotated with these
/// tables, so every RoPE score `q·k` is multiplied by the factor squared: the paper's
/// `1/t` with `√(1/t) = 0.1 · ln(s) + 1`. Llama 3 has no such factor.
///
/// The numbers follow transformers 5.24's `_compute_yarn_parameters` step for step (its
/// f32 tensor operations in f32, its Python-float arithmetic in f64); see
/// [`YarnScaling::inv_freq`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct YarnScaling {
    /// How much the slow pairs are slowed down (32 in gpt-oss, 40 in DeepSeek-V3). Also the
    /// `s` of the default attention factor. (transformers, when a config has no `factor`,
    /// uses `max_position_embeddings / original_max_position_embeddings`.)
    pub factor: f32,
    /// The context the model was pre-trained with (4096 in gpt-oss and DeepSeek-V3): the
    /// length over which rotations are counted.
    pub original_max_position_embeddings: usize,
    /// Pairs turning more than `beta_fast` times over the original context keep their
    /// frequency (32 by default). transformers reads an absent or `0` value as 32.
    pub beta_fast: f32,
    /// Pairs turning fewer than `beta_slow` times are slowed by `factor` (1 by default).
    /// transformers reads an absent or `0` value as 1.
    pub beta_slow: f32,
    /// Whether the correction range is widened to whole pairs (`floor` of the lower end,
    /// `ceil` of the upper). transformers' default is `true` (DeepSeek-V3, which does not
    /// set it); gpt-oss sets `false`.
    pub truncate: bool,
    /// DeepSeek's `mscale`: with `mscale_all_dim`, the attention factor becomes
    /// `yarn_get_mscale(factor, mscale) / yarn_get_mscale(factor, mscale_all_dim)`. `None`
    /// and `Some(0.0)` both mean unset (transformers tests the value's truth).
    pub mscale: Option<f32>,
    /// DeepSeek's `mscale_all_dim` (see `mscale`). DeepSeek-V3 sets both to 1, so its
    /// tables get the factor 1 and the temperature goes into the softmax scale instead
    /// (see [`yarn_get_mscale`]).
    pub mscale_all_dim: Option<f32>,
    /// An explicit attention factor, used as given instead of the one computed from
    /// `factor` and the `mscale` pair.
    pub attention_factor: Option<f32>,
}

/// YaRN's attention-temperature formula, `0.1 · mscale · ln(scale) + 1`, and `1` when
/// `scale <= 1` (no scaling, no temperature).
///
/// transformers calls it `get_mscale` inside `_compute_yarn_parameters` and
/// `yarn_get_mscale` in DeepSeek-V3's model file, where it also sets the softmax scale:
/// `qk_head_dim^-0.5 · m · m` with `m = yarn_get_mscale(factor, mscale_all_dim)` when
/// `mscale_all_dim` is set. It computes in f64 because Python does (its floats are
/// doubles); torch rounds the result to f32 where it multiplies an f32 tensor by it, so
/// round a product of these at the end (`(scale * m * m) as f32`), not each factor.
pub fn yarn_get_mscale(scale: f64, mscale: f64) -> f64 {
    if scale <= 1.0 {
        return 1.0;
    }
    0.1 * mscale * scale.ln() + 1.0
}

/// A RoPE frequency scaling: which recipe stretches a model's context (see [`Rope::with_scaling`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum RopeScaling {
    /// Llama 3.1 / 3.2's `"rope_type": "llama3"` (chapter 7).
    Llama3(Llama3Scaling),
    /// YaRN, `"rope_type": "yarn"` (gpt-oss, DeepSeek-V3).
    Yarn(YarnScaling),
}

impl From<Llama3Scaling> for RopeScaling {
    fn from(s: Llama3Scaling) -> Self {
        Self::Llama3(s)
    }
}

impl From<YarnScaling> for RopeScaling {
    fn from(s: YarnScaling) -> Self {
        Self::Yarn(s)
    }
}

/// Linear scaling, "position interpolation" ("rope_type": "linear" in a Hugging Face
/// config): every inverse frequency divided by `factor`, so position `p` turns by the
/// angles position `p / factor` had (Chen et al., 2023, "Extending Context Window of
/// Large Language Models via Positional Interpolation"; kaiokendev's SuperHOT).
///
/// Unlike [`Llama3Scaling`] and [`YarnScaling`] it slows the fast pairs too, and so blurs
/// neighbouring positions by the same factor; it has no attention factor. Gemma 3 4B, 12B
/// and 27B use it (factor 8) on their full-attention layers only: their sliding layers
/// keep their own base, unscaled.
///
/// The numbers follow transformers 5.24's `_compute_linear_scaling_rope_parameters`:
/// the f32 frequencies of [`rope_inv_freq`], then one f32 division by the factor
/// (`inv_freq /= factor`: torch divides an f32 tensor by a Python float as f32 by the
/// float rounded to f32). See [`LinearScaling::inv_freq`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LinearScaling {
    /// How much every pair is slowed down (8 in Gemma 3 4B, 12B and 27B).
    pub factor: f32,
}

impl LinearScaling {
    /// Gemma 3's value for its full-attention layers (4B, 12B, 27B): factor 8.
    pub const GEMMA_3: Self = Self { factor: 8.0 };

    /// Checks that `factor` is finite and at least 1; an error names the field
    /// (`rope_scaling.factor must be ...`). transformers only warns below 1 (its
    /// validator says "must be a float or int >= 1") and then speeds every pair up.
    pub fn validate(&self) -> Result<()> {
        self.check("rope_scaling")
    }

    /// [`LinearScaling::validate`] with the field named under `scope` (a config's key
    /// for it).
    pub(crate) fn check(&self, scope: &str) -> Result<()> {
        if !(self.factor.is_finite() && self.factor >= 1.0) {
            return Err(AttnError::Config(format!(
                "{scope}.factor must be a finite number >= 1, got {}",
                self.factor
            )));
        }
        Ok(())
    }

    /// The scaled inverse frequencies `θ_i / factor` for a head of width `head_dim`
    /// (even) and frequency base `base` (`rope_theta`), one per pair: [`rope_inv_freq`]'s
    /// f32 values, each divided once in f32, as transformers' `inv_freq /= factor`.
    pub fn inv_freq(&self, head_dim: usize, base: f32) -> Result<Vec<f32>> {
        self.validate()?;
        let mut inv_freq = rope_inv_freq(head_dim, base)?;
        inv_freq.iter_mut().for_each(|f| *f /= self.factor);
        Ok(inv_freq)
    }
}

impl YarnScaling {
    /// gpt-oss's values (`GptOssConfig`'s default, and its checkpoints' config.json):
    /// factor 32, beta 32 / 1, truncate false, original context 4096. (Its `rope_theta`,
    /// 150 000, is the `base` of [`Rope::with_scaling`].)
    pub const GPT_OSS: Self = Self {
        factor: 32.0,
        original_max_position_embeddings: 4096,
        beta_fast: 32.0,
        beta_slow: 1.0,
        truncate: false,
        mscale: None,
        mscale_all_dim: None,
        attention_factor: None,
    };
    /// DeepSeek-V3's values (its config.json): factor 40, mscale = mscale_all_dim = 1,
    /// beta 32 / 1, original context 4096, truncate absent (so true). (`rope_theta` 10 000;
    /// the rotated part of each head is `qk_rope_head_dim` = 64 wide.)
    pub const DEEPSEEK_V3: Self = Self {
        factor: 40.0,
        original_max_position_embeddings: 4096,
        beta_fast: 32.0,
        beta_slow: 1.0,
        truncate: true,
        mscale: Some(1.0),
        mscale_all_dim: Some(1.0),
        attention_factor: None,
    };

    /// Checks the parameters; an error names the field (`rope_scaling.factor must be
    /// ...`).
    ///
    /// Refused: a `factor` below 1 or not finite (transformers warns and goes on);
    /// `original_max_position_embeddings` 0 and `beta_fast`, `beta_slow` not finite or
    /// `<= 0` (transformers fails inside `math.log`; it reads 0 as the default, which this
    /// struct cannot tell from a value, so give the default yourself); `beta_fast <
    /// beta_slow` (transformers' rule, for which it only warns: the ramp would run
    /// backwards); `mscale` or `mscale_all_dim` negative or not finite; an explicit
    /// `attention_factor` `<= 0` or not finite (0 would zero every rotated dimension); and
    /// any combination whose attention factor is not a finite f32 > 0. Equal betas are
    /// accepted, as in transformers: the ramp becomes a step.
    pub fn validate(&self) -> Result<()> {
        self.check("rope_scaling")
    }

    /// [`YarnScaling::validate`] with the fields named under `scope` (a config's key for
    /// them).
    pub(crate) fn check(&self, scope: &str) -> Result<()> {
        let bad = |field: &str, rule: &str, got: String| {
            Err(AttnError::Config(format!("{scope}.{field} must be {rule}, got {got}")))
        };
        if !(self.factor.is_finite() && self.factor >= 1.0) {
            return bad("factor", "a finite number >= 1", self.factor.to_string());
        }
        if self.original_max_position_embeddings == 0 {
            return bad("original_max_position_embeddings", "at least 1", "0".into());
        }
        if !(self.beta_slow.is_finite() && self.beta_slow > 0.0) {
            return bad("beta_slow", "a finite number > 0", self.beta_slow.to_string());
        }
        if !self.beta_fast.is_finite() {
            return bad("beta_fast", "a finite number", self.beta_fast.to_string());
        }
        if self.beta_fast < self.beta_slow {
            let rule = format!("at least beta_slow = {}", self.beta_slow);
            return bad("beta_fast", &rule, self.beta_fast.to_string());
        }
        for (field, value) in
            [("mscale", self.mscale), ("mscale_all_dim", self.mscale_all_dim)]
        {
            if let Some(m) = value.filter(|m| !(m.is_finite() && *m >= 0.0)) {
                return bad(field, "a finite number >= 0", m.to_string());
            }
        }
        if let Some(a) = self.attention_factor.filter(|a| !(a.is_finite() && *a > 0.0)) {
            return bad("attention_factor", "a finite number > 0", a.to_string());
        }
        let a = self.attention_factor();
        if !(a.is_finite() && a > 0.0) {
            let rule = "such that the attention factor is a finite f32 > 0";
            return bad("mscale", rule, format!("attention factor {a}"));
        }
        Ok(())
    }

    // ANCHOR: yarn_attention_factor
    /// The factor transformers multiplies the cos and sin tables by (its
    /// `attention_scaling`): the explicit `attention_factor` if set; else
    /// `yarn_get_mscale(factor, mscale) / yarn_get_mscale(factor, mscale_all_dim)`
    /// if both are set and nonzero; else
    /// `yarn_get_mscale(factor, 1) = 0.1 · ln(factor) + 1`. Computed in f64 like
    /// Python, rounded once to f32 as torch does at `cos * factor`.
    pub fn attention_factor(&self) -> f32 {
        if let Some(a) = self.attention_factor {
            return a;
        }
        let s = self.factor as f64;
        let factor = match (self.mscale, self.mscale_all_dim) {
            // Python's `if mscale and mscale_all_dim`: 0 counts as unset
            (Some(m), Some(m_all)) if m != 0.0 && m_all != 0.0 => {
                yarn_get_mscale(s, m as f64) / yarn_get_mscale(s, m_all as f64)
            }
            _ => yarn_get_mscale(s, 1.0),
        };
        factor as f32
    }
    // ANCHOR_END: yarn_attention_factor

    // ANCHOR: yarn_correction_range
    /// The correction range `(low, high)` for a head of width `head_dim` and frequency
    /// base `base`: pairs `i <= low` keep their frequency, pairs `i >= high` are divided
    /// by `factor`, and the ramp blends those in between.
    ///
    /// Pair `i` turns `r_i = original · base^(-2i/head_dim) / 2π` times over the
    /// original context; solving `r_i = β` for `i` gives
    /// `head_dim · ln(original / (β · 2π)) / (2 · ln base)`. `low` is that index for
    /// `β = beta_fast`, `high` for `beta_slow`; with `truncate` they are floored /
    /// ceiled; then clamped, `low` to `>= 0` and `high` to `<= head_dim − 1`. In f64,
    /// like transformers' `find_correction_range` (Python floats). (When the two ends
    /// come out equal, [`YarnScaling::inv_freq`] adds 0.001 to `high`.)
    pub fn correction_range(&self, head_dim: usize, base: f32) -> Result<(f64, f64)> {
        self.validate()?;
        check_rope_params(head_dim, base)?;
        let (d, original) =
            (head_dim as f64, self.original_max_position_embeddings as f64);
        let base = base as f64;
        // the same operations in the same order as transformers' `find_correction_dim`
        let dim_for = |rotations: f64| {
            (d * (original / (rotations * 2.0 * std::f64::consts::PI)).ln())
                / (2.0 * base.ln())
        };
        let (mut low, mut high) =
            (dim_for(self.beta_fast as f64), dim_for(self.beta_slow as f64));
        if self.truncate {
            (low, high) = (low.floor(), high.ceil());
        }
        Ok((low.max(0.0), high.min(d - 1.0)))
    }
    // ANCHOR_END: yarn_correction_range

    // ANCHOR: yarn_inv_freq
    /// The YaRN inverse frequencies for a head of width `head_dim` (even) and frequency
    /// base `base` (`rope_theta`), one per pair: `θ_i / factor` (interpolated) and `θ_i`
    /// (extrapolated) blended by a linear ramp over the pair index `i` between the ends
    /// of [`YarnScaling::correction_range`].
    ///
    /// transformers 5.24's steps, in the same precision: its tensors are f32, so the
    /// powers, quotients, ramp and blend are f32 operations; the correction range is
    /// Python floats, f64. It blends with the *extrapolation mask* `1 − ramp` (1 keeps
    /// `θ_i`), as `interpolation · (1 − mask) + extrapolation · mask`: with f32
    /// rounding, `1 − (1 − ramp)` is not always `ramp`, so the mask is kept as it is
    /// written there.
    pub fn inv_freq(&self, head_dim: usize, base: f32) -> Result<Vec<f32>> {
        let (low, mut high) = self.correction_range(head_dim, base)?;
        if low == high {
            high += 0.001; // transformers' "prevent singularity"
        }
        // `arange(...) - low` rounds `low` to f32; `high - low` is a Python
        // subtraction, in f64
        let (low, span) = (low as f32, (high - low) as f32);
        Ok(rope_powers(head_dim, base)?
            .into_iter()
            .enumerate()
            .map(|(i, power)| {
                let extrapolation = 1.0 / power; // θ_i, as in `rope_inv_freq`
                let interpolation = 1.0 / (self.factor * power); // θ_i / factor
                let ramp = ((i as f32 - low) / span).clamp(0.0, 1.0);
                let mask = 1.0 - ramp; // 1: keep θ_i, 0: divide it by `factor`
                interpolation * (1.0 - mask) + extrapolation * mask
            })
            .collect())
    }
    // ANCHOR_END: yarn_inv_freq
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

/// The powers `base^(2i/head_dim)` whose reciprocals [`rope_inv_freq`] returns, by the same
/// steps (an f32 exponent, the f64 power rounded once to f32): YaRN needs them before the
/// division, for `1 / (factor · power)`.
///
/// PyTorch's own f32 power (`theta ** exponent`, SLEEF's on x86 CPUs) is accurate to 1
/// ulp, not always correctly rounded: for gpt-oss's base 150 000 and head_dim 64 it differs
/// from this one at pairs 6 and 10 (`scripts/gen_yarn_fixtures.py` records where).
fn rope_powers(head_dim: usize, base: f32) -> Result<Vec<f32>> {
    check_rope_params(head_dim, base)?;
    crate::support::error::checked_len("RoPE powers", &[head_dim / 2])?;
    Ok((0..head_dim / 2)
        .map(|i| {
            let exponent = (2 * i) as f32 / head_dim as f32;
            (base as f64).powf(exponent as f64) as f32
        })
        .collect())
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

impl Rope {
    // ANCHOR: rope_with_scaling
    /// Tables like [`Rope::new`]'s, with any [`RopeScaling`] (or none): Llama 3's builds
    /// exactly what `Rope::new(head_dim, max_positions, base, Some(s))` does; YaRN's uses
    /// [`YarnScaling::inv_freq`] and multiplies every cos and sin by
    /// [`YarnScaling::attention_factor`], as transformers does (`cos = emb.cos() *
    /// attention_scaling`). `head_dim` is the width RoPE rotates: DeepSeek-V3's
    /// `qk_rope_head_dim`, not its whole query head.
    pub fn with_scaling(
        head_dim: usize,
        max_positions: usize,
        base: f32,
        scaling: Option<RopeScaling>,
    ) -> Result<Self> {
        match scaling {
            None => Self::new(head_dim, max_positions, base, None),
            Some(RopeScaling::Llama3(s)) => {
                Self::new(head_dim, max_positions, base, Some(s))
            }
            Some(RopeScaling::Yarn(y)) => {
                nonzero("max_positions", max_positions)?;
                let inv_freq = y.inv_freq(head_dim, base)?; // validates `y` and the head
                Self::scaled_tables(
                    head_dim,
                    max_positions,
                    inv_freq,
                    y.attention_factor(),
                )
            }
        }
    }
    // ANCHOR_END: rope_with_scaling

    /// Tables like [`Rope::new`]'s with [`LinearScaling`]: every `θ_i` divided by the
    /// factor ([`LinearScaling::inv_freq`]), the tables not multiplied by anything (their
    /// [`Rope::attention_factor`] is 1), as transformers' linear RoPE (its
    /// `attention_factor` is 1.0). For Gemma 3, build its full-attention layers' tables
    /// with this and its sliding layers' with [`Rope::new`] at their own base.
    pub fn with_linear_scaling(
        head_dim: usize,
        max_positions: usize,
        base: f32,
        scaling: LinearScaling,
    ) -> Result<Self> {
        nonzero("max_positions", max_positions)?;
        let inv_freq = scaling.inv_freq(head_dim, base)?; // validates `scaling`, the head
        // `cos · 1.0` is `cos` exactly: the same tables as `Rope::new` would build
        Self::scaled_tables(head_dim, max_positions, inv_freq, 1.0)
    }

    /// The tables of `inv_freq` (one per pair) for positions `0 .. max_positions`, each
    /// entry multiplied by `attention_factor`: the f32 product `cos(pos · θ_i) · factor`,
    /// as transformers forms `emb.cos() * self.attention_scaling`.
    fn scaled_tables(
        head_dim: usize,
        max_positions: usize,
        inv_freq: Vec<f32>,
        attention_factor: f32,
    ) -> Result<Self> {
        let half = head_dim / 2;
        // (max_positions, head_dim/2) each, the size checked before anything is allocated
        let (mut cos, mut sin) = zero_tables(max_positions, half)?;
        for pos in 0..max_positions {
            for (i, &f) in inv_freq.iter().enumerate() {
                let angle = pos as f32 * f; // the f32 product, as in `Rope::new`
                cos[pos * half + i] = angle.cos() * attention_factor;
                sin[pos * half + i] = angle.sin() * attention_factor;
            }
        }
        let layout = RopeLayout::SplitHalves;
        Ok(Self { head_dim, max_positions, layout, inv_freq, cos, sin })
    }

    /// The factor the tables were multiplied by: YaRN's attention factor, 1 for unscaled,
    /// Llama 3 and linear tables. Read back from the table itself: position 0 turns by
    /// angle 0 and `cos 0 = 1` exactly, so entry `(0, 0)` of the cos table is `1 ·
    /// factor`, exactly the factor.
    pub fn attention_factor(&self) -> f32 {
        self.cos[0]
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Linear scaling divides each unscaled `θ_i` once, in f32: factor 8 (a power of
    /// two) only moves the exponent, and another factor rounds the quotient as f32
    /// division does. (The fixtures `gemma3_*_linear` pin it to transformers' bits:
    /// `tests/variants_hf.rs`.)
    #[test]
    fn linear_scaling_divides_every_frequency_once() -> Result<()> {
        for (head_dim, base, factor) in [(8, 1e6, 8.0), (10, 1e4, 3.0), (256, 1e6, 8.0)] {
            let plain = rope_inv_freq(head_dim, base)?;
            let scaled = LinearScaling { factor }.inv_freq(head_dim, base)?;
            assert_eq!(scaled.len(), head_dim / 2);
            for (i, (&s, &p)) in scaled.iter().zip(&plain).enumerate() {
                assert_eq!(s, p / factor, "{head_dim} {base} {factor}: pair {i}");
            }
            if factor == 8.0 {
                let times8: Vec<f32> = scaled.iter().map(|s| s * 8.0).collect();
                assert_eq!(times8, plain, "a power of two: exact");
            }
        }
        Ok(())
    }

    /// The tables turn position `p` by the unscaled angles of `p / factor` (exactly, at
    /// positions that are multiples of a power-of-two factor), carry no attention factor,
    /// and factor 1 is `Rope::new`'s tables bit for bit.
    #[test]
    fn linear_tables_are_the_unscaled_ones_at_p_over_factor() -> Result<()> {
        let (head_dim, base) = (12, 10_000.0);
        let plain = Rope::new(head_dim, 400, base, None)?;
        let one = Rope::with_linear_scaling(
            head_dim,
            400,
            base,
            LinearScaling { factor: 1.0 },
        )?;
        assert_eq!(one, plain);
        let eight =
            Rope::with_linear_scaling(head_dim, 400, base, LinearScaling::GEMMA_3)?;
        assert_eq!((eight.attention_factor(), eight.max_positions()), (1.0, 400));
        for pos in [0, 8, 96, 392] {
            for i in 0..head_dim / 2 {
                assert_eq!(
                    eight.cos_sin(pos, i)?,
                    plain.cos_sin(pos / 8, i)?,
                    "{pos} {i}"
                );
            }
        }
        Ok(())
    }

    /// A factor below 1, not finite, or a bad head, base or size is an error naming it,
    /// never a panic or an abort.
    #[test]
    fn bad_linear_scaling_is_an_error() {
        for factor in [0.5, 0.0, -8.0, f32::NAN, f32::INFINITY] {
            let e = LinearScaling { factor }.validate().unwrap_err().to_string();
            assert!(
                e.contains("rope_scaling.factor must be a finite number >= 1"),
                "{e}"
            );
            let e = Rope::with_linear_scaling(8, 4, 1e4, LinearScaling { factor });
            assert!(matches!(e, Err(AttnError::Config(_))), "{e:?}");
        }
        let s = LinearScaling::GEMMA_3;
        assert!(matches!(s.inv_freq(7, 1e4), Err(AttnError::OddHeadDim { head_dim: 7 })));
        assert!(s.inv_freq(8, 1.0).unwrap_err().to_string().contains("rope_theta"));
        assert!(Rope::with_linear_scaling(8, 0, 1e4, s).is_err());
        // the table size is checked before anything is allocated
        assert!(Rope::with_linear_scaling(64, usize::MAX, 1e4, s).is_err());
        assert!(Rope::with_linear_scaling(64, 1 << 40, 1e4, s).is_err());
    }
}
