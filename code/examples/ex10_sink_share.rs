//! Exercise 10.1: the share of weight a learned sink takes from n keys that all score s.
extern crate attention;
extern crate nalgebra;
// ANCHOR: example
use attention::{ScoreOptions, attention_weights_with};
use nalgebra::DMatrix;

fn main() -> Result<(), attention::AttnError> {
    let (s, sink) = (1.0_f32, 2.0_f32); // every key scores 1, the sink logit is 2
    let o =
        ScoreOptions { scale: Some(1.0), sinks: Some(vec![sink]), ..Default::default() };
    println!("keys   sink's share (crate)   1 / (1 + n·e^(s - b))");
    for n in [1, 10, 100] {
        let q = DMatrix::from_element(1, 1, s); // head_dim 1: score = q · k = s
        let k = DMatrix::from_element(n, 1, 1.0_f32);
        let w = attention_weights_with(q.as_view(), k.as_view(), n - 1, &o, 0)?;
        let share = 1.0 - w.sum();
        let formula = 1.0 / (1.0 + n as f32 * (s - sink).exp());
        println!("{n:4}   {share:20.4}   {formula:21.4}");
        assert!((share - formula).abs() < 1e-6);
    }
    Ok(())
}
// ANCHOR_END: example
