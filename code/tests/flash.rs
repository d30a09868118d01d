//! The fast paths (`FlashAttention`, `DecodeAttention`, the fast `exp`) against the
//! straightforward `grouped_attention` and against PyTorch's numbers.
//!
//! Tolerance: PyTorch's `assert_close` for f32 (rtol 1.3e-6, atol 1e-5). The fast paths
//! add up the same terms in another order and use an `exp` within 1.2e-7 relative of the
//! exact one, so they differ from the straightforward path by about 1e-7, far inside it.

mod common;

use attention::fast::fast_exp::{
    EXP_MAX_REL_ERROR, exp_approx, exp_approx_with, exp_in_place, exp_sub_sum,
};
use attention::fast::flash::{QUERY_BLOCK, key_block};
use attention::fast::online_softmax::{online_softmax_step, online_softmax_tile};
use attention::fast::simd::simd_level;
use attention::support::init::splitmix_matrix;
use attention::*;
use common::TOL;
use nalgebra::DMatrix;

/// Random `(q, k, v)`: `n_queries` queries, `n_keys` keys, heads of `head_dim`.
fn inputs(
    n_queries: usize,
    n_keys: usize,
    n_heads: usize,
    n_kv_heads: usize,
    head_dim: usize,
    seed: u64,
) -> (DMatrix<f32>, DMatrix<f32>, DMatrix<f32>) {
    (
        splitmix_matrix(seed, n_queries, n_heads * head_dim, 1.0),
        splitmix_matrix(seed + 1, n_keys, n_kv_heads * head_dim, 1.0),
        splitmix_matrix(seed + 2, n_keys, n_kv_heads * head_dim, 1.0),
    )
}

/// Flash (1, 2 and 3 threads) and decode against `grouped_attention` on one shape.
fn check_shape(
    n_queries: usize,
    start_pos: usize,
    n_heads: usize,
    n_kv_heads: usize,
    head_dim: usize,
) {
    let n_keys = start_pos + n_queries;
    let seed = (n_queries * 1000 + start_pos * 10 + n_kv_heads) as u64;
    let (q, k, v) = inputs(n_queries, n_keys, n_heads, n_kv_heads, head_dim, seed);
    let want = grouped_attention(
        &q,
        k.as_view(),
        v.as_view(),
        hl(&q, n_heads, n_kv_heads),
        start_pos,
    )
    .unwrap();
    let shape = format!(
        "{n_queries} queries at {start_pos}, {n_heads}/{n_kv_heads} heads of {head_dim}"
    );
    for threads in [1, 2, 3] {
        let mut flash = FlashAttention::with_threads(threads).unwrap();
        let got = flash
            .forward(AttentionInputs {
                q: &q,
                k: k.as_view(),
                v: v.as_view(),
                heads: hl(&q, n_heads, n_kv_heads),
                query_offset: start_pos,
            })
            .unwrap();
        if let Err(m) =
            compare(got.as_slice(), want.as_slice(), &[got.ncols(), got.nrows()], TOL)
        {
            panic!("flash, {threads} threads, {shape}: {m}");
        }
    }
    if n_queries <= 3 {
        let got = DecodeAttention::new()
            .forward(AttentionInputs {
                q: &q,
                k: k.as_view(),
                v: v.as_view(),
                heads: hl(&q, n_heads, n_kv_heads),
                query_offset: start_pos,
            })
            .unwrap();
        if let Err(m) =
            compare(got.as_slice(), want.as_slice(), &[got.ncols(), got.nrows()], TOL)
        {
            panic!("decode, {shape}: {m}");
        }
    }
}

#[test]
fn flash_matches_the_straightforward_path_on_sizes_that_do_not_fill_a_tile() {
    // around the tile sizes (96 query rows; 144 or 192 keys, by SIMD level), MHA / GQA /
    // MQA
    let key_block = key_block(simd_level());
    for n in
        [1, 2, 7, QUERY_BLOCK - 1, QUERY_BLOCK, QUERY_BLOCK + 1, 130, key_block + 3, 300]
    {
        check_shape(n, 0, 4, 4, 16);
        check_shape(n, 0, 6, 2, 8);
        check_shape(n, 0, 3, 1, 5);
    }
}

#[test]
fn flash_matches_the_straightforward_path_at_head_dim_64() {
    check_shape(200, 0, 12, 4, 64);
    check_shape(65, 0, 12, 12, 64);
}

