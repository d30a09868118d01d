//! Properties that must hold for any weights and shapes, checked over random shapes and
//! seeds with proptest. Shapes are drawn so that d_in, d_out, seq and head_dim differ (a
//! transpose cannot pass).

mod common;

use attention::*;
use nalgebra::DMatrix;
use proptest::prelude::*;
use rand::{SeedableRng, rngs::StdRng};

/// Products summed in different orders differ by a few ulps; 1e-5 absolute is far below
/// any real bug.
const TOL: Tolerance = Tolerance::new(1e-5, 1e-5);

fn random_batch(rng: &mut StdRng, batch: usize, seq: usize, d: usize) -> Batch {
    use rand::RngExt;
    Batch::new(
        (0..batch)
            .map(|_| DMatrix::from_fn(seq, d, |_, _| rng.random_range(-1.0..1.0)))
            .collect(),
    )
    .unwrap()
}

/// (n_kv_heads, group_size, head_dim (even), d_in, seq, seed)
fn gqa_shapes() -> impl Strategy<Value = (usize, usize, usize, usize, usize, u64)> {
    (1usize..=3, 1usize..=3, 1usize..=4, 3usize..=13, 2usize..=9, any::<u64>())
        .prop_map(|(kv, g, hd2, d_in, seq, seed)| (kv, g, 2 * hd2, d_in, seq, seed))
}

/// One sequence through the layer, without a cache: `(seq, d_in) -> (seq, d_out)`.
fn one(gqa: &GroupedQueryAttention, x: &DMatrix<f32>) -> attention::Result<DMatrix<f32>> {
    Ok(gqa.forward(&Batch::single(x.clone()), 0, None)?.items()[0].clone())
}

