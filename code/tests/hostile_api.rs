//! The public API driven with hostile arguments: sizes near `usize::MAX`, positions that
//! overflow, NaN and infinity. Every call returns a typed error or PyTorch's answer:
//! never a panic, an abort (allocation failure), an out-of-bounds read, or a finite
//! number that hides a NaN.

use attention::fast::flash::QUERY_BLOCK;
use attention::support::init::splitmix_matrix;
use attention::*;
use nalgebra::DMatrix;
use proptest::prelude::*;
use rand::{SeedableRng, rngs::StdRng};

fn too_large(r: Result<impl std::fmt::Debug>) -> String {
    match r {
        Err(e @ AttnError::TooLarge { .. }) => e.to_string(),
        other => panic!("expected TooLarge, got {other:?}"),
    }
}

#[test]
fn sizes_that_wrap_or_cannot_be_allocated_are_refused_with_the_bytes_needed() {
    // these wrapped to small buffers (segfaults, reads outside the buffer) or aborted
    // before
    let msg = too_large(LayerKvCache::new(1, 1 << 62, 4, 1));
    assert!(msg.contains("LayerKvCache") && msg.contains("bytes"), "{msg}");
    too_large(LayerKvCache::new(1, usize::MAX, 1, 1));
    let msg = too_large(LayerKvCache::new(1, 1 << 40, 1, 1));
    assert!(msg.contains(&((2u128 * 4) << 40).to_string()), "names the bytes: {msg}");
    too_large(Batch::zeros(1, 1 << 62, 4));
    too_large(Rope::new(2, usize::MAX, 10_000.0, None));
    let msg = too_large(Rope::new(128, 1 << 30, 10_000.0, None)); // cos and sin: 2 · 2^30 · 64 f32
    assert!(msg.contains(&(2 * (1u128 << 30) * 64 * 4).to_string()), "{msg}");
    too_large(Tensor::new(vec![1 << 40, 1 << 40], vec![]));
    too_large(Batch::from_row_major(1 << 32, 1 << 32, 1 << 32, &[1.0]));
    too_large(matrix_from_row_major(usize::MAX, 2, &[]));
    too_large(causal_mask(1 << 20, 1 << 20, 0));
    too_large(HeadLayout::new(usize::MAX, 1, 2));
    // the straightforward path's (n_queries, n_keys) scores: 2^34 f32 = 64 GiB, refused
    // before the allocator is asked (it aborted before)
    let (q, k) = (DMatrix::<f32>::zeros(1 << 17, 2), DMatrix::<f32>::zeros(1 << 17, 2));
    let msg = too_large(attention_weights(q.as_view(), k.as_view(), Mask::None));
    assert!(msg.contains("attention scores"), "{msg}");
    let gqa =
        GroupedQueryAttention::random(4, 4, 2, 1, None, &mut StdRng::seed_from_u64(1))
            .unwrap()
            .with_kernel(KernelChoice::Straightforward);
    too_large(gqa.forward(&Batch::zeros(1, 1 << 17, 4).unwrap(), 0, None));
}