#[test]
fn flash_and_decode_match_with_a_cache_in_front() {
    // queries after start_pos cached positions: chunked prefill and decode steps
    for (n, start_pos) in [
        (1, 1),
        (1, 255),
        (1, 256),
        (1, 600),
        (3, 77),
        (5, 300),
        (70, 200),
        (64, 256),
        (129, 1),
    ] {
        check_shape(n, start_pos, 4, 2, 8);
        check_shape(n, start_pos, 6, 1, 16);
        check_shape(n, start_pos, 4, 4, 64);
    }
}

#[test]
fn extra_keys_after_the_last_query_are_never_seen() {
    // keys beyond start_pos + n_queries exist (a cache with spare rows): both paths
    // ignore them
    let (q, k, v) = inputs(5, 40, 4, 2, 8, 99);
    let want = grouped_attention(&q, k.as_view(), v.as_view(), hl(&q, 4, 2), 10).unwrap();
    let flash = FlashAttention::new()
        .forward(AttentionInputs {
            q: &q,
            k: k.as_view(),
            v: v.as_view(),
            heads: hl(&q, 4, 2),
            query_offset: 10,
        })
        .unwrap();
    let decode = DecodeAttention::new()
        .forward(AttentionInputs {
            q: &q,
            k: k.as_view(),
            v: v.as_view(),
            heads: hl(&q, 4, 2),
            query_offset: 10,
        })
        .unwrap();
    assert_matrix_close(&flash, &want, TOL);
    assert_matrix_close(&decode, &want, TOL);
}

#[test]
fn buffers_are_reused_across_calls_of_different_shapes() {
    let mut flash = FlashAttention::new();
    let mut decode = DecodeAttention::new();
    let mut out = DMatrix::zeros(0, 0);
    for (n, start_pos, heads, kv) in
        [(100, 0, 4, 2), (3, 50, 6, 3), (300, 7, 4, 4), (100, 0, 4, 2)]
    {
        let (q, k, v) = inputs(n, start_pos + n, heads, kv, 8, n as u64);
        let want =
            grouped_attention(&q, k.as_view(), v.as_view(), hl(&q, heads, kv), start_pos)
                .unwrap();
        let x = AttentionInputs {
            q: &q,
            k: k.as_view(),
            v: v.as_view(),
            heads: hl(&q, heads, kv),
            query_offset: start_pos,
        };
        flash.forward_into(x, &mut out).unwrap();
        assert_matrix_close(&out, &want, TOL);
        decode.forward_into(x, &mut out).unwrap();
        assert_matrix_close(&out, &want, TOL);
    }
}

#[test]
fn large_scores_do_not_overflow() {
    // scores of several hundred: exp would overflow without the running maximum
    let (mut q, k, v) = inputs(300, 300, 2, 1, 16, 5);
    q *= 40.0;
    let want = grouped_attention(&q, k.as_view(), v.as_view(), hl(&q, 2, 1), 0).unwrap();
    let got = FlashAttention::new()
        .forward(AttentionInputs {
            q: &q,
            k: k.as_view(),
            v: v.as_view(),
            heads: hl(&q, 2, 1),
            query_offset: 0,
        })
        .unwrap();
    assert!(got.iter().all(|x| x.is_finite()));
    assert_matrix_close(&got, &want, TOL);
}

#[test]
fn bad_inputs_give_the_same_errors_as_grouped_attention() {
    let (q, k, v) = inputs(5, 5, 4, 2, 8, 1);
    let (k4, v4) = (k.rows(0, 4).into_owned(), v.rows(0, 4).into_owned());
    // impossible layouts are refused before any kernel runs
    assert!(matches!(HeadLayout::new(4, 0, 8), Err(AttnError::ZeroSize { .. })));
    assert!(matches!(HeadLayout::new(4, 3, 8), Err(AttnError::NotDivisible { .. })));
    assert!(matches!(
        HeadLayout::from_q_dim(32, 5, 1),
        Err(AttnError::NotDivisible { .. })
    ));
    type Case<'a> = (&'a str, HeadLayout, usize, &'a DMatrix<f32>, &'a DMatrix<f32>);
    let l = |n_heads, n_kv_heads, head_dim| {
        HeadLayout::new(n_heads, n_kv_heads, head_dim).unwrap()
    };
    let cases: Vec<Case> = vec![
        ("q of another width", l(4, 2, 4), 0, &k, &v),
        ("k too narrow", l(2, 2, 16), 0, &k, &v),
        ("v rows differ", l(4, 2, 8), 0, &k, &v4),
        ("too few keys", l(4, 2, 8), 0, &k4, &v4),
        ("query_offset too far", l(4, 2, 8), 1, &k, &v),
        ("query_offset overflows", l(4, 2, 8), usize::MAX, &k, &v),
    ];
    for (what, heads, query_offset, k, v) in cases {
        let want = grouped_attention(&q, k.as_view(), v.as_view(), heads, query_offset)
            .unwrap_err();
        let flash = FlashAttention::new()
            .forward(AttentionInputs {
                q: &q,
                k: k.as_view(),
                v: v.as_view(),
                heads,
                query_offset,
            })
            .unwrap_err();
        let decode = DecodeAttention::new()
            .forward(AttentionInputs {
                q: &q,
                k: k.as_view(),
                v: v.as_view(),
                heads,
                query_offset,
            })
            .unwrap_err();
        for got in [flash, decode] {
            assert_eq!(
                std::mem::discriminant(&got),
                std::mem::discriminant(&want),
                "{what}: {got} vs {want}"
            );
            if !matches!(want, AttnError::Shape { .. }) {
                assert_eq!(got, want, "{what}");
            }
            assert!(
                !want.to_string().contains("18446744073709551615 +"),
                "{what}: {want}"
            );
        }
    }
    assert!(matches!(
        FlashAttention::with_threads(0),
        Err(AttnError::ZeroSize { what: "threads" })
    ));
    assert!(matches!(
        DecodeAttention::with_threads(0),
        Err(AttnError::ZeroSize { what: "threads" })
    ));
}

