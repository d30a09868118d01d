//! Bad input gets a typed error whose message names the offending values, never a panic.

use attention::*;
use nalgebra::DMatrix;
use rand::{SeedableRng, rngs::StdRng};

fn rng() -> StdRng {
    StdRng::seed_from_u64(7)
}

#[test]
fn config_validation_names_the_problem() {
    let err = AttentionConfig::new(768, 10, 2, 1024, 500_000.0).unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid config: d_model = 768 is not divisible by n_heads = 10"
    );
    let err = AttentionConfig::new(768, 12, 5, 1024, 500_000.0).unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid config: n_heads = 12 is not divisible by n_kv_heads = 5"
    );
    assert_eq!(
        AttentionConfig::new(36, 12, 4, 1024, 500_000.0).unwrap_err(),
        AttnError::OddHeadDim { head_dim: 3 }
    );
    assert_eq!(
        AttentionConfig::new(768, 0, 4, 1024, 500_000.0).unwrap_err(),
        AttnError::ZeroSize { what: "n_heads" }
    );
    assert_eq!(
        AttentionConfig::new(768, 12, 4, 0, 500_000.0).unwrap_err(),
        AttnError::ZeroSize { what: "context_length" }
    );
    assert!(matches!(
        AttentionConfig::new(768, 12, 4, 1024, f32::NAN),
        Err(AttnError::Config(_))
    ));
    let mut cfg = Preset::LLAMA_3_2_1B.config;
    cfg.head_dim = 32;
    assert!(
        cfg.validate()
            .unwrap_err()
            .to_string()
            .contains("32 * 32 = 1024 must equal d_model = 2048")
    );
    let mut cfg = Preset::LLAMA_3_1_8B.config;
    cfg.rope_scaling.as_mut().unwrap().high_freq_factor = 0.5;
    assert!(matches!(cfg.validate(), Err(AttnError::Config(_))));
}

#[test]
fn every_preset_is_valid_and_matches_its_model() {
    for p in Preset::ALL {
        p.config.validate().unwrap_or_else(|e| panic!("{}: {e}", p.name));
        assert_eq!(p.config.n_heads * p.config.head_dim, p.config.d_model, "{}", p.name);
    }
    let seed = Preset::SMALL.config;
    assert_eq!(
        (seed.d_model, seed.n_heads, seed.n_kv_heads, seed.head_dim, seed.context_length),
        (768, 12, 4, 64, 1024)
    );
    assert_eq!(Preset::LLAMA_3_2_3B.config.group_size(), 3);
}

#[test]
fn memory_arithmetic_matches_the_starting_project() {
    let seed = Preset::SMALL.config;
    // "~2 MB KV cache" for one layer, f32, context 1024: 2 · 1024 · 4 · 64 · 4 bytes = 2
    // MiB
    assert_eq!(kv_cache_bytes_per_layer(&seed, 1, 1024, DType::F32), 2 * 1024 * 1024);
    // "67 % memory reduction" for 12 query heads sharing 4 KV heads
    assert!((gqa_kv_saving(&seed) - 2.0 / 3.0).abs() < 1e-12);
    // Llama 3 8B, bf16, 8192 positions, 32 layers: exactly 1 GiB
    let l8 = Preset::LLAMA_3_8B;
    assert_eq!(
        kv_cache_bytes(&l8.config, l8.n_layers.unwrap(), 1, 8192, DType::BF16),
        1 << 30
    );
}

#[test]
fn wrong_input_width_is_a_shape_error() {
    let mha = MultiHeadAttention::random(12, 16, 4, false, &mut rng()).unwrap();
    let err = mha.forward(&Batch::zeros(2, 7, 13).unwrap()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "shape mismatch in Attention::forward input: expected (_, _, 12), got (2, 7, 13)"
    );
    let lin = Linear::random(12, 16, true, &mut rng()).unwrap();
    assert!(matches!(lin.forward(&DMatrix::zeros(3, 16)), Err(AttnError::Shape { .. })));
}

#[test]
fn impossible_module_shapes_are_rejected() {
    let mut r = rng();
    assert!(matches!(
        MultiHeadAttention::random(12, 16, 3, false, &mut r),
        Err(AttnError::NotDivisible { .. })
    ));
    assert!(matches!(
        GroupedQueryAttention::random(12, 16, 4, 3, None, &mut r),
        Err(AttnError::NotDivisible { denominator: 3, .. })
    ));
    // RoPE tables for another head_dim
    let rope = Rope::new(8, 32, 10_000.0, None).unwrap();
    assert!(matches!(
        GroupedQueryAttention::random(12, 16, 4, 2, Some(rope), &mut r),
        Err(AttnError::Config(_))
    ));
    assert_eq!(
        Rope::new(5, 32, 10_000.0, None).unwrap_err(),
        AttnError::OddHeadDim { head_dim: 5 }
    );
    // K/V projections of the wrong width
    let gqa = GroupedQueryAttention::random(12, 16, 4, 2, None, &mut r).unwrap();
    let swapped =
        QkvoWeights { w_key: gqa.weights().w_query.clone(), ..gqa.weights().clone() };
    let err = GroupedQueryAttention::new(swapped, 4, 2, None).unwrap_err();
    assert!(err.to_string().contains("expected (8, 12), got (16, 12)"), "{err}");
    assert!(
        Linear::new(DMatrix::zeros(4, 3), Some(nalgebra::DVector::zeros(3))).is_err()
    );
    assert!(Batch::new(vec![DMatrix::zeros(2, 3), DMatrix::zeros(3, 2)]).is_err());
    assert!(Batch::new(vec![]).is_err());
}

