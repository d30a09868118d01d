//! Chapter 14's paged KV cache: the block table, copy-on-write, reference counts, typed
//! errors that leave the cache unchanged, and attention through the blocks equal to
//! chapter 6's contiguous cache **bit for bit** (`==`, no tolerance: the paged cache
//! gathers the same rows in the same order and calls the same function), including
//! property tests over random lengths, forks and frees.

use attention::serving::paged::{PagedKvCache, PoolUsage, SeqId, Workload};
use attention::{
    AttentionInputs, AttnError, Batch, DecodeAttention, GroupedQueryAttention,
    HeadLayout, KernelChoice, LayerKvCache, Rope, ScoreOptions, grouped_attention,
    splitmix_matrix,
};
use nalgebra::DMatrix;
use proptest::prelude::*;
use rand::{SeedableRng, rngs::StdRng};

/// Every invariant of the pool, from its public accessors only: each live table holds
/// `len.div_ceil(block_size)` distinct blocks, each block's count is the number of
/// tables holding it, and the free list is exactly the blocks nobody holds, each once
/// (no leak, no block both free and held).
fn check_invariants(cache: &PagedKvCache) {
    let (n, bs) = (cache.n_blocks(), cache.block_size());
    let mut held = vec![0usize; n];
    for id in cache.sequences() {
        let table = cache.block_table(id).unwrap();
        assert_eq!(table.len(), cache.len(id).unwrap().div_ceil(bs), "sequence {id}");
        let mut distinct = table.to_vec();
        distinct.sort_unstable();
        distinct.dedup();
        assert_eq!(distinct.len(), table.len(), "sequence {id} holds a block twice");
        table.iter().for_each(|&b| held[b] += 1);
    }
    for (b, &h) in held.iter().enumerate() {
        assert_eq!(cache.ref_count(b).unwrap(), h, "reference count of block {b}");
    }
    let mut free = cache.free_list().to_vec();
    free.sort_unstable();
    let unheld: Vec<usize> = (0..n).filter(|&b| held[b] == 0).collect();
    assert_eq!(free, unheld, "the free list must be exactly the blocks nobody holds");
    assert_eq!(cache.blocks_in_use() + cache.free_blocks(), n);
}

/// `(rows, kv_dim)` keys and values for a test, different for every `seed`.
fn rows(seed: u64, n: usize, kv_dim: usize) -> (DMatrix<f32>, DMatrix<f32>) {
    (
        splitmix_matrix(2 * seed, n, kv_dim, 1.0),
        splitmix_matrix(2 * seed + 1, n, kv_dim, 1.0),
    )
}

/// Where two matrices first differ, for a failure message: `(row, col, got, want)`.
fn first_difference(
    got: &DMatrix<f32>,
    want: &DMatrix<f32>,
) -> Option<(usize, usize, f32, f32)> {
    if got.shape() != want.shape() {
        return Some((usize::MAX, usize::MAX, f32::NAN, f32::NAN));
    }
    (0..got.ncols())
        .flat_map(|c| (0..got.nrows()).map(move |r| (r, c)))
        .find(|&(r, c)| got[(r, c)].to_bits() != want[(r, c)].to_bits())
        .map(|(r, c)| (r, c, got[(r, c)], want[(r, c)]))
}

/// Asserts `got == want` bit for bit, naming the first element that differs.
fn assert_bits_equal(got: &DMatrix<f32>, want: &DMatrix<f32>, what: &str) {
    if let Some((r, c, g, w)) = first_difference(got, want) {
        panic!(
            "{what}: differs at ({r}, {c}): got {g}, want {w} (shapes {:?} vs {:?})",
            got.shape(),
            want.shape()
        );
    }
}

