//! Exercise 1.2: the loop over tokens and the matrix product give the same context
//! vector.
extern crate attention;
extern crate nalgebra;
// ANCHOR: example
use attention::{Fixture, softmax_rows};
use nalgebra::DMatrix;

fn main() -> Result<(), attention::AttnError> {
    let x = Fixture::load("toy_simplified")?.matrix("x")?; // (6, 3)
    let weights = softmax_rows(&(&x * x.transpose())); // (6, 6): row i = query i
    // z2 as a loop: Σ_j α_2j · x_j
    let mut z2 = DMatrix::<f32>::zeros(1, 3);
    for j in 0..6 {
        z2 += weights[(1, j)] * x.row(j);
    }
    // z2 as one product: row 1 of weights · x, (1, 6) · (6, 3)
    let product = weights.rows(1, 1) * &x;
    println!("loop    z2 = {:.4?}", z2.iter().collect::<Vec<_>>());
    println!("product z2 = {:.4?}", product.iter().collect::<Vec<_>>());
    assert!((&z2 - &product).amax() < 1e-6);
    Ok(())
}
// ANCHOR_END: example
