//! Chapter 1: why the scores are divided by √head_dim before the softmax.
extern crate attention;
extern crate nalgebra;
// ANCHOR: example
use attention::show::row;
use attention::{Fixture, softmax_rows, splitmix_matrix};

fn main() -> Result<(), attention::AttnError> {
    let fx = Fixture::load("toy_self_attention")?; // 1. The toy: seed 789, head_dim 2
    let s = fx.matrix("attn_scores")?.rows(1, 1).into_owned(); // "journey": q2 · k_j
    let toy = softmax_rows(&(&s / 2f32.sqrt()));
    println!("toy, head_dim 2   softmax(s)      {}", row(&softmax_rows(&s)));
    println!("                  softmax(s/√2)   {}", row(&toy));

    // 2. Random q and k with variance-1 entries: the scores spread out like √head_dim
    println!("head_dim  score std   √head_dim   max weight unscaled   scaled");
    for (head_dim, note) in [(2, ""), (16, ""), (128, "   Llama 3 8B"), (1024, "")] {
        let q = splitmix_matrix(1, 16, head_dim, 3f64.sqrt()); // 16 queries, in [-√3, √3)
        let k = splitmix_matrix(2, 64, head_dim, 3f64.sqrt()); // 64 keys
        let scores = &q * k.transpose(); // (16, head_dim) · (head_dim, 64) -> (16, 64)
        let std = (scores.map(|s| s * s).mean() - scores.mean().powi(2)).sqrt();
        let sqrt = (head_dim as f32).sqrt();
        let max_u = mean_row_max(&softmax_rows(&scores)); // 1.0 means one key per query
        let max_s = mean_row_max(&softmax_rows(&(&scores / sqrt))); // scaled
        println!("{head_dim:8} {std:10.2} {sqrt:11.2} {max_u:21.3} {max_s:8.3}{note}");
        check_claims(&q, &k, std, max_u, max_s)?;
    }
    check_against_pytorch(&fx, &toy)
}
// ANCHOR_END: example

/// The mean over rows of each row's largest entry: 1.0 means every query looks at a
/// single key. Printed with 3 decimals: f32 sums of up to 1024 products, in an order that
/// depends on the CPU, can differ from machine to machine in their last digits.
fn mean_row_max(w: &nalgebra::DMatrix<f32>) -> f32 {
    w.row_iter().map(|row| row.max()).sum::<f32>() / w.nrows() as f32
}

/// What the text claims, as bounds that hold on every machine; and the crate's
/// `attention_weights`, shown later in the chapter, is the softmax of the scores divided
/// by √head_dim.
fn check_claims(
    q: &nalgebra::DMatrix<f32>,
    k: &nalgebra::DMatrix<f32>,
    std: f32,
    unscaled: f32,
    scaled: f32,
) -> Result<(), attention::AttnError> {
    use attention::{Mask, Tolerance, assert_matrix_close, attention_weights};
    let head_dim = q.ncols();
    let scores = q * k.transpose();
    assert_matrix_close(
        &attention_weights(q.as_view(), k.as_view(), Mask::None)?,
        &softmax_rows(&(scores / (head_dim as f32).sqrt())),
        Tolerance::F32,
    );
    assert!(
        (std / (head_dim as f32).sqrt() - 1.0).abs() < 0.1,
        "the spread grows like √head_dim"
    );
    assert!((0.08..0.12).contains(&scaled), "scaled: a spread over many keys");
    if head_dim >= 128 {
        assert!(unscaled > 0.9, "unscaled: (almost) one key per query");
    }
    Ok(())
}

/// The toy's scaled weights of "journey" are PyTorch's.
fn check_against_pytorch(
    fx: &Fixture,
    toy: &nalgebra::DMatrix<f32>,
) -> Result<(), attention::AttnError> {
    use attention::{Tolerance, assert_matrix_close};
    let want = fx.matrix("attn_weights")?.rows(1, 1).into_owned();
    assert_matrix_close(toy, &want, Tolerance::F32);
    Ok(())
}