#[test]
fn empty_inputs_give_empty_outputs() {
    let (q, k, v) = inputs(0, 3, 2, 1, 4, 1);
    assert_eq!(
        FlashAttention::new()
            .forward(AttentionInputs {
                q: &q,
                k: k.as_view(),
                v: v.as_view(),
                heads: hl(&q, 2, 1),
                query_offset: 3
            })
            .unwrap()
            .shape(),
        (0, 8)
    );
    assert_eq!(
        DecodeAttention::new()
            .forward(AttentionInputs {
                q: &q,
                k: k.as_view(),
                v: v.as_view(),
                heads: hl(&q, 2, 1),
                query_offset: 0
            })
            .unwrap()
            .shape(),
        (0, 8)
    );
}

/// Runs a GQA fixture through `project`, a fast attention path, and `out_proj`.
fn fixture_through(
    name: &str,
    attend: impl Fn(&DMatrix<f32>, &DMatrix<f32>, &DMatrix<f32>, HeadLayout) -> DMatrix<f32>,
) -> Result<()> {
    let fx = Fixture::load(name)?;
    let gqa = fx.gqa()?;
    let x = fx.batch("x")?;
    let outs = x.try_map(|xb| {
        let (q, k, v) = gqa.project(xb, 0)?;
        gqa.weights().out_proj.forward(&attend(&q, &k, &v, gqa.heads()))
    })?;
    let want_name = if name == "kv_cache" { "out_full" } else { "out" };
    assert_batch_close(&outs, &fx.batch(want_name)?, TOL);
    Ok(())
}

/// PyTorch's GQA outputs (small_gqa, small_mqa, default_gqa, kv_cache) through the flash
/// path.
#[test]
fn flash_reproduces_pytorch_fixtures() -> Result<()> {
    for name in ["small_gqa", "small_mqa", "small_gqa_norope", "kv_cache"] {
        fixture_through(name, |q, k, v, heads| {
            FlashAttention::new()
                .forward(AttentionInputs {
                    q,
                    k: k.as_view(),
                    v: v.as_view(),
                    heads,
                    query_offset: 0,
                })
                .unwrap()
        })?;
    }
    Ok(())
}

/// The starting project's default config (768, 12 heads / 4 KV heads, head_dim 64), via
/// the flash path; weights regenerated from the fixture's SplitMix64 seeds as in
/// `tests/reference.rs`.
#[test]
fn flash_reproduces_the_default_config_fixture() -> Result<()> {
    let fx = Fixture::load("default_gqa")?;
    let seeds = &fx.config()["weight_seeds"];
    let bounds = &fx.config()["weight_bounds"];
    let lin = |name: &str, rows: usize| -> Linear {
        let (seed, bound) =
            (seeds[name].as_u64().unwrap(), bounds[name].as_f64().unwrap());
        Linear::new(splitmix_matrix(seed, rows, 768, bound), None).unwrap()
    };
    let cfg = Preset::SMALL.config;
    let kv = cfg.n_kv_heads * cfg.head_dim;
    let weights = QkvoWeights {
        w_query: lin("W_query.weight", 768),
        w_key: lin("W_key.weight", kv),
        w_value: lin("W_value.weight", kv),
        out_proj: lin("out_proj.weight", 768),
    };
    let rope = Rope::new(cfg.head_dim, cfg.context_length, cfg.rope_theta, None)?;
    let gqa =
        GroupedQueryAttention::new(weights, cfg.n_heads, cfg.n_kv_heads, Some(rope))?;
    let x = fx.batch("x")?;
    let (q, k, v) = gqa.project(&x.items()[0], 0)?;
    let context = FlashAttention::new().forward(AttentionInputs {
        q: &q,
        k: k.as_view(),
        v: v.as_view(),
        heads: hl(&q, 12, 4),
        query_offset: 0,
    })?;
    assert_matrix_close(
        &gqa.weights().out_proj.forward(&context)?,
        &fx.batch("out")?.items()[0],
        TOL,
    );
    Ok(())
}

