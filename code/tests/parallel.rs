//! Chapter 16: attention across cores and (simulated) devices.
//!
//! - **The merge rule**: the empty state is its identity and it commutes, both bit for
//!   bit; it is associative within f32 rounding; merging blocks gives attention over all
//!   of them, and the running `m`, `ℓ` of chapter 8's `online_softmax_step`.
//! - **Split-K decode** equals `grouped_attention` for 1 to 5 splits over odd sizes, and
//!   for a fixed number of splits gives the same bits on 1 to 5 threads.
//! - **Tensor parallelism** equals `GroupedQueryAttention::forward` for MHA, GQA and MQA
//!   on every device count dividing `n_kv_heads` (with and without a KV cache, with
//!   biases, a window and learned sinks); other counts are a typed error.
//! - **Ring attention** equals causal `grouped_attention`, and the whole layer
//!   `forward`, for 1 to 5 devices and uneven blocks.
//! - **Bytes**: what the code sends equals the formulas (ring all-reduce `2·(D−1)/D · N`,
//!   ring attention every block but one).
//!
//! **Tolerance.** [`Tolerance::F32`] (rtol 1.3e-6, atol 1e-5), PyTorch's `assert_close`
//! default for f32, for every comparison with the one-device computation: the parallel
//! forms add the same terms in another order (the softmax sum and the weighted values
//! split into partial sums rescaled by `exp(m_part − m)`, the output projection's sum
//! split across devices). Measured on these tests' outputs (up to 2 in magnitude): at
//! most 4e-7 (split-K), 2.4e-7 (tensor parallel), 4.8e-7 (ring), 1.2e-7 between the two
//! ways of associating three merges. Equalities the chapter promises bit for bit are
//! tested with `==`.

mod common;
use attention::fast::online_softmax::online_softmax_step;
use attention::parallel::comm::{
    all_reduce_bytes_per_device, all_reduce_on_threads, chunk_bounds,
};
use attention::parallel::partial::{PartialAttention, attend_block, merge};
use attention::parallel::ring::{
    BlockUse, RingAttention, block_use, ring_bytes_per_device, ring_bytes_per_token,
    ring_schedule,
};
use attention::parallel::split_k::{SplitKDecode, split_ranges};
use attention::parallel::tensor::{TensorParallel, kv_share, tp_bytes_per_token};
use attention::{
    AttentionConfig, AttentionInputs, AttnError, Batch, DType, GroupedQueryAttention,
    HeadLayout, Linear, Preset, QkvoWeights, Rope, ScoreOptions, Tolerance,
    assert_batch_close, assert_matrix_close, grouped_attention, splitmix_matrix,
};
use common::spread_qkv as qkv;
use nalgebra::{DMatrix, DVector};
use proptest::prelude::*;
use rand::{SeedableRng, rngs::StdRng};

const TOL: Tolerance = Tolerance::F32;

fn inputs<'a>(
    q: &'a DMatrix<f32>,
    k: &'a DMatrix<f32>,
    v: &'a DMatrix<f32>,
    heads: HeadLayout,
    query_offset: usize,
) -> AttentionInputs<'a> {
    AttentionInputs { q, k: k.as_view(), v: v.as_view(), heads, query_offset }
}

/// The state of `q` over keys `range` of `k`, `v`.
fn block_state(
    q: &DMatrix<f32>,
    k: &DMatrix<f32>,
    v: &DMatrix<f32>,
    heads: HeadLayout,
    query_offset: usize,
    range: std::ops::Range<usize>,
) -> PartialAttention {
    let (kb, vb) = (k.rows_range(range.clone()), v.rows_range(range.clone()));
    let x = AttentionInputs { q, k: kb, v: vb, heads, query_offset };
    attend_block(x, range.start).unwrap()
}

// ---------------------------------------------------------------- the merge rule

/// Three blocks of 13 keys cut 4 | 1 | 8, for 3 queries at offset 10 (the last block is
/// partly in the first queries' future), GQA 6/2 of head_dim 10.
fn three_states() -> ([PartialAttention; 3], DMatrix<f32>) {
    let heads = HeadLayout::new(6, 2, 10).unwrap();
    let [q, k, v] = qkv(3, heads, 3, 13);
    let states = [0..4, 4..5, 5..13].map(|r| block_state(&q, &k, &v, heads, 10, r));
    let want = grouped_attention(&q, k.as_view(), v.as_view(), heads, 10).unwrap();
    (states, want)
}

