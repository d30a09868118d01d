//! Chapter 5: the crate's RoPE tables and rotation against PyTorch's, up to
//! position 8191.
extern crate attention;
extern crate nalgebra;
// ANCHOR: example
use attention::{
    Fixture, Rope, Tolerance, assert_matrix_close, matrix_to_row_major, max_abs_diff,
};
use nalgebra::DMatrix;

fn main() -> Result<(), attention::AttnError> {
    // PyTorch (x = torch.randn(10, 64), row r at positions[r]):
    //   inv_freq = 1.0 / (500000.0 ** (torch.arange(0, 64, 2).float() / 64))
    //   angles = positions[:, None].float() * inv_freq[None, :]
    //   cos, sin = angles.cos(), angles.sin()
    //   out = apply_rope(x, cos, sin)
    let fx = Fixture::load("rope")?;
    let rope = Rope::new(64, 8192, fx.f32("rope_theta")?, None)?;

    let want = fx.tensor("inv_freq")?.data;
    assert_eq!(rope.inv_freq(), &want[..]); // every bit of every frequency
    println!("inv_freq, 32 values, bit-identical to PyTorch's:");
    for i in [0, 1, 16, 31] {
        println!("  θ_{i:<2} = {:.8e} (bits {:#010x})", want[i], want[i].to_bits());
    }

    let positions: Vec<usize> =
        fx.tensor("positions")?.data.iter().map(|&p| p as usize).collect();
    // (10, 64): both halves repeat
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
    // Most are bit-identical; the others differ in the last bit, where the math library's
    // `cos` and `sin` round differently (which ones depends on the library, so we check a
    // bound).
    assert!(worst <= 1e-6);
    println!("positions {positions:?}");
    println!("cos and sin, {} values: all within 1e-6 of PyTorch's", 2 * 10 * 32);
    let last = positions.len() - 1;
    let (cos_8191, want_8191) = (rope.cos_sin(8191, 0)?.0, want_cos[(last, 0)]);
    assert!((cos_8191 - want_8191).abs() <= 1e-6);
    println!(
        "pair 0 at position 8191: PyTorch's cos {want_8191:.7}, ours within 1e-6 of it"
    );

    // Rotating the ten vectors, each at its own position:
    let x = fx.matrix("x")?;
    let mut got = DMatrix::zeros(10, 64);
    for (r, &pos) in positions.iter().enumerate() {
        let mut row = x.rows(r, 1).into_owned(); // (1, 64): one head of one token
        rope.apply(&mut row, pos)?;
        got.row_mut(r).copy_from(&row);
    }
    let out = fx.matrix("out")?;
    let diff = max_abs_diff(&matrix_to_row_major(&got), &matrix_to_row_major(&out));
    assert!(diff < 1e-6);
    println!("rotated vectors: max |ours - PyTorch| < 1e-6");
    assert_matrix_close(&got, &out, Tolerance::F32);
    Ok(())
}
// ANCHOR_END: example
