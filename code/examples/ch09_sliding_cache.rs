//! Chapter 9: a sliding-window layer decodes 200 tokens through a cache of 12 rows, and
//! gets the numbers of the whole sequence at once.
extern crate attention;
extern crate rand;
// ANCHOR: example
use attention::{Batch, ScoreOptions, splitmix_matrix};

fn main() -> Result<(), attention::AttnError> {
    let window = ScoreOptions { window: Some(8), ..Default::default() };
    let layer = random_layer()?.with_scores(window)?; // 3 heads over 1 KV head of 8
    let x = Batch::single(splitmix_matrix(3, 200, 24, 1.0)); // (1, 200, 24)
    let whole = layer.forward(&x, 0, None)?; // every token at once, no cache
    let mut cache = layer.new_cache(1, 12)?; // the window (8) and room for 4 more
    let mut outputs = Vec::new();
    println!("token  rows cached  rows dropped  next_pos");
    for t in 0..200 {
        let token = x.narrow_seq(t, 1)?; // (1, 1, 24)
        outputs.push(layer.forward(&token, t, Some(&mut cache))?);
        if [0, 7, 11, 12, 13, 100, 199].contains(&t) {
            let (len, dropped, next) = (cache.len(), cache.dropped(), cache.next_pos());
            println!("{t:5}  {len:11}  {dropped:12}  {next:8}");
        }
    }
    let decoded = Batch::concat_seq(&outputs)?; // (1, 200, 24)
    println!("max |decoded - whole sequence| = {}", small(&decoded, &whole));
    Ok(())
}
// ANCHOR_END: example

/// A random layer: d_model 24, 3 query heads over 1 KV head of 8, RoPE for 256
/// positions.
fn random_layer() -> attention::Result<attention::GroupedQueryAttention> {
    use rand::SeedableRng;
    let mut rng = rand::rngs::StdRng::seed_from_u64(9);
    let rope = attention::Rope::new(8, 256, 10_000.0, None)?;
    attention::GroupedQueryAttention::random(24, 24, 3, 1, Some(rope), &mut rng)
}

/// f32 rounding only (the sums run in another order): printed as the bound `< 1e-5`.
fn small(a: &Batch, b: &Batch) -> &'static str {
    assert!(attention::max_abs_diff(&a.to_row_major(), &b.to_row_major()) < 1e-5);
    "< 1e-5"
}
