//! Chapter 4: which KV head each query head reads: `repeat_interleave` order, not
//! `repeat` order.
extern crate attention;
extern crate nalgebra;
// ANCHOR: example
use attention::{AttnError, Fixture, Mask, attention_weights};

fn main() -> Result<(), AttnError> {
    // GroupedQueryAttention(12, 16, n_heads=4, n_kv_heads=2, rope_theta=None), seed 45
    let fx = Fixture::load("small_gqa_norope")?;
    let gqa = fx.gqa()?; // 4 query heads over 2 KV heads, no RoPE
    let hd = gqa.head_dim(); // 4 columns per head
    // project: Listing 4-5; 0 is the position of the first token (chapter 5)
    let (q, k, _) = gqa.project(&fx.batch("x")?.items()[0], 0)?; // (7, 4·4), (7, 2·4)
    // Query head h reading KV head kv: (7, 4) · (4, 7) -> (7, 7) weights; PyTorch's?
    let verdict = |h: usize, kv: usize| -> Result<&str, AttnError> {
        let (q_h, k_kv) = (q.columns(h * hd, hd), k.columns(kv * hd, hd));
        let weights = attention_weights(q_h, k_kv, Mask::Causal { query_offset: 0 })?;
        pytorch_verdict(&fx, h, &weights) // "matches" or "WRONG"
    };
    print_header(&gqa);
    let mut wrong = 0;
    for h in 0..gqa.n_heads() {
        let (interleaved, repeated) = (h / gqa.group_size(), h % gqa.n_kv_heads());
        let (ok_i, ok_r) = (verdict(h, interleaved)?, verdict(h, repeated)?);
        print_row(h, (interleaved, ok_i), (repeated, ok_r));
        assert_eq!(ok_i, "matches", "repeat_interleave order must match PyTorch");
        wrong += usize::from(ok_r == "WRONG");
    }
    println!("repeat order gets {wrong} of {} heads wrong", gqa.n_heads());
    assert_eq!(wrong, 2); // heads 1 and 2; heads 0 and 3 read the same KV head in both
    Ok(())
}
// ANCHOR_END: example

/// "matches" if `weights` are PyTorch's `attn_weights[0, h]` (the `(batch, n_heads, seq,
/// seq)` weights after `repeat_interleave`) within `assert_close`'s tolerance (rtol
/// 1.3e-6, atol 1e-5), "WRONG" otherwise.
fn pytorch_verdict(
    fx: &Fixture,
    h: usize,
    weights: &nalgebra::DMatrix<f32>,
) -> Result<&'static str, AttnError> {
    use attention::{Tolerance, compare, matrix_to_row_major};
    let want = fx.tensor("attn_weights")?;
    let pytorch = &want.data[h * 49..(h + 1) * 49]; // item 0, head h: (7, 7) row-major
    let got = matrix_to_row_major(weights);
    let ok = compare(&got, pytorch, &[7, 7], Tolerance::F32).is_ok();
    Ok(if ok { "matches" } else { "WRONG" })
}

/// The table's title and column headings.
fn print_header(gqa: &attention::GroupedQueryAttention) {
    let (n_heads, n_kv_heads, group_size) =
        (gqa.n_heads(), gqa.n_kv_heads(), gqa.group_size());
    println!("{n_heads} query heads, {n_kv_heads} KV heads, group_size {group_size}");
    println!(
        "query head | repeat_interleave: h / {group_size}  | repeat: h % {n_kv_heads}"
    );
}

/// One row: the query head, then the KV head each order picks and its verdict.
fn print_row(
    h: usize,
    (interleaved, ok_i): (usize, &str),
    (repeated, ok_r): (usize, &str),
) {
    let left = format!("KV head {interleaved}, {ok_i}");
    println!("{h:>10} | {left:<26} | KV head {repeated}, {ok_r}");
}