#[test]
fn zero_sizes_and_positions_past_the_end_are_errors() {
    for (seq, dim) in [(0, 4), (4, 0)] {
        assert!(matches!(
            Batch::from_row_major(1, seq, dim, &[]),
            Err(AttnError::ZeroSize { .. })
        ));
    }
    let b = Batch::zeros(1, 3, 4).unwrap();
    assert!(matches!(
        b.narrow_seq(usize::MAX, 2),
        Err(AttnError::PositionOutOfRange { .. })
    ));
    assert!(matches!(
        b.narrow_seq(2, usize::MAX),
        Err(AttnError::PositionOutOfRange { .. })
    ));
    assert!(matches!(causal_mask(2, 2, usize::MAX), Err(AttnError::MissingKeys { .. })));
    let mut scores = DMatrix::zeros(2, 3);
    assert!(apply_causal_mask(&mut scores, usize::MAX).is_err());

    let rope = Rope::new(8, 16, 10_000.0, None).unwrap();
    let mut x = DMatrix::zeros(3, 8);
    for start in [usize::MAX, usize::MAX - 1, 14] {
        assert!(matches!(
            rope.apply(&mut x, start),
            Err(AttnError::PositionOutOfRange { .. })
        ));
    }
    assert!(matches!(
        rope.cos_sin(usize::MAX, 0),
        Err(AttnError::PositionOutOfRange { .. })
    ));
    assert!(matches!(
        rope.cos_sin(0, 4),
        Err(AttnError::IndexOutOfRange { index: 4, len: 4, .. })
    ));
    let err = rope.apply(&mut x, usize::MAX).unwrap_err().to_string();
    assert!(
        err.contains("18446744073709551615..18446744073709551618"),
        "no wrap in the message: {err}"
    );

    // the layer: positions that overflow, with and without RoPE, with and without a cache
    let mut rng = StdRng::seed_from_u64(1);
    for rope in [Some(Rope::new(4, 64, 10_000.0, None).unwrap()), None] {
        let gqa = GroupedQueryAttention::random(12, 16, 4, 2, rope, &mut rng).unwrap();
        let x = Batch::zeros(1, 3, 12).unwrap();
        assert!(gqa.forward(&x, usize::MAX, None).is_err());
        assert!(gqa.forward(&x, usize::MAX - 1, None).is_err());
        let mut cache = gqa.new_cache(1, 8).unwrap();
        assert!(gqa.forward(&x, usize::MAX - 2, Some(&mut cache)).is_err());
        assert!(cache.is_empty(), "an error leaves the cache unchanged");
        assert!(gqa.forward_prefill_decode(&x, usize::MAX, 1).is_err());
        assert!(gqa.forward_prefill_decode(&x, 0, 4).is_err());
    }
    // every kernel refuses a query offset whose keys are missing, rather than returning
    // NaN
    let heads = HeadLayout::new(4, 2, 4).unwrap();
    let (q, k) = (splitmix_matrix(1, 1, 16, 1.0), splitmix_matrix(2, 5, 8, 1.0));
    for offset in [5, usize::MAX] {
        assert!(grouped_attention(&q, k.as_view(), k.as_view(), heads, offset).is_err());
        assert!(
            FlashAttention::new()
                .forward(AttentionInputs {
                    q: &q,
                    k: k.as_view(),
                    v: k.as_view(),
                    heads,
                    query_offset: offset
                })
                .is_err()
        );
        assert!(
            DecodeAttention::new()
                .forward(AttentionInputs {
                    q: &q,
                    k: k.as_view(),
                    v: k.as_view(),
                    heads,
                    query_offset: offset
                })
                .is_err()
        );
    }
    // memory arithmetic saturates instead of wrapping to 0
    let cfg = AttentionConfig {
        n_kv_heads: usize::MAX,
        head_dim: usize::MAX,
        ..Preset::SMALL.config
    };
    assert_eq!(
        kv_cache_bytes(&cfg, usize::MAX, usize::MAX, usize::MAX, DType::F32),
        u128::MAX
    );
}

