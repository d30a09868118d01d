//! Chapter 5: the crate's RoPE tables and rotation against PyTorch's, up to
//! position 8191.
extern crate attention;
extern crate nalgebra;
// ANCHOR: example
use attention::{Fixture, Rope};

fn main() -> Result<(), attention::AttnError> {
    // PyTorch: inv_freq = 1.0 / (500000.0 ** (torch.arange(0, 64, 2).float() / 64));
    // cos and sin of positions[:, None].float() * inv_freq; out = apply_rope(x, cos, sin)
    // for x = torch.randn(10, 64), row r at positions[r]
    let fx = Fixture::load("rope")?;
    let rope = Rope::new(64, 8192, fx.f32("rope_theta")?, None)?;
    let want = fx.tensor("inv_freq")?.data;
    assert_eq!(rope.inv_freq(), &want[..]); // every bit of every frequency
    println!("inv_freq, 32 values, bit-identical to PyTorch's:");
    for i in [0, 1, 16, 31] {
        println!("  θ_{i:<2} = {:.8e} (bits {:#010x})", want[i], want[i].to_bits());
    }
    let positions = [0, 1, 2, 7, 100, 1023, 2048, 4095, 5000, 8191]; // the fixture's
    println!("positions {positions:?}");
    // Bounds, not bits: the math libraries' cos and sin differ in the last bit at times
    assert!(max_table_diff(&fx, &rope, &positions)? <= 1e-6); // all 2 · 10 · 32 values
    println!("cos and sin, {} values: all within 1e-6 of PyTorch's", 2 * 10 * 32);
    let c = fx.matrix("cos")?[(9, 0)]; // PyTorch's cos of pair 0 at position 8191
    println!("pair 0 at position 8191: PyTorch's cos {c:.7}, ours within 1e-6 of it");
    let rotated = rotate_each(&rope, &fx.matrix("x")?, &positions)?; // (10, 64)
    assert!((&rotated - fx.matrix("out")?).amax() < 1e-6);
    println!("rotated vectors: max |ours - PyTorch| < 1e-6");
    check_the_rest(&fx, &rope, &positions, &rotated)
}
// ANCHOR_END: example

/// The largest |ours − PyTorch's| over the cosines and sines of all 32 pairs at
/// `positions` (PyTorch's tables are `(10, 64)`: both halves repeat the 32 angles).
fn max_table_diff(
    fx: &Fixture,
    rope: &Rope,
    positions: &[usize],
) -> Result<f32, attention::AttnError> {
    let (want_cos, want_sin) = (fx.matrix("cos")?, fx.matrix("sin")?);
    let mut worst = 0.0f32;
    for (r, &pos) in positions.iter().enumerate() {
        for i in 0..32 {
            let (c, s) = rope.cos_sin(pos, i)?;
            for (ours, theirs) in [(c, want_cos[(r, i)]), (s, want_sin[(r, i)])] {
                worst = worst.max((ours - theirs).abs());
            }
        }
    }
    Ok(worst)
}

/// Row `r` of `x` (one head of one token, `(1, 64)`) rotated to position `positions[r]`.
fn rotate_each(
    rope: &Rope,
    x: &nalgebra::DMatrix<f32>,
    positions: &[usize],
) -> Result<nalgebra::DMatrix<f32>, attention::AttnError> {
    let mut got = x.clone();
    for (r, &pos) in positions.iter().enumerate() {
        let mut row = x.rows(r, 1).into_owned();
        rope.apply(&mut row, pos)?;
        got.row_mut(r).copy_from(&row);
    }
    Ok(got)
}

/// The positions are the fixture's; pair 0's cosine at 8191 is within 1e-6 of PyTorch's;
/// the rotated vectors are PyTorch's at the crate's f32 tolerance.
fn check_the_rest(
    fx: &Fixture,
    rope: &Rope,
    positions: &[usize],
    rotated: &nalgebra::DMatrix<f32>,
) -> Result<(), attention::AttnError> {
    use attention::{Tolerance, assert_matrix_close};
    let from_fixture: Vec<usize> =
        fx.tensor("positions")?.data.iter().map(|&p| p as usize).collect();
    assert_eq!(positions, &from_fixture[..]);
    let (ours, theirs) = (rope.cos_sin(8191, 0)?.0, fx.matrix("cos")?[(9, 0)]);
    assert!((ours - theirs).abs() <= 1e-6);
    assert_matrix_close(rotated, &fx.matrix("out")?, Tolerance::F32);
    Ok(())
}
