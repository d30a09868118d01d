//! Chapter 6: cached decoding (a prefill, then one token per step) gives the full forward
//! pass's numbers, PyTorch's.
extern crate attention;
// ANCHOR: example
use attention::{Batch, Fixture, show};

fn main() -> Result<(), attention::AttnError> {
    // PyTorch (seed 47): GroupedQueryAttention(12, 16, n_heads=4, n_kv_heads=2, RoPE)
    let fx = Fixture::load("kv_cache")?;
    let (gqa, x) = (fx.gqa()?, fx.batch("x")?); // x: (batch 2, seq 9, d_in 12)
    let full = gqa.forward(&x, 0, None)?; // no cache: all 9 tokens at once, (2, 9, 16)

    let mut cache = gqa.new_cache(2, 32)?; // 2 sequences, room for 32 positions
    let prefill = gqa.forward(&x.narrow_seq(0, 5)?, 0, Some(&mut cache))?; // (2, 5, 16)
    let mut outs = vec![prefill];
    for start_pos in 5..9 {
        let token = x.narrow_seq(start_pos, 1)?; // (2, 1, 12): the next token of each
        outs.push(gqa.forward(&token, start_pos, Some(&mut cache))?); // (2, 1, 16)
    }
    let decoded = Batch::concat_seq(&outs)?; // (2, 9, 16), like `full`
    // the cache holds keys after RoPE, n_kv_heads · head_dim = 8 wide (not 16)
    let (filled, keys) = (cache.len(), cache.keys(0)?.shape());
    println!("cache: {filled} of {} positions filled, keys {keys:?}", cache.capacity());
    let first4 = |b: &Batch| show::row(b.items()[0].row(8).columns(0, 4).iter());
    println!("token 8 of sequence 0, first 4 of its 16 outputs:");
    println!("  no cache {}\n  decoded  {}", first4(&full), first4(&decoded));
    println!("  PyTorch  {}", first4(&fx.batch("out_decode")?));
    check_against_pytorch(&fx, &full, &decoded, &cache)
}
// ANCHOR_END: example

/// Both ways match PyTorch (`out_full`, `out_decode`) and each other. The last bits
/// depend on the order the CPU sums the products in, so the differences are checked
/// against a bound rather than printed.
fn check_against_pytorch(
    fx: &Fixture,
    full: &Batch,
    decoded: &Batch,
    cache: &attention::LayerKvCache,
) -> Result<(), attention::AttnError> {
    use attention::{Tolerance, assert_batch_close, max_abs_diff};
    let diff = |a: &Batch, b: &Batch| max_abs_diff(&a.to_row_major(), &b.to_row_major());
    let (want_full, want_decode) = (fx.batch("out_full")?, fx.batch("out_decode")?);
    assert_batch_close(full, &want_full, Tolerance::F32);
    assert!(diff(full, &want_full) < 1e-6);
    assert_batch_close(decoded, &want_decode, Tolerance::F32);
    assert_batch_close(decoded, full, Tolerance::F32);
    assert!(diff(decoded, &want_decode) < 1e-6 && diff(decoded, full) < 1e-6);
    // the cache: 9 positions of keys after RoPE, n_kv_heads · head_dim = 8 wide, not
    // n_heads · head_dim = 16
    assert_eq!((cache.len(), cache.capacity()), (9, 32));
    assert_eq!(cache.keys(0)?.shape(), (9, 8));
    Ok(())
}
