//! Chapter 4: multi-query attention (n_kv_heads = 1) and multi-head attention (n_kv_heads
//! = n_heads) are grouped-query attention too.
extern crate attention;
// ANCHOR: example
use attention::{Batch, Fixture, GroupedQueryAttention};

fn main() -> Result<(), attention::AttnError> {
    // GroupedQueryAttention(12, 16, n_heads=4, n_kv_heads=1, rope_theta=10000), seed 44
    let fx = Fixture::load("small_mqa")?;
    let mqa = fx.gqa()?; // MQA, with RoPE tables (chapter 5's subject)
    let w_key = mqa.weights().w_key.weight().shape(); // (n_kv_heads · head_dim, d_in)
    print!("MQA: {} query heads share {} KV head: ", mqa.n_heads(), mqa.n_kv_heads());
    println!("W_key {w_key:?}, group_size {}", mqa.group_size());
    let out = mqa.forward(&fx.batch("x")?, 0, None)?;
    check_against_pytorch(&fx, &out)?;
    let [b, s, d] = out.shape();
    print!("     out ({b}, {s}, {d}) matches PyTorch's ");
    println!("GroupedQueryAttention(n_kv_heads=1)");

    // MHA: PyTorch's MultiHeadAttention(12, 16, num_heads=4, qkv_bias=True), seed 42, as
    // GQA with 4 KV heads and no RoPE (its biases apply: each Linear holds its own)
    let fx = Fixture::load("small_mha")?;
    let mha = GroupedQueryAttention::new(fx.weights()?, 4, 4, None)?;
    let w_key = mha.weights().w_key.weight().shape();
    print!("MHA: {} query heads, {} KV heads: ", mha.n_heads(), mha.n_kv_heads());
    println!("W_key {w_key:?}, group_size {}", mha.group_size());
    let out = mha.forward(&fx.batch("x")?, 0, None)?;
    check_against_pytorch(&fx, &out)?;
    let [b, s, d] = out.shape();
    println!("     out ({b}, {s}, {d}) matches PyTorch's MultiHeadAttention");
    Ok(())
}
// ANCHOR_END: example

/// Asserts that `out` is the fixture's PyTorch output (`assert_close` semantics: rtol
/// 1.3e-6, atol 1e-5).
fn check_against_pytorch(fx: &Fixture, out: &Batch) -> Result<(), attention::AttnError> {
    attention::assert_batch_close(out, &fx.batch("out")?, attention::Tolerance::F32);
    Ok(())
}