fn random_gqa(
    kv: usize,
    group: usize,
    hd: usize,
    d_in: usize,
    rope: bool,
    rng: &mut StdRng,
) -> GroupedQueryAttention {
    let n_heads = kv * group;
    let rope = rope.then(|| Rope::new(hd, 64, 10_000.0, None).unwrap());
    GroupedQueryAttention::random(d_in, n_heads * hd, n_heads, kv, rope, rng).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Causality: changing token t changes no output before t.
    #[test]
    fn future_tokens_do_not_change_earlier_outputs((kv, g, hd, d_in, seq, seed) in gqa_shapes(), t_frac in 0.0f64..1.0) {
        let mut rng = StdRng::seed_from_u64(seed);
        let gqa = random_gqa(kv, g, hd, d_in, true, &mut rng);
        let x = random_batch(&mut rng, 1, seq, d_in);
        let t = ((seq - 1) as f64 * t_frac) as usize + 1; // 1..seq: change token t
        let mut changed = x.items()[0].clone();
        changed.row_mut(t).iter_mut().for_each(|v| *v = -3.0 * *v + 1.0);
        let before = one(&gqa, &x.items()[0]).unwrap();
        let after = one(&gqa, &changed).unwrap();
        prop_assert_eq!(before.rows(0, t).into_owned(), after.rows(0, t).into_owned());
        prop_assert!(before.row(t) != after.row(t), "token t's own output must change");
    }

    /// GQA with n_kv_heads = n_heads (no RoPE) is multi-head attention with the same
    /// weights.
    #[test]
    fn gqa_with_as_many_kv_heads_as_heads_is_mha((n_heads, _, hd, d_in, seq, seed) in gqa_shapes()) {
        let mut rng = StdRng::seed_from_u64(seed);
        let gqa = random_gqa(n_heads, 1, hd, d_in, false, &mut rng);
        let mha = MultiHeadAttention::new(gqa.weights().clone(), n_heads).unwrap();
        let x = random_batch(&mut rng, 2, seq, d_in);
        assert_batch_close(&gqa.forward(&x, 0, None).unwrap(), &mha.forward(&x).unwrap(), TOL);
    }

    /// GQA equals MHA whose K/V weights are repeated in `repeat_interleave` order, and
    /// (for group size > 1 and several KV heads) differs from `repeat` order: the bug the
    /// ordering comment warns about.
    #[test]
    fn gqa_shares_kv_heads_in_repeat_interleave_order((kv, g, hd, d_in, seq, seed) in gqa_shapes()) {
        let mut rng = StdRng::seed_from_u64(seed);
        let gqa = random_gqa(kv, g, hd, d_in, false, &mut rng);
        let n_heads = kv * g;
        let expand = |w: &Linear, interleave: bool| {
            let rows: Vec<_> = (0..n_heads).flat_map(|h| {
                let src = if interleave { h / g } else { h % kv };
                (0..hd).map(move |r| src * hd + r)
            }).map(|r| w.weight().row(r).into_owned()).collect();
            Linear::new(DMatrix::from_rows(&rows), None).unwrap()
        };
        let mha = |interleave: bool| MultiHeadAttention::new(QkvoWeights { w_key: expand(&gqa.weights().w_key, interleave), w_value: expand(&gqa.weights().w_value, interleave), ..gqa.weights().clone() }, n_heads).unwrap();
        let x = random_batch(&mut rng, 1, seq, d_in);
        let ours = gqa.forward(&x, 0, None).unwrap();
        assert_batch_close(&ours, &mha(true).forward(&x).unwrap(), TOL);
        if kv > 1 && g > 1 {
            let wrong = mha(false).forward(&x).unwrap();
            prop_assert!(compare(&ours.to_row_major(), &wrong.to_row_major(), &ours.shape(), TOL).is_err());
        }
    }

    /// The wrapper of single heads equals batched MHA's context when head h's weights are
    /// rows h·head_dim .. (h+1)·head_dim of MHA's projections.
    #[test]
    fn single_head_wrapper_equals_batched_mha(n_heads in 1usize..=4, hd in 1usize..=5, d_in in 2usize..=9, seq in 1usize..=8, seed in any::<u64>()) {
        let mut rng = StdRng::seed_from_u64(seed);
        let mha = MultiHeadAttention::random(d_in, n_heads * hd, n_heads, true, &mut rng).unwrap();
        let slice = |w: &Linear, h: usize| Linear::new(
            w.weight().rows(h * hd, hd).into_owned(),
            w.bias().as_ref().map(|b| b.rows(h * hd, hd).into_owned()),
        ).unwrap();
        let heads = (0..n_heads).map(|h| SelfAttention::new(slice(&mha.weights().w_query, h), slice(&mha.weights().w_key, h), slice(&mha.weights().w_value, h), true).unwrap()).collect();
        let wrapper = MultiHeadAttentionWrapper::new(heads).unwrap();
        let x = random_batch(&mut rng, 2, seq, d_in);
        assert_batch_close(&wrapper.forward(&x).unwrap(), &x.try_map(|m| mha.context(m)).unwrap(), TOL);
    }

    /// Cached decode in random chunk sizes, from a random first position, with every
    /// kernel, equals the full forward pass with the straightforward kernel.
    #[test]
    fn cached_decode_equals_full_forward((kv, g, hd, d_in, seq, seed) in gqa_shapes(), cuts in proptest::collection::vec(1usize..=4, 1..8), first in 0usize..20) {
        let mut rng = StdRng::seed_from_u64(seed);
        let gqa = random_gqa(kv, g, hd, d_in, true, &mut rng).with_kernel(KernelChoice::Straightforward);
        let x = random_batch(&mut rng, 2, seq, d_in);
        let full = gqa.forward(&x, first, None).unwrap();
        for kernel in [KernelChoice::Auto, KernelChoice::Straightforward, KernelChoice::Flash, KernelChoice::Decode] {
            let layer = gqa.clone().with_kernel(kernel);
            let mut cache = layer.new_cache(2, seq + 3).unwrap();
            let mut outs = Vec::new();
            let (mut pos, mut i) = (0, 0);
            while pos < seq {
                let n = cuts[i % cuts.len()].min(seq - pos);
                outs.push(layer.forward(&x.narrow_seq(pos, n).unwrap(), first + pos, Some(&mut cache)).unwrap());
                pos += n;
                i += 1;
            }
            prop_assert_eq!((cache.len(), cache.first_pos()), (seq, first));
            assert_batch_close(&Batch::concat_seq(&outs).unwrap(), &full, TOL);
            assert_batch_close(&layer.forward(&x, first, None).unwrap(), &full, TOL);
        }
    }

    /// RoPE is a rotation: it keeps every head's norm, and q·k depends only on the
    /// distance between positions.
    #[test]
    fn rope_keeps_norms_and_depends_only_on_distance(hd2 in 1usize..=16, m in 0usize..3000, n in 0usize..3000, shift in 0usize..3000, seed in any::<u64>()) {
        use rand::RngExt;
        let hd = 2 * hd2;
        let mut rng = StdRng::seed_from_u64(seed);
        let rope = Rope::new(hd, 6000, 10_000.0, None).unwrap();
        let q = DMatrix::from_fn(1, hd, |_, _| rng.random_range(-1.0f32..1.0));
        let k = DMatrix::from_fn(1, hd, |_, _| rng.random_range(-1.0f32..1.0));
        let rot = |v: &DMatrix<f32>, pos| { let mut v = v.clone(); rope.apply(&mut v, pos).unwrap(); v };
        prop_assert!((rot(&q, m).norm() - q.norm()).abs() <= 1e-5 * q.norm().max(1.0));
        let dot = |a: &DMatrix<f32>, b: &DMatrix<f32>| a.dot(b);
        let (d1, d2) = (dot(&rot(&q, m), &rot(&k, n)), dot(&rot(&q, m + shift), &rot(&k, n + shift)));
        // f32 angles at positions up to 6000 are rounded to ~2.4e-4 rad: the relation
        // holds to ~1e-3
        prop_assert!((d1 - d2).abs() <= 2e-3 * (q.norm() * k.norm()).max(1.0), "{d1} vs {d2}");
    }

    /// Softmax rows sum to 1; causally masked weights are exactly 0.
    #[test]
    fn causal_weights_are_distributions_with_exact_zeros(n_q in 1usize..8, extra in 0usize..5, hd in 1usize..6, seed in any::<u64>()) {
        use rand::RngExt;
        let mut rng = StdRng::seed_from_u64(seed);
        let n_k = n_q + extra;
        let query_offset = extra;
        let q = DMatrix::from_fn(n_q, hd, |_, _| rng.random_range(-4.0f32..4.0));
        let k = DMatrix::from_fn(n_k, hd, |_, _| rng.random_range(-4.0f32..4.0));
        let w = attention_weights(q.as_view(), k.as_view(), Mask::Causal { query_offset }).unwrap();
        for i in 0..n_q {
            prop_assert!((w.row(i).sum() - 1.0).abs() <= 1e-5);
            for j in 0..n_k {
                if j > query_offset + i { prop_assert_eq!(w[(i, j)], 0.0); } else { prop_assert!(w[(i, j)] > 0.0); }
            }
        }
    }
}

#[test]
fn causal_mask_is_bottom_right_aligned() {
    let m = causal_mask(2, 5, 3).unwrap();
    let inf = f32::NEG_INFINITY;
    assert_eq!(m, nalgebra::dmatrix![0.0, 0.0, 0.0, 0.0, inf; 0.0, 0.0, 0.0, 0.0, 0.0]);
    // the square case at start_pos 0 is the familiar upper triangle
    assert_eq!(
        causal_mask(3, 3, 0).unwrap(),
        nalgebra::dmatrix![0.0, inf, inf; 0.0, 0.0, inf; 0.0, 0.0, 0.0]
    );
}

#[test]
fn softmax_is_stable_for_large_scores() {
    let w = softmax_rows(&nalgebra::dmatrix![1000.0f32, 999.0, -1000.0]);
    assert!(w.iter().all(|v| v.is_finite()));
    assert!((w[(0, 0)] - 0.731_058_6).abs() < 1e-6);
}
