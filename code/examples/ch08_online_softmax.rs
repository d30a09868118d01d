//! Chapter 8: the online softmax, three keys at a time, gives PyTorch's attention
//! weights.
extern crate attention;
// ANCHOR: example
use attention::Fixture;
use attention::fast::online_softmax::online_softmax_step;

fn main() -> Result<(), attention::AttnError> {
    // PyTorch: GroupedQueryAttention(12, 16, num_heads=4, num_kv_groups=2), seed 43
    let fx = Fixture::load("small_gqa")?; // 4 query heads, 2 KV heads, head_dim 4, RoPE
    let (q, k, _) = fx.gqa()?.project(&fx.batch("x")?.items()[0], 0)?; // (7, 16), (7, 8)
    // head 0 (KV head 0), the last query (token 6): it sees all 7 keys
    let (q6, k0) = (q.view((6, 0), (1, 4)), k.columns(0, 4)); // (1, 4), (7, 4)
    let scores: Vec<f32> = k0.row_iter().map(|kj| q6.dot(&kj) / 2.0).collect(); // √4 = 2
    let (mut row_max, mut row_sum, mut weights) = (f32::NEG_INFINITY, 0.0, vec![]);
    for block in scores.chunks(3) {
        let mut block = block.to_vec(); // becomes exp(score - new max)
        let visible = block.len(); // all keys visible: token 6 sees keys 0..=6
        let alpha = online_softmax_step(&mut block, visible, &mut row_max, &mut row_sum);
        weights.iter_mut().for_each(|w| *w *= alpha); // earlier weights to the new max
        weights.extend(block);
        let (n, m, l) = (weights.len(), row_max, row_sum); // m and ℓ of the text
        println!("after {n} keys: max {m:.4}, sum {l:.4}, rescale {alpha:.4}");
    }
    weights.iter_mut().for_each(|w| *w /= row_sum);
    println!("weights, ours:    {weights:.4?}");
    check_against_pytorch(&fx, &weights)
}
// ANCHOR_END: example

/// Prints PyTorch's weights for the same row and checks ours against them (f32
/// tolerance, as `assert_close`).
fn check_against_pytorch(
    fx: &Fixture,
    weights: &[f32],
) -> Result<(), attention::AttnError> {
    let want = fx.tensor("attn_weights")?; // (batch 2, heads 4, 7, 7), row-major
    let pytorch = &want.data[6 * 7..7 * 7]; // batch 0, head 0, row 6
    println!("weights, PyTorch: {pytorch:.4?}");
    for (a, b) in weights.iter().zip(pytorch) {
        assert!((a - b).abs() <= 1e-5 + 1.3e-6 * b.abs(), "{a} vs {b}");
    }
    Ok(())
}
