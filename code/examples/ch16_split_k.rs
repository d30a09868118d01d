//! Chapter 16: split-K decode of one token over 1037 cached positions, 1 to 5 splits on
//! 1, 2 and 4 threads: equal to `grouped_attention` within rounding, and for a fixed
//! number of splits the same bits on any number of threads.
extern crate attention;
extern crate nalgebra;
// ANCHOR: example
use attention::parallel::split_k::{SplitKDecode, split_ranges};
use attention::{AttentionInputs, HeadLayout, grouped_attention, splitmix_matrix};

fn main() -> Result<(), attention::AttnError> {
    let heads = HeadLayout::new(8, 2, 16)?; // GQA 8/2, head_dim 16
    let q = splitmix_matrix(1, 1, heads.q_dim(), 2.0); // (1, 128): the new token
    let k = splitmix_matrix(2, 1037, heads.kv_dim(), 2.0); // (1037, 32): it is the last
    let v = splitmix_matrix(3, 1037, heads.kv_dim(), 2.0);
    let (kv, offset) = ((k.as_view(), v.as_view()), 1036); // 1036 positions before it
    let x = AttentionInputs { q: &q, k: kv.0, v: kv.1, heads, query_offset: offset };
    let want = grouped_attention(&q, kv.0, kv.1, heads, offset)?;
    println!("splits  keys per split  vs grouped_attention   2 and 4 threads vs 1");
    for splits in 1..=5 {
        let one = SplitKDecode::new(splits, 1)?.forward(x)?;
        let more =
            [2, 4].map(|t| SplitKDecode::new(splits, t).and_then(|s| s.forward(x)));
        let same_bits = more.iter().all(|m| m.as_ref().is_ok_and(|m| *m == one));
        let lens: Vec<usize> =
            split_ranges(1037, splits).iter().map(|r| r.len()).collect();
        print_row(splits, &lens, &one, &want, same_bits);
    }
    Ok(())
}
// ANCHOR_END: example

use nalgebra::DMatrix;

/// One line of the table: the split lengths, the largest difference from
/// `grouped_attention` (checked, and printed as its bound: the last bits depend on the
/// CPU), and whether more threads gave the same bits (checked: the chapter promises it).
fn print_row(
    splits: usize,
    lens: &[usize],
    got: &DMatrix<f32>,
    want: &DMatrix<f32>,
    same: bool,
) {
    let diff = attention::max_abs_diff(got.as_slice(), want.as_slice());
    assert!(diff < 1e-6 && same, "{splits} splits: {diff}, same bits {same}");
    let (lo, hi) = (lens.iter().min().unwrap(), lens.iter().max().unwrap());
    let lens = if lo == hi { format!("{lo}") } else { format!("{lo} or {hi}") };
    let bits = if same { "same bits" } else { "other bits" };
    println!("{splits:>6}  {lens:>14}  {:>18}   {bits:>20}", "< 1e-6");
}
