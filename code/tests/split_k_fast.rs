//! Chapter 16's fast split-K decode, `SplitKDecodeAttention`: chapter 8's decode kernel
//! run on ranges of the keys, the partial states merged in split order.
//!
//! - equal to `grouped_attention` (MHA, GQA, MQA; 1 to 3 queries; 1 to 5 splits, and as
//!   many splits as keys; caches that cross the kernel's 2048-key blocks);
//! - each split's state equal to the readable `SplitKDecode`'s (`attend_block`);
//! - for a fixed number of splits, the same bits on 1 to 4 threads, on shapes large enough
//!   for the kernel to use them all; one split is `DecodeAttention` bit for bit;
//! - bad input is a typed error: zero splits or threads, more splits than keys, too few
//!   keys, wrong shapes;
//! - `attn-bench --case decode_split_k` times it on 1 and 2 threads and says its splits.
//!
//! Run it under each SIMD level too (the level is read once per process, and the test
//! `runs_at_the_simd_level_asked_for` checks that the cap took):
//! `ATTENTION_SIMD=avx2 cargo test -p attention --test split_k_fast`, and `=baseline`.
//!
//! **Tolerance.** [`Tolerance::F32`] (rtol 1.3e-6, atol 1e-5), PyTorch's `assert_close`
//! default for f32, as chapter 8's decode kernel is tested: the fast path computes the same
//! sums with chapter 8's `exp` approximation (relative error below 9.90e-8), dot products
//! in sixteen lanes, the queries scaled before the products instead of the scores after,
//! and split-K adds the merge's rescaling by `exp(m_split − m)`. Measured on these tests'
//! outputs (inputs uniform in [−2, 2), outputs below 2 in magnitude): at most 5.96e-7
//! from `grouped_attention` at each of the three SIMD levels (printed by the first test).
//! Equalities promised bit for bit are tested with `==`.

mod common;
use attention::fast::simd::{SimdLevel, simd_level};
use attention::parallel::split_k::{
    SplitKDecode, SplitKDecodeAttention, merge_in_split_order, split_ranges,
};
use attention::{
    AttentionInputs, AttnError, DecodeAttention, HeadLayout, Tolerance,
    assert_matrix_close, grouped_attention, max_abs_diff,
};
use common::spread_qkv as qkv;
use nalgebra::DMatrix;

const TOL: Tolerance = Tolerance::F32;

fn inputs<'a>(
    [q, k, v]: &'a [DMatrix<f32>; 3],
    heads: HeadLayout,
    query_offset: usize,
) -> AttentionInputs<'a> {
    AttentionInputs { q, k: k.as_view(), v: v.as_view(), heads, query_offset }
}

fn split_k(splits: usize, threads: usize, x: AttentionInputs<'_>) -> DMatrix<f32> {
    SplitKDecodeAttention::new(splits, threads).unwrap().forward(x).unwrap()
}

#[test]
fn runs_at_the_simd_level_asked_for() {
    // ATTENTION_SIMD caps the level for the whole process: check that the cap took
    let level = simd_level();
    match std::env::var("ATTENTION_SIMD").as_deref() {
        Ok("baseline") => assert_eq!(level, SimdLevel::Baseline),
        Ok("avx2") => assert_ne!(level, SimdLevel::Avx512),
        _ => {}
    }
    eprintln!("SIMD level: {level:?}");
}

