//! Exercise 11.1: Llama 3.1's scaling written as YaRN: the same three bands, other
//! blended frequencies, and no temperature.
extern crate attention;
// ANCHOR: example
use attention::{Llama3Scaling, YarnScaling, rope_inv_freq};

fn main() -> Result<(), attention::AttnError> {
    let (head_dim, base) = (128, 500_000.0); // Llama 3.1 8B's heads
    let llama = Llama3Scaling::LLAMA_3_1; // factor 8, low 1, high 4, original 8192
    let as_yarn = YarnScaling {
        factor: llama.factor,
        original_max_position_embeddings: llama.original_max_position_embeddings,
        beta_fast: llama.high_freq_factor, // kept: more than 4 turns in 8192 positions
        beta_slow: llama.low_freq_factor,  // divided: less than 1 turn
        truncate: false,
        mscale: None,
        mscale_all_dim: None,
        attention_factor: Some(1.0), // Llama 3 has no temperature
    };
    let plain = rope_inv_freq(head_dim, base)?;
    let by_llama: Vec<f32> = plain.iter().map(|&f| llama.scale(f)).collect();
    let by_yarn = as_yarn.inv_freq(head_dim, base)?;
    let (low, high) = as_yarn.correction_range(head_dim, base)?;
    println!("correction range {low:.2} .. {high:.2}");
    print_slowed(&plain, &by_llama, &by_yarn, 27..=36); // around the blended band
    let bands = check_bands(&plain, &by_llama, &by_yarn, llama.factor);
    println!("same bands: {bands}");
    Ok(())
}
// ANCHOR_END: example

use std::ops::RangeInclusive;

/// Prints, for the pairs `pairs`, how many times each rule slows pair `i`: `θ_i / θ'_i`.
fn print_slowed(
    plain: &[f32],
    by_llama: &[f32],
    by_yarn: &[f32],
    pairs: RangeInclusive<usize>,
) {
    println!("pair  slowed by llama3  as YaRN");
    for i in pairs {
        let (l, y) = (plain[i] / by_llama[i], plain[i] / by_yarn[i]);
        println!("{i:>4} {l:>16.2} {y:>8.2}");
    }
}

/// Asserts the bands the solution prints, and returns them: both rules keep pairs 0-28
/// exactly (`θ' = θ`), divide pairs 35-63 by the factor (to a relative 1e-6: YaRN forms
/// `1 / (factor · base^e)`, which can round one ulp away from `(1 / base^e) / factor`),
/// and blend 29-34.
fn check_bands(plain: &[f32], a: &[f32], b: &[f32], factor: f32) -> &'static str {
    for scaled in [a, b] {
        for (i, (&p, &s)) in plain.iter().zip(scaled).enumerate() {
            let slowed = p / s;
            match i {
                0..=28 => assert_eq!(slowed, 1.0, "pair {i}"),
                29..=34 => assert!(slowed > 1.0 && slowed < factor, "pair {i}"),
                _ => assert!((slowed / factor - 1.0).abs() < 1e-6, "pair {i}"),
            }
        }
    }
    "kept 0-28, blended 29-34, divided 35-63"
}
