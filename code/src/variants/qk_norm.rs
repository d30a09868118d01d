//! QK-norm (Qwen3, Gemma 3): an RMSNorm over `head_dim` applied to every head of the
//! queries and of the keys, after the projections and before RoPE.

use nalgebra::DMatrix;

use crate::mechanisms::sdpa::HeadLayout;
use crate::support::error::{AttnError, Result, shape_err};

/// How an RMSNorm applies its learned weight `w` to the normalized `x̂`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum RmsNormStyle {
    /// `x̂ · w` (Llama, Qwen3); weights start at 1.
    #[default]
    Weight,
    /// `x̂ · (1 + w)` (Gemma); weights start at 0.
    OnePlusWeight,
}

// ANCHOR: qk_norm
/// Qwen3's and Gemma 3's QK-norm: an RMSNorm over `head_dim` with its own weights for the
/// queries and for the keys, shared by all heads, applied per head before RoPE.
#[derive(Clone, Debug, PartialEq)]
pub struct QkNorm {
    /// `q_norm.weight`, `head_dim` values.
    pub q_weight: Vec<f32>,
    /// `k_norm.weight`, `head_dim` values.
    pub k_weight: Vec<f32>,
    /// Added to the mean square before the root (`rms_norm_eps`).
    pub eps: f32,
    /// `x̂ · w` or `x̂ · (1 + w)`.
    pub style: RmsNormStyle,
}
// ANCHOR_END: qk_norm

impl QkNorm {
    /// Checks the weights against `head_dim` and the epsilon (finite, `>= 0`).
    pub fn validate(&self, head_dim: usize) -> Result<()> {
        for (name, w) in [("q_norm", &self.q_weight), ("k_norm", &self.k_weight)] {
            if w.len() != head_dim {
                let what = format!("QkNorm {name} weight (one per head_dim)");
                return Err(shape_err(what, &[Some(head_dim)], &[w.len()]));
            }
        }
        if !(self.eps.is_finite() && self.eps >= 0.0) {
            let msg =
                format!("rms_norm_eps must be a finite number >= 0, got {}", self.eps);
            return Err(AttnError::Config(msg));
        }
        Ok(())
    }

    /// Normalizes every head of `queries (seq, n_heads·head_dim)` and `keys (seq,
    /// n_kv_heads·head_dim)` in place.
    pub fn apply(
        &self,
        queries: &mut DMatrix<f32>,
        keys: &mut DMatrix<f32>,
        heads: HeadLayout,
    ) -> Result<()> {
        self.validate(heads.head_dim())?;
        rms_norm_rows(queries, heads.head_dim(), &self.q_weight, self.eps, self.style)?;
        rms_norm_rows(keys, heads.head_dim(), &self.k_weight, self.eps, self.style)
    }
}

// ANCHOR: rms_norm_rows
/// RMSNorm of every `width`-wide block of every row of `x`, in place: `x̂ = x /
/// √(mean(x²) + eps)`, then `x̂ · w` or `x̂ · (1 + w)`. With `width = head_dim`, each
/// block is one head of one token.
pub fn rms_norm_rows(
    x: &mut DMatrix<f32>,
    width: usize,
    weight: &[f32],
    eps: f32,
    style: RmsNormStyle,
) -> Result<()> {
    if width == 0 || weight.len() != width || !x.ncols().is_multiple_of(width) {
        let what =
            format!("rms_norm_rows: rows made of blocks of {} weights", weight.len());
        return Err(shape_err(what, &[None, Some(width)], &[x.nrows(), x.ncols()]));
    }
    let gain: Vec<f32> = match style {
        RmsNormStyle::Weight => weight.to_vec(),
        RmsNormStyle::OnePlusWeight => weight.iter().map(|w| 1.0 + w).collect(),
    };
    for r in 0..x.nrows() {
        for block in 0..x.ncols() / width {
            let cols = block * width..(block + 1) * width;
            let mean_sq =
                cols.clone().map(|c| x[(r, c)] * x[(r, c)]).sum::<f32>() / width as f32;
            // The norm keeps each head's vector at length about √head_dim, whatever
            // the projection did: q·k can no longer grow without bound.
            let inv_rms = 1.0 / (mean_sq + eps).sqrt();
            for (c, g) in cols.zip(&gain) {
                x[(r, c)] = x[(r, c)] * inv_rms * g;
            }
        }
    }
    Ok(())
}
// ANCHOR_END: rms_norm_rows
