//! Chapter 4: n_heads must be a multiple of n_kv_heads; otherwise a typed error.
extern crate attention;
// ANCHOR: example
use attention::{AttentionConfig, AttnError};

fn main() -> Result<(), AttnError> {
    // d_model 768, 12 query heads: 5 KV heads cannot each serve the same number of query
    // heads
    let err = AttentionConfig::new(768, 12, 5, 1024, 500_000.0).unwrap_err();
    println!("n_kv_heads = 5: {err}");
    assert!(matches!(err, AttnError::NotDivisible { numerator: 12, denominator: 5, .. }));

    // every n_kv_heads from 1 to 12 that the crate accepts, with its group_size
    let valid: Vec<AttentionConfig> = (1..=12)
        .filter_map(|n_kv_heads| {
            AttentionConfig::new(768, 12, n_kv_heads, 1024, 500_000.0).ok()
        })
        .collect();
    for cfg in &valid {
        println!(
            "n_kv_heads = {:>2}: group_size {:>2}",
            cfg.n_kv_heads,
            cfg.group_size()
        );
    }
    let accepted: Vec<usize> = valid.iter().map(|cfg| cfg.n_kv_heads).collect();
    assert_eq!(accepted, [1, 2, 3, 4, 6, 12]);
    Ok(())
}
// ANCHOR_END: example