#[test]
fn the_empty_state_is_the_identity_bit_for_bit() {
    let ([a, ..], _) = three_states();
    let empty = PartialAttention::empty(3, HeadLayout::new(6, 2, 10).unwrap()).unwrap();
    assert_eq!(merge(&empty, &a).unwrap(), a);
    assert_eq!(merge(&a, &empty).unwrap(), a);
    assert_eq!(merge(&empty, &empty).unwrap(), empty);
    assert!(empty.finish().iter().all(|&x| x == 0.0), "no key seen: zeros");
}

#[test]
fn merge_commutes_bit_for_bit_and_associates_within_rounding() {
    let ([a, b, c], _) = three_states();
    assert_eq!(merge(&a, &b).unwrap(), merge(&b, &a).unwrap());
    assert_eq!(merge(&c, &a).unwrap(), merge(&a, &c).unwrap());
    let left = merge(&merge(&a, &b).unwrap(), &c).unwrap();
    let right = merge(&a, &merge(&b, &c).unwrap()).unwrap();
    assert_eq!(left.max(), right.max(), "the maximum is exact either way");
    assert_matrix_close(left.sum(), right.sum(), TOL);
    assert_matrix_close(left.out(), right.out(), TOL);
    assert_matrix_close(&left.finish(), &right.finish(), TOL);
}

#[test]
fn merged_blocks_are_attention_over_all_keys() {
    let ([a, b, c], want) = three_states();
    let all = merge(&merge(&a, &b).unwrap(), &c).unwrap();
    assert_matrix_close(&all.finish(), &want, TOL);
    // every order of the three
    for [x, y, z] in
        [[&a, &c, &b], [&b, &a, &c], [&b, &c, &a], [&c, &a, &b], [&c, &b, &a]]
    {
        let m = merge(&merge(x, y).unwrap(), z).unwrap();
        assert_matrix_close(&m.finish(), &want, TOL);
    }
}

#[test]
fn merge_is_chapter_8s_online_softmax_step() {
    // one query head over 17 keys in blocks of 5: the merged states' running m and ℓ
    // after each block are the online softmax's
    let heads = HeadLayout::new(1, 1, 8).unwrap();
    let [q, k, v] = qkv(21, heads, 1, 17);
    let scores: Vec<f32> =
        k.row_iter().map(|kj| q.row(0).dot(&kj) / (8f32).sqrt()).collect();
    let (mut m, mut l) = (f32::NEG_INFINITY, 0.0);
    let mut state = PartialAttention::empty(1, heads).unwrap();
    for start in (0..17).step_by(5) {
        let end = (start + 5).min(17);
        let mut block = scores[start..end].to_vec();
        online_softmax_step(&mut block, end - start, &mut m, &mut l);
        state.merge_from(&block_state(&q, &k, &v, heads, 16, start..end)).unwrap();
        assert_eq!(state.max()[(0, 0)], m, "same maximum after keys ..{end}");
        let rel = (state.sum()[(0, 0)] - l).abs() / l;
        assert!(rel < 1e-6, "sum after keys ..{end}: {} vs {l}", state.sum()[(0, 0)]);
    }
}

#[test]
fn merge_refuses_states_of_other_shapes() {
    let a = PartialAttention::empty(3, HeadLayout::new(6, 2, 10).unwrap()).unwrap();
    let b = PartialAttention::empty(3, HeadLayout::new(6, 3, 10).unwrap()).unwrap();
    let c = PartialAttention::empty(2, HeadLayout::new(6, 2, 10).unwrap()).unwrap();
    assert_eq!(merge(&a, &b).unwrap(), a, "KV heads do not shape a state");
    assert!(matches!(merge(&a, &c), Err(AttnError::Shape { .. })));
    let d = PartialAttention::empty(3, HeadLayout::new(3, 1, 20).unwrap()).unwrap();
    assert!(matches!(merge(&a, &d), Err(AttnError::Shape { .. })));
}

