//! Chapter 4: multi-query attention (n_kv_heads = 1) and multi-head attention (n_kv_heads
//! = n_heads) are grouped-query attention too.
extern crate attention;
// ANCHOR: example
use attention::{Fixture, GroupedQueryAttention, Tolerance};

fn main() -> Result<(), attention::AttnError> {
    // MQA: torch.manual_seed(44); GroupedQueryAttention(12, 16, n_heads=4, n_kv_heads=1,
    // rope_theta=10000)
    let fx = Fixture::load("small_mqa")?;
    // 4 query heads, 1 KV head (with RoPE tables, chapter 5's subject)
    let mqa = fx.gqa()?;
    println!(
        "MQA: {} query heads share {} KV head: W_key {:?}, group_size {}",
        mqa.n_heads(),
        mqa.n_kv_heads(),
        mqa.weights().w_key.weight().shape(),
        mqa.group_size()
    );
    let out = mqa.forward(&fx.batch("x")?, 0, None)?;
    // PyTorch's output (assert_close semantics: rtol 1.3e-6, atol 1e-5)
    attention::assert_batch_close(&out, &fx.batch("out")?, Tolerance::F32);
    let [b, s, d] = out.shape();
    println!(
        "     out ({b}, {s}, {d}) matches PyTorch's GroupedQueryAttention(n_kv_heads=1)"
    );

    // MHA: PyTorch's MultiHeadAttention(12, 16, num_heads=4, qkv_bias=True), seed 42, run
    // as GQA with 4 KV heads and no RoPE (its biases are applied: they are part of each
    // Linear)
    let fx = Fixture::load("small_mha")?;
    // 4 query heads, 4 KV heads
    let mha = GroupedQueryAttention::new(fx.weights()?, 4, 4, None)?;
    println!(
        "MHA: {} query heads, {} KV heads: W_key {:?}, group_size {}",
        mha.n_heads(),
        mha.n_kv_heads(),
        mha.weights().w_key.weight().shape(),
        mha.group_size()
    );
    let out = mha.forward(&fx.batch("x")?, 0, None)?;
    attention::assert_batch_close(&out, &fx.batch("out")?, Tolerance::F32);
    let [b, s, d] = out.shape();
    println!("     out ({b}, {s}, {d}) matches PyTorch's MultiHeadAttention");
    Ok(())
}
// ANCHOR_END: example
