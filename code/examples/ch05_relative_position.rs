//! Chapter 5: after RoPE, q·k depends only on the distance between the two positions.
extern crate attention;
extern crate nalgebra;
// ANCHOR: example
use attention::{Fixture, Rope};
use nalgebra::DMatrix;

fn main() -> Result<(), attention::AttnError> {
    // Two random vectors of one head (head_dim 64) drawn by PyTorch:
    // torch.manual_seed(46); torch.randn(10, 64)
    let x = Fixture::load("rope")?.matrix("x")?;
    let (q, k) = (x.rows(0, 1).into_owned(), x.rows(1, 1).into_owned()); // (1, 64) each
    let rope = Rope::new(64, 8192, 500_000.0, None)?; // Llama 3's base

    let rotated =
        |v: &DMatrix<f32>, pos: usize| -> Result<DMatrix<f32>, attention::AttnError> {
            let mut v = v.clone();
            rope.apply(&mut v, pos)?;
            Ok(v)
        };
    let score = |m: usize, n: usize| -> Result<f32, attention::AttnError> {
        // query at position m, key at position n
        Ok(rotated(&q, m)?.dot(&rotated(&k, n)?))
    };

    // Scores to 3 decimals: after RoPE their last digits depend on the math library's cos
    // and sin, which may differ from machine to machine.
    println!("q·k without RoPE: {:.3}", q.dot(&k));
    let reference = score(5, 2)?;
    // Equal in exact arithmetic; in f32 the angles pos·θ_i are rounded, more so at larger
    // pos: the difference from the reference lies in the band [low, high) given for each
    // pair of positions.
    for (m, n, low, high) in [
        (5, 2, 0.0, 0.0),
        (13, 10, 0.0, 1e-5),
        (103, 100, 0.0, 1e-5),
        (1003, 1000, 1e-5, 1e-4),
        (8003, 8000, 1e-4, 1e-3),
    ] {
        let (s, diff) = (score(m, n)?, (score(m, n)? - reference).abs());
        let band = if high == 0.0 {
            "differs by 0".to_string()
        } else if low == 0.0 {
            format!("differs by < {high:e}")
        } else {
            format!("differs by {low:e} to {high:e}")
        };
        println!(
            "query at {m:>4}, key at {n:>4} (distance {:>2}): q·k = {s:.3}  ({band})",
            m - n
        );
        if high == 0.0 {
            assert_eq!(diff, 0.0); // the very same computation
        } else {
            assert!(low <= diff && diff < high, "{s} vs {reference}");
        }
        assert!(diff <= 1e-5 * (1.0 + m as f32 / 100.0), "{s} vs {reference}");
    }
    for (m, n) in [(5, 5), (5, 0), (2, 5)] {
        let s = score(m, n)?;
        println!(
            "query at {m:>4}, key at {n:>4} (distance {:>2}): q·k = {s:.3}",
            m as i64 - n as i64
        );
        assert!((s - reference).abs() > 0.1, "another distance gives another score");
    }
    // Distance 0: both vectors turned by the same angles, the score without RoPE comes
    // back.
    assert!((score(5, 5)? - q.dot(&k)).abs() <= 1e-5);

    // A rotation keeps lengths: |RoPE(q)| = |q| at every position.
    for pos in [0, 1, 1000, 8191] {
        let norm = rotated(&q, pos)?.norm();
        assert!((norm - q.norm()).abs() <= 1e-5 * q.norm(), "{norm} vs {}", q.norm());
    }
    println!(
        "|q| = {:.3}, and |RoPE(q)| at positions 0, 1, 1000, 8191 is the same to 1e-5",
        q.norm()
    );
    Ok(())
}
// ANCHOR_END: example
