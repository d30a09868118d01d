//! Chapter 4: n_heads must be a multiple of n_kv_heads; otherwise a typed error.
extern crate attention;
// ANCHOR: example
use attention::{AttentionConfig, AttnError};

fn main() -> Result<(), AttnError> {
    // new(d_model, n_heads, n_kv_heads, context_length, rope_theta); the last two do not
    // matter here. 12 query heads: 5 KV heads cannot each serve the same number of them
    let err = AttentionConfig::new(768, 12, 5, 1024, 500_000.0).unwrap_err();
    println!("n_kv_heads = 5: {err}");
    assert!(matches!(err, AttnError::NotDivisible { numerator: 12, denominator: 5, .. }));

    // every n_kv_heads from 1 to 12 that the crate accepts, with its group_size
    let mut accepted = Vec::new();
    for n_kv_heads in 1..=12 {
        if let Ok(cfg) = AttentionConfig::new(768, 12, n_kv_heads, 1024, 500_000.0) {
            println!("n_kv_heads = {n_kv_heads:>2}: group_size {:>2}", cfg.group_size());
            accepted.push(n_kv_heads);
        }
    }
    assert_eq!(accepted, [1, 2, 3, 4, 6, 12]); // the divisors of 12
    Ok(())
}
// ANCHOR_END: example
