//! Chapter 8: the flash path over 1000 queries after 37 cached positions gives the
//! straightforward path's output, and the same bits on one thread and on two.
extern crate attention;
extern crate nalgebra;
// ANCHOR: example
use attention::support::init::splitmix_matrix;
use attention::{AttentionInputs, FlashAttention, HeadLayout, grouped_attention};

fn main() -> Result<(), attention::AttnError> {
    // 1000 queries (7 full tiles of 128 and one of 104) after 37 cached positions
    let q = splitmix_matrix(1, 1000, 768, 1.0); // (1000, 768): 12 heads of head_dim 64
    let (k, v) = (splitmix_matrix(2, 1037, 256, 1.0), splitmix_matrix(3, 1037, 256, 1.0));
    let (heads, query_offset) = (HeadLayout::new(12, 4, 64)?, 37); // k, v: 4 KV heads
    let slow = grouped_attention(&q, k.as_view(), v.as_view(), heads, query_offset)?;
    let mut by_threads = Vec::new();
    for threads in [1, 2] {
        let (k, v) = (k.as_view(), v.as_view());
        let inputs = AttentionInputs { q: &q, k, v, heads, query_offset };
        let fast = FlashAttention::with_threads(threads)?.forward(inputs)?;
        check_close(&fast, &slow);
        print!("{threads} thread(s), 1000 queries after 37 cached keys: ");
        println!("max |flash - straightforward| < 1e-5");
        by_threads.push(fast);
    }
    // each thread takes whole heads, computed exactly as on one thread
    assert_eq!(by_threads[0], by_threads[1]);
    println!("1 thread and 2 threads: the same output, bit for bit");
    Ok(())
}
// ANCHOR_END: example

/// The flash output is the straightforward one: no entry off by 1e-5 or more, and within
/// the f32 tolerance everywhere.
fn check_close(fast: &nalgebra::DMatrix<f32>, slow: &nalgebra::DMatrix<f32>) {
    use attention::{Tolerance, assert_matrix_close, max_abs_diff};
    assert!(max_abs_diff(fast.as_slice(), slow.as_slice()) < 1e-5);
    assert_matrix_close(fast, slow, Tolerance::F32);
}