#[test]
fn attend_block_checks_its_arguments() {
    let heads = HeadLayout::new(4, 2, 6).unwrap();
    let [q, k, v] = qkv(5, heads, 2, 9);
    let x = inputs(&q, &k, &v, heads, 7);
    let short_v = v.rows(0, 8).into_owned();
    for bad in [
        AttentionInputs { v: short_v.as_view(), ..x },
        AttentionInputs { k: v.columns(0, 6), ..x },
        AttentionInputs { heads: HeadLayout::new(4, 4, 6).unwrap(), ..x },
    ] {
        assert!(matches!(attend_block(bad, 0), Err(AttnError::Shape { .. })));
    }
    assert!(matches!(
        attend_block(x, usize::MAX),
        Err(AttnError::PositionOutOfRange { .. })
    ));
    // a block wholly in the queries' future leaves them empty
    let future = attend_block(inputs(&q, &k, &v, heads, 0), 5).unwrap();
    assert_eq!(future, PartialAttention::empty(2, heads).unwrap());
}

// ---------------------------------------------------------------- split-K decode

#[test]
fn split_ranges_cover_the_keys_in_order() {
    for (n, s) in [(0, 3), (2, 5), (37, 1), (37, 4), (1001, 5)] {
        let r = split_ranges(n, s);
        assert_eq!(r.len(), s);
        assert_eq!((r[0].start, r[s - 1].end), (0, n));
        assert!(r.windows(2).all(|w| w[0].end == w[1].start));
        assert!(r.iter().all(|x| x.len() == n / s || x.len() == n / s + 1));
    }
}

#[test]
fn split_k_equals_grouped_attention_for_1_to_5_splits() {
    // MHA, GQA, MQA; odd numbers of keys, one to three queries at the end of the cache
    for (seed, (n_heads, n_kv, d)) in
        [(4, 4, 6), (6, 2, 10), (3, 1, 8)].into_iter().enumerate()
    {
        let heads = HeadLayout::new(n_heads, n_kv, d).unwrap();
        for (n_keys, n_q) in [(1, 1), (7, 1), (37, 3), (301, 2), (1023, 1)] {
            let [q, k, v] = qkv(40 + seed as u64, heads, n_q, n_keys);
            let x = inputs(&q, &k, &v, heads, n_keys - n_q);
            let want =
                grouped_attention(&q, k.as_view(), v.as_view(), heads, n_keys - n_q)
                    .unwrap();
            for splits in 1..=5 {
                let got = SplitKDecode::new(splits, 2).unwrap().forward(x).unwrap();
                assert_matrix_close(&got, &want, TOL);
            }
        }
    }
}

#[test]
fn split_k_bits_do_not_depend_on_the_threads() {
    let heads = HeadLayout::new(6, 2, 10).unwrap();
    let [q, k, v] = qkv(50, heads, 2, 777);
    let x = inputs(&q, &k, &v, heads, 775);
    for splits in 1..=5 {
        let one = SplitKDecode::new(splits, 1).unwrap().forward(x).unwrap();
        for threads in 2..=5 {
            let got = SplitKDecode::new(splits, threads).unwrap().forward(x).unwrap();
            assert_eq!(got, one, "{splits} splits on {threads} threads");
        }
    }
    // another number of splits rounds differently (not a promise, but what happens)
    let three = SplitKDecode::new(3, 1).unwrap().forward(x).unwrap();
    let four = SplitKDecode::new(4, 1).unwrap().forward(x).unwrap();
    assert_ne!(three, four);
    assert_matrix_close(&three, &four, TOL);
}

#[test]
fn split_k_reads_only_the_keys_the_last_query_sees() {
    // a cache longer than query_offset + n_queries: the rows past it do not count
    let heads = HeadLayout::new(4, 2, 6).unwrap();
    let [q, k, v] = qkv(60, heads, 1, 50);
    let x = inputs(&q, &k, &v, heads, 30);
    let got = SplitKDecode::new(4, 2).unwrap().forward(x).unwrap();
    let want = grouped_attention(&q, k.as_view(), v.as_view(), heads, 30).unwrap();
    assert_matrix_close(&got, &want, TOL);
}

