//! Chapter 2: the causal mask of a chunk of new tokens, aligned bottom-right, and why
//! top-left is wrong.
extern crate attention;
extern crate nalgebra;
// ANCHOR: example
use attention::causal_mask;

fn main() -> Result<(), attention::AttnError> {
    // 3 new tokens at positions 4, 5, 6; 7 keys (4 cached + the 3 new ones)
    let (n_queries, n_keys, query_offset) = (3, 7, 4);
    // (3, 7): query i sees the keys j <= query_offset + i
    let mask = causal_mask(n_queries, n_keys, query_offset)?;
    // It is the last 3 rows of the full square mask of 7 tokens.
    assert_eq!(mask, causal_mask(7, 7, 0)?.rows(query_offset, n_queries).into_owned());
    let top_left = causal_mask(n_queries, n_keys, 0)?; // what is_causal=True builds
    let first = query_offset; // the first row's position: after the 4 cached, 0..=3
    print_mask("causal_mask(3, 7, 4), bottom-right: keys 0..=6 across", first, &mask);
    print_mask("top-left (PyTorch's is_causal=True for these shapes)", first, &top_left);

    toy_chunk() // the same on numbers PyTorch computed: the next listing
}
// ANCHOR_END: example

// ANCHOR: chunk
/// The toy's last 3 tokens as a chunk after 3 keys, under both masks.
fn toy_chunk() -> Result<(), attention::AttnError> {
    use attention::{Fixture, Mask, attention_weights};
    // torch.manual_seed(123); CausalAttention(3, 2, context_length=6, dropout=0)
    let fx = Fixture::load("toy_causal")?;
    let x = fx.batch("x")?.items()[0].clone(); // (6, 3)
    let query_offset = 3; // 3 keys before the chunk, which starts at position 3
    // queries for the chunk (tokens 3, 4, 5) only, keys for all six tokens
    let q = fx.linear("W_query")?.forward(&x.rows(3, 3).into_owned())?; // (3, 2)
    let k = fx.linear("W_key")?.forward(&x)?; // (6, 2)
    let weights = |query_offset| {
        attention_weights(q.as_view(), k.as_view(), Mask::Causal { query_offset })
    };
    let (chunk, wrong) = (weights(query_offset)?, weights(0)?); // (3, 6) each
    print_weights("chunk at query_offset 3: weights", query_offset, &chunk);
    print_weights("same chunk, top-left mask: weights", query_offset, &wrong);

    check_against_pytorch(&fx, &chunk, &wrong)
}
// ANCHOR_END: chunk

use nalgebra::DMatrix;

/// Prints a mask one row per line, labelled with the row's position, `0` and `-inf` as
/// they are.
fn print_mask(title: &str, first_pos: usize, mask: &DMatrix<f32>) {
    print_rows(title, first_pos, mask, |v| format!("{v:>6}"));
}

/// Prints weights one row per line, labelled with the row's position, 4 decimals.
fn print_weights(title: &str, first_pos: usize, weights: &DMatrix<f32>) {
    print_rows(title, first_pos, weights, |v| format!("{v:8.4}"));
}

/// Prints `title`, then each row of `m` as `cell`s, labelled `pos N` from `first_pos`.
fn print_rows(title: &str, first_pos: usize, m: &DMatrix<f32>, cell: fn(&f32) -> String) {
    println!("{title}");
    for (i, row) in m.row_iter().enumerate() {
        let label = format!("pos {}", first_pos + i);
        println!("  {label:<7}{}", row.iter().map(cell).collect::<String>());
    }
}

/// Bottom-right gives PyTorch's full-sequence rows 3..6; top-left gets every one of them
/// wrong, and puts all of the weight of the token at position 3 on key 0.
fn check_against_pytorch(
    fx: &attention::Fixture,
    chunk: &DMatrix<f32>,
    wrong: &DMatrix<f32>,
) -> Result<(), attention::AttnError> {
    use attention::{Tolerance, assert_matrix_close, compare, matrix_to_row_major};
    let want = fx.matrix("attn_weights")?.rows(3, 3).into_owned();
    assert_matrix_close(chunk, &want, Tolerance::F32);
    for r in 0..want.nrows() {
        let row = |m: &DMatrix<f32>| matrix_to_row_major(&m.rows(r, 1).into_owned());
        assert!(
            compare(&row(wrong), &row(&want), &[1, 6], Tolerance::F32).is_err(),
            "every row is wrong"
        );
    }
    assert_eq!(wrong[(0, 0)], 1.0, "top-left: the token at position 3 sees only key 0");
    Ok(())
}