#[test]
fn full_cache_is_an_error_and_leaves_the_cache_unchanged() {
    let mut r = rng();
    let rope = Rope::new(4, 64, 10_000.0, None).unwrap();
    let gqa = GroupedQueryAttention::random(12, 16, 4, 2, Some(rope), &mut r).unwrap();
    let mut cache = LayerKvCache::new(1, 6, 2, 4).unwrap();
    gqa.forward(&Batch::zeros(1, 5, 12).unwrap(), 0, Some(&mut cache)).unwrap();
    let before = cache.clone();
    let err =
        gqa.forward(&Batch::zeros(1, 2, 12).unwrap(), 5, Some(&mut cache)).unwrap_err();
    assert_eq!(err, AttnError::CacheFull { capacity: 6, len: 5, adding: 2 });
    assert_eq!(
        err.to_string(),
        "KV cache full: holds 5 of 6 positions, cannot append 2 more"
    );
    assert_eq!(cache, before);
    // the last free slot still works, then reset empties the cache
    gqa.forward(&Batch::zeros(1, 1, 12).unwrap(), 5, Some(&mut cache)).unwrap();
    assert_eq!(cache.len(), 6);
    cache.reset();
    assert!(cache.is_empty());
}

#[test]
fn cache_position_and_rope_range_are_checked() {
    let mut r = rng();
    let rope = Rope::new(4, 8, 10_000.0, None).unwrap();
    let gqa = GroupedQueryAttention::random(12, 16, 4, 2, Some(rope), &mut r).unwrap();
    let mut cache = LayerKvCache::new(1, 32, 2, 4).unwrap();
    // start_pos must follow the cache: a RoPE offset not advanced is caught, not silently
    // wrong
    gqa.forward(&Batch::zeros(1, 3, 12).unwrap(), 0, Some(&mut cache)).unwrap();
    let err =
        gqa.forward(&Batch::zeros(1, 1, 12).unwrap(), 0, Some(&mut cache)).unwrap_err();
    assert_eq!(err, AttnError::CachePosition { start_pos: 0, next_pos: 3 });
    // positions past the RoPE tables
    let err = gqa.forward(&Batch::zeros(1, 4, 12).unwrap(), 6, None).unwrap_err();
    assert_eq!(
        err,
        AttnError::PositionOutOfRange { start_pos: 6, len: 4, max_positions: 8 }
    );
    assert_eq!(err.to_string(), "positions 6..10 exceed the maximum of 8 positions");
    // a batch of another size than the cache's
    let err =
        gqa.forward(&Batch::zeros(2, 1, 12).unwrap(), 3, Some(&mut cache)).unwrap_err();
    assert!(matches!(err, AttnError::CacheMismatch(_)), "{err}");
    assert_eq!(cache.len(), 3);
}

#[test]
fn mask_and_attention_shape_errors() {
    assert!(causal_mask(4, 3, 0).is_err());
    let mut s = DMatrix::zeros(2, 4);
    assert!(apply_causal_mask(&mut s, 3).is_err());
    let q = DMatrix::<f32>::zeros(3, 4);
    let k = DMatrix::<f32>::zeros(5, 6);
    assert!(attention_weights(q.as_view(), k.as_view(), Mask::None).is_err());
    let k = DMatrix::<f32>::zeros(5, 4);
    let v = DMatrix::<f32>::zeros(4, 2);
    assert!(
        scaled_dot_product_attention(q.as_view(), k.as_view(), v.as_view(), Mask::None)
            .is_err()
    );
}

#[test]
fn missing_and_corrupt_files_are_errors() {
    let err = Fixture::load("no_such_case").unwrap_err();
    assert!(matches!(err, AttnError::Io { .. }), "{err}");
    let dir =
        std::env::temp_dir().join(format!("attention-errors-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("corrupt.safetensors");
    std::fs::write(&bad, b"\x10\0\0\0\0\0\0\0{not json at all").unwrap();
    assert!(matches!(TensorFile::open(&bad), Err(AttnError::Format { .. })));
    // a valid file without the tensor asked for
    let good = dir.join("good.safetensors");
    let t = Tensor::new(vec![2, 3], vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]).unwrap();
    save_tensors(&good, &[("w", &t)]).unwrap();
    let f = TensorFile::open(&good).unwrap();
    assert_eq!(f.tensor("w").unwrap(), t);
    assert_eq!(f.matrix("w").unwrap()[(1, 0)], 4.0, "row-major round trip");
    let err = f.tensor("q_proj.weight").unwrap_err();
    assert!(err.to_string().ends_with("missing tensor `q_proj.weight`"), "{err}");
    assert!(f.tensor_with_shape("w", &[3, 2]).is_err());
    assert!(f.batch("w").is_err(), "rank 2 is not a batch");
    std::fs::remove_dir_all(&dir).ok();
}
