//! Criterion benchmarks of the three attention paths, single thread, f32, head_dim 64,
//! causal: the straightforward `grouped_attention`, the tiled `FlashAttention`, and
//! `DecodeAttention`.
//!
//! `cargo bench -p attention --bench attention` measures (add `-- flash` to pick by
//! name); `cargo test` runs each benchmark once as a smoke test. For the side-by-side
//! comparison with PyTorch use `scripts/bench_compare.py`, which runs the `attn-bench`
//! binary.

use std::hint::black_box;
use std::time::Duration;

use attention::support::init::splitmix_matrix;
use attention::{
    AttentionInputs, DecodeAttention, FlashAttention, HeadLayout, grouped_attention,
};
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use nalgebra::DMatrix;

const N_HEADS: usize = 12;
const HEAD_DIM: usize = 64;

fn inputs(
    n_queries: usize,
    n_keys: usize,
    n_kv_heads: usize,
) -> (DMatrix<f32>, DMatrix<f32>, DMatrix<f32>) {
    (
        splitmix_matrix(1, n_queries, N_HEADS * HEAD_DIM, 1.0),
        splitmix_matrix(2, n_keys, n_kv_heads * HEAD_DIM, 1.0),
        splitmix_matrix(3, n_keys, n_kv_heads * HEAD_DIM, 1.0),
    )
}

fn prefill(c: &mut Criterion) {
    let mut group = c.benchmark_group("prefill");
    group.sample_size(10).measurement_time(Duration::from_secs(5));
    for seq in [256, 1024] {
        for n_kv_heads in [N_HEADS, 4] {
            let (q, k, v) = inputs(seq, seq, n_kv_heads);
            let label = format!("{seq}/{N_HEADS}q{n_kv_heads}kv");
            let heads = HeadLayout::new(N_HEADS, n_kv_heads, HEAD_DIM).unwrap();
            group.bench_function(BenchmarkId::new("naive", &label), |b| {
                b.iter(|| {
                    grouped_attention(&q, k.as_view(), v.as_view(), heads, 0).unwrap()
                })
            });
            let mut flash = FlashAttention::new();
            let mut out = DMatrix::zeros(seq, N_HEADS * HEAD_DIM);
            group.bench_function(BenchmarkId::new("flash", &label), |b| {
                b.iter(|| {
                    flash
                        .forward_into(
                            AttentionInputs {
                                q: &q,
                                k: k.as_view(),
                                v: v.as_view(),
                                heads,
                                query_offset: 0,
                            },
                            &mut out,
                        )
                        .unwrap();
                    black_box(&out);
                })
            });
        }
    }
    group.finish();
}

fn decode(c: &mut Criterion) {
    let mut group = c.benchmark_group("decode");
    let context = 4096;
    let (q, k, v) = inputs(1, context, 4);
    let mut decode = DecodeAttention::new();
    let heads = HeadLayout::new(N_HEADS, 4, HEAD_DIM).unwrap();
    let mut out = DMatrix::zeros(1, N_HEADS * HEAD_DIM);
    group.bench_function(BenchmarkId::new("gqa_12q4kv", context), |b| {
        b.iter(|| {
            decode
                .forward_into(
                    AttentionInputs {
                        q: &q,
                        k: k.as_view(),
                        v: v.as_view(),
                        heads,
                        query_offset: context - 1,
                    },
                    &mut out,
                )
                .unwrap();
            black_box(&out);
        })
    });
    group.finish();
}

criterion_group!(benches, prefill, decode);
criterion_main!(benches);
