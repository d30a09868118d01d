//! Chapter 9: which keys each query sees under a sliding window of 3, and what the
//! softmax makes of it.
extern crate attention;
extern crate nalgebra;
// ANCHOR: example
use attention::{ScoreOptions, attention_weights_with, show, splitmix_matrix};

fn main() -> Result<(), attention::AttnError> {
    let causal = ScoreOptions::default();
    let window = ScoreOptions { window: Some(3), ..Default::default() };
    // x: query i may look at key j; .: hidden
    let pattern = |o: &ScoreOptions, i| -> String {
        (0..7).map(|j| if o.sees(i, j) { 'x' } else { '.' }).collect()
    };
    println!("query   causal    window 3");
    for i in 0..7 {
        println!("  {i}     {}   {}", pattern(&causal, i), pattern(&window, i));
    }
    // 7 tokens, head_dim 8: the weights of one head under the window
    let q = splitmix_matrix(1, 7, 8, 1.0); // (7, 8)
    let k = splitmix_matrix(2, 7, 8, 1.0);
    let w = attention_weights_with(q.as_view(), k.as_view(), 0, &window, 0)?; // (7, 7)
    let keys = ["k0", "k1", "k2", "k3", "k4", "k5", "k6"];
    let queries = ["q0", "q1", "q2", "q3", "q4", "q5", "q6"];
    show::print_table("weights", &keys, &queries, &w);
    check(&w, &window)
}
// ANCHOR_END: example

/// Every row sums to 1 over exactly the keys the window shows (its own key at least),
/// and is 0 elsewhere.
fn check(
    w: &nalgebra::DMatrix<f32>,
    window: &ScoreOptions,
) -> Result<(), attention::AttnError> {
    for i in 0..7 {
        assert!((w.row(i).sum() - 1.0).abs() < 1e-6);
        for j in 0..7 {
            assert_eq!(w[(i, j)] > 0.0, window.sees(i, j), "query {i}, key {j}");
        }
    }
    Ok(())
}