#[test]
fn new_checks_sizes_before_allocating() {
    for (args, what) in [
        ((0, 16, 2, 4), "n_blocks"),
        ((8, 0, 2, 4), "block_size"),
        ((8, 16, 0, 4), "n_kv_heads"),
        ((8, 16, 2, 0), "head_dim"),
    ] {
        let err = PagedKvCache::new(args.0, args.1, args.2, args.3).unwrap_err();
        assert_eq!(err, AttnError::ZeroSize { what });
    }
    let err = PagedKvCache::new(1 << 40, 16, 8, 128).unwrap_err();
    assert!(matches!(err, AttnError::TooLarge { .. }), "{err}");
    let err = PagedKvCache::new(usize::MAX, usize::MAX, 3, 5).unwrap_err();
    assert!(matches!(err, AttnError::TooLarge { .. }), "{err}");
    let cache = PagedKvCache::new(7, 5, 3, 2).unwrap();
    assert_eq!((cache.n_blocks(), cache.block_size(), cache.kv_dim()), (7, 5, 6));
    assert_eq!(cache.pool_bytes(), 2 * 7 * 5 * 6 * 4);
    assert_eq!((cache.free_blocks(), cache.blocks_in_use()), (7, 0));
    check_invariants(&cache);
}

#[test]
fn a_block_is_taken_only_when_the_last_is_full() {
    let mut cache = PagedKvCache::new(9, 5, 1, 3).unwrap();
    let a = cache.add_sequence();
    let b = cache.add_sequence();
    assert_eq!(cache.block_table(a).unwrap(), &[] as &[usize]); // no block before a row
    let steps = [
        (a, 3, vec![0]),
        (a, 2, vec![0]),
        (b, 1, vec![1]),
        (a, 1, vec![0, 2]),
        (a, 9, vec![0, 2, 3]),
        (a, 1, vec![0, 2, 3, 4]),
    ];
    for (i, (id, n, table)) in steps.into_iter().enumerate() {
        let (k, v) = rows(i as u64, n, 3);
        cache.append(id, cache.len(id).unwrap(), &k, &v).unwrap();
        assert_eq!(cache.block_table(id).unwrap(), &table[..], "step {i}");
        check_invariants(&cache);
    }
    assert_eq!(cache.len(a).unwrap(), 16);
    // appending nothing takes nothing
    cache.append(b, 1, &DMatrix::zeros(0, 3), &DMatrix::zeros(0, 3)).unwrap();
    assert_eq!(cache.block_table(b).unwrap(), &[1]);
}

#[test]
fn gather_returns_the_rows_appended_in_order() {
    let mut cache = PagedKvCache::new(12, 4, 2, 3).unwrap();
    let (a, b) = (cache.add_sequence(), cache.add_sequence());
    let (mut want_a, mut want_b) = (Vec::new(), Vec::new());
    // interleaved appends: the two sequences' blocks alternate in the pool
    for (i, n) in [3usize, 5, 1, 6, 2, 4].into_iter().enumerate() {
        let (id, want) = if i % 2 == 0 { (a, &mut want_a) } else { (b, &mut want_b) };
        let (k, v) = rows(10 + i as u64, n, 6);
        cache.append(id, cache.len(id).unwrap(), &k, &v).unwrap();
        want.push((k, v));
    }
    for (id, want) in [(a, want_a), (b, want_b)] {
        let (keys, values) = cache.gather(id).unwrap();
        // the appended matrices, stacked: (len, kv_dim)
        let stack = |parts: Vec<&DMatrix<f32>>| {
            let rows: Vec<_> = parts.iter().flat_map(|m| m.row_iter()).collect();
            DMatrix::from_rows(&rows)
        };
        let want_keys = stack(want.iter().map(|w| &w.0).collect());
        let want_values = stack(want.iter().map(|w| &w.1).collect());
        assert_bits_equal(&keys, &want_keys, "gathered keys");
        assert_bits_equal(&values, &want_values, "gathered values");
        // and each block, viewed in place, holds the same rows
        let len = cache.len(id).unwrap();
        for (i, &block) in cache.block_table(id).unwrap().iter().enumerate() {
            let n = 4.min(len - 4 * i);
            assert_eq!(cache.block_keys(block).unwrap().rows(0, n), keys.rows(4 * i, n));
            assert_eq!(
                cache.block_values(block).unwrap().rows(0, n),
                values.rows(4 * i, n)
            );
        }
    }
    assert!(matches!(
        cache.block_keys(12),
        Err(AttnError::IndexOutOfRange { index: 12, len: 12, .. })
    ));
}

