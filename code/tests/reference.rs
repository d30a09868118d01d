//! Every mechanism of the crate against PyTorch's numbers (`scripts/gen_fixtures.py`,
//! fixtures in `tests/fixtures/`). Tolerance: PyTorch's `assert_close` for f32 (rtol
//! 1.3e-6, atol 1e-5) unless a test says otherwise and why. Each test names the PyTorch
//! module call that produced its numbers.

mod common;

use attention::support::init::splitmix_matrix;
use attention::*;
use common::{TOL, qkv, slice4};
use nalgebra::DMatrix;

/// `torch.softmax(x @ x.T, dim=-1) @ x` on the toy sentence (6 tokens, 3 dims).
#[test]
fn toy_simplified_self_attention() -> Result<()> {
    let fx = Fixture::load("toy_simplified")?;
    let x = fx.matrix("x")?;
    let scores = &x * x.transpose();
    assert_matrix_close(&scores, &fx.matrix("attn_scores")?, TOL);
    assert_matrix_close(&softmax_rows(&scores), &fx.matrix("attn_weights")?, TOL);
    assert_matrix_close(&simplified_self_attention(&x), &fx.matrix("out")?, TOL);
    Ok(())
}

/// `torch.manual_seed(789); SelfAttention_v2(d_in=3, d_out=2)` on the toy sentence.
#[test]
fn toy_self_attention_with_trainable_weights() -> Result<()> {
    let fx = Fixture::load("toy_self_attention")?;
    let (wq, wk, wv) = qkv(&fx, "")?;
    let x = fx.matrix("x")?;
    assert_matrix_close(&wq.forward(&x)?, &fx.matrix("queries")?, TOL);
    assert_matrix_close(&wk.forward(&x)?, &fx.matrix("keys")?, TOL);
    assert_matrix_close(&wv.forward(&x)?, &fx.matrix("values")?, TOL);
    let scores = wq.forward(&x)? * wk.forward(&x)?.transpose();
    assert_matrix_close(&scores, &fx.matrix("attn_scores")?, TOL);
    let sa = SelfAttention::new(wq, wk, wv, false)?;
    let out = sa.forward_with_weights(&x)?;
    assert_matrix_close(&out.weights, &fx.matrix("attn_weights")?, TOL);
    assert_matrix_close(&out.context, &fx.matrix("out")?, TOL);
    Ok(())
}

/// `torch.manual_seed(123); CausalAttention(3, 2, context_length=6, dropout=0.0)` on the
/// toy batch.
#[test]
fn toy_causal_attention() -> Result<()> {
    let fx = Fixture::load("toy_causal")?;
    let (wq, wk, wv) = qkv(&fx, "")?;
    let ca = SelfAttention::new(wq, wk, wv, true)?;
    let x = fx.batch("x")?;
    assert_batch_close(&ca.forward(&x)?, &fx.batch("out")?, TOL);
    let weights = ca.forward_with_weights(&x.items()[0])?.weights;
    assert_matrix_close(&weights, &fx.matrix("attn_weights")?, TOL);
    Ok(())
}

/// `torch.manual_seed(123); MultiHeadAttention(3, 2, 6, 0.0, num_heads=2)` on the toy
/// batch.
#[test]
fn toy_multi_head_attention() -> Result<()> {
    let fx = Fixture::load("toy_mha")?;
    let mha = MultiHeadAttention::new(fx.weights()?, fx.usize("n_heads")?)?;
    let x = fx.batch("x")?;
    let context = x.try_map(|m| mha.context(m))?;
    assert_batch_close(&context, &fx.batch("context")?, TOL);
    assert_batch_close(&mha.forward(&x)?, &fx.batch("out")?, TOL);
    Ok(())
}

/// `torch.manual_seed(123); MultiHeadAttentionWrapper(3, 2, 6, 0.0, num_heads=2)`: (2,
/// 6, 3) -> (2, 6, 4).
#[test]
fn toy_multi_head_wrapper() -> Result<()> {
    let fx = Fixture::load("toy_wrapper")?;
    let heads = (0..2)
        .map(|h| {
            let (wq, wk, wv) = qkv(&fx, &format!("heads.{h}."))?;
            SelfAttention::new(wq, wk, wv, true)
        })
        .collect::<Result<Vec<_>>>()?;
    let wrapper = MultiHeadAttentionWrapper::new(heads)?;
    let out = wrapper.forward(&fx.batch("x")?)?;
    assert_eq!(out.shape(), [2, 6, 4]);
    assert_batch_close(&out, &fx.batch("out")?, TOL);
    Ok(())
}