#[test]
fn nan_and_infinity_propagate_as_in_pytorch() {
    // torch.softmax: a NaN or +inf in a row makes the whole row NaN; a fully masked row
    // is zeros (_safe_softmax); -inf entries of a live row are exact zeros
    let inf = f32::INFINITY;
    let s = nalgebra::dmatrix![1.0_f32, f32::NAN, 0.0; 1.0, inf, 0.0; -inf, -inf, -inf; 0.0, -inf, 0.0];
    let w = softmax_rows(&s);
    assert!(w.row(0).iter().all(|v| v.is_nan()), "{w}");
    assert!(w.row(1).iter().all(|v| v.is_nan()), "{w}");
    assert_eq!(w.row(2).iter().copied().collect::<Vec<_>>(), [0.0, 0.0, 0.0]);
    assert_eq!(w.row(3).iter().copied().collect::<Vec<_>>(), [0.5, 0.0, 0.5]);

    // a NaN in one weight of the layer: every output NaN, whichever kernel runs
    // (transformers: 720/720)
    let mut rng = StdRng::seed_from_u64(2);
    let gqa = GroupedQueryAttention::random(12, 16, 4, 2, None, &mut rng).unwrap();
    let mut weights = gqa.weights().clone();
    let mut w_key = weights.w_key.weight().clone();
    w_key[(3, 5)] = f32::NAN;
    weights.w_key = Linear::new(w_key, None).unwrap();
    let poisoned = GroupedQueryAttention::new(weights, 4, 2, None).unwrap();
    let x =
        Batch::from_row_major(1, 300, 12, splitmix_matrix(3, 1, 3600, 1.0).as_slice())
            .unwrap();
    for kernel in
        [KernelChoice::Straightforward, KernelChoice::Flash, KernelChoice::Decode]
    {
        let out = poisoned.clone().with_kernel(kernel).forward(&x, 0, None).unwrap();
        assert!(out.to_row_major().iter().all(|v| v.is_nan()), "{kernel:?}");
    }
    // a NaN in token 200's input: the outputs of tokens 200.. are NaN with every kernel.
    // Earlier tokens give it weight 0, but 0 · NaN is NaN: PyTorch's eager `weights @ v`
    // (transformers) and our straightforward kernel make every output NaN; the tiled
    // kernels skip key tiles wholly in a query's future (as PyTorch's own flash kernel
    // does), so there only some earlier rows are NaN.
    let mut data = x.to_row_major();
    data[200 * 12 + 7] = f32::NAN;
    let x_nan = Batch::from_row_major(1, 300, 12, &data).unwrap();
    for kernel in
        [KernelChoice::Straightforward, KernelChoice::Flash, KernelChoice::Decode]
    {
        let out = gqa.clone().with_kernel(kernel).forward(&x_nan, 0, None).unwrap();
        let m = &out.items()[0];
        assert!(m.rows(200, 100).iter().all(|v| v.is_nan()), "{kernel:?}");
        if kernel == KernelChoice::Straightforward {
            assert!(m.iter().all(|v| v.is_nan()), "as PyTorch's eager attention");
        }
        if kernel == KernelChoice::Flash {
            // the rows of a query block that ends before token 200 never read its key:
            // they keep their clean values. (Which later rows are NaN depends on the
            // panel height, so on the SIMD level; PyTorch's flash kernel, with its own
            // blocks, also makes some earlier rows NaN.)
            let clean = &gqa.clone().with_kernel(kernel).forward(&x, 0, None).unwrap();
            assert_eq!(m.rows(0, QUERY_BLOCK), clean.items()[0].rows(0, QUERY_BLOCK));
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Constructors and forwards with arbitrary sizes and positions, most near
    /// `usize::MAX`: always `Ok` or a typed error, never a panic or an abort.
    #[test]
    fn no_size_or_position_panics(
        // small sizes, or sizes whose products overflow or pass the memory: nothing big
        // is allocated
        a in prop_oneof![0usize..6, (usize::MAX - 4)..=usize::MAX, Just(1usize << 62)],
        b in prop_oneof![0usize..6, (usize::MAX - 4)..=usize::MAX, Just(1usize << 40)],
        c in prop_oneof![0usize..6, (usize::MAX - 4)..=usize::MAX],
        pos in prop_oneof![0usize..40, (usize::MAX - 8)..=usize::MAX],
    ) {
        let _ = LayerKvCache::new(a, b, c, 1);
        let _ = LayerKvCache::new(1, a, b, c);
        let _ = Batch::zeros(a, b, c);
        let _ = Batch::from_row_major(a, b, c, &[0.0; 8]);
        let _ = Tensor::new(vec![a, b, c], vec![0.0; 8]);
        let _ = Rope::new(b, a, 10_000.0, None);
        let _ = HeadLayout::new(a, b, c);
        let _ = causal_mask(a.min(64), b.min(64), pos);
        let _ = matrix_from_row_major(a, b, &[0.0; 8]);
        let small = Batch::zeros(1, 4, 6).unwrap();
        let _ = small.narrow_seq(pos, a);
        let rope = Rope::new(2, 40, 10_000.0, None).unwrap();
        let _ = rope.apply(&mut DMatrix::zeros(a.min(50), 4), pos);
        let _ = rope.cos_sin(pos, a);
        let gqa = GroupedQueryAttention::random(6, 8, 2, 1, Some(Rope::new(4, 40, 10_000.0, None).unwrap()), &mut StdRng::seed_from_u64(0)).unwrap();
        let _ = gqa.forward(&small, pos, None);
        if let Ok(mut cache) = gqa.new_cache(1, a.clamp(1, 64)) {
            let _ = gqa.forward(&small, pos, Some(&mut cache));
            let _ = gqa.forward(&small, pos.wrapping_add(4), Some(&mut cache));
        }
        let _ = gqa.forward_prefill_decode(&small, pos, a);
    }
}

/// A bad llama3 scaling passed to `Rope::new` names the field, not a dump of the struct.
#[test]
fn a_bad_llama3_scaling_names_its_field() {
    let bad = Llama3Scaling { factor: 0.5, ..Llama3Scaling::LLAMA_3_1 };
    let err = Rope::new(8, 16, 10_000.0, Some(bad)).unwrap_err().to_string();
    assert_eq!(
        err,
        "invalid config: rope_scaling.factor must be a finite number >= 1, got 0.5"
    );
    let bad = Llama3Scaling { high_freq_factor: f32::NAN, ..Llama3Scaling::LLAMA_3_1 };
    let err = bad.validate().unwrap_err().to_string();
    assert!(
        err.contains("rope_scaling.high_freq_factor must be finite")
            && !err.contains("Llama3Scaling {"),
        "{err}"
    );
}
