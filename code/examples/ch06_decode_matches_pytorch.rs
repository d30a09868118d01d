//! Chapter 6: cached decoding and chunked prefill give the full forward pass's numbers,
//! PyTorch's.
extern crate attention;
// ANCHOR: example
use attention::{
    Batch, Fixture, LayerKvCache, Tolerance, assert_batch_close, max_abs_diff,
};

fn main() -> Result<(), attention::AttnError> {
    // PyTorch: torch.manual_seed(47); GroupedQueryAttention(12, 16, n_heads=4,
    // n_kv_heads=2,
    //          context_length=32, rope_theta=10000.0); x = torch.randn(2, 9, 12)
    let fx = Fixture::load("kv_cache")?;
    // the fixture's module: 4 query heads, 2 KV heads, head_dim 4, RoPE base 10 000
    let gqa = fx.gqa()?;
    let x = fx.batch("x")?; // (batch 2, seq 9, d_in 12)
    // no cache: all 9 tokens at once, positions 0..9
    let full = gqa.forward(&x, 0, None)?;
    assert_batch_close(&full, &fx.batch("out_full")?, Tolerance::F32);
    // The last bits depend on the order products are summed in (and so on the CPU): we
    // print the bound each difference is checked against, not its exact value.
    let diff = |a: &Batch, b: &Batch| max_abs_diff(&a.to_row_major(), &b.to_row_major());
    assert!(diff(&full, &fx.batch("out_full")?) < 1e-6);
    println!("max |ours - PyTorch|, batch (2, 9, 16):");
    println!("  all 9 tokens at once, no cache: < 1e-6");

    // Feed the tokens in chunks through one pre-allocated cache (capacity 32 positions).
    let run = |chunks: &[usize]| -> Result<(Batch, LayerKvCache), attention::AttnError> {
        let mut cache = gqa.new_cache(x.batch_size(), 32)?;
        let (mut outs, mut start_pos) = (Vec::new(), 0);
        for &n in chunks {
            outs.push(gqa.forward(
                &x.narrow_seq(start_pos, n)?,
                start_pos,
                Some(&mut cache),
            )?);
            start_pos += n;
        }
        Ok((Batch::concat_seq(&outs)?, cache))
    };
    for (label, chunks, name) in [
        ("prefill 5, then 1 by 1", &[5, 1, 1, 1, 1][..], "out_decode"),
        ("chunks 3, 4, 2", &[3, 4, 2], "out_chunked"),
    ] {
        let (out, cache) = run(chunks)?;
        let want = fx.batch(name)?;
        assert!(diff(&out, &want) < 1e-6 && diff(&out, &full) < 1e-6);
        println!(
            "  {label:<22}        : < 1e-6 (vs our full pass < 1e-6; cache {} of {} \
                filled)",
            cache.len(),
            cache.capacity()
        );
        assert_batch_close(&out, &want, Tolerance::F32);
        assert_batch_close(&out, &full, Tolerance::F32);
        // what the cache holds: keys after RoPE, n_kv_heads · head_dim = 8 wide, not
        // n_heads · head_dim = 16
        assert_eq!(cache.keys(0)?.shape(), (9, 8));
    }
    // The last decode step alone: token 8, one query against the 9 cached keys.
    let (decoded, _) = run(&[5, 1, 1, 1, 1])?;
    let want = fx.batch("out_decode")?;
    let first4 =
        |b: &Batch| b.items()[0].row(8).iter().take(4).copied().collect::<Vec<f32>>();
    println!(
        "token 8 of sequence 0, first 4 of 16 outputs: ours    {:.4?}",
        first4(&decoded)
    );
    println!(
        "                                              PyTorch {:.4?}",
        first4(&want)
    );
    Ok(())
}
// ANCHOR_END: example
