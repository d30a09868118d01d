//! Exercise 2.2: the weights of a chunk of queries are rows of the full sequence's
//! weights.
extern crate attention;
// ANCHOR: example
use attention::{Mask, attention_weights, splitmix_matrix};

fn main() -> Result<(), attention::AttnError> {
    // 7 tokens, head_dim 4; the last 3 arrive as a chunk after 4 earlier ones
    let (q, k) = (splitmix_matrix(1, 7, 4, 1.0), splitmix_matrix(2, 7, 4, 1.0));
    let causal = |query_offset| Mask::Causal { query_offset };
    let full = attention_weights(q.as_view(), k.as_view(), causal(0))?; // (7, 7)
    let chunk_q = q.rows(4, 3); // queries 4, 5, 6 only
    let chunk = attention_weights(chunk_q, k.as_view(), causal(4))?; // (3, 7)
    let diff = (&chunk - full.rows(4, 3)).amax();
    println!(
        "chunk of 3 at query_offset 4 vs rows 4..7 of the full weights: max |diff| \
            {diff:.1e}"
    );
    assert!(diff < 1e-6);
    // with query_offset 0 the chunk's first query sees only key 0: the top-left mistake
    let wrong = attention_weights(chunk_q, k.as_view(), causal(0))?;
    let seen = wrong.row(0).iter().filter(|&&w| w > 0.0).count();
    println!("with query_offset 0, query 4 sees {seen} key(s)");
    Ok(())
}
// ANCHOR_END: example
