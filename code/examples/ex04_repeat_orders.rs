//! Exercise 4.1: for which head layouts do `repeat_interleave`'s and `repeat`'s orders
//! agree?
extern crate attention;
// ANCHOR: example
use attention::HeadLayout;

fn main() -> Result<(), attention::AttnError> {
    for (n_heads, n_kv_heads) in [(8, 2), (8, 4), (8, 1), (8, 8)] {
        let heads = HeadLayout::new(n_heads, n_kv_heads, 64)?;
        // Llama's order (repeat_interleave): heads 0..group_size read KV head 0
        let right: Vec<usize> = (0..n_heads).map(|h| heads.kv_head(h)).collect();
        // the classic bug (repeat): heads cycle through the KV heads
        let wrong: Vec<usize> = (0..n_heads).map(|h| h % n_kv_heads).collect();
        let same = if right == wrong { "the same" } else { "different" };
        println!(
            "{n_heads} heads over {n_kv_heads} KV heads: {right:?} vs {wrong:?}: {same}"
        );
    }
    Ok(())
}
// ANCHOR_END: example
