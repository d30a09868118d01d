//! Chapter 7: how far f32 RoPE angles are from the exact ones at long positions, and why
//! we keep them.
extern crate attention;
// ANCHOR: example
use attention::{FIXTURE_DIR, HfLlamaConfig};

fn main() -> Result<(), attention::AttnError> {
    // Llama 3.1 8B's RoPE: head_dim 128, theta 500 000, factor 8 (a fixture's config)
    let dir = format!("{FIXTURE_DIR}/hf/llama31_end_bf16");
    let cfg = HfLlamaConfig::from_file(format!("{dir}/config.json"))?;
    let rope = cfg.rope(131_072)?; // θ_i and the tables in f32, as in PyTorch
    let exact = exact_inv_freq(&cfg); // the same θ_i in f64 (folded below)
    print!("position | max |angle f32 - exact| | max |cos f32 - exact| ");
    println!("| f32 ulp, pair 1 angle");
    for pos in [100usize, 8_191, 32_767, 131_071] {
        let (mut angle_err, mut cos_err) = (0.0f64, 0.0f64);
        for (&f, &theta) in rope.inv_freq().iter().zip(&exact) {
            let angle32 = (pos as f32 * f) as f64; // what Rope::new and PyTorch compute
            let angle = pos as f64 * theta;
            angle_err = angle_err.max((angle32 - angle).abs());
            // both cosines in f64: what rounding the angle alone costs
            cos_err = cos_err.max((angle32.cos() - angle.cos()).abs());
        }
        let a = pos as f32 * rope.inv_freq()[1]; // pair 1's angle
        let ulp = f32::from_bits(a.to_bits() + 1) - a; // the gap to the next f32
        println!("{pos:>8} | {angle_err:>23.1e} | {cos_err:>21.1e} | {ulp:.1e}");
    }
    check_tables(&rope)
}
// ANCHOR_END: example

/// Llama 3.x's scaled frequencies `θ_i`, computed in f64 (the formula of
/// `Llama3Scaling::scale`).
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

/// The crate's tables hold the cos of the same f32 angles, rounded to f32 (the last bit
/// depends on the math library): within 2e-7 of the f64 cos of the f32 angle.
fn check_tables(rope: &attention::Rope) -> attention::Result<()> {
    for pos in [100usize, 8_191, 32_767, 131_071] {
        for (i, &f) in rope.inv_freq().iter().enumerate() {
            let cos_f32_angle = ((pos as f32 * f) as f64).cos();
            assert!((rope.cos_sin(pos, i)?.0 as f64 - cos_f32_angle).abs() < 2e-7);
        }
    }
    Ok(())
}
