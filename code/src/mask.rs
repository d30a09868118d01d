//! The causal mask: a token may attend to itself and to the tokens before it, never after.

use nalgebra::DMatrix;

use crate::error::{AttnError, Result};

/// Checks that `n_queries` new tokens starting at `start_pos` fit into `n_keys` keys.
pub(crate) fn check_causal(n_queries: usize, n_keys: usize, start_pos: usize) -> Result<()> {
    if start_pos + n_queries > n_keys {
        return Err(AttnError::Shape {
            context: format!("causal mask for {n_queries} queries at start_pos {start_pos}"),
            expected: format!("at least {} keys (start_pos + n_queries)", start_pos + n_queries),
            got: format!("{n_keys} keys"),
        });
    }
    Ok(())
}

// ANCHOR: causal_mask
/// The additive causal mask of shape `(n_queries, n_keys)`: `0` where query `i` may look at key `j`,
/// `-inf` where it may not. Add it to the scores before the softmax.
///
/// Query row `i` is the token at absolute position `start_pos + i`; it sees keys `j <= start_pos + i`.
/// With `start_pos = 0` and a square shape this is the familiar upper triangle of `-inf`. With a KV
/// cache the new queries sit at the **end** of the key range ("bottom-right" alignment). PyTorch's
/// `is_causal=True` aligns top-left instead when the shapes differ, a classic source of wrong decodes.
///
/// Errors when `start_pos + n_queries > n_keys`: the newest query's own key would be missing.
pub fn causal_mask(n_queries: usize, n_keys: usize, start_pos: usize) -> Result<DMatrix<f32>> {
    check_causal(n_queries, n_keys, start_pos)?;
    Ok(DMatrix::from_fn(n_queries, n_keys, |i, j| if j <= start_pos + i { 0.0 } else { f32::NEG_INFINITY }))
}
// ANCHOR_END: causal_mask

// ANCHOR: apply_causal_mask
/// Sets `scores[(i, j)] = -inf` for every key `j` after query `i`'s position `start_pos + i`, in place.
///
/// Same rule as [`causal_mask`], without allocating the mask.
pub fn apply_causal_mask(scores: &mut DMatrix<f32>, start_pos: usize) -> Result<()> {
    let (n_queries, n_keys) = scores.shape();
    check_causal(n_queries, n_keys, start_pos)?;
    // Key j is in the future of queries i with start_pos + i < j: the first j - start_pos rows of
    // column j. Column by column, because nalgebra stores each column contiguously.
    for j in (start_pos + 1)..n_keys {
        let hidden = (j - start_pos).min(n_queries);
        scores.column_mut(j).as_mut_slice()[..hidden].fill(f32::NEG_INFINITY);
    }
    Ok(())
}
// ANCHOR_END: apply_causal_mask
