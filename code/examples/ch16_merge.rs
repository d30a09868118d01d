//! Chapter 16: partial attention states over three blocks of keys. Merged, they give
//! attention over all the keys; the running maximum and sum are chapter 8's online
//! softmax; the merge commutes bit for bit and associates within rounding.
extern crate attention;
extern crate nalgebra;
// ANCHOR: example
use attention::parallel::partial::{PartialAttention, attend_block, merge};
use attention::{AttentionInputs, HeadLayout, grouped_attention, splitmix_matrix};

fn main() -> Result<(), attention::AttnError> {
    let heads = HeadLayout::new(6, 2, 10)?; // GQA 6/2, head_dim 10
    let q = splitmix_matrix(1, 3, 60, 2.0); // 3 queries, at positions 10, 11, 12
    let (k, v) = (splitmix_matrix(2, 13, 20, 2.0), splitmix_matrix(3, 13, 20, 2.0));
    let state = |first: usize, len: usize| -> Result<PartialAttention, _> {
        let (k, v) = (k.rows(first, len), v.rows(first, len));
        attend_block(AttentionInputs { q: &q, k, v, heads, query_offset: 10 }, first)
    };
    let (a, b, c) = (state(0, 4)?, state(4, 1)?, state(5, 8)?); // keys 0..4, 4, 5..13
    let (ab, ba) = (merge(&a, &b)?, merge(&b, &a)?);
    let (ab_c, a_bc) = (merge(&ab, &c)?, merge(&a, &merge(&b, &c)?)?);
    print_states(&[("keys 0..4", &a), ("key 4", &b), ("keys 5..13", &c)], &ab_c);
    compare_with_online_softmax(&q, &k, &ab_c); // chapter 8, query 0, head 0
    println!("merge(a, b) == merge(b, a), bit for bit: {}", ab == ba);
    println!("(a ⊕ b) ⊕ c vs a ⊕ (b ⊕ c): {}", bound(&ab_c.finish(), &a_bc.finish()));
    let whole = grouped_attention(&q, k.as_view(), v.as_view(), heads, 10)?;
    println!("(a ⊕ b) ⊕ c vs grouped_attention: {}", bound(&ab_c.finish(), &whole));
    Ok(())
}
// ANCHOR_END: example

use attention::fast::online_softmax::online_softmax_step;
use nalgebra::DMatrix;

/// Query 0's `m` and `ℓ` in head 0 for each block's state and for the merged one. Query 0
/// sits at position 10: in the last block it sees keys 5 to 10, not 11 and 12.
fn print_states(blocks: &[(&str, &PartialAttention)], merged: &PartialAttention) {
    println!("query 0, head 0          m        ℓ");
    for (name, s) in blocks.iter().copied().chain([("merged", merged)]) {
        println!("{name:<18}{:>9.4}{:>9.4}", s.max()[(0, 0)], s.sum()[(0, 0)]);
    }
}

/// Chapter 8's `online_softmax_step` over the same scores of query 0, head 0 (KV head
/// 0), in the same blocks: its final running maximum and sum are the merged state's.
fn compare_with_online_softmax(
    q: &DMatrix<f32>,
    k: &DMatrix<f32>,
    merged: &PartialAttention,
) {
    let (q0, k0) = (q.view((0, 0), (1, 10)), k.columns(0, 10));
    let scores: Vec<f32> = k0.row_iter().map(|kj| q0.dot(&kj) / 10f32.sqrt()).collect();
    let (mut m, mut l) = (f32::NEG_INFINITY, 0.0);
    for (first, len) in [(0, 4), (4, 1), (5, 8)] {
        let mut block = scores[first..first + len].to_vec();
        let visible = (10 + 1 - first).min(len); // query 0 sees keys up to 10
        online_softmax_step(&mut block, visible, &mut m, &mut l);
    }
    let (mm, ml) = (merged.max()[(0, 0)], merged.sum()[(0, 0)]);
    assert!(m == mm && (l - ml).abs() < 1e-5 * l, "{m} {l} vs {mm} {ml}");
    println!("{:<18}{m:>9.4}{l:>9.4}   (chapter 8, same blocks)", "online softmax");
}

/// `< 1e-6` once the largest difference is checked to be below it (the last bits depend
/// on the CPU's instructions, the bound does not).
fn bound(a: &DMatrix<f32>, b: &DMatrix<f32>) -> &'static str {
    let diff = attention::max_abs_diff(a.as_slice(), b.as_slice());
    assert!(diff < 1e-6, "{diff}");
    "largest difference < 1e-6"
}
