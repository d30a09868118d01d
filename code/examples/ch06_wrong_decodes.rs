//! Chapter 6: one decode step done right, and the two classic bugs that silently change
//! its numbers.
extern crate attention;
// ANCHOR: example
use attention::{
    AttnError, Fixture, grouped_attention, matrix_to_row_major, max_abs_diff,
};

fn main() -> Result<(), AttnError> {
    // GQA(12, 16, 4 heads, 2 KV heads, RoPE 10 000), seed 47
    let fx = Fixture::load("kv_cache")?;
    // the fixture's module: 4 query heads, 2 KV heads, head_dim 4, RoPE base 10 000
    let gqa = fx.gqa()?;
    let x = fx.batch("x")?.items()[0].clone(); // sequence 0: (9, 12)
    // PyTorch, token 5: (1, 16)
    let want = fx.batch("out_full")?.items()[0].rows(5, 1).into_owned();

    // One decode step by hand, as `forward` does it with a cache: `start_pos` (RoPE's
    // position) and `query_offset` (the mask's rows before the query) are what the two
    // bugs change.
    let decode_token_5 =
        |start_pos: usize, query_offset: usize| -> Result<f32, AttnError> {
            let mut cache = gqa.new_cache(1, 32)?;
            // prefill positions 0..5
            let (_, k, v) = gqa.project(&x.rows(0, 5).into_owned(), 0)?;
            cache.append(0, &[k], &[v])?;
            // (1, 16), (1, 8), (1, 8)
            let (q, k, v) = gqa.project(&x.rows(5, 1).into_owned(), start_pos)?;
            // the cache checks its own positions; RoPE's is ours to get right
            cache.append(5, &[k], &[v])?;
            // q: (1, 16) against the cache's (6, 8) keys and values
            let context = grouped_attention(
                &q,
                cache.keys(0)?,
                cache.values(0)?,
                gqa.heads(),
                query_offset,
            )?;
            let out = gqa.weights().out_proj.forward(&context)?;
            Ok(max_abs_diff(&matrix_to_row_major(&out), &matrix_to_row_major(&want)))
        };

    let right = decode_token_5(5, 5)?;
    // RoPE offset not advanced: the new token rotated as position 0
    let offset_bug = decode_token_5(0, 5)?;
    let mask_bug = decode_token_5(5, 0)?; // top-left mask: the query sees key 0 only
    // Right: f32 rounding only, whose last bits depend on the CPU, so we print the bound
    // it is checked against. Wrong: 2 significant digits, far above the rounding.
    println!("token 5 after a prefill of 5, max |ours - PyTorch| over its 16 outputs:");
    println!("  RoPE at position 5, query sees keys 0..=5: < 1e-6");
    println!("  RoPE at position 0 (offset not advanced):  {offset_bug:.3}");
    println!("  mask aligned top-left (sees key 0 only):   {mask_bug:.2}");
    assert!(right < 1e-6);
    assert!(offset_bug > 1e-2 && mask_bug > 1e-2, "both bugs change the output");
    Ok(())
}
// ANCHOR_END: example
