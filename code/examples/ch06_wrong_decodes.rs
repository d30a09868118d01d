//! Chapter 6: one decode step done right, and the two classic bugs that silently change
//! its numbers.
extern crate attention;
// ANCHOR: example
use attention::{AttnError, Batch, Fixture, grouped_attention, max_abs_diff};

fn main() -> Result<(), AttnError> {
    let fx = Fixture::load("kv_cache")?; // GQA: 4 query heads, 2 KV heads of head_dim 4
    let (gqa, x) = (fx.gqa()?, fx.batch("x")?.items()[0].clone()); // sequence 0: (9, 12)
    let (prompt, token) = (Batch::single(x.rows(0, 5).into_owned()), x.rows(5, 1));
    let want = fx.batch("out_full")?.items()[0].rows(5, 1).into_owned(); // PyTorch's
    // Token 5 after a prefill of 5, by hand as `forward` does it with a cache:
    let decode_token_5 = |start_pos, query_offset| -> Result<f32, AttnError> {
        let mut cache = gqa.new_cache(1, 32)?;
        gqa.forward(&prompt, 0, Some(&mut cache))?; // the prefill: positions 0..5
        let (q, k, v) = gqa.project(&token.into_owned(), start_pos)?; // RoPE at start_pos
        cache.append(5, &[k], &[v])?; // the cache checks its positions; RoPE's are ours
        let (keys, values) = (cache.keys(0)?, cache.values(0)?); // (6, 8) each
        let context = grouped_attention(&q, keys, values, gqa.heads(), query_offset)?;
        let out = gqa.weights().out_proj.forward(&context)?; // (1, 16)
        Ok(max_abs_diff(out.as_slice(), want.as_slice())) // one row: same order
    };
    let right = decode_token_5(5, 5)?;
    let (offset_bug, mask_bug) = (decode_token_5(0, 5)?, decode_token_5(5, 0)?);
    println!("token 5 after a prefill of 5, max |ours - PyTorch| over its 16 outputs:");
    assert!(right < 1e-6); // f32 rounding only: its last bits depend on the CPU
    println!("  RoPE at position 5, query sees keys 0..=5: < 1e-6");
    println!("  RoPE at position 0 (offset not advanced):  {offset_bug:.3}");
    println!("  mask aligned top-left (sees key 0 only):   {mask_bug:.2}");
    check_sizes(offset_bug, mask_bug)
}
// ANCHOR_END: example

/// Both bugs land far above the f32 rounding of the right decode (their differences are
/// printed to 2 significant digits).
fn check_sizes(offset_bug: f32, mask_bug: f32) -> Result<(), AttnError> {
    assert!(offset_bug > 1e-2 && mask_bug > 1e-2, "both bugs change the output");
    Ok(())
}
