//! Chapters 9-10's options (sliding window, StreamingLLM sink tokens, soft-cap, scale,
//! learned sinks, QK-norm): every kernel and the cache agree with the straightforward
//! definition, and bad options are typed errors. The checks against transformers' own
//! modules are in `variants_hf.rs`.

use attention::{
    AttentionInputs, AttnError, Batch, FlashAttention, GroupedQueryAttention, HeadLayout,
    KernelChoice, ScoreOptions, attention_weights_with, grouped_attention,
    grouped_attention_with, splitmix_matrix,
};
use nalgebra::DMatrix;
use rand::SeedableRng;

/// Kernels sum in other orders (tiles, an online softmax): PyTorch's f32 `assert_close`
/// tolerance is the bar, checked as a max absolute difference on outputs of size ~1.
const TOL: f32 = 1e-5;

fn options() -> Vec<(&'static str, ScoreOptions)> {
    let n_heads = 6;
    let sinks: Vec<f32> = (0..n_heads).map(|h| h as f32 - 2.5).collect();
    vec![
        ("plain", ScoreOptions::default()),
        ("window 37", ScoreOptions { window: Some(37), ..Default::default() }),
        ("window 600", ScoreOptions { window: Some(600), ..Default::default() }),
        ("window 1", ScoreOptions { window: Some(1), ..Default::default() }),
        (
            "window 50 + 3 sink tokens",
            ScoreOptions { window: Some(50), sink_tokens: 3, ..Default::default() },
        ),
        (
            "softcap 2 + scale 0.4",
            ScoreOptions { softcap: Some(2.0), scale: Some(0.4), ..Default::default() },
        ),
        (
            "learned sinks",
            ScoreOptions { sinks: Some(sinks.clone()), ..Default::default() },
        ),
        (
            "all",
            ScoreOptions {
                scale: Some(0.3),
                softcap: Some(3.0),
                window: Some(129),
                sink_tokens: 0,
                sinks: Some(sinks),
            },
        ),
    ]
}

/// The flash kernel, with the options applied per tile, equals the straightforward
/// definition: sizes cross the 128-query and 512-key tile edges, GQA 6/2, with a query
/// offset (rows cached before the first query).
#[test]
fn flash_with_options_equals_the_definition() {
    let heads = HeadLayout::new(6, 2, 10).unwrap();
    for (n_queries, query_offset) in [(700, 0), (130, 555), (3, 900)] {
        let n_keys = query_offset + n_queries;
        let q = splitmix_matrix(11, n_queries, 60, 2.0);
        let k = splitmix_matrix(12, n_keys, 20, 2.0);
        let v = splitmix_matrix(13, n_keys, 20, 1.0);
        for (name, opts) in options() {
            let want = grouped_attention_with(
                &q,
                k.as_view(),
                v.as_view(),
                heads,
                query_offset,
                &opts,
            )
            .unwrap();
            let x = AttentionInputs {
                q: &q,
                k: k.as_view(),
                v: v.as_view(),
                heads,
                query_offset,
            };
            let got = FlashAttention::new().with_scores(opts.clone()).forward(x).unwrap();
            let diff = (&got - &want).amax();
            assert!(
                diff < TOL,
                "{name}, {n_queries} queries at offset {query_offset}: {diff}"
            );
        }
    }
}

/// Default options are Llama 3's attention: chapter 4's function gives the same numbers.
#[test]
fn default_options_are_chapter_4() {
    let heads = HeadLayout::new(4, 2, 6).unwrap();
    let q = splitmix_matrix(1, 9, 24, 1.0);
    let k = splitmix_matrix(2, 13, 12, 1.0);
    let v = splitmix_matrix(3, 13, 12, 1.0);
    let opts = ScoreOptions::default();
    let a =
        grouped_attention_with(&q, k.as_view(), v.as_view(), heads, 4, &opts).unwrap();
    let b = grouped_attention(&q, k.as_view(), v.as_view(), heads, 4).unwrap();
    assert!((a - b).amax() < 1e-6);
}