#[test]
fn errors_are_typed_and_leave_the_cache_unchanged() {
    let mut cache = PagedKvCache::new(3, 4, 1, 2).unwrap();
    let a = cache.add_sequence();
    let (k, v) = rows(1, 10, 2);
    cache.append(a, 0, &k, &v).unwrap(); // 3 blocks: the pool is full
    let b = cache.add_sequence();
    let before = cache.clone();
    let (k1, v1) = rows(2, 1, 2);
    // pool exhausted: b needs a block, none is free
    let err = cache.append(b, 0, &k1, &v1).unwrap_err();
    assert_eq!(err, AttnError::PoolExhausted { needed: 1, free: 0, n_blocks: 3 });
    assert_eq!(cache, before);
    // a fork whose shared last block has room needs one block for the copy
    let c = cache.fork(a).unwrap();
    let before = cache.clone();
    let err = cache.append(c, 10, &k1, &v1).unwrap_err();
    assert_eq!(err, AttnError::PoolExhausted { needed: 1, free: 0, n_blocks: 3 });
    assert_eq!(cache, before);
    // a position that does not continue the sequence
    for start_pos in [0, 9, 11] {
        let err = cache.append(a, start_pos, &k1, &v1).unwrap_err();
        assert_eq!(err, AttnError::CachePosition { start_pos, next_pos: 10 });
        assert_eq!(cache, before);
    }
    // shapes
    let err =
        cache.append(a, 10, &DMatrix::zeros(1, 3), &DMatrix::zeros(1, 3)).unwrap_err();
    assert!(matches!(err, AttnError::Shape { .. }), "{err}");
    let err =
        cache.append(a, 10, &DMatrix::zeros(1, 2), &DMatrix::zeros(2, 2)).unwrap_err();
    assert!(matches!(err, AttnError::Shape { .. }), "{err}");
    assert_eq!(cache, before);
    // unknown and freed sequences, for every operation
    let unknown = SeqId(99);
    let want = AttnError::UnknownSequence { id: 99, freed: false };
    assert_eq!(cache.append(unknown, 0, &k1, &v1).unwrap_err(), want);
    assert_eq!(cache.fork(unknown).unwrap_err(), want);
    assert_eq!(cache.free(unknown).unwrap_err(), want);
    assert_eq!(cache.gather(unknown).unwrap_err(), want);
    assert_eq!(cache.len(unknown).unwrap_err(), want);
    assert_eq!(cache.block_table(unknown).unwrap_err(), want);
    assert_eq!(cache, before);
    cache.free(c).unwrap();
    let freed = AttnError::UnknownSequence { id: c.0, freed: true };
    assert_eq!(cache.free(c).unwrap_err(), freed, "a double free is refused");
    assert_eq!(cache.append(c, 10, &k1, &v1).unwrap_err(), freed);
    assert_eq!(cache.fork(c).unwrap_err(), freed);
    assert_eq!(freed.to_string(), format!("sequence {} was freed", c.0));
    assert_eq!(want.to_string(), "no sequence 99 in the KV cache");
    check_invariants(&cache);
    // too few keys for the queries
    let heads = HeadLayout::new(2, 1, 2).unwrap();
    let err = cache.attend(b, &DMatrix::zeros(1, 4), heads).unwrap_err();
    assert_eq!(err, AttnError::MissingKeys { n_queries: 1, query_offset: 0, n_keys: 0 });
}

