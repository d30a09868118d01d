//! Chapter 5: after RoPE, other distances give other scores, and lengths are kept.
extern crate attention;
extern crate nalgebra;
// ANCHOR: example
use attention::{Fixture, Rope};

fn main() -> Result<(), attention::AttnError> {
    let x = Fixture::load("rope")?.matrix("x")?; // the two vectors of Listing 5-5
    let (q, k) = (x.rows(0, 1).into_owned(), x.rows(1, 1).into_owned()); // (1, 64) each
    let rope = Rope::new(64, 8192, 500_000.0, None)?;
    let score = |m, n| -> Result<f32, attention::AttnError> {
        let (mut q, mut k) = (q.clone(), k.clone());
        rope.apply(&mut q, m)?; // the query at position m
        rope.apply(&mut k, n)?; // the key at position n
        Ok(q.dot(&k))
    };
    for (m, n) in [(5, 5), (5, 0), (2, 5)] {
        let (s, distance) = (score(m, n)?, m as i64 - n as i64);
        println!("query at {m:>4}, key at {n:>4} (distance {distance:>2}): q·k = {s:.3}");
    }
    // A rotation keeps lengths: |RoPE(q)| = |q| at every position.
    for pos in [0, 1, 1000, 8191] {
        let mut turned = q.clone();
        rope.apply(&mut turned, pos)?;
        assert!((turned.norm() - q.norm()).abs() <= 1e-5 * q.norm());
    }
    print!("|q| = {:.3}, ", q.norm());
    println!("and |RoPE(q)| at positions 0, 1, 1000, 8191 is the same to 1e-5");
    check_scores(&q, &k, score)
}
// ANCHOR_END: example

/// Distance 0 gives back the score without RoPE (both vectors are turned by the same
/// angles), and each other distance gives a score far from distance 3's.
fn check_scores(
    q: &nalgebra::DMatrix<f32>,
    k: &nalgebra::DMatrix<f32>,
    score: impl Fn(usize, usize) -> Result<f32, attention::AttnError>,
) -> Result<(), attention::AttnError> {
    let reference = score(5, 2)?; // distance 3
    for (m, n) in [(5, 5), (5, 0), (2, 5)] {
        let s = score(m, n)?;
        assert!((s - reference).abs() > 0.1, "another distance gives another score");
    }
    assert!((score(5, 5)? - q.dot(k)).abs() <= 1e-5);
    Ok(())
}
