//! Exercise 7.1: permuting `wk` with `n_heads` instead of `n_kv_heads` runs, and pairs
//! the wrong rows.
extern crate attention;
extern crate nalgebra;
// ANCHOR: example
use attention::{Linear, permute_meta_to_hf};
use nalgebra::DMatrix;

fn main() -> Result<(), attention::AttnError> {
    // Meta's wk for 2 KV heads of head_dim 8 (and 4 query heads); row r holds r
    let (n_heads, n_kv_heads) = (4, 2);
    let wk = Linear::new(DMatrix::from_fn(16, 1, |r, _| r as f32), None)?; // (16, 1)
    let order = |l: &Linear| l.weight().iter().map(|&v| v as usize).collect::<Vec<_>>();
    let right = permute_meta_to_hf(&wk, n_kv_heads)?; // heads of 8 rows
    // heads of 4 rows: no error, 16 is divisible by 4
    let wrong = permute_meta_to_hf(&wk, n_heads)?;
    println!("with n_kv_heads = 2: {:?}", order(&right));
    println!("with n_heads = 4:    {:?}", order(&wrong));
    assert_ne!(right, wrong);
    Ok(())
}
// ANCHOR_END: example
