//! Chapter 10: Gemma 2's soft-cap on one row of scores: small scores pass, large ones
//! are squashed below the cap, and the weights follow.
extern crate attention;
extern crate nalgebra;
// ANCHOR: example
use attention::{ScoreOptions, attention_weights_with, show};
use nalgebra::DMatrix;

fn main() -> Result<(), attention::AttnError> {
    // one query and six keys whose dot products are 0.5, 1, 2, 4, 8, 16 (head_dim 1,
    // scale 1: the scores are the dot products)
    let q = DMatrix::from_element(1, 1, 1.0_f32);
    let k = DMatrix::from_column_slice(6, 1, &[0.5, 1.0, 2.0, 4.0, 8.0, 16.0]);
    let plain = ScoreOptions { scale: Some(1.0), ..Default::default() };
    let capped = ScoreOptions { softcap: Some(5.0), ..plain.clone() };
    let cap = |s: f32| 5.0 * (s / 5.0).tanh(); // Gemma 2: cap · tanh(s / cap)
    let scores: Vec<f32> = k.iter().copied().collect();
    println!("score       {}", show::row(&scores));
    println!(
        "capped (5)  {}",
        show::row(&scores.iter().map(|&s| cap(s)).collect::<Vec<_>>())
    );
    // query_offset 5: the query sits after all six keys and sees them all
    let w = |o: &ScoreOptions| attention_weights_with(q.as_view(), k.as_view(), 5, o, 0);
    println!("weights, plain   {}", show::row(w(&plain)?.iter()));
    println!("weights, capped  {}", show::row(w(&capped)?.iter()));
    Ok(())
}
// ANCHOR_END: example
