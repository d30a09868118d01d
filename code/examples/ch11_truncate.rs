//! Chapter 11: the default of `truncate` (true in transformers; gpt-oss sets false),
//! measured on gpt-oss's heads.
extern crate attention;
// ANCHOR: example
use attention::{YarnScaling, rope_inv_freq};

fn main() -> Result<(), attention::AttnError> {
    let (head_dim, base) = (64, 150_000.0); // gpt-oss's heads
    let plain = rope_inv_freq(head_dim, base)?; // θ_i
    let gpt_oss = YarnScaling::GPT_OSS; // its config.json says "truncate": false
    let truncated = YarnScaling { truncate: true, ..gpt_oss }; // transformers' default
    let right = gpt_oss.inv_freq(head_dim, base)?;
    let wrong = truncated.inv_freq(head_dim, base)?;
    check_against_transformers(&wrong)?; // transformers' numbers with truncate true
    for (name, y) in [("false", gpt_oss), ("true", truncated)] {
        let (low, high) = y.correction_range(head_dim, base)?;
        println!("truncate {name:<5}: correction range {low:.2} .. {high:.2}");
    }
    // the pairs that differ, and the one that differs most (the ratio of its two θ')
    let off = |i: usize| right[i].max(wrong[i]) / right[i].min(wrong[i]);
    let differ: Vec<usize> = (0..right.len()).filter(|&i| off(i) > 1.0).collect();
    let worst =
        differ.iter().copied().max_by(|&a, &b| off(a).total_cmp(&off(b))).unwrap();
    let (r, w) = (plain[worst] / right[worst], plain[worst] / wrong[worst]);
    println!("pairs {differ:?} differ");
    println!("pair {worst}: slowed {r:.2}x with truncate false, {w:.2}x with true");
    let turns = 131_071.0 * (right[worst] - wrong[worst]).abs() / std::f32::consts::TAU;
    println!("at position 131071 its two angles are {turns:.1} turns apart");
    Ok(())
}
// ANCHOR_END: example

/// The frequencies with `truncate: true` are those transformers computed for the fixture
/// `yarn`'s case `gpt_oss_truncate` (gpt-oss's YaRN with `"truncate": true`), bit for
/// bit but at pairs 6 and 10, where torch's f32 power is 1 ulp off the correctly rounded
/// one (`ch11_yarn_frequencies` shows the same for `truncate: false`).
fn check_against_transformers(inv_freq: &[f32]) -> attention::Result<()> {
    let fx = attention::Fixture::load("yarn")?;
    let theirs = fx.tensor("gpt_oss_truncate.inv_freq")?.data;
    assert_eq!(theirs.len(), inv_freq.len());
    for (i, (a, b)) in inv_freq.iter().zip(&theirs).enumerate() {
        let allowed = if i == 6 || i == 10 { 1 } else { 0 };
        assert!(a.to_bits().abs_diff(b.to_bits()) <= allowed, "pair {i}: {a:e} vs {b:e}");
    }
    Ok(())
}
