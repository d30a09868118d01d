//! Chapter 8: the online softmax, three keys at a time, gives PyTorch's attention
//! weights.
extern crate attention;
// ANCHOR: example
use attention::Fixture;
use attention::fast::online_softmax::online_softmax_step;

fn main() -> Result<(), attention::AttnError> {
    // PyTorch: torch.manual_seed(43); GroupedQueryAttention(12, 16, num_heads=4,
    // num_kv_groups=2)
    let fx = Fixture::load("small_gqa")?;
    // the fixture's module: 4 query heads, 2 KV heads, head_dim 4, RoPE base 10 000
    let gqa = fx.gqa()?;
    let x = fx.batch("x")?;
    let (q, k, _) = gqa.project(&x.items()[0], 0)?;
    // head 0 (KV head 0), the last query (token 6): it sees all 7 keys
    let q6 = q.view((6, 0), (1, 4));
    let scores: Vec<f32> =
        (0..7).map(|j| q6.dot(&k.view((j, 0), (1, 4))) / 2.0).collect(); // √4 = 2
    let (mut row_max, mut row_sum) = (f32::NEG_INFINITY, 0.0_f32);
    let mut weights = Vec::new();
    for block in scores.chunks(3) {
        let mut block = block.to_vec();
        let rescale = online_softmax_step(&mut block, 3, &mut row_max, &mut row_sum);
        // earlier weights to the new max
        weights.iter_mut().for_each(|w: &mut f32| *w *= rescale);
        weights.extend(block);
        println!(
            "after {} keys: max {row_max:.4}, sum {row_sum:.4}, rescale {rescale:.4}",
            weights.len()
        );
    }
    weights.iter_mut().for_each(|w| *w /= row_sum);
    let want = fx.tensor("attn_weights")?; // (batch 2, heads 4, 7, 7), row-major
    let pytorch = &want.data[6 * 7..7 * 7]; // batch 0, head 0, row 6
    println!("weights, ours:    {:.4?}", weights);
    println!("weights, PyTorch: {:.4?}", pytorch);
    for (a, b) in weights.iter().zip(pytorch) {
        // assert_close, f32
        assert!((a - b).abs() <= 1e-5 + 1.3e-6 * b.abs(), "{a} vs {b}");
    }
    Ok(())
}
// ANCHOR_END: example
