//! Chapter 10: the soft-cap applied after an additive mask (as an eager implementation
//! might) gives hidden keys a weight; before the mask, they keep 0.
extern crate attention;
// ANCHOR: example
use attention::{
    ScoreOptions, attention_weights_with, show, softmax_rows, splitmix_matrix,
};

fn main() -> Result<(), attention::AttnError> {
    let (cap, scale) = (3.0_f32, 0.25_f32); // a small cap, so that it shows
    let q = splitmix_matrix(1, 5, 16, 2.0); // 5 queries, head_dim 16
    let k = splitmix_matrix(2, 5, 16, 2.0);
    let o = ScoreOptions { softcap: Some(cap), scale: Some(scale), ..Default::default() };
    let right = attention_weights_with(q.as_view(), k.as_view(), 0, &o, 0)?; // cap, mask
    // wrong order: scale, add the mask as the most negative f32 (as transformers'
    // eager masks do), then cap: tanh(MIN / cap) · cap = -cap, a finite score
    let mut s = &q * k.transpose() * scale;
    for i in 0..5 {
        for j in i + 1..5 {
            s[(i, j)] += f32::MIN;
        }
    }
    s.apply(|x| *x = cap * (*x / cap).tanh());
    let wrong = softmax_rows(&s);
    println!("query 0 sees only key 0; weights on its hidden keys 1..4:");
    println!("  cap, then mask: {}", show::row(right.row(0).columns(1, 4).iter()));
    println!("  mask, then cap: {}", show::row(wrong.row(0).columns(1, 4).iter()));
    println!("max |wrong - right| over all weights: {:.3}", (&wrong - &right).amax());
    Ok(())
}
// ANCHOR_END: example
