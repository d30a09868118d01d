//! Exercise 5.2: RoPE turns vectors but never stretches them.
extern crate attention;
// ANCHOR: example
use attention::{Rope, splitmix_matrix};

fn main() -> Result<(), attention::AttnError> {
    let rope = Rope::new(8, 20_000, 10_000.0, None)?; // head_dim 8, positions 0 .. 20 000
    let q = splitmix_matrix(5, 1, 8, 1.0); // one query of one head, (1, 8)
    for pos in [0, 1, 100, 19_999] {
        let mut rotated = q.clone();
        rope.apply(&mut rotated, pos)?; // the one token sits at position `pos`
        let cos = rotated.dot(&q) / (rotated.norm() * q.norm());
        println!(
            "pos {pos:>6}: |q| {:.6} -> {:.6}, cos to the original {cos:+.4}",
            q.norm(),
            rotated.norm()
        );
        assert!((rotated.norm() - q.norm()).abs() < 1e-5);
    }
    Ok(())
}
// ANCHOR_END: example
