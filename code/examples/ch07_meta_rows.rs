//! Chapter 7: where `permute_meta_to_hf` moves the rows of one head.
extern crate attention;
extern crate nalgebra;
// ANCHOR: example
use attention::{Linear, permute_meta_to_hf};
use nalgebra::DMatrix;

fn main() -> Result<(), attention::AttnError> {
    // One head of head_dim 8 in Meta's layout: row r of the "weight" holds the number r
    let rows = Linear::new(DMatrix::from_fn(8, 1, |r, _| r as f32), None)?; // (8, 1)
    let hf = permute_meta_to_hf(&rows, 1)?; // 1 head
    let hf_rows: Vec<f32> = hf.weight().iter().copied().collect();
    println!("Meta rows in Hugging Face order: {hf_rows:?}");
    Ok(())
}
// ANCHOR_END: example
