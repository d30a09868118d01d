//! Chapter 5: RoPE's frequencies θ_i = base^(-2i/head_dim), fast pairs and slow pairs.
extern crate attention;
// ANCHOR: example
use attention::{Fixture, rope_inv_freq};

fn main() -> Result<(), attention::AttnError> {
    let head_dim = 64;
    let llama2 = rope_inv_freq(head_dim, 10_000.0)?; // Llama 2's base
    let llama3 = rope_inv_freq(head_dim, 500_000.0)?; // Llama 3's base

    // PyTorch: 1.0 / (500000.0 ** (torch.arange(0, 64, 2).float() / 64)), bit for bit
    let fx = Fixture::load("rope")?;
    let pytorch = fx.tensor("inv_freq")?.data;
    assert_eq!(llama3, pytorch);
    // base 10 000: close to the exact value (f32 rounding only)
    for (i, &theta) in llama2.iter().enumerate() {
        let exact = 10_000f64.powf(-2.0 * i as f64 / head_dim as f64);
        assert!(
            (theta as f64 - exact).abs() <= 1e-6 * exact,
            "pair {i}: {theta} vs {exact}"
        );
    }
    // pair 0 turns one radian per position
    assert_eq!((llama2[0], llama3[0]), (1.0, 1.0));
    // every pair slower than the one before
    assert!(llama3.windows(2).all(|w| w[1] < w[0]));

    // The 10 000 column is checked above against the exact value only (not against
    // PyTorch): θ_i is printed to 4 digits and wavelengths above 100 to whole positions.
    // The 500 000 column is PyTorch's.
    let tau = std::f32::consts::TAU;
    let wavelength = |theta: f32| {
        let w = tau / theta; // positions per full turn
        if w < 100.0 { format!("{w:.1}") } else { format!("{w:.0}") }
    };
    println!(
        "head_dim {head_dim}: 32 pairs; wavelength = positions per full turn = 2π/θ_i"
    );
    println!(
        "pair i | θ_i (10 000)  wavelength | θ_i (500 000)  wavelength | turns by 8191"
    );
    for i in [0, 1, 2, 8, 16, 24, 31] {
        println!(
            "{i:>6} | {:>12.3e} {:>11} | {:>13.3e} {:>11} | {:>10.3}",
            llama2[i],
            wavelength(llama2[i]),
            pytorch[i],
            wavelength(pytorch[i]),
            8191.0 * pytorch[i] / tau
        );
    }
    Ok(())
}
// ANCHOR_END: example
