//! Chapter 11: `"beta_fast": 0` or `"beta_slow": 0` in a config: transformers reads the
//! defaults (Python's `or`); taken literally, the crate refuses them, and unchecked,
//! `beta_slow` 0 barely slows the slowest pairs.
extern crate attention;
// ANCHOR: example
use attention::{YarnScaling, rope_inv_freq};

fn main() -> Result<(), attention::AttnError> {
    let (head_dim, base) = (64, 150_000.0); // gpt-oss's heads
    let gpt_oss = YarnScaling::GPT_OSS; // beta_fast 32, beta_slow 1
    // transformers: `beta_fast = get("beta_fast") or 32`, `beta_slow = get(...) or 1`
    for zero in [
        YarnScaling { beta_fast: 0.0, ..gpt_oss },
        YarnScaling { beta_slow: 0.0, ..gpt_oss },
    ] {
        println!("{}", wrapped(zero.validate().unwrap_err())); // taken literally: refused
    }
    // unchecked, beta_slow 0 puts the upper end at infinity, clamped to head_dim − 1;
    // any beta_slow small enough lands on the same clamp
    let tiny = YarnScaling { beta_slow: f32::MIN_POSITIVE, ..gpt_oss };
    let plain = rope_inv_freq(head_dim, base)?; // θ_i
    for (name, y) in [("beta_slow 1 ", gpt_oss), ("beta_slow ~0", tiny)] {
        let (low, high) = y.correction_range(head_dim, base)?;
        let slowed = plain[31] / y.inv_freq(head_dim, base)?[31]; // the slowest pair
        println!(
            "{name}: correction range {low:.2} .. {high:.2}, pair 31 slowed {slowed:.2}x"
        );
    }
    Ok(())
}
// ANCHOR_END: example

/// `text` broken at spaces into lines of at most 88 characters (an error message is one
/// long line; the book shows at most 90 characters a line).
fn wrapped(text: impl std::fmt::Display) -> String {
    let mut lines = vec![String::new()];
    for word in text.to_string().split(' ') {
        let last = lines.last_mut().unwrap();
        if !last.is_empty() && last.chars().count() + 1 + word.chars().count() > 88 {
            lines.push(word.to_string());
        } else {
            if !last.is_empty() {
                last.push(' ');
            }
            last.push_str(word);
        }
    }
    lines.join("\n")
}
