//! Exercise 7.2: the scaling factor sets how much the slow pairs slow down, not which
//! pairs are slow.
extern crate attention;
// ANCHOR: example
use attention::{Llama3Scaling, rope_inv_freq};

fn main() -> Result<(), attention::AttnError> {
    let plain = rope_inv_freq(128, 500_000.0)?; // θ_i of Llama 3.1 8B's heads
    let mut bands_of = Vec::new();
    for factor in [8.0, 32.0] {
        let s = Llama3Scaling { factor, ..Llama3Scaling::LLAMA_3_1 };
        let scaled: Vec<f32> = plain.iter().map(|&f| s.scale(f)).collect();
        // each pair's band: kept (θ' = θ), divided (θ' = θ / factor), or blended
        let bands: Vec<&str> = (0..plain.len())
            .map(|i| match scaled[i] {
                t if t == plain[i] => "kept",
                t if t == plain[i] / factor => "divided",
                _ => "blended",
            })
            .collect();
        let count = |band| bands.iter().filter(|&&b| b == band).count();
        let counts = [count("kept"), count("blended"), count("divided")];
        let slowed = plain[63] / scaled[63]; // the slowest pair
        println!(
            "factor {factor:>2}: kept, blended, divided {counts:?}; \
             pair 63 slowed {slowed}x"
        );
        bands_of.push(bands);
    }
    assert_eq!(bands_of[0], bands_of[1]); // the same pairs in the same bands
    Ok(())
}
// ANCHOR_END: example