/// `torch.manual_seed(42); MultiHeadAttention(12, 16, ..., num_heads=4, qkv_bias=True)`,
/// batch (2, 7, 12).
#[test]
fn small_multi_head_attention_with_biases() -> Result<()> {
    let fx = Fixture::load("small_mha")?;
    let mha = MultiHeadAttention::new(fx.weights()?, 4)?;
    assert!(
        mha.weights().w_query.bias().is_some(),
        "the fixture exercises the q/k/v biases"
    );
    let x = fx.batch("x")?;
    assert_batch_close(&x.try_map(|m| mha.context(m))?, &fx.batch("context")?, TOL);
    assert_batch_close(&mha.forward(&x)?, &fx.batch("out")?, TOL);
    // per-head weights, (batch, heads, seq, seq)
    let want = fx.tensor("attn_weights")?;
    for (b, xb) in x.items().iter().enumerate() {
        let q = mha.weights().w_query.forward(xb)?;
        let k = mha.weights().w_key.forward(xb)?;
        for h in 0..4 {
            let w = attention_weights(
                q.columns(h * 4, 4),
                k.columns(h * 4, 4),
                Mask::Causal { query_offset: 0 },
            )?;
            assert_matrix_close(&w, &slice4(&want, b, h), TOL);
        }
    }
    Ok(())
}

/// Checks a GQA fixture case: output and per-head attention weights (after RoPE,
/// repeat_interleave).
fn check_gqa_case(name: &str) -> Result<()> {
    let fx = Fixture::load(name)?;
    let gqa = fx.gqa()?;
    let x = fx.batch("x")?;
    assert_batch_close(&gqa.forward(&x, 0, None)?, &fx.batch("out")?, TOL);
    let want = fx.tensor("attn_weights")?;
    let (hd, group) = (gqa.head_dim(), gqa.group_size());
    for (b, xb) in x.items().iter().enumerate() {
        let (q, k, _) = gqa.project(xb, 0)?;
        for h in 0..gqa.n_heads() {
            let kv = h / group;
            let w = attention_weights(
                q.columns(h * hd, hd),
                k.columns(kv * hd, hd),
                Mask::Causal { query_offset: 0 },
            )?;
            assert_matrix_close(&w, &slice4(&want, b, h), TOL);
        }
    }
    Ok(())
}

/// `torch.manual_seed(43); GroupedQueryAttention(12, 16, num_heads=4, num_kv_groups=2)`
/// with RoPE (θ 10 000).
#[test]
fn small_grouped_query_attention() -> Result<()> {
    check_gqa_case("small_gqa")
}

/// As `small_gqa` with one KV head (multi-query attention), seed 44.
#[test]
fn small_multi_query_attention() -> Result<()> {
    check_gqa_case("small_mqa")
}

/// As `small_gqa` without RoPE, seed 45.
#[test]
fn small_grouped_query_attention_without_rope() -> Result<()> {
    check_gqa_case("small_gqa_norope")
}

/// The starting project's default config (768, 12 heads, 4 KV heads, head_dim 64, RoPE
/// 500 000), with weights from the shared SplitMix64 generator (`weights: splitmix64` in
/// the JSON), batch (1, 16, 768).
#[test]
fn default_config_grouped_query_attention() -> Result<()> {
    let fx = Fixture::load("default_gqa")?;
    let cfg = Preset::SMALL.config;
    assert_eq!(
        (fx.usize("d_in")?, fx.usize("n_heads")?, fx.usize("n_kv_heads")?),
        (768, 12, 4)
    );
    // weights regenerated from the seeds in the JSON by Fixture::gqa (SplitMix64, as the
    // generator does)
    let gqa = fx.gqa()?;
    assert_eq!(
        (gqa.head_dim(), gqa.rope().map(|r| r.max_positions())),
        (cfg.head_dim, Some(cfg.context_length))
    );
    let x = fx.batch("x")?;
    // the inputs are regenerated too: a check that the two generators agree bit for bit
    let x_seed = fx.usize("x_seed")? as u64;
    assert_eq!(x.items()[0], splitmix_matrix(x_seed, 16, 768, 1.0));
    assert_batch_close(&gqa.forward(&x, 0, None)?, &fx.batch("out")?, TOL);
    Ok(())
}