/// PyTorch's KV-cache fixture: prefill 5 tokens with flash, then 4 decode steps with the
/// decode kernel over the cache, equals PyTorch's `out_decode`; chunks 3, 4, 2 through
/// flash with `start_pos` equal PyTorch's `out_chunked`.
#[test]
fn cached_generation_with_the_fast_paths_reproduces_pytorch() -> Result<()> {
    let fx = Fixture::load("kv_cache")?;
    let gqa = fx.gqa()?;
    let x = fx.batch("x")?;
    let flash = gqa.clone().with_kernel(KernelChoice::Flash);
    let decode = gqa.with_kernel(KernelChoice::Decode);
    for (chunks, want) in
        [(&[5, 1, 1, 1, 1][..], "out_decode"), (&[3, 4, 2][..], "out_chunked")]
    {
        let mut cache = flash.new_cache(x.batch_size(), fx.usize("context_length")?)?;
        let mut outs = Vec::new();
        let mut pos = 0;
        for &n in chunks {
            let layer = if n == 1 { &decode } else { &flash };
            outs.push(layer.forward(&x.narrow_seq(pos, n)?, pos, Some(&mut cache))?);
            pos += n;
        }
        assert_batch_close(&Batch::concat_seq(&outs)?, &fx.batch(want)?, TOL);
    }
    Ok(())
}

#[test]
fn decode_on_a_long_cache_matches_the_straightforward_path() {
    // more keys than one decode block (512), GQA 12/4 at head_dim 64, 1 and 2 threads
    let (q, k, v) = inputs(1, 1500, 12, 4, 64, 7);
    let want =
        grouped_attention(&q, k.as_view(), v.as_view(), hl(&q, 12, 4), 1499).unwrap();
    for threads in [1, 2] {
        let mut decode = DecodeAttention::with_threads(threads).unwrap();
        let got = decode
            .forward(AttentionInputs {
                q: &q,
                k: k.as_view(),
                v: v.as_view(),
                heads: hl(&q, 12, 4),
                query_offset: 1499,
            })
            .unwrap();
        assert_matrix_close(&got, &want, TOL);
    }
}

#[test]
fn fast_exp_is_within_its_error_bound() {
    // a strided sweep over every f32 between -87.34 and 88.38 (the release-mode sweep
    // over all of them, in the chapter, gives 9.90e-8 at most)
    let (lo, hi) = (-87.336_55_f32, 88.376_26_f32);
    let mut worst = 0.0_f64;
    let mut count = 0;
    // bit patterns of the positive floats up to hi, then of the negative ones down to lo
    for (sign, last) in [(0, hi.to_bits()), (0x8000_0000, (-lo).to_bits())] {
        for bits in (0..=last).step_by(997) {
            let x = f32::from_bits(sign | bits);
            let exact = (x as f64).exp();
            // both forms: separate multiplies and adds, and fused multiply-adds (here
            // `mul_add` may run in software, with the same bits as the instruction)
            for ours in [exp_approx(x), exp_approx_with::<true>(x)] {
                worst = worst.max(((ours as f64 - exact) / exact).abs());
            }
            count += 1;
        }
    }
    assert!(count > 1_000_000, "{count}");
    assert!(worst <= EXP_MAX_REL_ERROR as f64, "max relative error {worst:e}");
    // the edges
    assert_eq!(exp_approx(0.0), 1.0);
    assert_eq!(exp_approx(f32::NEG_INFINITY), 0.0);
    assert_eq!(exp_approx(-100.0), 0.0);
    assert_eq!(exp_approx(f32::INFINITY), f32::INFINITY);
    assert!(exp_approx(f32::NAN).is_nan());
    for x in [0.0, f32::NEG_INFINITY, -100.0, f32::INFINITY] {
        assert_eq!(exp_approx_with::<true>(x), exp_approx(x));
    }
    assert!(exp_approx_with::<true>(f32::NAN).is_nan());
    let mut xs: Vec<f32> = (0..100).map(|i| i as f32 * 0.37 - 20.0).collect();
    let want: Vec<f32> = xs.iter().map(|x| x.exp()).collect();
    exp_in_place(&mut xs);
    for (g, w) in xs.iter().zip(&want) {
        assert!(((g - w) / w).abs() <= EXP_MAX_REL_ERROR, "{g} vs {w}");
    }
}