#[test]
fn fork_shares_blocks_and_copy_on_write_copies_only_a_shared_block_with_room() {
    let bs = 4;
    let mut cache = PagedKvCache::new(10, bs, 1, 3).unwrap();
    let prompt = cache.add_sequence();
    let (k, v) = rows(5, 6, 3); // one full block and 2 rows of the next
    cache.append(prompt, 0, &k, &v).unwrap();
    let (a, b) = (cache.fork(prompt).unwrap(), cache.fork(prompt).unwrap());
    assert_eq!(cache.block_table(a).unwrap(), &[0, 1]);
    assert_eq!((cache.ref_count(0).unwrap(), cache.ref_count(1).unwrap()), (3, 3));
    assert_eq!(cache.blocks_in_use(), 2);
    cache.free(prompt).unwrap(); // the forks keep the blocks
    assert_eq!((cache.ref_count(0).unwrap(), cache.ref_count(1).unwrap()), (2, 2));
    let (ka, va) = rows(6, 1, 3);
    cache.append(a, 6, &ka, &va).unwrap(); // block 1 is shared and has room: copied
    assert_eq!(cache.block_table(a).unwrap(), &[0, 2]);
    assert_eq!((cache.ref_count(1).unwrap(), cache.ref_count(2).unwrap()), (1, 1));
    assert_eq!(cache.copies(), 1);
    let (kb, vb) = rows(7, 1, 3);
    cache.append(b, 6, &kb, &vb).unwrap(); // block 1 is b's alone now: written in place
    assert_eq!(cache.block_table(b).unwrap(), &[0, 1]);
    assert_eq!(cache.copies(), 1);
    // each sees the prompt and its own row, not the other's
    let (keys_a, _) = cache.gather(a).unwrap();
    let (keys_b, _) = cache.gather(b).unwrap();
    assert_eq!(keys_a.rows(0, 6), k.rows(0, 6));
    assert_eq!(keys_b.rows(0, 6), k.rows(0, 6));
    assert_eq!(keys_a.row(6), ka.row(0));
    assert_eq!(keys_b.row(6), kb.row(0));
    check_invariants(&cache);
    // a shared *full* last block is never written: no copy, a new block instead
    let c = cache.add_sequence();
    let (k8, v8) = rows(8, 8, 3);
    cache.append(c, 0, &k8, &v8).unwrap();
    let d = cache.fork(c).unwrap();
    let copies = cache.copies();
    cache.append(d, 8, &ka, &va).unwrap();
    assert_eq!(cache.copies(), copies);
    assert_eq!(&cache.block_table(d).unwrap()[..2], cache.block_table(c).unwrap());
    check_invariants(&cache);
    for id in [a, b, c, d] {
        cache.free(id).unwrap();
    }
    assert_eq!(cache.free_blocks(), 10, "no leaked block");
    check_invariants(&cache);
}

/// A random GQA layer with RoPE: `n_heads = n_kv_heads · group` heads of `head_dim`
/// (even), `d_out = n_heads · head_dim`.
fn random_layer(
    n_kv_heads: usize,
    group: usize,
    head_dim: usize,
    d_in: usize,
    seed: u64,
) -> GroupedQueryAttention {
    let mut rng = StdRng::seed_from_u64(seed);
    let n_heads = n_kv_heads * group;
    let rope = Rope::new(head_dim, 512, 10_000.0, None).unwrap();
    GroupedQueryAttention::random(
        d_in,
        n_heads * head_dim,
        n_heads,
        n_kv_heads,
        Some(rope),
        &mut rng,
    )
    .unwrap()
}