/// What each option does to the weights, checked against its definition row by row.
#[test]
fn weights_follow_the_definitions() {
    let q = splitmix_matrix(4, 7, 8, 3.0);
    let k = splitmix_matrix(5, 10, 8, 3.0);
    // window 3 at query offset 3: query i (row 3 + i) sees keys 1 + i ..= 3 + i
    let w3 = ScoreOptions { window: Some(3), ..Default::default() };
    let w = attention_weights_with(q.as_view(), k.as_view(), 3, &w3, 0).unwrap();
    for i in 0..7 {
        for j in 0..10 {
            let seen = j + 3 > 3 + i && j <= 3 + i;
            assert_eq!(w[(i, j)] > 0.0, seen, "window: query {i}, key {j}");
        }
        assert!((w.row(i).sum() - 1.0).abs() < 1e-6);
    }
    // a learned sink takes mass exp(sink - m) / (sum + exp(sink - m)): rows sum below 1
    let sink = ScoreOptions { sinks: Some(vec![0.0, 1.5]), ..Default::default() };
    let w = attention_weights_with(q.as_view(), k.as_view(), 3, &sink, 1).unwrap();
    let plain =
        attention_weights_with(q.as_view(), k.as_view(), 3, &ScoreOptions::default(), 0)
            .unwrap();
    for i in 0..7 {
        // the same proportions between keys, scaled by the share the keys keep
        let share = w.row(i).sum();
        assert!(share < 1.0 && share > 0.0);
        let want = plain.row(i) * share;
        assert!((w.row(i) - want).amax() < 1e-6);
    }
    // the soft-cap bounds every score: with cap c the largest weight ratio is e^(2c)
    let cap = ScoreOptions { softcap: Some(0.5), ..Default::default() };
    let w = attention_weights_with(q.rows(0, 1), k.as_view(), 9, &cap, 0).unwrap();
    let (max, min) = (w.max(), w.min());
    assert!(max / min <= 1f32.exp() * 1.0001, "ratio {}", max / min);
}

fn layer(opts: ScoreOptions, kernel: KernelChoice) -> GroupedQueryAttention {
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let rope = attention::Rope::new(8, 4096, 10_000.0, None).unwrap();
    GroupedQueryAttention::random(40, 48, 6, 3, Some(rope), &mut rng)
        .unwrap()
        .with_kernel(kernel)
        .with_scores(opts)
        .unwrap()
}

/// A sliding-window layer's cache keeps only what later queries see, so a small cache
/// decodes a long sequence: the same numbers as the whole sequence at once, whatever the
/// chunking, and the cache never grows past its capacity.
#[test]
fn sliding_cache_equals_uncached_with_bounded_memory() {
    let x = Batch::new(vec![
        splitmix_matrix(21, 300, 40, 1.0),
        splitmix_matrix(22, 300, 40, 1.0),
    ])
    .unwrap();
    for sink_tokens in [0, 4] {
        let opts = ScoreOptions { window: Some(23), sink_tokens, ..Default::default() };
        for kernel in
            [KernelChoice::Straightforward, KernelChoice::Flash, KernelChoice::Auto]
        {
            let layer = layer(opts.clone(), kernel);
            let want = layer.forward(&x, 17, None).unwrap();
            // capacity: sink tokens + window + room for a chunk of up to 9 tokens
            let mut cache = layer.new_cache(2, sink_tokens + 23 + 8).unwrap();
            let mut outputs = Vec::new();
            let mut t = 0;
            for len in [9, 1, 1, 5].into_iter().cycle() {
                let len = len.min(300 - t);
                let chunk = x.narrow_seq(t, len).unwrap();
                outputs.push(layer.forward(&chunk, 17 + t, Some(&mut cache)).unwrap());
                assert!(cache.len() <= cache.capacity());
                t += len;
                if t == 300 {
                    break;
                }
            }
            assert_eq!(cache.next_pos(), 317);
            assert!(cache.dropped() > 250, "dropped {}", cache.dropped());
            let got = Batch::concat_seq(&outputs).unwrap();
            for b in 0..2 {
                let diff = (&got.items()[b] - &want.items()[b]).amax();
                assert!(diff < TOL, "sinks {sink_tokens}, {kernel:?}, seq {b}: {diff}");
            }
        }
    }
}