#[test]
fn split_k_errors_are_typed() {
    assert!(matches!(SplitKDecode::new(0, 1), Err(AttnError::ZeroSize { .. })));
    assert!(matches!(SplitKDecode::new(2, 0), Err(AttnError::ZeroSize { .. })));
    let heads = HeadLayout::new(4, 2, 6).unwrap();
    let [q, k, v] = qkv(70, heads, 2, 9);
    let split = SplitKDecode::new(3, 2).unwrap();
    let err = split.forward(inputs(&q, &k, &v, heads, 8)).unwrap_err();
    assert!(matches!(err, AttnError::MissingKeys { .. }), "{err}");
    let wide = HeadLayout::new(4, 4, 6).unwrap();
    let err = split.forward(inputs(&q, &k, &v, wide, 1)).unwrap_err();
    assert!(matches!(err, AttnError::Shape { .. }), "{err}");
}

// ---------------------------------------------------------------- the all-reduce

#[test]
fn all_reduce_sums_and_sends_what_the_formula_says() {
    for devices in 1..=6 {
        for len in [1, 5, 12, 37, 96] {
            let bufs: Vec<Vec<f32>> = (0..devices)
                .map(|r| splitmix_matrix(80 + r as u64, 1, len, 1.0).as_slice().to_vec())
                .collect();
            let want: Vec<f32> =
                (0..len).map(|i| bufs.iter().map(|b| b[i]).sum()).collect();
            let mut got = bufs.clone();
            let traffic = all_reduce_on_threads(&mut got).unwrap();
            for g in &got {
                assert_eq!(g, &got[0], "every device holds the same bits");
                for (x, y) in g.iter().zip(&want) {
                    assert!((x - y).abs() <= 1e-6, "{x} vs {y}");
                }
            }
            // every chunk is sent D − 1 times in each half
            let total = 2 * (devices as u64 - 1) * len as u64 * 4;
            assert_eq!(traffic.total(), total, "{devices} devices, {len} numbers");
            // device r sends every chunk but r + 1 (reduce-scatter), r + 2 (all-gather)
            for r in 0..devices {
                let skipped = chunk_bounds(len, devices, (r + 1) % devices).len()
                    + chunk_bounds(len, devices, (r + 2) % devices).len();
                let own = (2 * len - skipped) as u64 * 4;
                let want = if devices == 1 { 0 } else { own };
                assert_eq!(traffic.bytes_sent[r], want, "device {r} of {devices}, {len}");
            }
            if len % devices == 0 {
                let formula = all_reduce_bytes_per_device(len as u128, devices, 4);
                assert!(traffic.bytes_sent.iter().all(|&b| b as u128 == formula));
            }
        }
    }
}

// ---------------------------------------------------------------- tensor parallelism

/// A layer `d_in` 22 -> `d_out` 18·… with RoPE, random weights.
fn layer(n_heads: usize, n_kv: usize, d: usize, seed: u64) -> GroupedQueryAttention {
    let mut rng = StdRng::seed_from_u64(seed);
    let rope = Rope::new(d, 64, 10_000.0, None).unwrap();
    GroupedQueryAttention::random(22, n_heads * d, n_heads, n_kv, Some(rope), &mut rng)
        .unwrap()
}

fn batch(seed: u64, b: usize, seq: usize, dim: usize) -> Batch {
    Batch::new((0..b).map(|i| splitmix_matrix(seed + i as u64, seq, dim, 1.0)).collect())
        .unwrap()
}

#[test]
fn tensor_parallel_equals_the_layer_for_mha_gqa_mqa() {
    for (n_heads, n_kv, d) in [(6, 6, 4), (8, 4, 6), (12, 4, 2), (4, 1, 8)] {
        let layer = layer(n_heads, n_kv, d, 90 + n_heads as u64);
        let x = batch(91, 2, 5, 22);
        let want = layer.forward(&x, 3, None).unwrap();
        for devices in (1..=n_kv).filter(|dv| n_kv % dv == 0) {
            let tp = TensorParallel::new(&layer, devices).unwrap();
            let (got, traffic) = tp.forward(&x, 3, None).unwrap();
            assert_batch_close(&got, &want, TOL);
            // the whole (batch, seq, d_out) output, all-reduced once
            let n = (2 * 5 * layer.d_out()) as u128;
            assert_eq!(traffic.total() as u128, 2 * (devices as u128 - 1) * n * 4);
            if n.is_multiple_of(devices as u128) {
                let formula = all_reduce_bytes_per_device(n, devices, 4);
                assert!(traffic.bytes_sent.iter().all(|&b| b as u128 == formula));
            }
        }
    }
}

