//! Chapter 1: Raschka's §3.4.1 step by step, one query ("journey"), with PyTorch's
//! seed-123 weights.
extern crate attention;
extern crate nalgebra;
// ANCHOR: example
use attention::show::{TOY_TOKENS, print_table, row};
use attention::{Fixture, Linear, softmax_rows};
use nalgebra::DMatrix;

fn main() -> Result<(), attention::AttnError> {
    let fx = Fixture::load("toy_trainable_steps")?; // seed 123, W = torch.rand(3, 2)
    // Raschka's W are (d_in, d_out); Linear takes nn.Linear's (d_out, d_in): transpose
    let w = |name: &str| Linear::new(fx.matrix(name)?.transpose(), None);
    let (w_q, x) = (w("W_query")?, fx.matrix("x")?); // (2, 3) and (6, 3)
    let q = w_q.forward(&x)?; // Q = X · W_qᵀ: (6, 3) · (3, 2) -> (6, 2)
    let (k, v) = (w("W_key")?.forward(&x)?, w("W_value")?.forward(&x)?); // (6, 2) each
    let query_2 = q.rows(1, 1); // (1, 2): the query of "journey"
    let scores = query_2 * k.transpose(); // (1, 2) · (2, 6) -> (1, 6): ω21 .. ω26
    let weights = softmax_rows(&(&scores / 2f32.sqrt())); // scaled by √d_k, d_k = 2
    let z2 = &weights * &v; // (1, 6) · (6, 2) -> (1, 2)

    print_table("W_query", &["x[0]", "x[1]", "x[2]"], &["q[0]", "q[1]"], w_q.weight());
    let cols = ["x[0]", "x[1]", "x[2]", "q[0]", "q[1]", "k[0]", "k[1]", "v[0]", "v[1]"];
    print_table("token", &cols, &TOY_TOKENS, &side_by_side(&[&x, &q, &k, &v]));
    println!("ω22 = q2 · k2 = {:.4}", query_2.dot(&k.rows(1, 1)));
    let omega_alpha = DMatrix::from_rows(&[scores.row(0), weights.row(0)]); // (2, 6)
    print_table("query 2", &TOY_TOKENS, &["ω2j", "α2j"], &omega_alpha);
    println!("z2        {}", row(&z2));
    check_against_pytorch(&fx, &q, &k, &weights, &z2)
}
// ANCHOR_END: example

/// The matrices' columns side by side: `(6, 3)`, `(6, 2)`, ... -> `(6, 3 + 2 + ...)`.
fn side_by_side(blocks: &[&DMatrix<f32>]) -> DMatrix<f32> {
    DMatrix::from_columns(
        &blocks.iter().flat_map(|m| m.column_iter()).collect::<Vec<_>>(),
    )
}

/// Every step is PyTorch's (rtol 1.3e-6, atol 1e-5); a (1, n) matrix holds its row in
/// order.
fn check_against_pytorch(
    fx: &Fixture,
    q: &DMatrix<f32>,
    k: &DMatrix<f32>,
    weights: &DMatrix<f32>,
    z2: &DMatrix<f32>,
) -> Result<(), attention::AttnError> {
    use attention::{Tolerance, assert_matrix_close, compare};
    assert_matrix_close(k, &fx.matrix("keys")?, Tolerance::F32);
    let query_2 = q.rows(1, 1).into_owned();
    for (name, got) in
        [("query_2", &query_2), ("attn_weights_2", weights), ("context_vec_2", z2)]
    {
        let want = fx.tensor(name)?.data;
        compare(got.as_slice(), &want, &[want.len()], Tolerance::F32).expect(name);
    }
    Ok(())
}
