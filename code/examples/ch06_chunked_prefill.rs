//! Chapter 6: a prompt fed through the cache in chunks of 3, 4 and 2 tokens gives the
//! full forward pass's numbers, PyTorch's.
extern crate attention;
// ANCHOR: example
use attention::{Batch, Fixture, show};

fn main() -> Result<(), attention::AttnError> {
    let fx = Fixture::load("kv_cache")?; // the same layer and tokens
    let (gqa, x) = (fx.gqa()?, fx.batch("x")?); // x: (batch 2, seq 9, d_in 12)
    let mut cache = gqa.new_cache(2, 32)?;
    let (mut outs, mut start_pos) = (Vec::new(), 0);
    for n in [3, 4, 2] {
        // n new queries below start_pos cached rows: the mask's query_offset is start_pos
        let chunk = x.narrow_seq(start_pos, n)?; // (2, n, 12)
        outs.push(gqa.forward(&chunk, start_pos, Some(&mut cache))?); // (2, n, 16)
        let end = cache.len(); // rows cached so far: the keys this chunk sees
        println!("positions {start_pos}..{end}: {n} queries over {end} keys");
        start_pos += n;
    }
    let chunked = Batch::concat_seq(&outs)?; // (2, 9, 16)
    let first4 = |b: &Batch| show::row(b.items()[0].row(8).columns(0, 4).iter());
    println!("token 8 of sequence 0, first 4 of its 16 outputs:");
    println!("  chunked  {}", first4(&chunked));
    println!("  PyTorch  {}", first4(&fx.batch("out_chunked")?));
    check_against_pytorch(&fx, &chunked, &cache)
}
// ANCHOR_END: example

/// The chunks match PyTorch (`out_chunked`) and our own forward pass without a cache. The
/// last bits depend on the order the CPU sums the products in, so the differences are
/// checked against a bound rather than printed.
fn check_against_pytorch(
    fx: &Fixture,
    chunked: &Batch,
    cache: &attention::LayerKvCache,
) -> Result<(), attention::AttnError> {
    use attention::{Tolerance, assert_batch_close, max_abs_diff};
    let diff = |a: &Batch, b: &Batch| max_abs_diff(&a.to_row_major(), &b.to_row_major());
    let full = fx.gqa()?.forward(&fx.batch("x")?, 0, None)?;
    let want = fx.batch("out_chunked")?;
    assert_batch_close(chunked, &want, Tolerance::F32);
    assert_batch_close(chunked, &full, Tolerance::F32);
    assert!(diff(chunked, &want) < 1e-6 && diff(chunked, &full) < 1e-6);
    // the cache: 9 positions of keys after RoPE, n_kv_heads · head_dim = 8 wide
    assert_eq!((cache.len(), cache.capacity()), (9, 32));
    assert_eq!(cache.keys(0)?.shape(), (9, 8));
    Ok(())
}