#[test]
fn tensor_parallel_shards_hold_whole_kv_heads() {
    let layer = layer(12, 4, 2, 100);
    let tp = TensorParallel::new(&layer, 2).unwrap();
    let s = tp.shard(1).unwrap();
    assert_eq!((s.n_heads(), s.n_kv_heads(), s.head_dim()), (6, 2, 2));
    // its k rows are the layer's rows of KV heads 2 and 3
    let want = layer.weights().w_key.weight().rows(4, 4);
    assert_eq!(s.weights().w_key.weight(), &want.into_owned());
    assert_eq!(s.weights().out_proj.weight().shape(), (24, 12));
    assert!(tp.shard(2).is_none());
}

#[test]
fn tensor_parallel_decodes_through_per_device_caches() {
    let layer = layer(8, 4, 6, 110);
    let x = batch(111, 2, 7, 22);
    let want = layer.forward_prefill_decode(&x, 5, 4).unwrap();
    for devices in [1, 2, 4] {
        let tp = TensorParallel::new(&layer, devices).unwrap();
        let mut caches = tp.new_caches(2, 7).unwrap();
        assert!(caches.iter().all(|c| c.kv_dim() == 4 / devices * 6));
        let mut parts =
            vec![tp.forward(&x.narrow_seq(0, 4).unwrap(), 5, Some(&mut caches))];
        for t in 4..7 {
            let step = x.narrow_seq(t, 1).unwrap();
            parts.push(tp.forward(&step, 5 + t, Some(&mut caches)));
        }
        let parts: Vec<Batch> = parts.into_iter().map(|p| p.unwrap().0).collect();
        assert_batch_close(&Batch::concat_seq(&parts).unwrap(), &want, TOL);
        let err = tp.forward(&x, 0, Some(&mut caches[..devices - 1])).unwrap_err();
        assert!(matches!(err, AttnError::CacheMismatch(_)), "{err}");
    }
}

#[test]
fn tensor_parallel_keeps_biases_windows_and_sinks() {
    let (n_heads, n_kv, d, d_in) = (8, 4, 6, 22);
    let w = |seed: u64, rows: usize, cols: usize| {
        let bias = DVector::from_column_slice(
            splitmix_matrix(seed + 1, rows, 1, 0.5).as_slice(),
        );
        Linear::new(splitmix_matrix(seed, rows, cols, 0.3), Some(bias)).unwrap()
    };
    let weights = QkvoWeights {
        w_query: w(120, n_heads * d, d_in),
        w_key: w(122, n_kv * d, d_in),
        w_value: w(124, n_kv * d, d_in),
        out_proj: w(126, 14, n_heads * d),
    };
    let scores = ScoreOptions {
        window: Some(3),
        sinks: Some((0..n_heads).map(|h| 0.3 * h as f32 - 1.0).collect()),
        ..ScoreOptions::default()
    };
    let rope = Rope::new(d, 64, 10_000.0, None).unwrap();
    let layer = GroupedQueryAttention::new(weights, n_heads, n_kv, Some(rope))
        .unwrap()
        .with_scores(scores)
        .unwrap();
    let x = batch(127, 1, 9, d_in);
    let want = layer.forward(&x, 2, None).unwrap();
    for devices in [2, 4] {
        let (got, _) =
            TensorParallel::new(&layer, devices).unwrap().forward(&x, 2, None).unwrap();
        assert_batch_close(&got, &want, TOL);
    }
}

#[test]
fn tensor_parallel_needs_devices_dividing_the_kv_heads() {
    let layer = layer(8, 4, 6, 130);
    for devices in [3, 8, 5] {
        let err = TensorParallel::new(&layer, devices).unwrap_err();
        assert_eq!(
            err,
            AttnError::NotDivisible {
                numerator_name: "n_kv_heads",
                numerator: 4,
                denominator_name: "devices",
                denominator: devices
            }
        );
    }
    assert!(matches!(TensorParallel::new(&layer, 0), Err(AttnError::ZeroSize { .. })));
    let tp = TensorParallel::new(&layer, 2).unwrap();
    let err = tp.forward(&batch(131, 1, 3, 21), 0, None).unwrap_err();
    assert!(matches!(err, AttnError::Shape { .. }), "{err}");
}

const LLAMA_3_70B: AttentionConfig = attention::parallel::LLAMA_3_70B.config;