/// Options that cannot be right are typed errors, never a panic or a wrong number.
#[test]
fn bad_options_and_mismatched_caches_are_errors() {
    let bad = [
        ScoreOptions { window: Some(0), ..Default::default() },
        ScoreOptions { softcap: Some(0.0), ..Default::default() },
        ScoreOptions { softcap: Some(f32::NAN), ..Default::default() },
        ScoreOptions { scale: Some(-1.0), ..Default::default() },
        ScoreOptions { scale: Some(f32::INFINITY), ..Default::default() },
    ];
    for opts in bad {
        let err =
            layer(ScoreOptions::default(), KernelChoice::Auto).with_scores(opts.clone());
        assert!(matches!(err, Err(AttnError::Config(_))), "{opts:?}: {err:?}");
    }
    // one sink logit per query head (6 here)
    let opts = ScoreOptions { sinks: Some(vec![0.0; 3]), ..Default::default() };
    let err = layer(ScoreOptions::default(), KernelChoice::Auto).with_scores(opts);
    assert!(matches!(err, Err(AttnError::Shape { .. })), "{err:?}");
    // a window at usize::MAX is as good as none, without overflow anywhere
    let huge = layer(
        ScoreOptions { window: Some(usize::MAX), ..Default::default() },
        KernelChoice::Flash,
    );
    let plain = layer(ScoreOptions::default(), KernelChoice::Flash);
    let x = Batch::new(vec![splitmix_matrix(3, 20, 40, 1.0)]).unwrap();
    let diff = (&huge.forward(&x, 0, None).unwrap().items()[0]
        - &plain.forward(&x, 0, None).unwrap().items()[0])
        .amax();
    assert!(diff < TOL);
    // a cache smaller than the window never drops anything: a plain cache
    assert_eq!(huge.new_cache(1, 64).unwrap().window(), None);
    let sliding = layer(
        ScoreOptions { window: Some(10), ..Default::default() },
        KernelChoice::Auto,
    );
    assert_eq!(sliding.new_cache(1, 9).unwrap().window(), None);
    let short = x.narrow_seq(0, 7).unwrap(); // shorter than the window
    let want = sliding.forward(&short, 0, None).unwrap();
    let got = sliding.forward_prefill_decode(&short, 0, 2).unwrap();
    assert!((&got.items()[0] - &want.items()[0]).amax() < TOL);
    // with_window itself refuses a capacity below the window, and a zero window
    let cache = attention::LayerKvCache::new(1, 9, 3, 8).unwrap();
    assert!(matches!(cache.clone().with_window(10, 0), Err(AttnError::Config(_))));
    assert!(matches!(cache.with_window(0, 0), Err(AttnError::Config(_))));
    // a chunk that does not fit even after the drop
    let mut cache = sliding.new_cache(1, 12).unwrap();
    sliding.forward(&x.narrow_seq(0, 5).unwrap(), 0, Some(&mut cache)).unwrap();
    let err = sliding.forward(&x.narrow_seq(5, 8).unwrap(), 5, Some(&mut cache));
    assert!(matches!(err, Err(AttnError::CacheFull { .. })), "{err:?}");
    assert_eq!((cache.len(), cache.next_pos()), (5, 5)); // unchanged by the failed call
    // a sliding cache given to a layer without that window: refused, not silently wrong
    let mut cache = sliding.new_cache(1, 12).unwrap();
    let err = plain.forward(&x.narrow_seq(0, 5).unwrap(), 0, Some(&mut cache));
    assert!(matches!(err, Err(AttnError::CacheMismatch(_))), "{err:?}");
    // an unknown head's sink
    let q = DMatrix::<f32>::zeros(2, 4);
    let opts = ScoreOptions { sinks: Some(vec![0.0]), ..Default::default() };
    let err = attention_weights_with(q.as_view(), q.as_view(), 0, &opts, 1);
    assert!(matches!(err, Err(AttnError::IndexOutOfRange { .. })), "{err:?}");
}

/// StreamingLLM's policy against our own PyTorch reference (`streaming_sinks`, made by
/// `scripts/gen_fixtures.py`): window 6 plus 2 sink tokens, the whole sequence at once
/// and through a cache of 8 rows (the sink tokens, the window) after a prefill of 5.
#[test]
fn streaming_sinks_match_the_pytorch_reference() {
    use attention::{Fixture, Tolerance, assert_batch_close};
    let fx = Fixture::load("streaming_sinks").unwrap();
    let x = fx.batch("x").unwrap();
    let opts = ScoreOptions { window: Some(6), sink_tokens: 2, ..Default::default() };
    let layer = fx.gqa().unwrap().with_scores(opts).unwrap();
    let full = layer.forward(&x, 0, None).unwrap();
    assert_batch_close(&full, &fx.batch("out_full").unwrap(), Tolerance::F32);
    let streamed = layer.forward_prefill_decode(&x, 0, 5).unwrap();
    assert_batch_close(&streamed, &fx.batch("out_streamed").unwrap(), Tolerance::F32);
    let mut cache = layer.new_cache(2, 8).unwrap(); // sink tokens + window: all it needs
    let mut outs =
        vec![layer.forward(&x.narrow_seq(0, 5).unwrap(), 0, Some(&mut cache)).unwrap()];
    for t in 5..40 {
        let token = x.narrow_seq(t, 1).unwrap();
        outs.push(layer.forward(&token, t, Some(&mut cache)).unwrap());
    }
    assert_eq!((cache.len(), cache.dropped()), (8, 32));
    let streamed = Batch::concat_seq(&outs).unwrap();
    assert_batch_close(&streamed, &fx.batch("out_streamed").unwrap(), Tolerance::F32);
    let window_only = ScoreOptions { window: Some(6), ..Default::default() };
    let layer = fx.gqa().unwrap().with_scores(window_only).unwrap();
    let out = layer.forward(&x, 0, None).unwrap();
    assert_batch_close(&out, &fx.batch("out_window_only").unwrap(), Tolerance::F32);
}
