//! The decode kernels that read the quantized and the paged caches in place
//! (`attention::serving::decode_kernels`), against the paths that make an f32 copy first.
//!
//! - **Paged**: `PagedDecodeAttention` equals chapter 8's `DecodeAttention` on the
//!   gathered rows **bit for bit** (`==`): the same products and sums in the same order,
//!   the same online softmax over the same blocks of positions, for every block size.
//!   Against `PagedKvCache::attend` (the gather and `grouped_attention`) it is within
//!   [`TOL`], as chapter 8's kernel is.
//! - **Quantized**: `QuantizedDecodeAttention` equals `attend_quantized` (dequantize the
//!   whole cache, then `grouped_attention`) within [`TOL`], not bit for bit. Three things
//!   move the last bits: chapter 8's `exp` approximation (relative error below 1.2e-7)
//!   and online softmax; dot products summed in sixteen lanes and a tree instead of
//!   `grouped_attention`'s matrix product; and the scales applied once to a sum (int8
//!   `scale_t · (q · codes_t)`, and the values' scales folded into the weights) instead
//!   of to each number. Each rounds a few times per sum, relative 1e-7 of terms of size
//!   ~1 here. Measured on inputs like these tests' (the five formats, the three kinds of
//!   `StudyData`, contexts up to 4500) with queries three times larger, the worst
//!   element was 3.7e-6 off, 0.36 of what [`TOL`] allows there.
//!
//! Sizes are odd and pairwise different (head widths 10, 12, 64 and 128 reach the
//! kernels' general loops and both specialised widths; contexts past 2048 cross the
//! kernels' blocks), with GQA 12/4, MQA and MHA layouts.

use attention::serving::decode_kernels::{
    PagedDecodeAttention, QuantizedDecodeAttention,
};
use attention::serving::paged::SeqId;
use attention::serving::quant::{
    StudyData, attend_quantized, quantized_kv_bytes_per_layer, study_inputs,
};
use attention::{
    AttentionConfig, AttentionInputs, AttnError, DType, DecodeAttention, HeadLayout,
    KvFormat, PagedKvCache, QuantizedKvCache, Tolerance, assert_matrix_close,
    splitmix_matrix,
};
use nalgebra::DMatrix;
use proptest::prelude::*;

/// PyTorch's `assert_close` default for f32 (rtol 1.3e-6, atol 1e-5): the kernels and the
/// f32-copy paths sum in different orders and the kernels use chapter 8's `exp`
/// approximation (see the module docs); bit-exact agreement is not expected, differences
/// of ~1e-7 are.
const TOL: Tolerance = Tolerance::F32;

/// Every format the quantized kernel reads, int4 with small groups and residuals too.
const FORMATS: [KvFormat; 5] = [
    KvFormat::Int8,
    KvFormat::Fp8E4M3,
    KvFormat::KIVI,
    KvFormat::Int4 { group: 5, residual: 3 },
    KvFormat::Int4 { group: 8, residual: 0 },
];

/// A cache in `format` holding `len` tokens of `heads`' keys and values, appended in
/// pieces of `step` tokens (so that int4's residual has moved), from `kind` inputs.
fn quantized_cache(
    format: KvFormat,
    heads: HeadLayout,
    len: usize,
    step: usize,
    kind: StudyData,
    seed: u64,
) -> QuantizedKvCache {
    let (_, k, v) = study_inputs(kind, heads, len, 1, seed).unwrap();
    let mut cache = QuantizedKvCache::for_heads(format, 1, len + 4, heads).unwrap();
    for start in (0..len).step_by(step) {
        let n = step.min(len - start);
        let (k, v) = (k.rows(start, n).clone_owned(), v.rows(start, n).clone_owned());
        cache.append(start, &[k], &[v]).unwrap();
    }
    cache
}

/// The kernel against `attend_quantized` for the newest `n_queries` tokens.
fn check_quantized(
    cache: &QuantizedKvCache,
    heads: HeadLayout,
    n_queries: usize,
    seed: u64,
) {
    let q = splitmix_matrix(seed, n_queries, heads.q_dim(), 1.0);
    let offset = cache.len() - n_queries;
    let want = attend_quantized(&q, cache, 0, heads, offset).unwrap();
    let got =
        QuantizedDecodeAttention::new().forward(&q, cache, 0, heads, offset).unwrap();
    assert_matrix_close(&got, &want, TOL);
}

