//! Exercise 9.1: through how many tokens does information reach with three stacked
//! layers of window 4?
extern crate attention;
extern crate nalgebra;
extern crate rand;
// ANCHOR: example
use attention::{AttnError, splitmix_matrix};

fn main() -> Result<(), AttnError> {
    let layers = window_layers(4, 3)?; // 3 layers of window 4, attention only
    let x = splitmix_matrix(5, 24, 16, 1.0); // 24 tokens, d_model 16
    for depth in 1..=3 {
        let base = output_20(&layers[..depth], &x)?;
        // nudge one input token at a time: does output token 20 move?
        let mut reached = Vec::new();
        for t in 0..24 {
            let mut nudged = x.clone();
            nudged.row_mut(t).add_scalar_mut(0.5);
            if (output_20(&layers[..depth], &nudged)? - &base).amax() > 0.0 {
                reached.push(t);
            }
        }
        let (first, last, n) = (reached[0], reached[reached.len() - 1], reached.len());
        println!("{depth} layer(s): token 20 reads tokens {first}..={last} ({n} tokens)");
        assert_eq!(n, depth * (4 - 1) + 1); // L·(W − 1) + 1
    }
    Ok(())
}
// ANCHOR_END: example

/// `n` random layers (d_model 16, 2 heads) with a sliding window of `window` keys.
fn window_layers(
    window: usize,
    n: usize,
) -> Result<Vec<attention::GroupedQueryAttention>, AttnError> {
    use rand::SeedableRng;
    let mut rng = rand::rngs::StdRng::seed_from_u64(4);
    let options = attention::ScoreOptions { window: Some(window), ..Default::default() };
    (0..n)
        .map(|_| {
            attention::GroupedQueryAttention::random(16, 16, 2, 2, None, &mut rng)?
                .with_scores(options.clone())
        })
        .collect()
}

/// Output row 20 after `layers`, one after the other (no residual, no MLP).
fn output_20(
    layers: &[attention::GroupedQueryAttention],
    x: &nalgebra::DMatrix<f32>,
) -> Result<nalgebra::RowDVector<f32>, AttnError> {
    let mut h = attention::Batch::single(x.clone());
    for layer in layers {
        h = layer.forward(&h, 0, None)?;
    }
    Ok(h.items()[0].row(20).into_owned())
}
