//! Chapter 7: the scaling moves the RoPE tables at long positions only.
extern crate attention;
// ANCHOR: example
use attention::{Llama3Scaling, Rope};

fn main() -> Result<(), attention::AttnError> {
    // cos(pos · θ_20) of Llama 3.2's pair 20 (a "divided" pair), scaled and plain
    let scaled = Rope::new(64, 131_072, 500_000.0, Some(Llama3Scaling::LLAMA_3_2))?;
    let plain = Rope::new(64, 131_072, 500_000.0, None)?;
    println!("pair 20 of head_dim 64: cos scaled  cos plain");
    for pos in [5, 100, 8_191, 40_000, 131_071] {
        let (c, c_plain) = (scaled.cos_sin(pos, 20)?.0, plain.cos_sin(pos, 20)?.0);
        // 5 decimals: the last bit of an f32 cos of a large angle varies by math library
        println!("  position {pos:>7}: {c:>14.5} {c_plain:>10.5}");
    }
    Ok(())
}
// ANCHOR_END: example

// None of the printed values is within a few bits of a 5-decimal rounding edge, so the
// output is the same with every math library.
