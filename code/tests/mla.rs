//! Chapter 12's multi-head latent attention: the absorbed path equals the expanded one,
//! the latent cache equals the whole sequence, and bad shapes are typed errors. The
//! check against transformers' `DeepseekV3Attention` is in `mla_hf.rs`.

use attention::{
    AttnError, Batch, MlaPath, MlaShape, MultiHeadLatentAttention, Rope, RopeLayout,
    splitmix_matrix,
};
use rand::SeedableRng;

/// Different summation orders (latent space vs expanded heads): PyTorch's f32
/// `assert_close` atol, on outputs of size ~0.1-1.
const TOL: f32 = 1e-5;

fn shape(q_lora_rank: Option<usize>) -> MlaShape {
    MlaShape {
        d_model: 36,
        n_heads: 3,
        q_lora_rank,
        kv_lora_rank: 14,
        qk_nope_head_dim: 10,
        qk_rope_head_dim: 6,
        v_head_dim: 8,
    }
}

fn layer(q_lora_rank: Option<usize>, path: MlaPath) -> MultiHeadLatentAttention {
    let mut rng = rand::rngs::StdRng::seed_from_u64(12);
    let rope =
        Rope::new(6, 128, 10_000.0, None).unwrap().with_layout(RopeLayout::Interleaved);
    MultiHeadLatentAttention::random(shape(q_lora_rank), rope, &mut rng)
        .unwrap()
        .with_path(path)
}

#[test]
fn absorbed_equals_expanded_and_cached_equals_whole() {
    let x = Batch::new(vec![
        splitmix_matrix(1, 23, 36, 1.0),
        splitmix_matrix(2, 23, 36, 1.0),
    ])
    .unwrap();
    for q_lora_rank in [None, Some(20)] {
        let expanded = layer(q_lora_rank, MlaPath::Expanded);
        let want = expanded.forward(&x, 7, None).unwrap();
        for path in [MlaPath::Expanded, MlaPath::Absorbed, MlaPath::Auto] {
            let l = layer(q_lora_rank, path);
            let whole = l.forward(&x, 7, None).unwrap();
            let mut cache = l.new_cache(2, 30).unwrap();
            let mut outs = vec![
                l.forward(&x.narrow_seq(0, 9).unwrap(), 7, Some(&mut cache)).unwrap(),
            ];
            for t in 9..23 {
                outs.push(
                    l.forward(&x.narrow_seq(t, 1).unwrap(), 7 + t, Some(&mut cache))
                        .unwrap(),
                );
            }
            let decoded = Batch::concat_seq(&outs).unwrap();
            assert_eq!((cache.len(), cache.next_pos()), (23, 30));
            for (name, got) in [("whole", &whole), ("decoded", &decoded)] {
                for b in 0..2 {
                    let d = (&got.items()[b] - &want.items()[b]).amax();
                    assert!(d < TOL, "{q_lora_rank:?} {path:?} {name}: {d}");
                }
            }
        }
    }
}

#[test]
fn bad_shapes_and_caches_are_errors() {
    let l = layer(Some(20), MlaPath::Auto);
    let x = Batch::single(splitmix_matrix(3, 4, 35, 1.0)); // d_model is 36
    assert!(matches!(l.forward(&x, 0, None), Err(AttnError::Shape { .. })));
    let x = Batch::single(splitmix_matrix(3, 4, 36, 1.0));
    let mut cache = l.new_cache(1, 5).unwrap();
    l.forward(&x, 0, Some(&mut cache)).unwrap();
    let err = l.forward(&x, 4, Some(&mut cache));
    assert!(matches!(err, Err(AttnError::CacheFull { .. })), "{err:?}");
    let err = l.forward(&x.narrow_seq(0, 1).unwrap(), 2, Some(&mut cache));
    assert!(matches!(err, Err(AttnError::CachePosition { .. })), "{err:?}");
    assert_eq!(cache.len(), 4); // unchanged by the failed calls
    let mut other = layer(None, MlaPath::Auto).new_cache(1, 8).unwrap();
    let err = l.forward(&x, 0, Some(&mut other));
    assert!(matches!(err, Err(AttnError::CacheMismatch(_))), "{err:?}");
    let mut odd = shape(None);
    odd.qk_rope_head_dim = 5;
    assert!(matches!(odd.validate(), Err(AttnError::OddHeadDim { .. })));
    let huge = MlaShape { kv_lora_rank: usize::MAX / 2, ..shape(None) };
    assert!(huge.validate().is_err());
    let too_big = attention::LatentCache::new(1, usize::MAX / 4, shape(None));
    assert!(matches!(too_big, Err(AttnError::TooLarge { .. })), "{too_big:?}");
}