#[test]
fn quantized_decode_equals_dequantize_then_attend() {
    let layouts = [(12, 4, 64), (12, 4, 10), (6, 1, 12), (5, 5, 128), (8, 2, 64)];
    for format in FORMATS {
        for (n_heads, n_kv_heads, head_dim) in layouts {
            let heads = HeadLayout::new(n_heads, n_kv_heads, head_dim).unwrap();
            for (len, step, n_queries) in
                [(1, 1, 1), (37, 37, 3), (301, 7, 1), (2113, 500, 2)]
            {
                for kind in [StudyData::Gaussian, StudyData::OutlierChannels] {
                    let cache =
                        quantized_cache(format, heads, len, step, kind, len as u64);
                    check_quantized(&cache, heads, n_queries, 7 + len as u64);
                }
            }
        }
    }
}

/// A decode loop: one token appended, one step of attention, 70 times, so that int4's
/// residual fills, is quantized a group at a time and empties past every boundary.
#[test]
fn quantized_decode_follows_a_decode_loop() {
    let heads = HeadLayout::new(12, 4, 64).unwrap();
    let (_, k, v) = study_inputs(StudyData::OutlierChannels, heads, 110, 1, 3).unwrap();
    for format in [KvFormat::Int8, KvFormat::Int4 { group: 16, residual: 20 }] {
        let mut cache = QuantizedKvCache::for_heads(format, 1, 110, heads).unwrap();
        let mut kernel = QuantizedDecodeAttention::new();
        for pos in 0..110 {
            let row = |m: &DMatrix<f32>| m.rows(pos, 1).clone_owned();
            cache.append(pos, &[row(&k)], &[row(&v)]).unwrap();
            let q = splitmix_matrix(pos as u64, 1, heads.q_dim(), 1.0);
            let want = attend_quantized(&q, &cache, 0, heads, pos).unwrap();
            let got = kernel.forward(&q, &cache, 0, heads, pos).unwrap();
            assert_matrix_close(&got, &want, TOL);
        }
    }
}

/// Queries that see only part of the cache (`query_offset + n_queries < len`) read only
/// that part, in every batch slot.
#[test]
fn quantized_decode_reads_only_the_rows_the_queries_see() {
    let heads = HeadLayout::new(12, 4, 12).unwrap();
    for format in FORMATS {
        let mut cache = QuantizedKvCache::for_heads(format, 3, 400, heads).unwrap();
        let keys: Vec<_> =
            (0..3).map(|b| splitmix_matrix(b, 333, heads.kv_dim(), 2.0)).collect();
        let values: Vec<_> =
            (0..3).map(|b| splitmix_matrix(b + 9, 333, heads.kv_dim(), 1.0)).collect();
        cache.append(0, &keys, &values).unwrap();
        let q = splitmix_matrix(4, 2, heads.q_dim(), 1.0);
        for (b, offset) in [(0, 0), (1, 150), (2, 331)] {
            let want = attend_quantized(&q, &cache, b, heads, offset).unwrap();
            let got = QuantizedDecodeAttention::new()
                .forward(&q, &cache, b, heads, offset)
                .unwrap();
            assert_matrix_close(&got, &want, TOL);
        }
    }
}

/// Threads split the KV heads; each head is computed the same way, so the bits do not
/// depend on their number. (The context is long enough for threads to be used.)
#[test]
fn results_do_not_depend_on_the_number_of_threads() {
    let heads = HeadLayout::new(12, 4, 64).unwrap();
    let cache =
        quantized_cache(KvFormat::KIVI, heads, 3001, 3001, StudyData::Gaussian, 5);
    let q = splitmix_matrix(6, 1, heads.q_dim(), 1.0);
    let one =
        QuantizedDecodeAttention::new().forward(&q, &cache, 0, heads, 3000).unwrap();
    for threads in [2, 3, 5] {
        let mut kernel = QuantizedDecodeAttention::with_threads(threads).unwrap();
        assert_eq!(kernel.forward(&q, &cache, 0, heads, 3000).unwrap(), one);
    }
    let (pool, id) = paged_pool(heads, 3001, 16, 5);
    let one = PagedDecodeAttention::new().forward(&pool, id, &q, heads).unwrap();
    for threads in [2, 3, 5] {
        let mut kernel = PagedDecodeAttention::with_threads(threads).unwrap();
        assert_eq!(kernel.forward(&pool, id, &q, heads).unwrap(), one);
    }
}

