//! Chapter 5: RoPE's frequencies θ_i = base^(-2i/head_dim), fast pairs and slow pairs.
extern crate attention;
// ANCHOR: example
use attention::rope_inv_freq;

fn main() -> Result<(), attention::AttnError> {
    let head_dim = 64;
    let llama2 = rope_inv_freq(head_dim, 10_000.0)?; // Llama 2's base
    let llama3 = rope_inv_freq(head_dim, 500_000.0)?; // Llama 3's base
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
        let (a, b) = (llama2[i], llama3[i]);
        let (wa, wb, turns) = (wavelength(a), wavelength(b), 8191.0 * b / tau);
        println!("{i:>6} | {a:>12.3e} {wa:>11} | {b:>13.3e} {wb:>11} | {turns:>10.3}");
    }
    check_frequencies(head_dim, &llama2, &llama3) // 500 000: PyTorch's, to the bit
}
// ANCHOR_END: example

/// Base 500 000 is PyTorch's `1.0 / (500000.0 ** (torch.arange(0, 64, 2).float() / 64))`
/// bit for bit; base 10 000 is checked against the exact value only (f32 rounding: the
/// table prints θ_i to 4 digits and wavelengths above 100 to whole positions). Pair 0
/// turns one radian per position, and every pair is slower than the one before.
fn check_frequencies(
    head_dim: usize,
    llama2: &[f32],
    llama3: &[f32],
) -> Result<(), attention::AttnError> {
    let pytorch = attention::Fixture::load("rope")?.tensor("inv_freq")?.data;
    assert_eq!(llama3, pytorch);
    for (i, &theta) in llama2.iter().enumerate() {
        let exact = 10_000f64.powf(-2.0 * i as f64 / head_dim as f64);
        assert!(
            (theta as f64 - exact).abs() <= 1e-6 * exact,
            "pair {i}: {theta} vs {exact}"
        );
    }
    assert_eq!((llama2[0], llama3[0]), (1.0, 1.0));
    assert!(llama3.windows(2).all(|w| w[1] < w[0]));
    Ok(())
}
