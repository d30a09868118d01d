//! Every path of the layer at Llama 3.1 8B's widths (hidden 4096, 32 query heads over 8
//! KV heads of 128), against an f64 reference computed here (issue #9).
//!
//! The fixtures use small widths, where a sum has a few dozen terms; at 8B's widths a
//! projection sums 4096 products, and an f32 summation order that is harmless at width 64
//! can cost the tolerance. Weights are random with the real shapes and scale (uniform,
//! std 0.02, as trained checkpoints have), inputs of unit RMS; RoPE has θ = 500 000 and
//! Llama 3.1 scaling, at positions from 1000. The reference does the projections, the
//! RoPE rotation (with the same f32 cos/sin tables: they are the definition, see
//! `rope.rs`), the softmax and the products in f64.
//!
//! Tolerance: PyTorch's `assert_close` for f32 (rtol 1.3e-6, atol 1e-5) with a margin of
//! 2: every path must stay within *half* of it. Measured on AMD Zen 4 (worst element's
//! |error| over what assert_close allows): every one-pass forward 0.29-0.32 (3.3e-6),
//! token-by-token decoding 0.29-0.30 (3.4e-6). Before the fix of issue #9, decoding after
//! an 8-token prefill was at 0.77 (1.06e-5), from its one-row projections; from the first
//! token, with other seeds, at 1.10.

use std::sync::OnceLock;

use attention::support::init::splitmix_matrix;
use attention::*;
use nalgebra::DMatrix;

const HIDDEN: usize = 4096;
const N_HEADS: usize = 32;
const N_KV_HEADS: usize = 8;
const HEAD_DIM: usize = 128;
const SEQ: usize = 16;
const START_POS: usize = 1000;

/// Half of PyTorch's f32 tolerance: the margin every path must keep.
const HALF_TOL: Tolerance =
    Tolerance::new(Tolerance::F32.rtol / 2.0, Tolerance::F32.atol / 2.0);

/// The layer, its input and the f64 reference output, built once for all the tests of
/// this file.
struct Case {
    layer: GroupedQueryAttention,
    x: DMatrix<f32>,
    /// The input projected by `W_q` in f64, before RoPE.
    q_want: DMatrix<f64>,
    /// The layer's output in f64.
    want: DMatrix<f64>,
}

fn case() -> &'static Case {
    static CASE: OnceLock<Case> = OnceLock::new();
    CASE.get_or_init(|| {
        // uniform in [-b, b) has std b/√3
        let w = 0.02 * 3f64.sqrt();
        let wq = splitmix_matrix(91, N_HEADS * HEAD_DIM, HIDDEN, w);
        let wk = splitmix_matrix(92, N_KV_HEADS * HEAD_DIM, HIDDEN, w);
        let wv = splitmix_matrix(93, N_KV_HEADS * HEAD_DIM, HIDDEN, w);
        let wo = splitmix_matrix(94, HIDDEN, N_HEADS * HEAD_DIM, w);
        let x = splitmix_matrix(95, SEQ, HIDDEN, 3f64.sqrt());
        let rope = Rope::new(
            HEAD_DIM,
            START_POS + SEQ,
            500_000.0,
            Some(Llama3Scaling::LLAMA_3_1),
        )
        .unwrap();

        // x·Wᵀ as (W·xᵀ)ᵀ: only the small matrices are transposed
        let linear_f64 =
            |x: &DMatrix<f64>, w: &DMatrix<f32>| (to_f64(w) * x.transpose()).transpose();
        let x64 = to_f64(&x);
        let q_want = linear_f64(&x64, &wq);
        let mut q = q_want.clone();
        let mut k = linear_f64(&x64, &wk);
        let v = linear_f64(&x64, &wv);
        rope_f64(&mut q, &rope);
        rope_f64(&mut k, &rope);
        let want = linear_f64(&attention_f64(&q, &k, &v, 0), &wo);

        let linear = |m: DMatrix<f32>| Linear::new(m, None).unwrap();
        let weights = QkvoWeights {
            w_query: linear(wq),
            w_key: linear(wk),
            w_value: linear(wv),
            out_proj: linear(wo),
        };
        let layer =
            GroupedQueryAttention::new(weights, N_HEADS, N_KV_HEADS, Some(rope)).unwrap();
        Case { layer, x, q_want, want }
    })
}