#[test]
fn online_softmax_tiles_give_the_ordinary_softmax() {
    // 3 rows, 10 keys seen as tiles of 4 + 4 + 2 (column-major), and row by row
    let scores = DMatrix::from_fn(3, 10, |i, j| ((i * 7 + j * 3) % 11) as f32 - 4.0);
    let want = softmax_rows(&scores);
    let (mut max, mut sum, mut rescale) = ([f32::NEG_INFINITY; 3], [0.0; 3], [0.0; 3]);
    let mut weights = DMatrix::zeros(3, 10);
    for (j0, cols) in [(0, 4), (4, 4), (8, 2)] {
        let mut tile = scores.columns(j0, cols).into_owned();
        online_softmax_tile::<false, 3>(
            tile.as_mut_slice(),
            &mut max,
            &mut sum,
            &mut rescale,
        );
        // bring earlier weights to the new maximum, as the flash kernel does with its
        // outputs
        for j in 0..j0 {
            for i in 0..3 {
                weights[(i, j)] *= rescale[i];
            }
        }
        weights.columns_mut(j0, cols).copy_from(&tile);
    }
    for (i, total) in sum.iter().enumerate() {
        weights.row_mut(i).iter_mut().for_each(|w| *w /= total);
    }
    assert_matrix_close(&weights, &want, TOL);

    let mut row = [1.0_f32, 3.0, 2.0, 9.0];
    let (mut m, mut l) = (f32::NEG_INFINITY, 0.0);
    assert_eq!(online_softmax_step(&mut row[..2], 2, &mut m, &mut l), 0.0);
    let factor = online_softmax_step(&mut row[2..], 1, &mut m, &mut l); // key 3 hidden
    assert_eq!((m, factor, row[3]), (3.0, 1.0, 0.0));
    let mut direct = [1.0_f32, 3.0, 2.0];
    let total = exp_sub_sum(&mut direct, 3.0);
    assert!((l - total).abs() < 1e-6);
}

#[test]
fn the_tile_softmax_gives_the_same_bits_at_every_simd_level() {
    // 48 rows: the AVX-512 panel, with its own `exp` (`vscalefps`) at that level; 16: the
    // AVX2 panel, its own `exp` at AVX2 (flash_avx2.rs runs that one), the portable loop
    // here
    common::tile_softmax_has_the_scalar_bits::<48>();
    common::tile_softmax_has_the_scalar_bits::<16>();
}

/// The head layout of `n_heads` query heads over `n_kv_heads` KV heads for queries `q`.
fn hl(
    q: &nalgebra::DMatrix<f32>,
    n_heads: usize,
    n_kv_heads: usize,
) -> attention::HeadLayout {
    attention::HeadLayout::from_q_dim(q.ncols(), n_heads, n_kv_heads)
        .expect("a valid head layout")
}

#[test]
fn every_optimization_step_gives_the_same_attention() {
    // chapter 8's steps table times these forms; each must compute the same function:
    // shapes with partial blocks, panels and tiles, a cache before the first query, MHA
    // and GQA
    for (n, start_pos, heads, kv, head_dim) in [
        (QUERY_BLOCK + 37, 0, 4, 2, 16),
        (2 * key_block(simd_level()) + 5, 11, 3, 3, 8),
        (70, 300, 6, 1, 24),
    ] {
        let (q, k, v) = inputs(n, start_pos + n, heads, kv, head_dim, n as u64);
        let layout = hl(&q, heads, kv);
        let want =
            grouped_attention(&q, k.as_view(), v.as_view(), layout, start_pos).unwrap();
        let x = AttentionInputs {
            q: &q,
            k: k.as_view(),
            v: v.as_view(),
            heads: layout,
            query_offset: start_pos,
        };
        for skip in [CausalSkip::None, CausalSkip::Blocks, CausalSkip::Panels] {
            for fused in [false, true] {
                let mut flash =
                    FlashAttention::new().with_causal_skip(skip).with_fused_exp(fused);
                let got = flash.forward(x).unwrap();
                assert_matrix_close(&got, &want, TOL);
            }
        }
    }
}
