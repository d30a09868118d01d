//! Chapter 1: why the scores are divided by √head_dim before the softmax.
extern crate attention;
extern crate nalgebra;
// ANCHOR: example
use attention::{
    Fixture, Mask, Tolerance, assert_matrix_close, attention_weights, softmax_rows,
    splitmix_matrix,
};
use nalgebra::DMatrix;

/// The mean over rows of each row's largest entry: 1.0 means every query looks at a
/// single key.
fn mean_row_max(w: &DMatrix<f32>) -> f32 {
    w.row_iter().map(|row| row.max()).sum::<f32>() / w.nrows() as f32
}

fn main() -> Result<(), attention::AttnError> {
    // 1. The toy: PyTorch's unscaled scores of "journey", then softmax with and without
    //    1/√2.
    // torch.manual_seed(789); SelfAttention_v2(3, 2)
    let fx = Fixture::load("toy_self_attention")?;
    let scores = fx.matrix("attn_scores")?.rows(1, 1).into_owned(); // q2 · k_j, (1, 6)
    let head_dim = fx.usize("d_out")? as f32; // 2
    let fmt = |m: &DMatrix<f32>| m.iter().map(|v| format!("{v:8.4}")).collect::<String>();
    println!("toy, head_dim 2   softmax(s)      {}", fmt(&softmax_rows(&scores)));
    let scaled = softmax_rows(&(&scores / head_dim.sqrt()));
    println!("                  softmax(s/√2)   {}", fmt(&scaled));
    assert_matrix_close(
        &scaled,
        &fx.matrix("attn_weights")?.rows(1, 1).into_owned(),
        Tolerance::F32,
    );

    // 2. Random queries and keys whose entries have variance 1: the scores' spread grows
    //    like √head_dim.
    println!("head_dim  score std   √head_dim   max weight unscaled   scaled");
    let llama_head_dim = 128; // Llama 3 8B's (chapter 4 lists the models' shapes)
    for head_dim in [2, 16, llama_head_dim, 1024] {
        let bound = 3f64.sqrt(); // uniform in [-√3, √3): variance 1
        let q = splitmix_matrix(1, 16, head_dim, bound); // 16 queries
        let k = splitmix_matrix(2, 64, head_dim, bound); // 64 keys
        // 3 decimals: summed in f32 over up to 1024 products, in an order that depends on
        // the CPU, the scores (and so the weights) can differ in their last digits from
        // machine to machine
        let scores = &q * k.transpose(); // (16, 64)
        let std = (scores.map(|s| s * s).mean() - scores.mean().powi(2)).sqrt();
        let unscaled = softmax_rows(&scores);
        let scaled = attention_weights(q.as_view(), k.as_view(), Mask::None)?;
        assert_matrix_close(
            &scaled,
            &softmax_rows(&(scores / (head_dim as f32).sqrt())),
            Tolerance::F32,
        );
        let note = if head_dim == llama_head_dim { "Llama 3 8B" } else { "" };
        let line = format!(
            "{head_dim:8} {std:10.2} {:11.2} {:21.3} {:8.3}   {note}",
            (head_dim as f32).sqrt(),
            mean_row_max(&unscaled),
            mean_row_max(&scaled)
        );
        println!("{}", line.trim_end());
        // what the text claims, as bounds that hold on every machine
        assert!(
            (std / (head_dim as f32).sqrt() - 1.0).abs() < 0.1,
            "the spread grows like √head_dim"
        );
        assert!(
            (0.08..0.12).contains(&mean_row_max(&scaled)),
            "scaled: a spread over many keys"
        );
        if head_dim >= llama_head_dim {
            assert!(
                mean_row_max(&unscaled) > 0.9,
                "unscaled: (almost) one key per query"
            );
        }
    }
    Ok(())
}
// ANCHOR_END: example
