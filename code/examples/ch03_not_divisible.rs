//! Chapter 3: d_out must split evenly into heads; otherwise a typed error, not a panic.
extern crate attention;
// ANCHOR: example
use attention::{AttnError, Fixture, MultiHeadAttention};

fn main() -> Result<(), AttnError> {
    let fx = Fixture::load("small_mha")?; // projections d_in 12 -> d_out 16
    let weights = fx.weights()?; // Q, K, V: (16, 12), out_proj: (16, 16)

    // 16 columns cannot be cut into 3 heads of equal width
    let err = MultiHeadAttention::new(weights.clone(), 3).unwrap_err();
    println!("n_heads = 3: {err}");
    assert!(matches!(err, AttnError::NotDivisible { numerator: 16, denominator: 3, .. }));

    // 4 heads of head_dim 4 are fine
    let mha = MultiHeadAttention::new(weights, 4)?;
    println!("n_heads = 4: head_dim {}", mha.head_dim());
    assert_eq!(mha.head_dim(), 4);
    Ok(())
}
// ANCHOR_END: example
