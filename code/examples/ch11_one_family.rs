//! Chapter 11: Llama 3's scaling and YaRN on gpt-oss's head: the same three bands, placed
//! by the same rotation counts, blended two ways.
extern crate attention;
// ANCHOR: example
use attention::{Llama3Scaling, YarnScaling, rope_inv_freq};

fn main() -> Result<(), attention::AttnError> {
    let (head_dim, base) = (64, 150_000.0); // gpt-oss's heads and rope_theta
    let yarn = YarnScaling::GPT_OSS; // factor 32, betas 32 and 1, original context 4096
    let llama3 = Llama3Scaling {
        factor: yarn.factor,
        low_freq_factor: yarn.beta_slow, // divided: below 1 turn in 4096 positions
        high_freq_factor: yarn.beta_fast, // kept: above 32 turns
        original_max_position_embeddings: yarn.original_max_position_embeddings,
    };
    let plain = rope_inv_freq(head_dim, base)?; // θ_i
    let by_yarn = yarn.inv_freq(head_dim, base)?;
    let by_llama3: Vec<f32> = plain.iter().map(|&f| llama3.scale(f)).collect();
    let (low, high) = yarn.correction_range(head_dim, base)?;
    println!("YaRN's correction range: pairs {low:.2} .. {high:.2}");
    println!("pair  turns in 4096  slowed by YaRN  by Llama 3's rule");
    for i in 7..=19 {
        let turns = 4096.0 * plain[i] / (2.0 * std::f32::consts::PI); // r_i
        let (y, l) = (plain[i] / by_yarn[i], plain[i] / by_llama3[i]);
        println!("{i:>4} {turns:>12.2} {y:>15.2} {l:>18.2}");
    }
    print_bands("YaRN", &plain, &by_yarn, yarn.factor);
    print_bands("Llama 3's rule", &plain, &by_llama3, llama3.factor);
    Ok(())
}
// ANCHOR_END: example

/// Prints which pairs a scaling keeps (`θ' = θ`), divides (`θ' = θ / factor`) and blends.
/// "Divided" allows a relative 1e-6: YaRN forms `1 / (factor · base^e)`, which can round
/// one ulp away from `(1 / base^e) / factor`.
fn print_bands(name: &str, plain: &[f32], scaled: &[f32], factor: f32) {
    let slowed = |i: usize| plain[i] / scaled[i];
    let pairs = 0..plain.len();
    let (kept, rest): (Vec<usize>, Vec<usize>) = pairs.partition(|&i| slowed(i) == 1.0);
    let (divided, blended): (Vec<usize>, Vec<usize>) =
        rest.into_iter().partition(|&i| (slowed(i) / factor - 1.0).abs() < 1e-6);
    let span = |b: &[usize]| format!("{}-{}", b[0], b[b.len() - 1]);
    let (k, b, d) = (span(&kept), span(&blended), span(&divided));
    println!("{name:>15}: kept {k}, blended {b}, divided {d}");
    // the bands are contiguous: kept, then blended, then divided
    assert_eq!([kept, blended, divided].concat(), (0..plain.len()).collect::<Vec<_>>());
}