fn to_f64(m: &DMatrix<f32>) -> DMatrix<f64> {
    m.map(f64::from)
}

/// The split-halves RoPE rotation in f64, with the layer's f32 tables, rows at `START_POS
/// ..`.
fn rope_f64(x: &mut DMatrix<f64>, rope: &Rope) {
    let half = HEAD_DIM / 2;
    for head in 0..x.ncols() / HEAD_DIM {
        let first = head * HEAD_DIM;
        for t in 0..x.nrows() {
            for i in 0..half {
                let (c, s) = rope.cos_sin(START_POS + t, i).unwrap();
                let (c, s) = (f64::from(c), f64::from(s));
                let (x1, x2) = (x[(t, first + i)], x[(t, first + half + i)]);
                x[(t, first + i)] = x1 * c - x2 * s;
                x[(t, first + half + i)] = x2 * c + x1 * s;
            }
        }
    }
}

/// Causal grouped-query attention in f64: query `i` sees keys `0 ..= query_offset + i`.
fn attention_f64(
    q: &DMatrix<f64>,
    k: &DMatrix<f64>,
    v: &DMatrix<f64>,
    query_offset: usize,
) -> DMatrix<f64> {
    let group = N_HEADS / N_KV_HEADS;
    let scale = 1.0 / (HEAD_DIM as f64).sqrt();
    let mut out = DMatrix::zeros(q.nrows(), N_HEADS * HEAD_DIM);
    for h in 0..N_HEADS {
        let (qh, kh, vh) = (h * HEAD_DIM, h / group * HEAD_DIM, h / group * HEAD_DIM);
        for i in 0..q.nrows() {
            let keys = query_offset + i + 1;
            let scores: Vec<f64> = (0..keys)
                .map(|j| {
                    (0..HEAD_DIM).map(|c| q[(i, qh + c)] * k[(j, kh + c)]).sum::<f64>()
                        * scale
                })
                .collect();
            let max = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let weights: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
            let sum: f64 = weights.iter().sum();
            for c in 0..HEAD_DIM {
                let acc: f64 =
                    weights.iter().enumerate().map(|(j, w)| w * v[(j, vh + c)]).sum();
                out[(i, qh + c)] = acc / sum;
            }
        }
    }
    out
}

/// Largest `|got − want|`, and the largest ratio of it to what `tol` allows (`> 1` fails
/// `tol`).
fn error(got: &DMatrix<f32>, want: &DMatrix<f64>, tol: Tolerance) -> (f64, f64) {
    assert_eq!(got.shape(), want.shape());
    let (atol, rtol) = (f64::from(tol.atol), f64::from(tol.rtol));
    got.iter().zip(want.iter()).fold((0.0_f64, 0.0_f64), |(worst, ratio), (&g, &w)| {
        let diff = (f64::from(g) - w).abs();
        (worst.max(diff), ratio.max(diff / (atol + rtol * w.abs())))
    })
}

/// `(path, max |error|)` for every path through the layer, checked against half the
/// tolerance.
fn path_errors() -> &'static [(String, f64)] {
    static ERRORS: OnceLock<Vec<(String, f64)>> = OnceLock::new();
    ERRORS.get_or_init(|| {
        let c = case();
        let x = Batch::single(c.x.clone());
        let mut runs = Vec::new();
        for kernel in [KernelChoice::Straightforward, KernelChoice::Flash, KernelChoice::Decode] {
            let layer = c.layer.clone().with_kernel(kernel);
            runs.push((format!("{kernel:?}, one pass"), layer.forward(&x, START_POS, None).unwrap()));
        }
        for (kernel, prefill) in [(KernelChoice::Auto, 8), (KernelChoice::Auto, 0), (KernelChoice::Decode, 8)] {
            let layer = c.layer.clone().with_kernel(kernel);
            let y = layer.forward_prefill_decode(&x, START_POS, prefill).unwrap();
            runs.push((format!("{kernel:?}, prefill {prefill} then one token at a time"), y));
        }
        let mut errors = Vec::new();
        for (path, y) in runs {
            let (worst, ratio) = error(&y.items()[0], &c.want, Tolerance::F32);
            eprintln!("{path}: max |error| {worst:.3e}, {ratio:.2} of assert_close's tolerance");
            assert!(
                ratio <= 0.5,
                "{path}: max |error| {worst:.3e} against f64 uses {ratio:.2} of assert_close's f32 tolerance (at most 0.5 allowed)"
            );
            errors.push((path, worst));
        }
        errors
    })
}

