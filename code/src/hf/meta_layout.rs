//! RoPE's second layout: Meta's interleaved pairs, and the weight permutation that maps
//! it to split-halves.
//!
//! RoPE rotates pairs of dimensions of each head. *Which* dimensions form a pair is a
//! convention:
//!
//! - **split-halves** (Hugging Face, Raschka, candle's `rope`;
//!   [`RopeLayout::SplitHalves`]): pair `i` is dimensions `(i, i + head_dim/2)`;
//! - **interleaved** (Meta's original `model.py`, llama.cpp's GGUF, llama2.c;
//!   [`RopeLayout::Interleaved`]): pair `i` is dimensions `(2i, 2i + 1)`.
//!
//! The layout is a field of [`Rope`](crate::Rope)
//! ([`Rope::with_layout`](crate::Rope::with_layout)): a layer with interleaved tables
//! runs Meta's weights as they are.
//!
//! Both rotate pair `i` by `pos · θ_i`. For the same weights they give different numbers.
//! But a query is a projection `x · W_qᵀ`: reordering the **rows** of `W_q` reorders the
//! query's dimensions, so moving row `2i + j` of each head to row `j·head_dim/2 + i`
//! turns Meta's pairs into split-halves pairs. That is the `permute` in transformers'
//! `convert_llama_weights_to_hf.py` ([`permute_meta_to_hf`]); Hugging Face checkpoints
//! are stored permuted. Queries and keys are permuted the same way, so their dot
//! products, and the attention output, do not change.

use nalgebra::DMatrix;

use crate::mechanisms::linear::Linear;
#[cfg(doc)]
use crate::mechanisms::rope::RopeLayout;
use crate::support::error::{AttnError, Result, divisible};

/// Reorders the output rows (weight rows and bias entries) of a q or k projection head by
/// head: new row `head·head_dim + r` is old row `head·head_dim + from(r)`.
fn permute_rows(
    lin: &Linear,
    n_heads: usize,
    from: impl Fn(usize, usize) -> usize,
) -> Result<Linear> {
    let rows = lin.out_features();
    divisible("q/k projection rows", rows, "n_heads", n_heads)?;
    let head_dim = rows / n_heads;
    if !head_dim.is_multiple_of(2) {
        return Err(AttnError::OddHeadDim { head_dim });
    }
    let source = |r: usize| (r / head_dim) * head_dim + from(r % head_dim, head_dim / 2);
    let weight =
        DMatrix::from_fn(rows, lin.in_features(), |r, c| lin.weight()[(source(r), c)]);
    let bias = lin.bias().as_ref().map(|b| b.map_with_location(|r, _, _| b[source(r)]));
    Linear::new(weight, bias)
}

// ANCHOR: permute_meta_to_hf
/// Meta's q or k projection (`n_heads` heads, interleaved pairs) -> Hugging Face's
/// (split-halves pairs).
///
/// Within each head, new row `j·head_dim/2 + i` is old row `2i + j` (`j` in {0, 1}): the
/// two members of pair `i`, neighbours in Meta's layout, move half a head apart. This is
/// transformers' `w.view(n_heads, head_dim // 2, 2, d_in)`
/// `.transpose(1, 2).reshape(n_heads * head_dim, d_in)`.
/// Use `n_heads` for `wq` and `n_kv_heads` for `wk`; `wv` and `wo` are not permuted.
pub fn permute_meta_to_hf(lin: &Linear, n_heads: usize) -> Result<Linear> {
    permute_rows(lin, n_heads, |r, half| {
        let (j, i) = (r / half, r % half); // new row j·half + i
        2 * i + j // comes from old row 2i + j
    })
}
// ANCHOR_END: permute_meta_to_hf

/// The inverse of [`permute_meta_to_hf`]: a Hugging Face q or k projection back in Meta's
/// row order (new row `2i + j` is old row `j·head_dim/2 + i`).
pub fn permute_hf_to_meta(lin: &Linear, n_heads: usize) -> Result<Linear> {
    permute_rows(lin, n_heads, |r, half| {
        let (i, j) = (r / 2, r % 2); // new row 2i + j
        j * half + i // comes from old row j·half + i
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mechanisms::rope::{Rope, RopeLayout};
    use rand::{SeedableRng, rngs::StdRng};

    #[test]
    fn permutations_are_inverse_and_move_rows_as_transformers_does() {
        // 2 heads of 6: rows r -> value r, so the permuted weight shows where each row
        // went
        let lin = Linear::new(DMatrix::from_fn(12, 5, |r, c| (10 * r + c) as f32), None)
            .unwrap();
        let hf = permute_meta_to_hf(&lin, 2).unwrap();
        let rows: Vec<f32> = hf.weight().column(0).iter().map(|v| v / 10.0).collect();
        // head 0: Meta rows (0,1) (2,3) (4,5) are pairs; HF rows 0..3 hold their first
        // members
        assert_eq!(rows, [0.0, 2.0, 4.0, 1.0, 3.0, 5.0, 6.0, 8.0, 10.0, 7.0, 9.0, 11.0]);
        assert_eq!(permute_hf_to_meta(&hf, 2).unwrap(), lin);
        assert!(matches!(
            permute_meta_to_hf(&lin, 5),
            Err(AttnError::NotDivisible { .. })
        ));
        assert!(matches!(
            permute_meta_to_hf(&lin, 4),
            Err(AttnError::OddHeadDim { head_dim: 3 })
        ));
    }

    #[test]
    fn interleaved_rotation_is_split_halves_rotation_of_permuted_dimensions() {
        let rope = Rope::new(8, 40, 10_000.0, None).unwrap();
        let meta = rope.clone().with_layout(RopeLayout::Interleaved);
        let mut rng = StdRng::seed_from_u64(3);
        // rows of an identity "projection" are the dimensions themselves
        // (3, 16): 2 heads of 8
        let x = Linear::random(3, 16, false, &mut rng).unwrap().weight().transpose();
        let mut interleaved = x.clone();
        meta.apply(&mut interleaved, 31).unwrap();
        let eye = Linear::new(DMatrix::identity(16, 16), None).unwrap();
        // x · Pᵀ reorders the columns like the rows
        let p = permute_meta_to_hf(&eye, 2).unwrap().weight().clone();
        let mut split = &x * p.transpose();
        rope.apply(&mut split, 31).unwrap();
        let back = split * p; // P is a permutation: its inverse is its transpose
        assert!((back - interleaved).abs().max() < 1e-6);
        assert!(matches!(
            meta.apply(&mut x.clone(), 38),
            Err(AttnError::PositionOutOfRange { .. })
        ));
    }
}