#[test]
fn fast_split_k_equals_grouped_attention() {
    let mut worst = 0.0_f32;
    // MHA, GQA, MQA with pairwise different sizes; odd numbers of keys, 1 to 3 queries at
    // the end of the cache; 4501 and 2049 keys cross the kernel's blocks of 2048
    for (seed, (n_heads, n_kv, d)) in
        [(5, 5, 6), (6, 2, 10), (3, 1, 8), (12, 4, 64)].into_iter().enumerate()
    {
        let heads = HeadLayout::new(n_heads, n_kv, d).unwrap();
        for (n_keys, n_q) in [(1, 1), (7, 1), (37, 3), (301, 2), (2049, 1), (4501, 2)] {
            let data = qkv(10 * seed as u64, heads, n_q, n_keys);
            let x = inputs(&data, heads, n_keys - n_q);
            let [q, k, v] = &data;
            let want =
                grouped_attention(q, k.as_view(), v.as_view(), heads, n_keys - n_q)
                    .unwrap();
            for splits in (1..=5).filter(|&s| s <= n_keys).chain([n_keys.min(64)]) {
                let got = split_k(splits, 2, x);
                assert_matrix_close(&got, &want, TOL);
                worst = worst.max(max_abs_diff(got.as_slice(), want.as_slice()));
            }
        }
    }
    eprintln!("largest |split-K − grouped_attention|: {worst:e}");
}

#[test]
fn each_splits_state_is_the_readable_forms_state() {
    // the partial states (m, ℓ, o) themselves, against attend_block's: m within the
    // rounding of the scores, ℓ and o within f32 rounding of sums of up to 100 terms
    let heads = HeadLayout::new(6, 2, 10).unwrap();
    let data = qkv(20, heads, 3, 303);
    let x = inputs(&data, heads, 300);
    for splits in [1, 2, 3, 7] {
        let fast = SplitKDecodeAttention::new(splits, 2).unwrap().partials(x).unwrap();
        let slow = SplitKDecode::new(splits, 2).unwrap().partials(x).unwrap();
        assert_eq!(fast.len(), splits);
        for (f, s) in fast.iter().zip(&slow) {
            assert_matrix_close(f.max(), s.max(), TOL);
            assert_matrix_close(f.sum(), s.sum(), TOL);
            assert_matrix_close(f.out(), s.out(), TOL);
        }
        // and merge_in_split_order makes the output of them
        let merged = merge_in_split_order(fast).unwrap();
        assert_eq!(merged, split_k(splits, 1, x));
    }
}

#[test]
fn bits_do_not_depend_on_the_threads() {
    // 9001 keys of 2 KV heads of 48: 6.6 MiB of keys and values, enough for the kernel to
    // use 4 threads (one per 2 MiB); 2 queries, GQA 6/2
    let heads = HeadLayout::new(6, 2, 48).unwrap();
    let data = qkv(30, heads, 2, 9001);
    let x = inputs(&data, heads, 8999);
    for splits in [1, 2, 3, 5, 8] {
        let one = split_k(splits, 1, x);
        for threads in 2..=4 {
            assert_eq!(
                split_k(splits, threads, x),
                one,
                "{splits} splits, {threads} threads"
            );
        }
    }
    // another number of splits rounds differently (not a promise, but what happens)
    let (two, three) = (split_k(2, 1, x), split_k(3, 1, x));
    assert_ne!(two, three);
    assert_matrix_close(&two, &three, TOL);
}

#[test]
fn one_split_is_chapter_8s_decode_kernel_bit_for_bit() {
    for (heads, n_q, n_keys) in [
        (HeadLayout::new(12, 4, 64).unwrap(), 1, 5000),
        (HeadLayout::new(6, 3, 14).unwrap(), 3, 2051),
    ] {
        let data = qkv(40, heads, n_q, n_keys);
        let x = inputs(&data, heads, n_keys - n_q);
        let decode = DecodeAttention::with_threads(2).unwrap().forward(x).unwrap();
        assert_eq!(split_k(1, 2, x), decode);
    }
}

#[test]
fn reads_only_the_keys_the_last_query_sees() {
    // a cache longer than query_offset + n_queries: the rows past it do not count, and
    // the splits cut the keys read, not the cache
    let heads = HeadLayout::new(4, 2, 6).unwrap();
    let data = qkv(50, heads, 2, 90);
    let x = inputs(&data, heads, 31);
    let [q, k, v] = &data;
    let want = grouped_attention(q, k.as_view(), v.as_view(), heads, 31).unwrap();
    assert_matrix_close(&split_k(33, 2, x), &want, TOL); // one key per split
    // three splits of 11 keys: the last, keys 22 .. 33, is partly in query 0's future
    let lens: Vec<usize> = split_ranges(33, 3).iter().map(|r| r.len()).collect();
    assert_eq!(lens, [11, 11, 11]);
    assert_matrix_close(&split_k(3, 2, x), &want, TOL);
}