/// RoPE, head_dim 64, θ 500 000, at positions up to 8 191 (PyTorch:
/// `compute_rope_params` + `apply_rope`).
#[test]
fn rope_tables_and_rotation_at_long_positions() -> Result<()> {
    let fx = Fixture::load("rope")?;
    let rope = Rope::new(64, 8192, fx.f32("rope_theta")?, None)?;
    // f32 frequencies computed as PyTorch does them: bit-identical
    assert_eq!(rope.inv_freq(), &fx.tensor("inv_freq")?.data[..]);
    let positions: Vec<usize> =
        fx.tensor("positions")?.data.iter().map(|&p| p as usize).collect();
    assert_eq!(*positions.last().unwrap(), 8191);
    let (want_cos, want_sin) = (fx.matrix("cos")?, fx.matrix("sin")?);
    let x = fx.matrix("x")?;
    let mut got = DMatrix::zeros(positions.len(), 64);
    for (r, &pos) in positions.iter().enumerate() {
        for i in 0..32 {
            let (c, s) = rope.cos_sin(pos, i)?;
            // PyTorch's table repeats each angle for pair (i, i + 32)
            for col in [i, i + 32] {
                assert!(
                    (c - want_cos[(r, col)]).abs() <= 1e-6,
                    "cos at pos {pos} pair {i}: {c} vs {}",
                    want_cos[(r, col)]
                );
                assert!(
                    (s - want_sin[(r, col)]).abs() <= 1e-6,
                    "sin at pos {pos} pair {i}: {s} vs {}",
                    want_sin[(r, col)]
                );
            }
        }
        let mut row = x.rows(r, 1).into_owned();
        rope.apply(&mut row, pos)?;
        got.row_mut(r).copy_from(&row);
    }
    assert_matrix_close(&got, &fx.matrix("out")?, TOL);
    Ok(())
}

/// GQA with a KV cache (batch 2, 9 tokens): full forward, prefill 5 + 4 single-token
/// steps, and chunks of 3, 4, 2 all match PyTorch; the cache holds PyTorch's post-RoPE,
/// un-expanded K/V.
#[test]
fn kv_cache_decode_and_chunked_prefill() -> Result<()> {
    let fx = Fixture::load("kv_cache")?;
    let gqa = fx.gqa()?;
    let x = fx.batch("x")?;
    let full = fx.batch("out_full")?;
    assert_batch_close(&gqa.forward(&x, 0, None)?, &full, TOL);
    let (capacity, n_kv, hd) =
        (fx.usize("context_length")?, gqa.n_kv_heads(), gqa.head_dim());

    let run = |chunks: &[usize]| -> Result<(Batch, LayerKvCache)> {
        let mut cache = LayerKvCache::new(x.batch_size(), capacity, n_kv, hd)?;
        let mut outs = Vec::new();
        let mut pos = 0;
        for &n in chunks {
            outs.push(gqa.forward(&x.narrow_seq(pos, n)?, pos, Some(&mut cache))?);
            pos += n;
        }
        Ok((Batch::concat_seq(&outs)?, cache))
    };
    let (decode, cache) = run(&[5, 1, 1, 1, 1])?;
    assert_batch_close(&decode, &fx.batch("out_decode")?, TOL);
    assert_batch_close(&decode, &full, TOL);
    let (chunked, _) = run(&[3, 4, 2])?;
    assert_batch_close(&chunked, &fx.batch("out_chunked")?, TOL);

    // cache contents: ours (seq, n_kv·head_dim) per sequence vs PyTorch's (batch, n_kv,
    // seq, head_dim)
    for (name, want) in
        [("keys", fx.tensor("cache_k")?), ("values", fx.tensor("cache_v")?)]
    {
        for b in 0..2 {
            let ours = if name == "keys" { cache.keys(b)? } else { cache.values(b)? };
            for g in 0..n_kv {
                assert_matrix_close(
                    &ours.columns(g * hd, hd).into_owned(),
                    &slice4(&want, b, g),
                    TOL,
                );
            }
        }
    }
    Ok(())
}

/// `torch.softmax(scores, -1)` on ordinary, large and partly masked rows, and
/// `torch._safe_softmax` with a fully masked row (zeros, not NaN).
#[test]
fn softmax_edge_cases() -> Result<()> {
    let fx = Fixture::load("softmax_edge")?;
    assert_matrix_close(&softmax_rows(&fx.matrix("scores")?), &fx.matrix("out")?, TOL);
    let safe = softmax_rows(&fx.matrix("scores_safe")?);
    assert_matrix_close(&safe, &fx.matrix("out_safe")?, TOL);
    assert!(safe.row(3).iter().all(|&w| w == 0.0), "a fully masked row is all zeros");
    Ok(())
}
