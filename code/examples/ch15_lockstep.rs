//! Chapter 15: chapter 6's lockstep forward (one start_pos, the causal mask only) on a
//! left-padded batch of 6, 1 and 9 tokens, and the padded form with its attention_mask
//! and position_ids, both against transformers' LlamaAttention.
extern crate attention;
extern crate nalgebra;
// ANCHOR: example
use attention::serving::ragged::PaddedBatch;
use attention::{HfFixture, TensorFile};

fn main() -> Result<(), attention::AttnError> {
    let fx = HfFixture::load("ragged/llama_left_padded")?; // written by transformers 5.24
    let layer = fx.layer()?; // Llama attention: 4 heads of 10, 2 KV heads, d_model 36
    let x = fx.input()?; // (3, 9, 36): 6, 1 and 9 real tokens, padded on the left
    let inputs = TensorFile::open(fx.dir.join("input.safetensors"))?;
    let (mask, positions) =
        (inputs.tensor("attention_mask")?, inputs.tensor("position_ids")?);
    let padded = PaddedBatch::from_tensors(x.clone(), &mask, &positions)?;
    let want = padded.unpad(&fx.expected("attn_output")?)?; // transformers' real rows

    let lockstep = padded.unpad(&layer.forward(&x, 0, None)?)?; // chapter 6: no pad mask
    let ragged = padded.unpad(&layer.forward_padded(&padded, None)?)?;
    println!("            real  pads  chapter 6's forward  forward_padded  max |output|");
    for b in 0..3 {
        let pads = padded.seq_len() - want[b].nrows();
        print_row(b, pads, [&lockstep[b], &ragged[b]], &want[b]);
    }
    Ok(())
}
// ANCHOR_END: example

/// One sequence: its real tokens and pads, each output's largest difference from
/// transformers' real rows, printed as `< 1e-5` for f32 rounding (whose last digits
/// depend on the CPU), else with three decimals; and the largest |number| of
/// transformers' real rows, the size the differences compare with.
fn print_row(
    b: usize,
    pads: usize,
    ours: [&nalgebra::DMatrix<f32>; 2],
    want: &nalgebra::DMatrix<f32>,
) {
    let shown = |m: &nalgebra::DMatrix<f32>| {
        let diff = attention::max_abs_diff(m.as_slice(), want.as_slice());
        if diff < 1e-5 { "< 1e-5".to_string() } else { format!("{diff:.3}") }
    };
    let (real, lockstep, padded) = (want.nrows(), shown(ours[0]), shown(ours[1]));
    assert_eq!(padded, "< 1e-5");
    let largest = want.iter().fold(0.0f32, |m, x| m.max(x.abs()));
    println!(
        "sequence {b}  {real:>4}  {pads:>4}  {lockstep:>19}  {padded:>14}  {largest:12.3}"
    );
}
