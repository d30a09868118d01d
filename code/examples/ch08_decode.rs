//! Chapter 8: flash prefill, then the decode kernel over the KV cache, gives PyTorch's
//! tokens.
extern crate attention;
// ANCHOR: example
use attention::{Batch, Fixture, KernelChoice};

fn main() -> Result<(), attention::AttnError> {
    // PyTorch: GroupedQueryAttention(12, 16, n_heads=4, n_kv_heads=2) with a KV cache
    let fx = Fixture::load("kv_cache")?; // seed 47; head_dim 4, RoPE base 10 000
    let (gqa, x) = (fx.gqa()?, fx.batch("x")?); // x: (batch 2, seq 9, d_in 12)
    // KernelChoice::Auto picks these for a long prompt and cache; at 9 tokens, pin them
    let prefill = gqa.clone().with_kernel(KernelChoice::Flash); // tiles, online softmax
    let decode = gqa.with_kernel(KernelChoice::Decode); // every cached row read once
    let mut cache = prefill.new_cache(2, 32)?;
    let mut outputs = vec![prefill.forward(&x.narrow_seq(0, 5)?, 0, Some(&mut cache))?];
    for pos in 5..9 {
        outputs.push(decode.forward(&x.narrow_seq(pos, 1)?, pos, Some(&mut cache))?);
    }
    let (ours, want) = (Batch::concat_seq(&outputs)?, fx.batch("out_decode")?);
    check_against_pytorch(&ours, &want);
    print!("flash prefill of 5 tokens, then 4 decode steps: ");
    println!("PyTorch's out_decode, batch (2, 9, 16)");
    let row8 = |b: &Batch| Vec::from_iter(b.items()[0].row(8).iter().take(4).copied());
    let (a, b) = (row8(&ours), row8(&want));
    println!("token 8 of sequence 0, first 4 of 16 outputs: ours    {a:.4?}");
    println!("                                              PyTorch {b:.4?}");
    Ok(())
}
// ANCHOR_END: example

/// The prefill and the four decode steps give PyTorch's `out_decode`, to f32 tolerance.
fn check_against_pytorch(ours: &Batch, want: &Batch) {
    use attention::{Tolerance, assert_batch_close};
    assert_batch_close(ours, want, Tolerance::F32);
}
