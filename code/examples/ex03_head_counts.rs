//! Exercise 3.2: into how many heads can a 16-wide projection be cut?
extern crate attention;
extern crate rand;
// ANCHOR: example
use attention::MultiHeadAttention;
use rand::{SeedableRng, rngs::StdRng};

fn main() {
    let mut rng = StdRng::seed_from_u64(0);
    let mut fits = Vec::new();
    for n_heads in 1..=16 {
        // d_in 12, d_out 16: each head gets 16 / n_heads columns, if that divides
        match MultiHeadAttention::random(12, 16, n_heads, false, &mut rng) {
            Ok(mha) => fits.push(format!("{n_heads} x {}", mha.head_dim())),
            Err(e) if n_heads == 3 => println!("n_heads 3: {e}"),
            Err(_) => {}
        }
    }
    println!("heads x head_dim that fit: {}", fits.join(", "));
    assert_eq!(fits.len(), 5); // the divisors of 16: 1, 2, 4, 8, 16
}
// ANCHOR_END: example
