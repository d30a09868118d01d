//! Chapter 7: Llama 3.x RoPE scaling sorts the pairs into three bands; the crate's
//! frequencies are transformers'.
extern crate attention;
// ANCHOR: example
use attention::{Llama3Scaling, rope_inv_freq};

fn main() -> Result<(), attention::AttnError> {
    for (name, head_dim, s, case) in [
        ("Llama 3.2", 64, Llama3Scaling::LLAMA_3_2, "llama32_mid_bf16"),
        ("Llama 3.1", 128, Llama3Scaling::LLAMA_3_1, "llama31_end_bf16"),
    ] {
        let plain = rope_inv_freq(head_dim, 500_000.0)?; // θ_i, one per pair
        let scaled: Vec<f32> = plain.iter().map(|&f| s.scale(f)).collect();
        check_against_transformers(case, &scaled)?; // every bit of every θ'_i
        // fast pairs kept (θ' = θ), slow ones divided (θ' = θ / factor), the rest blended
        let pairs = 0..plain.len();
        let (kept, rest): (Vec<_>, Vec<_>) = pairs.partition(|&i| scaled[i] == plain[i]);
        let (divided, blended): (Vec<_>, Vec<_>) =
            rest.into_iter().partition(|&i| scaled[i] == plain[i] / s.factor);
        print_bands(name, head_dim, s.factor, [&kept, &blended, &divided], &plain);
        for i in blended {
            let (from, to) = (plain[i], scaled[i]);
            println!("    pair {i}: θ {from:.6e} -> {to:.6e} (slowed {:.2}x)", from / to);
        }
    }
    Ok(())
}
// ANCHOR_END: example

/// Checks the scaled frequencies against transformers' `LlamaRotaryEmbedding(config)
/// .inv_freq`, built from the case's `config.json` (`rope_type` llama3): bit for bit.
fn check_against_transformers(case: &str, scaled: &[f32]) -> attention::Result<()> {
    use attention::{FIXTURE_DIR, TensorFile};
    let hf = TensorFile::open(format!("{FIXTURE_DIR}/hf/{case}/expected.safetensors"))?
        .tensor("inv_freq")?;
    assert_eq!(scaled, hf.data, "every bit of every scaled frequency");
    Ok(())
}

/// Prints one configuration's header and, for each band, its first and last pair with
/// their wavelengths `λ_i = 2π / θ_i` (positions per turn).
fn print_bands(
    name: &str,
    head_dim: usize,
    factor: f32,
    bands: [&[usize]; 3],
    plain: &[f32],
) {
    let n = plain.len();
    let same = "(= transformers, bit for bit)";
    println!("{name}: head_dim {head_dim}, factor {factor}, {n} pairs {same}");
    let wavelength = |i: usize| 2.0 * std::f32::consts::PI / plain[i];
    for (band, pairs) in ["kept   ", "blended", "divided"].into_iter().zip(bands) {
        let (first, last) = (pairs[0], pairs[pairs.len() - 1]);
        let (from, to) = (wavelength(first), wavelength(last));
        let range = format!("{from:>9.1} .. {to:>9.1}");
        println!("  {band} pairs {first:>2}-{last:<2}  wavelength {range} positions");
    }
}