#[test]
fn attention_through_blocks_equals_the_contiguous_cache_bit_for_bit() {
    // (n_kv_heads, group_size, head_dim, block_size): GQA, MHA, MQA, blocks of 1 and
    // blocks longer than the sequences
    for (kv, group, hd, bs) in
        [(2, 3, 4, 16), (3, 1, 6, 5), (1, 5, 2, 1), (2, 2, 8, 7), (1, 3, 4, 64)]
    {
        let heads = HeadLayout::new(kv * group, kv, hd).unwrap();
        let mut paged =
            PagedKvCache::for_heads(320usize.div_ceil(bs) + 4, bs, heads).unwrap();
        let prompt = paged.add_sequence();
        let mut prompt_ref = LayerKvCache::for_heads(1, 200, heads).unwrap();
        let (k, v) = rows(30, 13, heads.kv_dim());
        paged.append(prompt, 0, &k, &v).unwrap();
        prompt_ref.append(0, &[k], &[v]).unwrap();
        // three sequences forked from the prompt and one on its own, appended in turns
        let mut seqs: Vec<(SeqId, LayerKvCache)> =
            (0..3).map(|_| (paged.fork(prompt).unwrap(), prompt_ref.clone())).collect();
        seqs.push((
            paged.add_sequence(),
            LayerKvCache::for_heads(1, 200, heads).unwrap(),
        ));
        for step in 0..12u64 {
            for (s, (id, reference)) in seqs.iter_mut().enumerate() {
                let n = 1 + (step as usize * 7 + s * 3) % 5; // 1 to 5 new tokens
                let start = paged.len(*id).unwrap();
                let (k, v) = rows(100 + 10 * step + s as u64, n, heads.kv_dim());
                paged.append(*id, start, &k, &v).unwrap();
                reference.append(start, &[k], &[v]).unwrap();
                let q = splitmix_matrix(7 + step, n, heads.q_dim(), 1.0);
                let got = paged.attend(*id, &q, heads).unwrap();
                let want = grouped_attention(
                    &q,
                    reference.keys(0).unwrap(),
                    reference.values(0).unwrap(),
                    heads,
                    start,
                )
                .unwrap();
                assert_bits_equal(
                    &got,
                    &want,
                    &format!("heads {kv}x{group}, block {bs}, sequence {s}, step {step}"),
                );
                // the decode kernel on the gathered rows, against the same kernel on the
                // contiguous rows: also bit for bit
                let (keys, values) = paged.gather(*id).unwrap();
                let fast = |k, v| {
                    DecodeAttention::new()
                        .forward(AttentionInputs {
                            q: &q,
                            k,
                            v,
                            heads,
                            query_offset: start,
                        })
                        .unwrap()
                };
                let want = fast(reference.keys(0).unwrap(), reference.values(0).unwrap());
                assert_bits_equal(
                    &fast(keys.as_view(), values.as_view()),
                    &want,
                    "decode kernel",
                );
            }
        }
        check_invariants(&paged);
    }
}

#[test]
fn a_layer_decoding_through_the_pool_equals_its_contiguous_forward() {
    for (kv, group, hd, d_in, bs, window) in
        [(2, 3, 4, 20, 16, None), (1, 4, 6, 11, 3, None), (3, 2, 2, 9, 5, Some(7))]
    {
        let layer = random_layer(kv, group, hd, d_in, 41 + kv as u64);
        let options = ScoreOptions { window, ..Default::default() };
        let layer = layer.with_scores(options).unwrap();
        // the contiguous reference: chapter 6's forward with the straightforward kernel
        // and a plain cache (one that keeps every row, as the pool does)
        let contiguous = layer.clone().with_kernel(KernelChoice::Straightforward);
        let mut pool = PagedKvCache::for_heads(64, bs, layer.heads()).unwrap();
        let system = pool.add_sequence();
        let prompt = splitmix_matrix(3, 21, d_in, 1.0);
        pool.forward(&layer, system, &prompt, 0).unwrap();
        let mut prompt_ref = LayerKvCache::for_heads(1, 128, layer.heads()).unwrap();
        contiguous.forward(&Batch::single(prompt), 0, Some(&mut prompt_ref)).unwrap();
        for (user, (question, answer)) in
            [(9, 30), (5, 17), (40, 3)].into_iter().enumerate()
        {
            let id = pool.fork(system).unwrap();
            let mut reference = prompt_ref.clone();
            let x = splitmix_matrix(10 + user as u64, question + answer, d_in, 1.0);
            let chunks = std::iter::once((0, question))
                .chain((question..question + answer).map(|t| (t, 1)));
            for (first, n) in chunks {
                let chunk = x.rows(first, n).into_owned();
                let got = pool.forward(&layer, id, &chunk, 21 + first).unwrap();
                let want = contiguous
                    .forward(&Batch::single(chunk), 21 + first, Some(&mut reference))
                    .unwrap();
                assert_bits_equal(
                    &got,
                    &want.items()[0],
                    &format!("user {user}, token {first}"),
                );
            }
        }
        pool.free(system).unwrap();
        check_invariants(&pool);
    }
}

