//! Chapter 1: Raschka's §3.4.1 step by step, one query ("journey"), with PyTorch's
//! seed-123 weights.
extern crate attention;
extern crate nalgebra;
// ANCHOR: example
use attention::{Fixture, Linear, Tolerance, assert_matrix_close, compare, softmax_rows};
use nalgebra::DMatrix;

fn main() -> Result<(), attention::AttnError> {
    // torch.manual_seed(123); W_query, W_key, W_value = torch.rand(3, 2) each: stored
    // (d_in, d_out)
    let fx = Fixture::load("toy_trainable_steps")?;
    // as Linear (PyTorch's nn.Linear layout, (d_out, d_in)): the transpose of Raschka's
    // matrices
    let w = |name: &str| Linear::new(fx.matrix(name)?.transpose(), None);
    let (w_query, w_key, w_value) = (w("W_query")?, w("W_key")?, w("W_value")?);
    let x = fx.matrix("x")?; // (6, 3)
    let row = |m: &DMatrix<f32>| {
        m.iter().map(|v| format!("{v:.4}")).collect::<Vec<_>>().join(", ")
    };

    // x2 · W_q: (1, 3) -> (1, 2)
    let query_2 = w_query.forward(&x.rows(1, 1).into_owned())?;
    let keys = w_key.forward(&x)?; // (6, 2): one key per token
    let values = w_value.forward(&x)?; // (6, 2)
    println!("query_2 = [{}]", row(&query_2));
    for j in 0..keys.nrows() {
        let (k, v) =
            (row(&keys.rows(j, 1).into_owned()), row(&values.rows(j, 1).into_owned()));
        println!("x{}: key [{k}], value [{v}]", j + 1); // x_j · W_k, x_j · W_v
    }
    let omega_22 = query_2.row(0).dot(&keys.row(1)); // "journey" against its own key
    println!("ω22 = {omega_22:.4}");
    let scores = &query_2 * keys.transpose(); // (1, 6): ω21 .. ω26
    println!("ω2  = [{}]", row(&scores));
    let weights = softmax_rows(&(scores / 2f32.sqrt())); // scaled by √d_k, d_k = 2
    println!("α2  = [{}]", row(&weights));
    let z2 = &weights * &values; // (1, 6) · (6, 2) -> (1, 2)
    println!("z2  = [{}]", row(&z2));

    // every step is PyTorch's (rtol 1.3e-6, atol 1e-5); a (1, n) matrix holds its row in
    // order
    assert_matrix_close(&keys, &fx.matrix("keys")?, Tolerance::F32);
    for (name, got) in
        [("query_2", &query_2), ("attn_weights_2", &weights), ("context_vec_2", &z2)]
    {
        let want = fx.tensor(name)?.data;
        compare(got.as_slice(), &want, &[want.len()], Tolerance::F32).expect(name);
    }
    Ok(())
}
// ANCHOR_END: example