/// `bytes_read` of a full step is what chapter 13 counts as the cache's size
/// (`quantized_kv_bytes_per_layer` with f32 scales), and less than the f32 cache.
#[test]
fn bytes_read_are_the_quantized_cache_size() {
    let heads = HeadLayout::new(12, 4, 64).unwrap();
    let cfg = AttentionConfig::new(768, 12, 4, 8192, 500_000.0).unwrap();
    for format in FORMATS {
        for len in [3, 300, 4097] {
            let cache = quantized_cache(format, heads, len, len, StudyData::Gaussian, 1);
            let read = QuantizedDecodeAttention::bytes_read(&cache, len);
            assert_eq!(
                read,
                quantized_kv_bytes_per_layer(format, &cfg, 1, len, DType::F32)
            );
            let f32_bytes = PagedDecodeAttention::bytes_read(len, heads);
            assert!(
                read < f32_bytes || len < 300,
                "{format:?} {len}: {read} {f32_bytes}"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------
// Paged
// ---------------------------------------------------------------------------------------

/// A pool holding a sequence of `len` tokens in blocks of `block_size`, its blocks
/// interleaved with two other sequences' (so the table is not `0, 1, 2, ...`), and the
/// sequence's id.
fn paged_pool(
    heads: HeadLayout,
    len: usize,
    block_size: usize,
    seed: u64,
) -> (PagedKvCache, SeqId) {
    let n_blocks = 3 * len.div_ceil(block_size) + 3;
    let mut pool = PagedKvCache::for_heads(n_blocks, block_size, heads).unwrap();
    let ids = [pool.add_sequence(), pool.add_sequence(), pool.add_sequence()];
    let k = splitmix_matrix(seed, len, heads.kv_dim(), 1.5);
    let v = splitmix_matrix(seed + 1, len, heads.kv_dim(), 1.0);
    for start in (0..len).step_by(block_size) {
        let n = block_size.min(len - start);
        for (i, &id) in ids.iter().enumerate() {
            let (k, v) = (k.rows(start, n).clone_owned(), v.rows(start, n).clone_owned());
            let (k, v) = if i == 1 { (k, v) } else { (k * (i as f32 + 2.0), v) };
            pool.append(id, start, &k, &v).unwrap();
        }
    }
    (pool, ids[1])
}

/// The paged kernel against chapter 8's kernel on the gathered rows (bit for bit) and
/// against the gather and `grouped_attention` (within `TOL`).
fn check_paged(
    pool: &PagedKvCache,
    id: SeqId,
    heads: HeadLayout,
    n_queries: usize,
    seed: u64,
) {
    let q = splitmix_matrix(seed, n_queries, heads.q_dim(), 1.0);
    let got = PagedDecodeAttention::new().forward(pool, id, &q, heads).unwrap();
    let (k, v) = pool.gather(id).unwrap();
    let query_offset = k.nrows() - n_queries;
    let x =
        AttentionInputs { q: &q, k: k.as_view(), v: v.as_view(), heads, query_offset };
    let want = DecodeAttention::new().forward(x).unwrap();
    let block_size = pool.block_size();
    if let Some((i, (g, w))) = got
        .iter()
        .zip(want.iter())
        .enumerate()
        .find(|(_, (g, w))| g.to_bits() != w.to_bits())
    {
        panic!(
            "block size {block_size}: element {i}: got {g:e}, chapter 8's kernel {w:e}"
        );
    }
    assert_matrix_close(&got, &pool.attend(id, &q, heads).unwrap(), TOL);
}

#[test]
fn paged_decode_is_chapter_8s_kernel_on_the_gathered_rows_bit_for_bit() {
    let layouts = [(12, 4, 64), (12, 1, 10), (6, 6, 12), (4, 2, 128)];
    for (n_heads, n_kv_heads, head_dim) in layouts {
        let heads = HeadLayout::new(n_heads, n_kv_heads, head_dim).unwrap();
        for block_size in [1, 5, 16, 32, 48, 7] {
            for (len, n_queries) in [(1, 1), (17, 2), (301, 1), (2103, 3)] {
                let (pool, id) = paged_pool(heads, len, block_size, len as u64);
                check_paged(&pool, id, heads, n_queries, 11);
            }
        }
    }
}

/// Forked sequences share their prompt's blocks and copy the partly filled last one: the
/// kernel reads the shared blocks in place for each.
#[test]
fn paged_decode_reads_shared_blocks() {
    let heads = HeadLayout::new(12, 4, 64).unwrap();
    let mut pool = PagedKvCache::for_heads(40, 16, heads).unwrap();
    let prompt = pool.add_sequence();
    let (k, v) = (splitmix_matrix(1, 45, 256, 1.0), splitmix_matrix(2, 45, 256, 1.0));
    pool.append(prompt, 0, &k, &v).unwrap();
    let users: Vec<SeqId> = (0..3).map(|_| pool.fork(prompt).unwrap()).collect();
    for (u, &id) in users.iter().enumerate() {
        let n = 10 + 20 * u; // 55, 75, 95 positions
        let k1 = splitmix_matrix(3 + u as u64, n, 256, 1.0);
        let v1 = splitmix_matrix(6 + u as u64, n, 256, 1.0);
        pool.append(id, 45, &k1, &v1).unwrap();
    }
    for id in users.into_iter().chain([prompt]) {
        check_paged(&pool, id, heads, 1, 9);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Random layouts, block sizes, lengths and query counts: the paged kernel is chapter
    /// 8's on the gathered rows, bit for bit.
    #[test]
    fn paged_decode_property(
        (n_kv_heads, group_size, head_dim) in (1usize..4, 1usize..5, 1usize..40),
        block_size in 1usize..40,
        len in 1usize..300,
        n_queries in 1usize..4,
        seed in 0u64..1000,
    ) {
        let n_heads = n_kv_heads * group_size;
        let heads = HeadLayout::new(n_heads, n_kv_heads, head_dim).unwrap();
        let (pool, id) = paged_pool(heads, len, block_size, seed);
        check_paged(&pool, id, heads, n_queries.min(len), seed + 1);
    }

    /// Random int4 groups, residuals, head widths and lengths, appended in random steps:
    /// the quantized kernel equals dequantize-then-attend within `TOL`.
    #[test]
    fn int4_decode_property(
        (n_kv_heads, group_size, half_dim) in (1usize..4, 1usize..5, 1usize..20),
        (group, residual) in (1usize..40, 0usize..40),
        len in 1usize..300,
        step in 1usize..50,
        n_queries in 1usize..4,
        seed in 0u64..1000,
    ) {
        let n_heads = n_kv_heads * group_size;
        let heads = HeadLayout::new(n_heads, n_kv_heads, 2 * half_dim).unwrap();
        let format = KvFormat::Int4 { group, residual };
        let kind = StudyData::OutlierChannels;
        let cache = quantized_cache(format, heads, len, step, kind, seed);
        check_quantized(&cache, heads, n_queries.min(len), seed + 2);
    }
}

// ---------------------------------------------------------------------------------------
// Shapes and errors
// ---------------------------------------------------------------------------------------

#[test]
fn no_queries_give_an_empty_output() {
    let heads = HeadLayout::new(12, 4, 10).unwrap();
    let cache = quantized_cache(KvFormat::Int8, heads, 20, 20, StudyData::Gaussian, 1);
    let q = DMatrix::zeros(0, heads.q_dim());
    let out = QuantizedDecodeAttention::new().forward(&q, &cache, 0, heads, 20).unwrap();
    assert_eq!(out.shape(), (0, heads.q_dim()));
    let (pool, id) = paged_pool(heads, 20, 16, 1);
    let out = PagedDecodeAttention::new().forward(&pool, id, &q, heads).unwrap();
    assert_eq!(out.shape(), (0, heads.q_dim()));
}

#[test]
fn mismatched_shapes_are_typed_errors() {
    let heads = HeadLayout::new(12, 4, 10).unwrap();
    let cache = quantized_cache(KvFormat::KIVI, heads, 50, 50, StudyData::Gaussian, 1);
    let q = splitmix_matrix(1, 1, heads.q_dim(), 1.0);
    let mut kernel = QuantizedDecodeAttention::new();
    let narrow = splitmix_matrix(1, 1, heads.q_dim() - 1, 1.0);
    assert!(matches!(
        kernel.forward(&narrow, &cache, 0, heads, 49),
        Err(AttnError::Shape { .. })
    ));
    let other = HeadLayout::new(12, 3, 10).unwrap();
    let q_other = splitmix_matrix(1, 1, other.q_dim(), 1.0);
    assert!(matches!(
        kernel.forward(&q_other, &cache, 0, other, 49),
        Err(AttnError::CacheMismatch(_))
    ));
    let wider = HeadLayout::new(12, 4, 12).unwrap();
    let q_wider = splitmix_matrix(1, 1, wider.q_dim(), 1.0);
    assert!(matches!(
        kernel.forward(&q_wider, &cache, 0, wider, 49),
        Err(AttnError::CacheMismatch(_))
    ));
    assert!(matches!(
        kernel.forward(&q, &cache, 1, heads, 49),
        Err(AttnError::IndexOutOfRange { index: 1, len: 1, .. })
    ));
    assert!(matches!(
        kernel.forward(&q, &cache, 0, heads, 50),
        Err(AttnError::MissingKeys { n_queries: 1, query_offset: 50, n_keys: 50 })
    ));
    assert!(matches!(
        kernel.forward(&q, &cache, 0, heads, usize::MAX),
        Err(AttnError::MissingKeys { .. })
    ));
    assert!(matches!(
        QuantizedDecodeAttention::with_threads(0),
        Err(AttnError::ZeroSize { what: "threads" })
    ));

    let (mut pool, id) = paged_pool(heads, 5, 4, 1);
    let mut paged = PagedDecodeAttention::new();
    assert!(matches!(
        paged.forward(&pool, id, &narrow, heads),
        Err(AttnError::Shape { .. })
    ));
    assert!(matches!(
        paged.forward(&pool, id, &q_other, other),
        Err(AttnError::CacheMismatch(_))
    ));
    let six = splitmix_matrix(1, 6, heads.q_dim(), 1.0);
    assert!(matches!(
        paged.forward(&pool, id, &six, heads),
        Err(AttnError::MissingKeys { n_queries: 6, n_keys: 5, .. })
    ));
    assert!(matches!(
        paged.forward(&pool, SeqId(7), &q, heads),
        Err(AttnError::UnknownSequence { id: 7, freed: false })
    ));
    pool.free(id).unwrap();
    assert!(matches!(
        paged.forward(&pool, id, &q, heads),
        Err(AttnError::UnknownSequence { freed: true, .. })
    ));
    assert!(matches!(
        PagedDecodeAttention::with_threads(0),
        Err(AttnError::ZeroSize { what: "threads" })
    ));
}

/// `forward_into` reuses a right-sized output and resizes a wrong one.
#[test]
fn forward_into_sizes_the_output() {
    let heads = HeadLayout::new(12, 4, 64).unwrap();
    let cache = quantized_cache(KvFormat::Int8, heads, 40, 40, StudyData::Gaussian, 2);
    let q = splitmix_matrix(3, 2, heads.q_dim(), 1.0);
    let want = attend_quantized(&q, &cache, 0, heads, 38).unwrap();
    let mut kernel = QuantizedDecodeAttention::new();
    for mut out in [DMatrix::zeros(2, heads.q_dim()), DMatrix::zeros(5, 3)] {
        kernel.forward_into(&q, &cache, 0, heads, 38, &mut out).unwrap();
        assert_matrix_close(&out, &want, TOL);
    }
}