#[test]
fn forward_refuses_a_layer_of_another_width_and_an_unknown_sequence() {
    let layer = random_layer(2, 2, 4, 10, 5);
    let mut pool = PagedKvCache::new(8, 4, 3, 4).unwrap(); // 3 KV heads, the layer has 2
    let id = pool.add_sequence();
    let err = pool.forward(&layer, id, &DMatrix::zeros(2, 10), 0).unwrap_err();
    assert!(matches!(err, AttnError::CacheMismatch(_)), "{err}");
    let mut pool = PagedKvCache::for_heads(8, 4, layer.heads()).unwrap();
    let err = pool.forward(&layer, SeqId(3), &DMatrix::zeros(2, 10), 0).unwrap_err();
    assert_eq!(err, AttnError::UnknownSequence { id: 3, freed: false });
    assert_eq!(pool.free_blocks(), 8);
}

#[test]
fn without_copy_on_write_a_sibling_reads_the_other_sequences_rows() {
    // the trap the chapter measures: the same run, copy-on-write on and off
    let run = |copy_on_write: bool| {
        let mut cache =
            PagedKvCache::new(8, 4, 1, 2).unwrap().with_copy_on_write(copy_on_write);
        let p = cache.add_sequence();
        let (k, v) = rows(1, 6, 2);
        cache.append(p, 0, &k, &v).unwrap();
        let (a, b) = (cache.fork(p).unwrap(), cache.fork(p).unwrap());
        let (ka, va) = rows(2, 1, 2);
        let (kb, vb) = rows(3, 1, 2);
        cache.append(a, 6, &ka, &va).unwrap();
        cache.append(b, 6, &kb, &vb).unwrap(); // without the copy: overwrites a's row 6
        check_invariants(&cache);
        (cache.gather(a).unwrap().0.row(6).into_owned(), ka.row(0).into_owned())
    };
    let (got, want) = run(true);
    assert_eq!(got, want);
    let (got, want) = run(false);
    assert_ne!(got, want, "without copy-on-write a's row 6 is b's");
}

#[test]
fn workload_block_counts_follow_the_formula() {
    let w = Workload { n_sequences: 9, prompt_len: 37, max_own: 60, seed: 3 };
    let own = w.own_lengths();
    assert_eq!(own.len(), 9);
    assert!(own.iter().all(|&o| (1..=60).contains(&o)));
    assert!(own.windows(2).any(|p| p[0] != p[1]), "random lengths");
    for bs in [1, 4, 16, 37, 64] {
        let p = w.prompt_len;
        let unshared = w.run(bs, false).unwrap();
        let per_seq: usize = own.iter().map(|o| (p + o).div_ceil(bs)).sum();
        let tokens: usize = own.iter().map(|o| p + o).sum();
        assert_eq!(
            unshared,
            PoolUsage {
                block_size: bs,
                tokens,
                reserved: 9 * 97,
                blocks: per_seq,
                copies: 0
            }
        );
        // shared: the prompt's full blocks once; its partly filled last block copied by
        // every sequence but the last to write into it
        let shared = w.run(bs, true).unwrap();
        let full = p / bs;
        let copies = if p.is_multiple_of(bs) { 0 } else { 8 };
        assert_eq!(shared.blocks, full + per_seq - 9 * full, "block size {bs}");
        assert_eq!(shared.copies, copies, "block size {bs}");
        assert!(shared.rows() >= shared.tokens - 8 * p);
    }
}

#[derive(Clone, Debug)]
enum Op {
    Add,
    Append { pick: usize, n: usize },
    Fork { pick: usize },
    Free { pick: usize },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        2 => Just(Op::Add),
        6 => (any::<usize>(), 0usize..=20).prop_map(|(pick, n)| Op::Append { pick, n }),
        2 => any::<usize>().prop_map(|pick| Op::Fork { pick }),
        1 => any::<usize>().prop_map(|pick| Op::Free { pick }),
    ]
}