#[test]
fn no_queries_give_an_empty_output() {
    let heads = HeadLayout::new(4, 2, 6).unwrap();
    let data = qkv(60, heads, 0, 12);
    let got = split_k(3, 2, inputs(&data, heads, 12));
    assert_eq!(got.shape(), (0, heads.q_dim()));
}

#[test]
fn errors_are_typed() {
    for (splits, threads) in [(0, 1), (2, 0)] {
        let err = SplitKDecodeAttention::new(splits, threads).unwrap_err();
        assert!(matches!(err, AttnError::ZeroSize { .. }), "{err}");
    }
    let heads = HeadLayout::new(4, 2, 6).unwrap();
    let data = qkv(70, heads, 2, 9);
    let mut split = SplitKDecodeAttention::new(8, 2).unwrap();
    // query_offset 5 + 2 queries: 7 keys read, fewer than 8 splits
    let err = split.forward(inputs(&data, heads, 5)).unwrap_err();
    assert!(
        matches!(&err, AttnError::Config(m) if m.contains("8 splits of 7 keys")),
        "{err}"
    );
    // 8 keys read: one split each
    assert!(split.forward(inputs(&data, heads, 6)).is_ok());
    // the newest query's key is missing
    let err = split.forward(inputs(&data, heads, 8)).unwrap_err();
    assert!(matches!(err, AttnError::MissingKeys { .. }), "{err}");
    // queries of another width
    let wide = HeadLayout::new(4, 4, 6).unwrap();
    let err = split.forward(inputs(&data, wide, 1)).unwrap_err();
    assert!(matches!(err, AttnError::Shape { .. }), "{err}");
    // values of another length than the keys
    let [q, k, v] = &data;
    let short_v = v.rows(0, 8).clone_owned();
    let x = AttentionInputs {
        q,
        k: k.as_view(),
        v: short_v.as_view(),
        heads,
        query_offset: 1,
    };
    let err = split.forward(x).unwrap_err();
    assert!(matches!(err, AttnError::Shape { .. }), "{err}");
    // no state to merge
    let err = merge_in_split_order(Vec::new()).unwrap_err();
    assert!(matches!(err, AttnError::Config(_)), "{err}");
}

/// `attn-bench --case decode_split_k`: one line per context and thread count, saying its
/// number of splits and the bytes of f32 cache a step reads (`2 · seq · kv_dim · 4`).
#[test]
fn attn_bench_times_split_k_on_one_and_two_threads() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_attn-bench"))
        .args(["--quick", "--case", "decode_split_k", "--reps", "2"])
        .output()
        .expect("runs attn-bench");
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let lines: Vec<serde_json::Value> =
        stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let shapes: Vec<(u64, u64)> = lines
        .iter()
        .map(|l| (l["seq"].as_u64().unwrap(), l["threads"].as_u64().unwrap()))
        .collect();
    assert_eq!(shapes, [(33, 1), (33, 2), (300, 1), (300, 2)], "{stdout}");
    for l in &lines {
        assert_eq!(l["case"], "decode_split_k");
        assert_eq!(l["splits"], 2, "{l}");
        assert_eq!(
            (l["n_heads"].as_u64(), l["n_kv_heads"].as_u64()),
            (Some(12), Some(4))
        );
        let seq = l["seq"].as_u64().unwrap();
        assert_eq!(l["bytes_per_token"].as_u64(), Some(2 * seq * 4 * 64 * 4), "{l}");
        assert!(l["median_ms"].as_f64().is_some_and(|ms| ms > 0.0), "{l}");
        // the decode lines' ten fields, and the splits
        assert_eq!(l.as_object().unwrap().len(), 11, "{l}");
    }
}
