//! Chapter 16: ring attention of a whole GQA layer over 23 tokens, on 1 to 4 devices in
//! even blocks and on 4 devices in uneven ones: equal to the layer within rounding, the
//! bytes each device sent counted and compared with the formula, and the schedule.
extern crate attention;
extern crate nalgebra;
extern crate rand;
// ANCHOR: example
use attention::parallel::ring::{RingAttention, ring_bytes_per_device, ring_schedule};
use attention::{Batch, GroupedQueryAttention, Rope, splitmix_matrix};
use rand::{SeedableRng, rngs::StdRng};

fn main() -> Result<(), attention::AttnError> {
    let rope = Rope::new(6, 64, 500_000.0, None)?;
    let mut rng = StdRng::seed_from_u64(16);
    let layer = GroupedQueryAttention::random(48, 48, 8, 4, Some(rope), &mut rng)?;
    let x = splitmix_matrix(1, 23, 48, 1.0); // 23 tokens, from position 0
    let want = layer.forward(&Batch::single(x.clone()), 0, None)?;
    println!("blocks          vs layer  bytes sent per device (= formula)");
    let uneven = RingAttention::with_blocks(vec![9, 2, 7, 5])?;
    for ring in (1..=4).map(|d| RingAttention::even(23, d)).chain([Ok(uneven)]) {
        let ring = ring?;
        let (got, traffic) = ring.forward_layer(&layer, &x, 0)?; // (23, 48)
        let formula = ring_bytes_per_device(ring.blocks(), layer.heads().kv_dim(), 4);
        print_row(ring.blocks(), &got, &want.items()[0], &traffic.bytes_sent, &formula);
    }
    println!("block held at each step, 4 devices (* = computed, - = skipped: future):");
    for (step, held) in ring_schedule(4).iter().enumerate() {
        print_step(step, held);
    }
    Ok(())
}
// ANCHOR_END: example

use attention::parallel::ring::{BlockUse, block_use};
use nalgebra::DMatrix;

/// One line of the table: the blocks, the largest difference from the layer (checked,
/// printed as its bound), the bytes each device sent (checked equal to the formula).
fn print_row(
    blocks: &[usize],
    got: &DMatrix<f32>,
    want: &DMatrix<f32>,
    sent: &[u64],
    f: &[u128],
) {
    let diff = attention::max_abs_diff(got.as_slice(), want.as_slice());
    assert!(diff < 1e-6, "{diff}");
    assert!(sent.iter().zip(f).all(|(&s, &f)| s as u128 == f), "{sent:?} vs {f:?}");
    println!("{:<15} {:>8}  {sent:?}", format!("{blocks:?}"), "< 1e-6");
}

/// One step of the schedule: for each device, the block it holds and what it does with
/// it.
fn print_step(step: usize, held: &[usize]) {
    let cells: Vec<String> = (held.iter().enumerate())
        .map(|(r, &b)| {
            let mark = if block_use(r, b) == BlockUse::Future { '-' } else { '*' };
            format!("device {r}: {b}{mark}")
        })
        .collect();
    println!("  step {step}  {}", cells.join("  "));
}
