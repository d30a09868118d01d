//! Chapter 16: a GQA layer (8 query heads over 4 KV heads) split over 1, 2 and 4
//! simulated devices: equal to the layer within rounding, with the bytes each device
//! sent counted and compared with the ring all-reduce formula; 3 devices are refused.
extern crate attention;
extern crate rand;
// ANCHOR: example
use attention::parallel::comm::all_reduce_bytes_per_device;
use attention::parallel::tensor::TensorParallel;
use attention::{Batch, GroupedQueryAttention, Rope, splitmix_matrix};
use rand::{SeedableRng, rngs::StdRng};

fn main() -> Result<(), attention::AttnError> {
    let rope = Rope::new(6, 64, 500_000.0, None)?;
    let mut rng = StdRng::seed_from_u64(16);
    let layer = GroupedQueryAttention::random(48, 48, 8, 4, Some(rope), &mut rng)?;
    let x = Batch::new((1..=2).map(|s| splitmix_matrix(s, 6, 48, 1.0)).collect())?;
    let want = layer.forward(&x, 0, None)?; // (2, 6, 48) on one device
    println!("devices  heads per device  vs layer   bytes sent per device  formula");
    for devices in [1, 2, 4] {
        let tp = TensorParallel::new(&layer, devices)?;
        let (got, traffic) = tp.forward(&x, 0, None)?; // one all-reduce of (2, 6, 48)
        let s = tp.shard(0).expect("device 0");
        let heads = format!("{} q / {} kv", s.n_heads(), s.n_kv_heads());
        let formula = all_reduce_bytes_per_device(2 * 6 * 48, devices, 4); // f32
        print_row(devices, &heads, &got, &want, &traffic.bytes_sent, formula);
    }
    let err = TensorParallel::new(&layer, 3).expect_err("3 does not divide 4 KV heads");
    println!("3 devices: {err}");
    Ok(())
}
// ANCHOR_END: example

/// One line of the table: the largest difference from the layer (checked, printed as
/// its bound), the bytes every device sent (checked equal) and the formula's.
fn print_row(
    d: usize,
    heads: &str,
    got: &Batch,
    want: &Batch,
    sent: &[u64],
    formula: u128,
) {
    let diff = attention::max_abs_diff(&got.to_row_major(), &want.to_row_major());
    assert!(diff < 1e-6, "{diff}");
    assert!(sent.iter().all(|&b| b as u128 == formula), "{sent:?} vs {formula}");
    println!("{d:>7}  {heads:>16}  {:>8}  {:>21}  {formula:>7}", "< 1e-6", sent[0]);
}
