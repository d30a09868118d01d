//! Chapter 14: three users share a system prompt in one pool of blocks; every output of
//! the layer equals chapter 6's contiguous cache bit for bit.
extern crate attention;
extern crate nalgebra;
extern crate rand;
// ANCHOR: example
use attention::serving::paged::PagedKvCache;
use attention::{AttnError, Batch, KernelChoice, splitmix_matrix};

fn main() -> Result<(), AttnError> {
    let layer = random_layer()?; // d_in 20, 6 query heads over 2 KV heads of 4, RoPE
    // chapter 6's side runs the paged side's kernel: bit for bit needs the same sums
    let contiguous = layer.clone().with_kernel(KernelChoice::Straightforward);
    let mut pool = PagedKvCache::for_heads(64, 16, layer.heads())?; // blocks of 16
    let (system, prompt) = (pool.add_sequence(), splitmix_matrix(1, 21, 20, 1.0));
    pool.forward(&layer, system, &prompt, 0)?; // a system prompt of 21 tokens
    let prompt_cache = contiguous_prefill(&contiguous, prompt)?; // chapter 6's cache
    for (user, question, answer) in [(0, 9, 30), (1, 5, 17), (2, 40, 3)] {
        let (id, mut kv) = (pool.fork(system)?, prompt_cache.clone()); // kv: contiguous
        let x = splitmix_matrix(10 + user, question + answer, 20, 1.0);
        let mut tally = Tally::default();
        for (first, n) in chunks(question, answer) {
            let (chunk, pos) = (x.rows(first, n).into_owned(), 21 + first);
            let paged = pool.forward(&layer, id, &chunk, pos)?;
            let want = contiguous.forward(&Batch::single(chunk), pos, Some(&mut kv))?;
            tally.add(&paged, &want.items()[0]); // output numbers equal bit for bit
        }
        print_user(&pool, id, user, &tally)?;
    }
    Ok(())
}
// ANCHOR_END: example

/// The prompt through `layer` with chapter 6's contiguous cache of 128 rows: the cache
/// each user's contiguous run starts from.
fn contiguous_prefill(
    layer: &attention::GroupedQueryAttention,
    prompt: nalgebra::DMatrix<f32>,
) -> Result<attention::LayerKvCache, AttnError> {
    let mut cache = layer.new_cache(1, 128)?;
    layer.forward(&Batch::single(prompt), 0, Some(&mut cache))?;
    Ok(cache)
}

/// The question in one chunk, then the answer one token at a time: `(first token,
/// tokens)` within the user's own tokens.
fn chunks(question: usize, answer: usize) -> impl Iterator<Item = (usize, usize)> {
    std::iter::once((0, question)).chain((question..question + answer).map(|t| (t, 1)))
}

/// Output numbers compared, and how many of them were the same f32 bit for bit.
#[derive(Default)]
struct Tally {
    equal: usize,
    total: usize,
}

impl Tally {
    /// Counts the elements of `got` equal to `want`'s bit for bit; stops the example if
    /// any differs.
    fn add(&mut self, got: &nalgebra::DMatrix<f32>, want: &nalgebra::DMatrix<f32>) {
        assert_eq!(got.shape(), want.shape());
        let same = |(x, y): (&f32, &f32)| x.to_bits() == y.to_bits();
        self.equal += got.iter().zip(want.iter()).filter(|&p| same(p)).count();
        self.total += got.len();
        assert_eq!(self.equal, self.total, "paged and contiguous differ");
    }
}

/// One line per user: its tokens, its block table, the output numbers equal bit for bit.
fn print_user(
    pool: &PagedKvCache,
    id: attention::serving::paged::SeqId,
    user: u64,
    tally: &Tally,
) -> Result<(), AttnError> {
    let (len, table) = (pool.len(id)?, pool.block_table(id)?);
    let (equal, total) = (tally.equal, tally.total);
    let same = format!("{equal} of {total} output numbers equal");
    println!("user {user}: {len} tokens, blocks {table:?}, {same}");
    Ok(())
}

/// A random layer: d_in 20, 6 query heads over 2 KV heads of head_dim 4, RoPE for 256
/// positions.
fn random_layer() -> attention::Result<attention::GroupedQueryAttention> {
    use rand::SeedableRng;
    let mut rng = rand::rngs::StdRng::seed_from_u64(14);
    let rope = attention::Rope::new(4, 256, 10_000.0, None)?;
    attention::GroupedQueryAttention::random(20, 24, 6, 2, Some(rope), &mut rng)
}
