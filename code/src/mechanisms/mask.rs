//! The causal mask: a token may attend to itself and to the tokens before it, never
//! after.

use nalgebra::DMatrix;

use crate::support::error::{AttnError, Result};

/// Checks that `n_queries` new tokens whose first sees keys `0 ..= query_offset` fit into
/// `n_keys` keys: the newest query's own key must be there. The sum is checked, so a
/// `query_offset` near `usize::MAX` is an error, not a wrapped, silently wrong mask.
pub(crate) fn check_causal(
    n_queries: usize,
    n_keys: usize,
    query_offset: usize,
) -> Result<()> {
    if query_offset.checked_add(n_queries).is_none_or(|needed| needed > n_keys) {
        return Err(AttnError::MissingKeys { n_queries, query_offset, n_keys });
    }
    Ok(())
}

// ANCHOR: causal_mask
/// The additive causal mask of shape `(n_queries, n_keys)`: `0` where query `i` may look
/// at key `j`, `-inf` where it may not. Add it to the scores before the softmax.
///
/// Query row `i` sits `query_offset + i` rows into the keys and sees keys `j <=
/// query_offset + i`. With `query_offset = 0` and a square shape this is the familiar
/// upper triangle of `-inf`. With a KV cache the new queries sit at the **end** of the
/// key range ("bottom-right" alignment): `query_offset` is the number of keys cached
/// before them. PyTorch's `is_causal=True` aligns top-left instead when the shapes
/// differ, a classic source of wrong decodes.
///
/// Errors when `query_offset + n_queries > n_keys`: the newest query's own key would be
/// missing.
pub fn causal_mask(
    n_queries: usize,
    n_keys: usize,
    query_offset: usize,
) -> Result<DMatrix<f32>> {
    check_causal(n_queries, n_keys, query_offset)?;
    let mut mask =
        crate::support::error::try_zero_matrix("causal_mask", n_queries, n_keys)?;
    apply_causal_mask(&mut mask, query_offset)?;
    Ok(mask)
}
// ANCHOR_END: causal_mask

// ANCHOR: apply_causal_mask
/// Sets `scores[(i, j)] = -inf` for every key `j` after query `i`'s own key
/// `query_offset + i`, in place. Same rule as [`causal_mask`], without allocating the
/// mask.
pub fn apply_causal_mask(scores: &mut DMatrix<f32>, query_offset: usize) -> Result<()> {
    let (n_queries, n_keys) = scores.shape();
    check_causal(n_queries, n_keys, query_offset)?; // so query_offset < n_keys below
    // Key j is in the future of queries i with query_offset + i < j: the first j -
    // query_offset rows of column j. Column by column, because nalgebra stores each
    // column contiguously.
    for j in (query_offset + 1)..n_keys {
        let hidden = (j - query_offset).min(n_queries);
        scores.column_mut(j).as_mut_slice()[..hidden].fill(f32::NEG_INFINITY);
    }
    Ok(())
}
// ANCHOR_END: apply_causal_mask
