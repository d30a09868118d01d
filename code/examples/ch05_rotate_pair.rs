//! Chapter 5: RoPE turns each pair of dimensions by pos·θ_i: a fast pair and a slow pair.
extern crate attention;
extern crate nalgebra;
// ANCHOR: example
use attention::Rope;
use nalgebra::DMatrix;

fn main() -> Result<(), attention::AttnError> {
    // a Llama 3.2 1B head: 32 pairs, pair i = (i, i + 32)
    let rope = Rope::new(64, 8192, 500_000.0, None)?;
    let mut x = DMatrix::zeros(1, 64); // one token; pairs 0 and 31 point along (1, 0)
    x[(0, 0)] = 1.0; // pair 0 = dimensions (0, 32)
    x[(0, 31)] = 1.0; // pair 31 = dimensions (31, 63)
    print!("position | pair 0 (θ = 1 rad)       angle | ");
    println!("pair 31 (θ = {:.3e})   angle", rope.inv_freq()[31]);
    let degrees = |(c, s): (f32, f32)| s.atan2(c).to_degrees(); // -180°..180°
    for pos in [0, 1, 2, 3, 100, 8191] {
        let mut r = x.clone();
        rope.apply(&mut r, pos)?; // the one row is the token at position `pos`
        let (fast, slow) = ((r[(0, 0)], r[(0, 32)]), (r[(0, 31)], r[(0, 63)]));
        let (df, ds) = (degrees(fast), degrees(slow));
        println!(
            "{pos:>8} | ({:7.4}, {:7.4}) {df:>8.2}° | ({:7.4}, {:7.4}) {ds:>8.4}°",
            fast.0, fast.1, slow.0, slow.1
        );
        check_pairs(&rope, pos, &r);
    }
    Ok(())
}
// ANCHOR_END: example

/// Each pair is the point (cos, sin) of its own angle `pos·θ_i`, as f32 computes it, and
/// the other 30 pairs stay at (0, 0).
fn check_pairs(rope: &Rope, pos: usize, r: &DMatrix<f32>) {
    let (fast, slow) = ((r[(0, 0)], r[(0, 32)]), (r[(0, 31)], r[(0, 63)]));
    for (i, (c, s)) in [(0, fast), (31, slow)] {
        let angle = pos as f32 * rope.inv_freq()[i];
        assert!((c - angle.cos()).abs() <= 1e-6 && (s - angle.sin()).abs() <= 1e-6);
    }
    // at position 0 the sines are 0: only the two 1s are left
    assert_eq!(r.iter().filter(|v| **v != 0.0).count(), 4 - usize::from(pos == 0) * 2);
}
