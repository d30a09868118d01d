//! Chapter 4: which KV head each query head reads: `repeat_interleave` order, not
//! `repeat` order.
extern crate attention;
// ANCHOR: example
use attention::{
    Fixture, GroupedQueryAttention, Mask, Result, Tolerance, attention_weights, compare,
    matrix_to_row_major,
};

fn main() -> Result<()> {
    // torch.manual_seed(45); GroupedQueryAttention(12, 16, n_heads=4, n_kv_heads=2,
    // context_length=32, rope_theta=None): 4 query heads over 2 KV heads, no RoPE
    let fx = Fixture::load("small_gqa_norope")?;
    let gqa = GroupedQueryAttention::new(
        fx.weights()?,
        fx.usize("n_heads")?,
        fx.usize("n_kv_heads")?,
        None,
    )?;
    let (n_heads, n_kv_heads, group_size, hd) =
        (gqa.n_heads(), gqa.n_kv_heads(), gqa.group_size(), gqa.head_dim());
    let x = fx.batch("x")?;
    // q (7, 4 heads · 4), k (7, 2 KV heads · 4)
    let (q, k, _) = gqa.project(&x.items()[0], 0)?;
    // PyTorch's (batch, n_heads, seq, seq), after repeat_interleave
    let want = fx.tensor("attn_weights")?;

    // Does query head h, reading KV head kv, give PyTorch's attn_weights[0, h]? (rtol
    // 1.3e-6, atol 1e-5)
    let matches_pytorch = |h: usize, kv: usize| -> Result<bool> {
        let w = attention_weights(
            q.columns(h * hd, hd),
            k.columns(kv * hd, hd),
            Mask::Causal { query_offset: 0 },
        )?;
        // item 0, head h: (7, 7) row-major
        let pytorch = &want.data[h * 49..(h + 1) * 49];
        Ok(compare(&matrix_to_row_major(&w), pytorch, &[7, 7], Tolerance::F32).is_ok())
    };
    let verdict = |ok: bool| if ok { "matches" } else { "WRONG" };

    println!("{n_heads} query heads, {n_kv_heads} KV heads, group_size {group_size}");
    println!(
        "query head | repeat_interleave: h / {group_size}  | repeat: h % {n_kv_heads}"
    );
    let mut wrong = 0;
    for h in 0..n_heads {
        let (interleaved, repeated) = (h / group_size, h % n_kv_heads);
        let (ok_i, ok_r) =
            (matches_pytorch(h, interleaved)?, matches_pytorch(h, repeated)?);
        let left = format!("KV head {interleaved}, {}", verdict(ok_i));
        println!("{h:>10} | {left:<26} | KV head {repeated}, {}", verdict(ok_r));
        assert!(ok_i, "repeat_interleave order must match PyTorch");
        wrong += usize::from(!ok_r);
    }
    println!("repeat order gets {wrong} of {n_heads} heads wrong");
    // heads 1 and 2; heads 0 and 3 read the same KV head in both orders
    assert_eq!(wrong, 2);
    Ok(())
}
// ANCHOR_END: example
