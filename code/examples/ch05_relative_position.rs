//! Chapter 5: after RoPE, q·k depends only on the distance between the two positions.
extern crate attention;
extern crate nalgebra;
// ANCHOR: example
use attention::{Fixture, Rope};

fn main() -> Result<(), attention::AttnError> {
    // q, k: rows 0 and 1 of PyTorch's torch.manual_seed(46); torch.randn(10, 64)
    let x = Fixture::load("rope")?.matrix("x")?;
    let (q, k) = (x.rows(0, 1).into_owned(), x.rows(1, 1).into_owned()); // (1, 64) each
    let rope = Rope::new(64, 8192, 500_000.0, None)?; // Llama 3's base
    let score = |m, n| -> Result<f32, attention::AttnError> {
        let (mut q, mut k) = (q.clone(), k.clone());
        rope.apply(&mut q, m)?; // the query at position m
        rope.apply(&mut k, n)?; // the key at position n
        Ok(q.dot(&k))
    };
    // 3 decimals: after RoPE the last digits depend on the math library's cos and sin
    println!("q·k without RoPE: {:.3}", q.dot(&k));
    let reference = score(5, 2)?;
    // Equal in exact arithmetic; f32 rounds the angles pos·θ_i, more so at larger pos.
    for m in [5, 13, 103, 1003, 8003] {
        let n = m - 3; // the key 3 positions before the query
        let s = score(m, n)?;
        let drift = drift_from(m, (s - reference).abs()); // checks the band it names
        println!("query at {m:>4}, key at {n:>4} (distance  3): q·k = {s:.3}  ({drift})");
    }
    Ok(())
}
// ANCHOR_END: example

/// Checks the difference `diff` of the score at query position `m` from the score at
/// (5, 2) and describes it. The scores are equal in exact arithmetic; in f32 the angles
/// pos·θ_i are rounded, more so at larger pos, so the difference lies in a band
/// `[low, high)` that grows with `m`.
fn drift_from(m: usize, diff: f32) -> String {
    let (low, high) = match m {
        5 => (0.0, 0.0),
        13 | 103 => (0.0, 1e-5),
        1003 => (1e-5, 1e-4),
        8003 => (1e-4, 1e-3),
        _ => unreachable!("no band for position {m}"),
    };
    if high == 0.0 {
        assert_eq!(diff, 0.0); // the very same computation
    } else {
        assert!(low <= diff && diff < high, "position {m}: differs by {diff}");
    }
    assert!(diff <= 1e-5 * (1.0 + m as f32 / 100.0), "position {m}: differs by {diff}");
    if high == 0.0 {
        "differs by 0".to_string()
    } else if low == 0.0 {
        format!("differs by < {high:e}")
    } else {
        format!("differs by {low:e} to {high:e}")
    }
}
