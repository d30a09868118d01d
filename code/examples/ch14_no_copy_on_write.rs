//! Chapter 14's first trap, measured: two users forked from one prompt write their new
//! tokens into the shared last block without copying it, and read each other's rows.
extern crate attention;
extern crate nalgebra;
extern crate rand;
// ANCHOR: example
use attention::serving::paged::PagedKvCache;
use attention::{AttnError, Batch, KernelChoice, max_abs_diff, splitmix_matrix};

fn main() -> Result<(), AttnError> {
    let layer = random_layer()?; // d_in 20, 6 query heads over 2 KV heads of 4, RoPE
    let contiguous = layer.clone().with_kernel(KernelChoice::Straightforward);
    let prompt = splitmix_matrix(1, 21, 20, 1.0); // 21 tokens: block 1 holds 5 of 16
    println!("two users forked from a 21-token prompt decode 8 tokens each, in turns:");
    for copy_on_write in [true, false] {
        let pool = PagedKvCache::for_heads(8, 16, layer.heads())?;
        let mut pool = pool.with_copy_on_write(copy_on_write);
        let system = pool.add_sequence();
        pool.forward(&layer, system, &prompt, 0)?;
        let users = [pool.fork(system)?, pool.fork(system)?];
        let mut kv = vec![contiguous_prefill(&contiguous, &prompt)?; 2]; // chapter 6's
        let mut worst = 0.0f32;
        for (t, u) in (0..8).flat_map(|t| [(t, 0), (t, 1)]) {
            let x = splitmix_matrix(10 + 8 * u as u64 + t as u64, 1, 20, 1.0); // a token
            let got = pool.forward(&layer, users[u], &x, 21 + t)?;
            let want = contiguous.forward(&Batch::single(x), 21 + t, Some(&mut kv[u]))?;
            worst = worst.max(max_abs_diff(got.as_slice(), want.items()[0].as_slice()));
        }
        print_run(&pool, &users, copy_on_write, worst)?;
    }
    Ok(())
}
// ANCHOR_END: example

/// One line per run: copy-on-write on or off, the users' block tables, and the largest
/// difference from the contiguous cache (0 exactly when right: the same bits).
fn print_run(
    pool: &PagedKvCache,
    users: &[attention::serving::paged::SeqId],
    copy_on_write: bool,
    worst: f32,
) -> Result<(), AttnError> {
    let tables = [pool.block_table(users[0])?, pool.block_table(users[1])?];
    assert_eq!(worst == 0.0, copy_on_write); // right means the same bits
    let on = if copy_on_write { "on: " } else { "off:" };
    let diff = if worst == 0.0 { "0, bit for bit".into() } else { format!("{worst:.3}") };
    println!("  copy-on-write {on} tables {tables:?}, max |paged - contiguous| = {diff}");
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
/// positions (the layer of `ch14_paged_equals_contiguous`).
fn random_layer() -> attention::Result<attention::GroupedQueryAttention> {
    use rand::SeedableRng;
    let mut rng = rand::rngs::StdRng::seed_from_u64(14);
    let rope = attention::Rope::new(4, 256, 10_000.0, None)?;
    attention::GroupedQueryAttention::random(20, 24, 6, 2, Some(rope), &mut rng)
}
