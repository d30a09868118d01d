//! Chapter 7: how far f32 RoPE angles are from the exact ones at long positions, and why
//! we keep them.
extern crate attention;
// ANCHOR: example
use attention::{FIXTURE_DIR, HfLlamaConfig, Llama3Scaling, Rope, TensorFile};

/// Llama 3.x scaling of one frequency, in f64 (the same formula as
/// `Llama3Scaling::scale`).
fn scale_f64(s: &Llama3Scaling, f: f64) -> f64 {
    let (orig, low, high) = (
        s.original_max_position_embeddings as f64,
        s.low_freq_factor as f64,
        s.high_freq_factor as f64,
    );
    let wavelength = 2.0 * std::f64::consts::PI / f;
    if wavelength < orig / high {
        f
    } else if wavelength > orig / low {
        f / s.factor as f64
    } else {
        let smooth = (orig / wavelength - low) / (high - low);
        (1.0 - smooth) * f / s.factor as f64 + smooth * f
    }
}

fn main() -> Result<(), attention::AttnError> {
    // Llama 3.1 8B's RoPE: head_dim 128, theta 500 000, factor 8; case llama31_end_bf16
    // has its config
    let dir = format!("{FIXTURE_DIR}/hf/llama31_end_bf16");
    let cfg = HfLlamaConfig::from_file(format!("{dir}/config.json"))?;
    let s = cfg.rope_scaling.unwrap();
    let rope: Rope = cfg.rope(131_072)?; // f32, as PyTorch
    let exact: Vec<f64> = (0..64)
        .map(|i| scale_f64(&s, 500_000f64.powf(-(2.0 * i as f64) / 128.0)))
        .collect();

    println!(
        "position | max |angle f32 - exact| | max |cos f32 - exact| | f32 ulp, pair 1 \
            angle"
    );
    for pos in [100usize, 8_191, 32_767, 131_071] {
        let (mut angle_err, mut cos_err) = (0.0f64, 0.0f64);
        for (i, &theta) in exact.iter().enumerate() {
            // what Rope::new and PyTorch compute
            let angle32 = pos as f32 * rope.inv_freq()[i];
            angle_err = angle_err.max((angle32 as f64 - pos as f64 * theta).abs());
            // Both cosines in f64: what rounding the angle costs. The crate's table holds
            // the cos of the same f32 angle, rounded to f32 (its last bit depends on the
            // math library).
            let cos_f32_angle = (angle32 as f64).cos();
            assert!((rope.cos_sin(pos, i)?.0 as f64 - cos_f32_angle).abs() < 2e-7);
            cos_err = cos_err.max((cos_f32_angle - (pos as f64 * theta).cos()).abs());
        }
        let a = pos as f32 * rope.inv_freq()[1];
        let ulp = f32::from_bits(a.to_bits() + 1) - a;
        println!("{pos:>8} | {angle_err:>23.1e} | {cos_err:>21.1e} | {ulp:.1e}");
    }

    // transformers' tables at positions 131066..131071 are the f32 ones, not the exact
    // ones
    let hf_cos =
        // (6, 128)
        TensorFile::open(format!("{dir}/expected.safetensors"))?.matrix("cos")?;
    let (mut vs_f32, mut vs_exact) = (0.0f64, 0.0f64);
    for t in 0..6 {
        for (i, &theta) in exact.iter().enumerate() {
            let hf = hf_cos[(t, i)] as f64;
            vs_f32 = vs_f32.max((rope.cos_sin(131_066 + t, i)?.0 as f64 - hf).abs());
            vs_exact = vs_exact.max((((131_066 + t) as f64 * theta).cos() - hf).abs());
        }
    }
    // ours and transformers' differ at most in the last bit or two, where two math
    // libraries' f32 cos round differently (which ones differ depends on the library): we
    // print the bound we check
    assert!(vs_f32 < 2e-7 && vs_exact > 1e-3);
    println!(
        "transformers' cos at 131066..131071:\n  \
            max |- ours (f32)| < 2e-7, max |- exact (f64)| = {vs_exact:.1e}"
    );
    Ok(())
}
// ANCHOR_END: example