#[test]
fn every_path_is_within_half_of_assert_close_of_an_f64_reference() {
    let c = case();
    assert!(
        c.want.amax() > 1.0,
        "outputs of order 1, as in a real layer: {}",
        c.want.amax()
    );
    assert_eq!(path_errors().len(), 6);
}

#[test]
fn decoding_token_by_token_is_about_as_accurate_as_the_one_pass_forward() {
    let errors = path_errors();
    let worst = |pred: &dyn Fn(&str) -> bool| {
        errors.iter().filter(|(p, _)| pred(p)).map(|&(_, e)| e).fold(0.0, f64::max)
    };
    let one_pass = worst(&|p| p.contains("one pass"));
    let decoding = worst(&|p| p.contains("one token at a time"));
    // before the fix of issue #9: 1.06e-5 against 3.4e-6, three times
    assert!(
        decoding <= 1.5 * one_pass,
        "token-by-token decoding: max |error| {decoding:.3e}, one pass {one_pass:.3e}"
    );
}

#[test]
fn a_projection_of_a_few_rows_is_as_accurate_as_one_of_many() {
    let c = case();
    let w_query = &c.layer.weights().w_query;
    let all = w_query.forward(&c.x).unwrap(); // SEQ rows: nalgebra's blocked matrix product
    let (many, _) = error(&all, &c.q_want, HALF_TOL);
    // 1 to 5 rows take another code path (nalgebra leaves its fast product for a side
    // <= 5)
    for n in 1..=5 {
        let got = w_query.forward(&c.x.rows(SEQ - n, n).into_owned()).unwrap();
        let (worst, ratio) =
            error(&got, &c.q_want.rows(SEQ - n, n).into_owned(), HALF_TOL);
        assert!(
            ratio <= 1.0,
            "{n} rows: max |error| {worst:.3e} exceeds half of assert_close's tolerance"
        );
        assert!(
            worst <= 1.5 * many,
            "{n} rows: max |error| {worst:.3e}, against {many:.3e} for {SEQ} rows"
        );
    }
}

#[test]
fn the_kernels_over_a_long_cache_at_8b_head_widths() {
    // one query over 4500 cached keys: the decode kernel's blocks (2048 keys) and its
    // online softmax
    let n_keys = 4500;
    let heads = HeadLayout::new(N_HEADS, N_KV_HEADS, HEAD_DIM).unwrap();
    // entries with the spread of real queries, keys and values at these widths (std ≈ 1.3
    // and 1)
    let q = splitmix_matrix(96, 1, N_HEADS * HEAD_DIM, 2.2);
    let k = splitmix_matrix(97, n_keys, N_KV_HEADS * HEAD_DIM, 2.2);
    let v = splitmix_matrix(98, n_keys, N_KV_HEADS * HEAD_DIM, 1.7);
    let want = attention_f64(&to_f64(&q), &to_f64(&k), &to_f64(&v), n_keys - 1);
    let offset = n_keys - 1;
    let x = AttentionInputs {
        q: &q,
        k: k.as_view(),
        v: v.as_view(),
        heads,
        query_offset: offset,
    };
    let paths = [
        ("decode", DecodeAttention::new().forward(x)),
        ("flash", FlashAttention::new().forward(x)),
        (
            "straightforward",
            grouped_attention(&q, k.as_view(), v.as_view(), heads, offset),
        ),
    ];
    for (path, got) in paths {
        let (worst, ratio) = error(&got.unwrap(), &want, HALF_TOL);
        eprintln!("{path} over {n_keys} keys: max |error| {worst:.3e}");
        assert!(
            ratio <= 1.0,
            "{path} over {n_keys} keys: max |error| {worst:.3e} exceeds half the tolerance"
        );
    }
}
