//! Chapter 8: flash prefill, then the decode kernel over the KV cache, gives PyTorch's
//! tokens.
extern crate attention;
// ANCHOR: example
use attention::{Batch, Fixture, KernelChoice, Tolerance, assert_batch_close};

fn main() -> Result<(), attention::AttnError> {
    // PyTorch: torch.manual_seed(47); GroupedQueryAttention(12, 16, n_heads=4,
    // n_kv_heads=2) with a KV cache
    let fx = Fixture::load("kv_cache")?;
    // the fixture's module: 4 query heads, 2 KV heads, head_dim 4, RoPE base 10 000
    let gqa = fx.gqa()?;
    let x = fx.batch("x")?; // (batch 2, seq 9, d_in 12)
    // KernelChoice::Auto would pick these for long prompts and long caches; at 9 tokens
    // we pin them
    // the prompt: tiles, online softmax
    let prefill = gqa.clone().with_kernel(KernelChoice::Flash);
    // each new token: every cached row read once
    let decode = gqa.with_kernel(KernelChoice::Decode);
    let mut cache = prefill.new_cache(2, 32)?;
    let mut outputs = vec![prefill.forward(&x.narrow_seq(0, 5)?, 0, Some(&mut cache))?];
    for pos in 5..9 {
        outputs.push(decode.forward(&x.narrow_seq(pos, 1)?, pos, Some(&mut cache))?);
    }
    let ours = Batch::concat_seq(&outputs)?;
    let want = fx.batch("out_decode")?;
    assert_batch_close(&ours, &want, Tolerance::F32);
    println!(
        "flash prefill of 5 tokens, then 4 decode steps: PyTorch's out_decode, batch \
            (2, 9, 16)"
    );
    let first4 =
        |b: &Batch| b.items()[0].row(8).iter().take(4).copied().collect::<Vec<f32>>();
    println!(
        "token 8 of sequence 0, first 4 of 16 outputs: ours    {:.4?}",
        first4(&ours)
    );
    println!(
        "                                              PyTorch {:.4?}",
        first4(&want)
    );
    Ok(())
}
// ANCHOR_END: example