#[test]
fn bytes_per_token_for_llama_3_on_8_devices() {
    let small = Preset::LLAMA_3_8B.config;
    // 2·7/8 · d_model · 2 bytes (bf16)
    assert_eq!(tp_bytes_per_token(&small, 8, DType::BF16), 14_336);
    assert_eq!(tp_bytes_per_token(&LLAMA_3_70B, 8, DType::BF16), 28_672);
    // 2·7/8 · 8·128 · 2 bytes: the same for both, 8 KV heads of 128
    assert_eq!(ring_bytes_per_token(&small, 8, DType::BF16), 3_584);
    assert_eq!(ring_bytes_per_token(&LLAMA_3_70B, 8, DType::BF16), 3_584);
    assert_eq!(tp_bytes_per_token(&small, 1, DType::BF16), 0);
}

#[test]
fn kv_heads_are_replicated_past_n_kv_heads_devices() {
    let share = |d| kv_share(&LLAMA_3_70B, d, DType::BF16).unwrap();
    assert_eq!((share(8).kv_heads, share(8).replicas), (1, 1));
    assert_eq!((share(16).kv_heads, share(16).replicas, share(16).q_heads), (1, 2, 4));
    // 2 · 128 · 2 bytes per KV head and token: 4096 B on one device, 512 B from 8 on
    assert_eq!(share(1).cache_bytes_per_device, 4096);
    assert_eq!(share(8).cache_bytes_per_device, 512);
    assert_eq!(share(32).cache_bytes_per_device, 512);
    assert_eq!(share(32).cache_bytes_all_devices, 4 * 4096);
    assert_eq!(share(2).kv_weight_bytes_per_device, 4 * 512 * 8192);
    for bad in [3, 12, 128] {
        assert!(matches!(
            kv_share(&LLAMA_3_70B, bad, DType::BF16),
            Err(AttnError::NotDivisible { .. })
        ));
    }
}

// ---------------------------------------------------------------- ring attention

#[test]
fn ring_schedule_shows_every_block_to_every_device_once() {
    for devices in 1..=6 {
        let schedule = ring_schedule(devices);
        for r in 0..devices {
            let mut seen: Vec<usize> = schedule.iter().map(|step| step[r]).collect();
            assert_eq!(seen[0], r, "its own block first");
            seen.sort_unstable();
            assert_eq!(seen, (0..devices).collect::<Vec<_>>());
            let computed =
                (0..devices).filter(|&o| block_use(r, o) != BlockUse::Future).count();
            assert_eq!(computed, r + 1, "device {r}: its own block and the r before");
        }
    }
}

#[test]
fn ring_attention_equals_causal_attention() {
    let heads = HeadLayout::new(6, 2, 10).unwrap();
    let cases: [&[usize]; 7] = [
        &[9],
        &[4, 5],
        &[1, 7, 1],
        &[3, 1, 5, 2],
        &[2, 2, 2, 2, 2],
        &[6, 1, 1, 1, 4],
        &[13, 2],
    ];
    for (i, blocks) in cases.into_iter().enumerate() {
        let n: usize = blocks.iter().sum();
        let [q, k, v] = qkv(140 + i as u64, heads, n, n);
        let want = grouped_attention(&q, k.as_view(), v.as_view(), heads, 0).unwrap();
        let ring = RingAttention::with_blocks(blocks.to_vec()).unwrap();
        let (got, traffic) = ring.forward(&q, &k, &v, heads).unwrap();
        assert_matrix_close(&got, &want, TOL);
        let formula = ring_bytes_per_device(blocks, heads.kv_dim(), 4);
        let sent: Vec<u128> = traffic.bytes_sent.iter().map(|&b| b as u128).collect();
        assert_eq!(sent, formula, "blocks {blocks:?}");
    }
}

#[test]
fn ring_attention_with_even_blocks_sends_the_formula() {
    let heads = HeadLayout::new(4, 1, 8).unwrap();
    for devices in 1..=5 {
        let n = 12 * devices;
        let [q, k, v] = qkv(150, heads, n, n);
        let ring = RingAttention::even(n, devices).unwrap();
        let (_, traffic) = ring.forward(&q, &k, &v, heads).unwrap();
        // 2·(D−1)/D · n · kv_dim · 4 bytes, for every device
        let want = 2 * (devices as u64 - 1) * 12 * heads.kv_dim() as u64 * 4;
        assert!(traffic.bytes_sent.iter().all(|&b| b == want), "{traffic:?}");
    }
}

