//! Chapter 4: `GroupedQueryAttention`, 4 query heads sharing 2 KV heads, against PyTorch.
extern crate attention;
// ANCHOR: example
use attention::{Batch, Fixture, GroupedQueryAttention, show};

fn main() -> Result<(), attention::AttnError> {
    // GroupedQueryAttention(12, 16, n_heads=4, n_kv_heads=2, rope_theta=None), seed 45
    let fx = Fixture::load("small_gqa_norope")?;
    let (n_heads, n_kv_heads) = (fx.usize("n_heads")?, fx.usize("n_kv_heads")?); // 4, 2
    // chapter 3's QkvoWeights, read by name; None: no RoPE yet, that is chapter 5
    let gqa = GroupedQueryAttention::new(fx.weights()?, n_heads, n_kv_heads, None)?;
    print!("n_heads {n_heads}, n_kv_heads {n_kv_heads}, ");
    println!("group_size {}, head_dim {}", gqa.group_size(), gqa.head_dim());
    // W_query: (n_heads·head_dim, d_in); W_key, W_value: (n_kv_heads·head_dim, d_in)
    let w = gqa.weights();
    let [wq, wk, wv] = [&w.w_query, &w.w_key, &w.w_value].map(|l| l.weight().shape());
    println!("W_query {wq:?}, W_key {wk:?}, W_value {wv:?}");
    let x = fx.batch("x")?; // (2, 7, 12)
    let (q, k, v) = gqa.project(&x.items()[0], 0)?; // item 0, projected
    let [x0, q, k, v] = [&x.items()[0], &q, &k, &v].map(|m| m.shape());
    println!("item 0: x {x0:?} -> q {q:?}, k {k:?}, v {v:?}");

    let out = gqa.forward(&x, 0, None)?; // (2, 7, 16): from position 0, no cache
    let [b, s, d] = out.shape();
    let first = show::row(out.items()[0].row(0).iter().take(4));
    println!("out ({b}, {s}, {d}); out[0, 0, :4] ={first}");
    check_against_pytorch(&fx, &out)
}
// ANCHOR_END: example

/// The output is PyTorch's (`assert_close` semantics: rtol 1.3e-6, atol 1e-5).
fn check_against_pytorch(fx: &Fixture, out: &Batch) -> Result<(), attention::AttnError> {
    attention::assert_batch_close(out, &fx.batch("out")?, attention::Tolerance::F32);
    Ok(())
}
