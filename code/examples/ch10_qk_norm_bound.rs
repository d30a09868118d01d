//! Chapter 10: scores of a layer with and without QK-norm as its input grows: without,
//! they grow with the square of the input; with, they stay below √head_dim · gains.
extern crate attention;
extern crate nalgebra;
extern crate rand;
// ANCHOR: example
use attention::{GroupedQueryAttention, QkNorm, RmsNormStyle, splitmix_matrix};
use nalgebra::DMatrix;

fn main() -> Result<(), attention::AttnError> {
    let plain = random_layer()?; // d_model 32, 4 heads of 8 over 2 KV heads
    let norm = QkNorm {
        q_weight: vec![1.0; 8], // learned gains, here all 1
        k_weight: vec![1.0; 8],
        eps: 1e-6,
        style: RmsNormStyle::Weight, // Qwen3: x̂ · w
    };
    let normed = plain.clone().with_qk_norm(Some(norm))?;
    // head 0 against KV head 0: (12, 8) · (8, 12), scaled by 1/√8; the largest |score|
    let max_score =
        |layer: &GroupedQueryAttention, x: &DMatrix<f32>| -> attention::Result<f32> {
            let (q, k, _) = layer.project(x, 0)?;
            Ok((q.columns(0, 8) * k.columns(0, 8).transpose()).amax() / 8f32.sqrt())
        };
    println!("input scale   max |score|, plain   max |score|, QK-norm");
    for scale in [1.0, 10.0, 100.0] {
        let x = splitmix_matrix(7, 12, 32, scale); // 12 tokens
        let (a, b) = (max_score(&plain, &x)?, max_score(&normed, &x)?);
        println!("{scale:11}   {a:19.2}   {b:19.2}");
    }
    println!("bound with QK-norm: sqrt(head_dim) * 1 * 1 = {:.2}", 8f32.sqrt());
    Ok(())
}
// ANCHOR_END: example

/// A random layer: d_model 32, 4 query heads of 8 over 2 KV heads, no RoPE.
fn random_layer() -> attention::Result<GroupedQueryAttention> {
    use rand::SeedableRng;
    let mut rng = rand::rngs::StdRng::seed_from_u64(10);
    GroupedQueryAttention::random(32, 32, 4, 2, None, &mut rng)
}
