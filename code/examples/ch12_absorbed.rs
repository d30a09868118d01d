//! Chapter 12: the absorbed path (queries mapped into the latent space) gives the
//! expanded path's numbers, decoding through a latent cache.
extern crate attention;
extern crate rand;
// ANCHOR: example
use attention::{Batch, MlaPath, MlaShape, splitmix_matrix};

fn main() -> Result<(), attention::AttnError> {
    let shape = MlaShape {
        d_model: 48,
        n_heads: 4,
        q_lora_rank: Some(24),
        kv_lora_rank: 16,
        qk_nope_head_dim: 12,
        qk_rope_head_dim: 8,
        v_head_dim: 10,
    };
    let mla = random_mla(shape)?; // nn.Linear-style random weights, RoPE on 8 dims
    let x = Batch::single(splitmix_matrix(5, 20, 48, 1.0)); // 20 tokens
    let want = mla.clone().with_path(MlaPath::Expanded).forward(&x, 0, None)?;
    let absorbed = mla.with_path(MlaPath::Absorbed);
    let mut cache = absorbed.new_cache(1, 20)?;
    let mut outs = Vec::new();
    for t in 0..20 {
        outs.push(absorbed.forward(&x.narrow_seq(t, 1)?, t, Some(&mut cache))?);
    }
    let diff = (&Batch::concat_seq(&outs)?.items()[0] - &want.items()[0]).amax();
    let (r, rope) = (shape.kv_lora_rank, shape.qk_rope_head_dim);
    println!("cache: {} tokens of {r} + {rope} numbers (latent, RoPE key)", cache.len());
    assert!(diff < 1e-5); // f32 rounding: the sums run in other orders
    println!("max |absorbed decode - expanded whole sequence| < 1e-5");
    Ok(())
}
// ANCHOR_END: example

/// A random MLA layer of `shape` with interleaved RoPE tables for 64 positions.
fn random_mla(shape: MlaShape) -> attention::Result<attention::MultiHeadLatentAttention> {
    use rand::SeedableRng;
    let rope = attention::Rope::new(shape.qk_rope_head_dim, 64, 10_000.0, None)?
        .with_layout(attention::RopeLayout::Interleaved);
    let mut rng = rand::rngs::StdRng::seed_from_u64(12);
    attention::MultiHeadLatentAttention::random(shape, rope, &mut rng)
}
