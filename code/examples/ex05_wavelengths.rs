//! Exercise 5.1: how many positions each RoPE pair needs for one full turn.
extern crate attention;
// ANCHOR: example
use attention::rope_inv_freq;

fn main() -> Result<(), attention::AttnError> {
    let theta = rope_inv_freq(128, 500_000.0)?; // Llama 3: head_dim 128, base 500 000
    for i in [0, 1, 16, 32, 48, 63] {
        // positions per turn
        let wavelength = 2.0 * std::f64::consts::PI / f64::from(theta[i]);
        println!(
            "pair {i:>2}: θ = {:.3e} rad/position, one turn every {wavelength:>12.1} \
                positions",
            theta[i]
        );
    }
    // the last pair: 2π · base^((d-2)/d), far more than the 8192 positions of
    // pre-training
    let last = 2.0 * std::f64::consts::PI * 500_000f64.powf(126.0 / 128.0);
    println!("2π · 500000^(126/128) = {last:.1}");
    assert!(
        (2.0 * std::f64::consts::PI / f64::from(theta[63]) / last - 1.0).abs() < 1e-4
    );
    Ok(())
}
// ANCHOR_END: example