#[test]
fn ring_attention_runs_the_whole_layer() {
    let layer = layer(8, 4, 6, 160);
    let x = splitmix_matrix(161, 11, 22, 1.0);
    let want = layer.forward(&Batch::single(x.clone()), 7, None).unwrap();
    for blocks in [vec![11], vec![5, 6], vec![2, 4, 1, 4]] {
        let ring = RingAttention::with_blocks(blocks).unwrap();
        let (got, _) = ring.forward_layer(&layer, &x, 7).unwrap();
        assert_matrix_close(&got, &want.items()[0], TOL);
    }
    let windowed =
        layer.with_scores(ScoreOptions { window: Some(3), ..Default::default() });
    let err =
        RingAttention::even(11, 2).unwrap().forward_layer(&windowed.unwrap(), &x, 0);
    assert!(matches!(err, Err(AttnError::Unsupported(_))));
}

#[test]
fn ring_attention_errors_are_typed() {
    assert!(matches!(
        RingAttention::with_blocks(vec![]),
        Err(AttnError::ZeroSize { .. })
    ));
    assert!(matches!(
        RingAttention::with_blocks(vec![3, 0]),
        Err(AttnError::ZeroSize { .. })
    ));
    assert!(matches!(RingAttention::even(3, 4), Err(AttnError::ZeroSize { .. })));
    let heads = HeadLayout::new(4, 2, 6).unwrap();
    let [q, k, v] = qkv(170, heads, 9, 9);
    let ring = RingAttention::with_blocks(vec![4, 4]).unwrap();
    assert!(matches!(ring.forward(&q, &k, &v, heads), Err(AttnError::Shape { .. })));
    let short = k.rows(0, 8).into_owned();
    let ring = RingAttention::with_blocks(vec![4, 5]).unwrap();
    let err = ring.forward(&q, &short, &v, heads).unwrap_err();
    assert!(matches!(err, AttnError::Shape { .. }), "{err}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Random blocks (1 to 5 devices of 1 to 9 tokens) and head layouts.
    #[test]
    fn ring_equals_causal_attention_for_random_blocks(
        blocks in prop::collection::vec(1usize..10, 1..6),
        (n_kv, group) in (1usize..4, 1usize..4),
        seed in 0u64..1000,
    ) {
        let heads = HeadLayout::new(n_kv * group, n_kv, 4).unwrap();
        let n: usize = blocks.iter().sum();
        let [q, k, v] = qkv(seed, heads, n, n);
        let want = grouped_attention(&q, k.as_view(), v.as_view(), heads, 0).unwrap();
        let ring = RingAttention::with_blocks(blocks.clone()).unwrap();
        let (got, traffic) = ring.forward(&q, &k, &v, heads).unwrap();
        assert_matrix_close(&got, &want, TOL);
        let formula = ring_bytes_per_device(&blocks, heads.kv_dim(), 4);
        let sent: Vec<u128> = traffic.bytes_sent.iter().map(|&b| b as u128).collect();
        prop_assert_eq!(sent, formula);
    }

    /// Random caches, queries, splits and threads: within rounding of grouped attention,
    /// and the same bits as one thread.
    #[test]
    fn split_k_for_random_sizes(
        n_keys in 1usize..400,
        n_q in 1usize..4,
        splits in 1usize..8,
        threads in 2usize..6,
        seed in 0u64..1000,
    ) {
        let heads = HeadLayout::new(4, 2, 6).unwrap();
        let n_q = n_q.min(n_keys);
        let [q, k, v] = qkv(seed, heads, n_q, n_keys);
        let x = inputs(&q, &k, &v, heads, n_keys - n_q);
        let (kv, offset) = ((k.as_view(), v.as_view()), n_keys - n_q);
        let want = grouped_attention(&q, kv.0, kv.1, heads, offset).unwrap();
        let one = SplitKDecode::new(splits, 1).unwrap().forward(x).unwrap();
        assert_matrix_close(&one, &want, TOL);
        let more = SplitKDecode::new(splits, threads).unwrap().forward(x).unwrap();
        prop_assert_eq!(more, one);
    }
}
