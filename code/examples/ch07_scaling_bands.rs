//! Chapter 7: Llama 3.x RoPE scaling sorts the pairs into three bands; the crate's
//! frequencies are transformers'.
extern crate attention;
// ANCHOR: example
use attention::{FIXTURE_DIR, Llama3Scaling, TensorFile, rope_inv_freq};

/// Prints the three bands of one configuration and checks every frequency against
/// transformers'.
fn bands(
    label: &str,
    head_dim: usize,
    s: Llama3Scaling,
    case: &str,
) -> Result<(), attention::AttnError> {
    let plain = rope_inv_freq(head_dim, 500_000.0)?;
    let scaled: Vec<f32> = plain.iter().map(|&f| s.scale(f)).collect();
    // transformers: LlamaRotaryEmbedding(config).inv_freq, from the case's config.json
    // (rope_type llama3)
    let hf = TensorFile::open(format!("{FIXTURE_DIR}/hf/{case}/expected.safetensors"))?
        .tensor("inv_freq")?;
    assert_eq!(scaled, hf.data, "every bit of every scaled frequency");

    let wavelength = |f: f32| 2.0 * std::f32::consts::PI / f;
    let kept: Vec<usize> = (0..plain.len()).filter(|&i| scaled[i] == plain[i]).collect();
    let divided: Vec<usize> =
        (0..plain.len()).filter(|&i| scaled[i] == plain[i] / s.factor).collect();
    let blended: Vec<usize> =
        (0..plain.len()).filter(|i| !kept.contains(i) && !divided.contains(i)).collect();
    println!(
        "{label}: head_dim {head_dim}, factor {}, {} pairs (= transformers, bit for bit)",
        s.factor,
        plain.len()
    );
    for (band, pairs) in
        [("kept   ", &kept), ("blended", &blended), ("divided", &divided)]
    {
        let (first, last) = (pairs[0], pairs[pairs.len() - 1]);
        println!(
            "  {band} pairs {first:>2}-{last:<2}  wavelength {:>9.1} .. {:>9.1} \
                positions",
            wavelength(plain[first]),
            wavelength(plain[last])
        );
    }
    for &i in &blended {
        let ratio = plain[i] / scaled[i];
        println!(
            "    pair {i}: θ {:.6e} -> {:.6e} (slowed {ratio:.2}x)",
            plain[i], scaled[i]
        );
    }
    Ok(())
}

fn main() -> Result<(), attention::AttnError> {
    bands("Llama 3.2", 64, Llama3Scaling::LLAMA_3_2, "llama32_mid_bf16")?;
    bands("Llama 3.1", 128, Llama3Scaling::LLAMA_3_1, "llama31_end_bf16")?;
    Ok(())
}
// ANCHOR_END: example