/// Runs `ops` on a pool of `n_blocks` blocks of `bs` positions for `heads`, beside one
/// contiguous cache per live sequence, checking everything after every operation.
fn run_ops(
    heads: HeadLayout,
    bs: usize,
    n_blocks: usize,
    ops: Vec<Op>,
) -> Result<(), TestCaseError> {
    let mut paged = PagedKvCache::for_heads(n_blocks, bs, heads).unwrap();
    let contiguous = || LayerKvCache::for_heads(1, n_blocks * bs, heads).unwrap();
    let mut live: Vec<(SeqId, LayerKvCache)> = Vec::new();
    for (i, op) in ops.into_iter().enumerate() {
        match op {
            Op::Add => live.push((paged.add_sequence(), contiguous())),
            Op::Fork { pick } if !live.is_empty() => {
                let (parent, reference) = &live[pick % live.len()];
                let child = (paged.fork(*parent).unwrap(), reference.clone());
                live.push(child);
            }
            Op::Free { pick } if !live.is_empty() => {
                let (id, _) = live.swap_remove(pick % live.len());
                paged.free(id).unwrap();
                prop_assert!(paged.len(id).is_err());
            }
            Op::Append { pick, n } if !live.is_empty() => {
                let n_live = live.len();
                let (id, reference) = &mut live[pick % n_live];
                let start = paged.len(*id).unwrap();
                let (k, v) = rows(1000 + i as u64, n, heads.kv_dim());
                let before = paged.clone();
                match paged.append(*id, start, &k, &v) {
                    Ok(()) => reference.append(start, &[k], &[v]).unwrap(),
                    Err(AttnError::PoolExhausted { needed, free, .. }) => {
                        prop_assert!(needed > free);
                        prop_assert_eq!(
                            &paged,
                            &before,
                            "a refused append changes nothing"
                        );
                    }
                    Err(e) => return Err(TestCaseError::fail(e.to_string())),
                }
                let len = paged.len(*id).unwrap();
                if len > 0 {
                    // the newest 1 to 3 tokens attend over the sequence
                    let n_q = 1 + i % len.min(3);
                    let q = splitmix_matrix(5000 + i as u64, n_q, heads.q_dim(), 1.0);
                    let got = paged.attend(*id, &q, heads).unwrap();
                    let (keys, values) = (reference.keys(0), reference.values(0));
                    let (keys, values) = (keys.unwrap(), values.unwrap());
                    let want =
                        grouped_attention(&q, keys, values, heads, len - n_q).unwrap();
                    let diff = first_difference(&got, &want);
                    prop_assert!(diff.is_none(), "(row, col, got, want) = {diff:?}");
                }
            }
            _ => {}
        }
        check_invariants(&paged);
    }
    for (id, reference) in &live {
        let (keys, values) = paged.gather(*id).unwrap();
        prop_assert_eq!(keys, reference.keys(0).unwrap().into_owned());
        prop_assert_eq!(values, reference.values(0).unwrap().into_owned());
    }
    for (id, _) in live {
        paged.free(id).unwrap();
    }
    prop_assert_eq!(paged.free_blocks(), n_blocks, "no leaked block");
    check_invariants(&paged);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// Random adds, appends of random lengths, forks and frees on a small pool (so that
    /// it runs out): after every operation the invariants hold, a refused append changes
    /// nothing, every sequence's attention equals a contiguous cache fed the same rows,
    /// bit for bit; freeing everything returns every block.
    #[test]
    fn paged_cache_equals_contiguous_under_random_operations(
        (kv, group, hd) in (1usize..=3, 1usize..=3, 1usize..=5),
        bs in 1usize..=9,
        n_blocks in 1usize..=30,
        ops in proptest::collection::vec(op(), 1..80),
    ) {
        run_ops(HeadLayout::new(kv * group, kv, hd).unwrap(), bs, n_blocks, ops)?;
    }
}
