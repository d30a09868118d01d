//! Chapter 8: the flash path gives PyTorch's output on the small model's config.
extern crate attention;
// ANCHOR: example
use attention::support::init::splitmix_matrix;
use attention::{
    AttentionInputs, Fixture, FlashAttention, HeadLayout, Tolerance, assert_matrix_close,
    grouped_attention, max_abs_diff,
};

fn main() -> Result<(), attention::AttnError> {
    // PyTorch: GroupedQueryAttention(768, 768, 12 heads, 4 KV heads, RoPE θ 500 000),
    // weights from the shared SplitMix64 generator (scripts/gen_fixtures.py), 16 tokens
    let fx = Fixture::load("default_gqa")?;
    // weights regenerated from the seeds in its JSON, as in chapter 4
    let gqa = fx.gqa()?;
    let x = fx.batch("x")?;
    let (q, k, v) = gqa.project(&x.items()[0], 0)?;
    // the same projections, then the tiled path instead of grouped_attention
    let context = FlashAttention::new().forward(AttentionInputs {
        q: &q,
        k: k.as_view(),
        v: v.as_view(),
        heads: gqa.heads(),
        query_offset: 0,
    })?;
    let out = gqa.weights().out_proj.forward(&context)?;
    let want = fx.batch("out")?.items()[0].clone();
    assert_matrix_close(&out, &want, Tolerance::F32);
    assert!(max_abs_diff(out.as_slice(), want.as_slice()) < 1e-5);
    println!("default config, 16 tokens: flash output vs PyTorch's, max |diff| < 1e-5");
    println!(
        "  token 15, first 4 of 768: ours    {:.4?}",
        out.row(15).iter().take(4).collect::<Vec<_>>()
    );
    println!(
        "                            PyTorch {:.4?}",
        want.row(15).iter().take(4).collect::<Vec<_>>()
    );

    // longer, odd sizes: 1000 queries (7 full tiles of 128 and one of 104) after 37
    // cached positions
    let (q, k, v) = (
        splitmix_matrix(1, 1000, 768, 1.0),
        splitmix_matrix(2, 1037, 256, 1.0),
        splitmix_matrix(3, 1037, 256, 1.0),
    );
    let heads = HeadLayout::new(12, 4, 64)?;
    let slow = grouped_attention(&q, k.as_view(), v.as_view(), heads, 37)?;
    let mut by_threads = Vec::new();
    for threads in [1, 2] {
        let fast = FlashAttention::with_threads(threads)?.forward(AttentionInputs {
            q: &q,
            k: k.as_view(),
            v: v.as_view(),
            heads,
            query_offset: 37,
        })?;
        let diff = max_abs_diff(fast.as_slice(), slow.as_slice());
        assert!(diff < 1e-5);
        assert_matrix_close(&fast, &slow, Tolerance::F32);
        println!(
            "{threads} thread(s), 1000 queries after 37 cached keys: \
                max |flash - straightforward| < 1e-5"
        );
        by_threads.push(fast);
    }
    // each thread takes whole heads, computed exactly as on one thread
    assert_eq!(by_threads[0], by_threads[1]);
    println!("1 thread and 2 threads: the same output, bit for bit");
    Ok(())
}
// ANCHOR_END: example
