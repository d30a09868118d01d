//! Chapter 7: transformers' RoPE tables at long positions are the f32 ones, not the
//! exact ones.
extern crate attention;
// ANCHOR: example
use attention::{FIXTURE_DIR, HfLlamaConfig, TensorFile};

fn main() -> Result<(), attention::AttnError> {
    let dir = format!("{FIXTURE_DIR}/hf/llama31_end_bf16");
    let cfg = HfLlamaConfig::from_file(format!("{dir}/config.json"))?;
    let (rope, exact) = (cfg.rope(131_072)?, exact_inv_freq(&cfg)); // f32 and f64 θ_i
    // transformers' LlamaRotaryEmbedding at positions 131066..=131071
    let hf_cos =
        TensorFile::open(format!("{dir}/expected.safetensors"))?.matrix("cos")?;
    let (mut vs_f32, mut vs_exact) = (0.0f64, 0.0f64);
    for t in 0..6 {
        let pos = 131_066 + t;
        for (i, &theta) in exact.iter().enumerate() {
            let hf = hf_cos[(t, i)] as f64; // (6, 128): column i is pair i's cos
            vs_f32 = vs_f32.max((rope.cos_sin(pos, i)?.0 as f64 - hf).abs());
            vs_exact = vs_exact.max(((pos as f64 * theta).cos() - hf).abs());
        }
    }
    // Ours and transformers' differ at most in the last bit or two, where two math
    // libraries' f32 cos round differently: we print the bound we check.
    assert!(vs_f32 < 2e-7 && vs_exact > 1e-3);
    println!("transformers' cos at 131066..=131071:");
    println!("  max |- ours (f32)| < 2e-7, max |- exact (f64)| = {vs_exact:.1e}");
    Ok(())
}
// ANCHOR_END: example

/// Llama 3.x's scaled frequencies `θ_i`, computed in f64 (the formula of
/// `Llama3Scaling::scale`; the same function as in `ch07_precision`).
fn exact_inv_freq(cfg: &HfLlamaConfig) -> Vec<f64> {
    let s = cfg.rope_scaling.unwrap();
    let (orig, low, high) = (
        s.original_max_position_embeddings as f64,
        s.low_freq_factor as f64,
        s.high_freq_factor as f64,
    );
    let d = cfg.head_dim;
    (0..d / 2)
        .map(|i| {
            let f = (cfg.rope_theta as f64).powf(-(2.0 * i as f64) / d as f64);
            let wavelength = 2.0 * std::f64::consts::PI / f;
            if wavelength < orig / high {
                f
            } else if wavelength > orig / low {
                f / s.factor as f64
            } else {
                let smooth = (orig / wavelength - low) / (high - low);
                (1.0 - smooth) * f / s.factor as f64 + smooth * f
            }
        })
        .collect()
}
