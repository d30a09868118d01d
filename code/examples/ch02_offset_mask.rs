//! Chapter 2: the causal mask of a chunk of new tokens, aligned bottom-right, and why
//! top-left is wrong.
extern crate attention;
extern crate nalgebra;
// ANCHOR: example
use attention::matrix_to_row_major;
use attention::{
    Fixture, Mask, Tolerance, assert_matrix_close, attention_weights, causal_mask,
    compare,
};
use nalgebra::DMatrix;

/// Prints a matrix one row per line with a label; a mask's `0` and `-inf` as they are,
/// weights with 4 decimals.
fn print_rows(title: &str, labels: &[String], m: &DMatrix<f32>, is_mask: bool) {
    println!("{title}");
    for (label, row) in labels.iter().zip(m.row_iter()) {
        let cell = |v: &f32| if is_mask { format!("{v:>6}") } else { format!("{v:8.4}") };
        println!("  {label:<7}{}", row.iter().map(cell).collect::<String>());
    }
}

fn main() -> Result<(), attention::AttnError> {
    // 3 new tokens at positions 4, 5, 6; 7 keys (4 cached + the 3 new ones).
    let (n_queries, n_keys, query_offset) = (3, 7, 4);
    let labels: Vec<String> =
        (0..n_queries).map(|i| format!("pos {}", query_offset + i)).collect();
    // query i sees keys j <= query_offset + i
    let mask = causal_mask(n_queries, n_keys, query_offset)?;
    print_rows(
        "causal_mask(3, 7, 4), bottom-right: keys 0..=6 across",
        &labels,
        &mask,
        true,
    );
    // It is the last 3 rows of the full square mask of 7 tokens.
    assert_eq!(mask, causal_mask(7, 7, 0)?.rows(query_offset, n_queries).into_owned());
    // what is_causal=True builds for a (3, 7) shape
    let top_left = causal_mask(n_queries, n_keys, 0)?;
    print_rows(
        "top-left (PyTorch's is_causal=True for these shapes)",
        &labels,
        &top_left,
        true,
    );

    // The same thing on numbers PyTorch computed: the toy's last 3 tokens as a chunk
    // after 3 keys.
    // torch.manual_seed(123); CausalAttention(3, 2, 6, 0.0)
    let fx = Fixture::load("toy_causal")?;
    let x = fx.batch("x")?.items()[0].clone(); // (6, 3)
    // (3, 2): queries of tokens 3..6
    let q = fx.linear("W_query")?.forward(&x.rows(3, 3).into_owned())?;
    let k = fx.linear("W_key")?.forward(&x)?; // (6, 2): keys of all six tokens
    let chunk =
        // (3, 6)
        attention_weights(q.as_view(), k.as_view(), Mask::Causal { query_offset: 3 })?;
    let wrong =
        attention_weights(q.as_view(), k.as_view(), Mask::Causal { query_offset: 0 })?;
    let labels: Vec<String> = (3..6).map(|p| format!("pos {p}")).collect();
    print_rows("chunk at query_offset 3: weights", &labels, &chunk, false);
    print_rows("same chunk, top-left mask: weights", &labels, &wrong, false);

    // bottom-right gives PyTorch's full-sequence rows 3..6; top-left gets every one of
    // them wrong
    let want = fx.matrix("attn_weights")?.rows(3, 3).into_owned();
    assert_matrix_close(&chunk, &want, Tolerance::F32);
    for r in 0..n_queries {
        let row = |m: &DMatrix<f32>| matrix_to_row_major(&m.rows(r, 1).into_owned());
        assert!(
            compare(&row(&wrong), &row(&want), &[1, 6], Tolerance::F32).is_err(),
            "every row is wrong"
        );
    }
    assert_eq!(wrong[(0, 0)], 1.0, "top-left: the token at position 3 sees only key 0");
    Ok(())
}
// ANCHOR_END: example
