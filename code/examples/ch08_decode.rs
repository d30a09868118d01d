//! Chapter 8: flash prefill, then the decode kernel over the KV cache, gives PyTorch's tokens.
extern crate attention;
// ANCHOR: example
use attention::{
    Batch, DecodeAttention, Fixture, LayerKvCache, Tolerance, assert_batch_close, flash_attention,
};

fn main() -> Result<(), attention::AttnError> {
    // PyTorch: torch.manual_seed(47); GroupedQueryAttention(12, 16, n_heads=4, n_kv_heads=2) with a KV cache
    let fx = Fixture::load("kv_cache")?;
    let gqa = fx.gqa()?; // the fixture's module: 4 query heads, 2 KV heads, head_dim 4, RoPE base 10 000
    let x = fx.batch("x")?; // (batch 2, seq 9, d_in 12)
    let mut cache = LayerKvCache::new(2, 32, 2, 4)?;
    let mut decode = DecodeAttention::new();
    let mut outputs = Vec::new();
    let mut start_pos = 0;
    for n in [5, 1, 1, 1, 1] {
        let chunk = x.narrow_seq(start_pos, n)?;
        let projected =
            chunk.items().iter().map(|xb| gqa.project(xb, start_pos)).collect::<Result<Vec<_>, _>>()?;
        let keys: Vec<_> = projected.iter().map(|(_, k, _)| k.clone()).collect();
        let values: Vec<_> = projected.iter().map(|(_, _, v)| v.clone()).collect();
        cache.append(&keys, &values)?; // the new tokens' keys and values first
        let mut items = Vec::new();
        for (b, (q, _, _)) in projected.iter().enumerate() {
            let context = if n == 1 {
                decode.forward_cache(q, &cache, b, 4, 2)? // one query, every cached key and value read once
            } else {
                flash_attention(q, cache.keys(b)?, cache.values(b)?, 4, 2, start_pos)? // the prompt
            };
            items.push(gqa.out_proj.forward(&context)?);
        }
        outputs.push(Batch::new(items)?);
        start_pos += n;
    }
    let ours = Batch::concat_seq(&outputs)?;
    let want = fx.batch("out_decode")?;
    assert_batch_close(&ours, &want, Tolerance::F32);
    println!("flash prefill of 5 tokens, then 4 decode steps: PyTorch's out_decode, batch (2, 9, 16)");
    let first4 = |b: &Batch| b.items()[0].row(8).iter().take(4).copied().collect::<Vec<f32>>();
    println!("token 8 of sequence 0, first 4 of 16 outputs: ours    {:.4?}", first4(&ours));
    println!("                                              PyTorch {:.4?}", first4(&want));
    Ok(())
}
// ANCHOR_END: example
