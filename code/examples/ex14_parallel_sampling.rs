//! Exercise 14.1: four samples of one prompt share its blocks; each decodes its own
//! tokens, bit for bit as through its own contiguous cache.
extern crate attention;
extern crate nalgebra;
extern crate rand;
// ANCHOR: example
use attention::serving::paged::{PagedKvCache, SeqId};
use attention::{AttnError, Batch, KernelChoice, splitmix_matrix};

fn main() -> Result<(), AttnError> {
    let layer = random_layer()?; // d_in 20, 6 query heads over 2 KV heads of 4, RoPE
    let contiguous = layer.clone().with_kernel(KernelChoice::Straightforward);
    let mut pool = PagedKvCache::for_heads(32, 16, layer.heads())?; // blocks of 16
    let (prompt_id, prompt) = (pool.add_sequence(), splitmix_matrix(1, 37, 20, 1.0));
    pool.forward(&layer, prompt_id, &prompt, 0)?; // 37 tokens: 2 full blocks and 5 rows
    let samples = (0..4).map(|_| pool.fork(prompt_id)).collect::<Result<Vec<_>, _>>()?;
    pool.free(prompt_id)?; // the samples hold its blocks
    let mut kv = vec![contiguous_prefill(&contiguous, &prompt)?; 4]; // chapter 6's
    let mut all_equal = true;
    for (t, s) in (0..20).flat_map(|t| (0..4).map(move |s| (t, s))) {
        let x = splitmix_matrix(100 + 20 * s as u64 + t as u64, 1, 20, 1.0); // a token
        let got = pool.forward(&layer, samples[s], &x, 37 + t)?;
        let want = contiguous.forward(&Batch::single(x), 37 + t, Some(&mut kv[s]))?;
        all_equal &= got == want.items()[0]; // f32 ==: bit for bit
    }
    print_blocks(&pool, &samples)?;
    let alone = 4 * (37 + 20usize).div_ceil(16); // 4 sequences of 57 tokens, unshared
    println!("4 samples alone: {alone} blocks; every output equal: {all_equal}");
    Ok(())
}
// ANCHOR_END: example

/// Each sample's block table, the blocks in use and the blocks copied.
fn print_blocks(pool: &PagedKvCache, samples: &[SeqId]) -> Result<(), AttnError> {
    for &id in samples {
        println!(
            "sample {}: {} tokens, blocks {:?}",
            id.0,
            pool.len(id)?,
            pool.block_table(id)?
        );
    }
    println!("blocks in use: {}, blocks copied: {}", pool.blocks_in_use(), pool.copies());
    Ok(())
}

/// The prompt through `layer` with chapter 6's contiguous cache of 64 rows.
fn contiguous_prefill(
    layer: &attention::GroupedQueryAttention,
    prompt: &nalgebra::DMatrix<f32>,
) -> Result<attention::LayerKvCache, AttnError> {
    let mut cache = layer.new_cache(1, 64)?;
    layer.forward(&Batch::single(prompt.clone()), 0, Some(&mut cache))?;
    Ok(cache)
}

/// A random layer: d_in 20, 6 query heads over 2 KV heads of head_dim 4, RoPE for 256
/// positions (the chapter's layer).
fn random_layer() -> attention::Result<attention::GroupedQueryAttention> {
    use rand::SeedableRng;
    let mut rng = rand::rngs::StdRng::seed_from_u64(14);
    let rope = attention::Rope::new(4, 256, 10_000.0, None)?;
    attention::GroupedQueryAttention::random(20, 24, 6, 2, Some(rope), &mut rng)
}
