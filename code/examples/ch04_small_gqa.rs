//! Chapter 4: `GroupedQueryAttention`, 4 query heads sharing 2 KV heads, against PyTorch.
extern crate attention;
// ANCHOR: example
use attention::{Fixture, GroupedQueryAttention, QkvoWeights, Tolerance};

fn main() -> Result<(), attention::AttnError> {
    // torch.manual_seed(45); GroupedQueryAttention(12, 16, n_heads=4, n_kv_heads=2,
    // context_length=32, rope_theta=None): no RoPE yet, that is chapter 5
    let fx = Fixture::load("small_gqa_norope")?;
    let weights = QkvoWeights {
        w_query: fx.linear("W_query")?, // (n_heads · head_dim, d_in) = (16, 12)
        // (n_kv_heads · head_dim, d_in) = (8, 12): half the rows
        w_key: fx.linear("W_key")?,
        w_value: fx.linear("W_value")?,   // (8, 12)
        out_proj: fx.linear("out_proj")?, // (16, 16)
    };
    let gqa = GroupedQueryAttention::new(
        weights,
        fx.usize("n_heads")?,
        fx.usize("n_kv_heads")?,
        None,
    )?;
    println!(
        "n_heads {}, n_kv_heads {}, group_size {}, head_dim {}",
        gqa.n_heads(),
        gqa.n_kv_heads(),
        gqa.group_size(),
        gqa.head_dim()
    );
    println!(
        "W_query {:?}, W_key {:?}, W_value {:?}",
        gqa.weights().w_query.weight().shape(),
        gqa.weights().w_key.weight().shape(),
        gqa.weights().w_value.weight().shape()
    );

    let x = fx.batch("x")?; // (2, 7, 12)
    let (q, k, v) = gqa.project(&x.items()[0], 0)?; // item 0, projected
    println!(
        "item 0: x {:?} -> q {:?}, k {:?}, v {:?}",
        x.items()[0].shape(),
        q.shape(),
        k.shape(),
        v.shape()
    );

    // (2, 7, 12) -> (2, 7, 16): positions 0.., no cache
    let out = gqa.forward(&x, 0, None)?;
    let [b, s, d] = out.shape();
    let first: Vec<String> =
        out.items()[0].row(0).iter().take(4).map(|v| format!("{v:.4}")).collect();
    println!("out ({b}, {s}, {d}); out[0, 0, :4] = [{}]", first.join(" "));

    // PyTorch's output (assert_close semantics: rtol 1.3e-6, atol 1e-5)
    attention::assert_batch_close(&out, &fx.batch("out")?, Tolerance::F32);
    Ok(())
}
// ANCHOR_END: example
