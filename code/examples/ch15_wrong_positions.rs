//! Chapter 15, trap: RoPE positions counted from the padded start (the column index)
//! instead of each sequence's own start, in the prefill, the decode steps, or both,
//! against transformers' outputs with the right positions.
extern crate attention;
extern crate nalgebra;
// ANCHOR: example
use attention::serving::ragged::PaddedBatch;

fn main() -> Result<(), attention::AttnError> {
    let (layer, own, new_tokens) = fixture()?; // transformers' batch of 6, 1 and 9 tokens
    let columns = vec![(0..9).collect(); 3]; // every position = its column index
    let mask = own.attention_mask().to_vec();
    let padded_start = PaddedBatch::new(own.x().clone(), mask, columns)?;
    println!("prefill positions  decode positions  prefill error  decode error");
    let cases = [
        ("own start", "own count", &own, &own),
        ("padded start", "padded start", &padded_start, &padded_start),
        ("padded start", "own count", &padded_start, &own),
    ];
    for (prefill_name, decode_name, prefill, decode_from) in cases {
        let mut cache = layer.new_cache(3, 9 + 5)?;
        let first = prefill.unpad(&layer.forward_padded(prefill, Some(&mut cache))?)?;
        let (mut step, mut decoded) = (decode_from.clone(), vec![]);
        for t in 0..5 {
            step = step.next_tokens(new_tokens.narrow_seq(t, 1)?)?; // last position + 1
            decoded.push(layer.forward_padded(&step, Some(&mut cache))?);
        }
        let errors = errors(&first, &decoded)?; // against transformers
        println!("{prefill_name:<19}{decode_name:<18}{:>13}{:>14}", errors[0], errors[1]);
    }
    Ok(())
}
// ANCHOR_END: example

use attention::{AttnError, Batch, GroupedQueryAttention, HfFixture, TensorFile};
use nalgebra::DMatrix;

/// The fixture written by transformers 5.24 (`scripts/gen_ragged_fixtures.py`): the
/// layer, the left-padded prefill as transformers took it (`hidden_states`,
/// `attention_mask`, `position_ids` from each sequence's own start), and the decode
/// steps' new tokens `(3, 5, 36)`.
fn fixture() -> Result<(GroupedQueryAttention, PaddedBatch, Batch), AttnError> {
    let fx = HfFixture::load("ragged/llama_left_padded")?;
    let inputs = TensorFile::open(fx.dir.join("input.safetensors"))?;
    let (mask, positions) =
        (inputs.tensor("attention_mask")?, inputs.tensor("position_ids")?);
    let padded = PaddedBatch::from_tensors(fx.input()?, &mask, &positions)?;
    Ok((fx.layer()?, padded, inputs.batch("decode_hidden_states")?))
}

/// The largest difference of the prefill's real rows and of the decode steps from
/// transformers' (`attn_output`, `decode_output`), printed as `< 1e-5` for f32 rounding
/// (whose last digits depend on the CPU), else with three decimals.
fn errors(prefill: &[DMatrix<f32>], decoded: &[Batch]) -> Result<[String; 2], AttnError> {
    let fx = HfFixture::load("ragged/llama_left_padded")?;
    let (_, own, _) = fixture()?;
    let want = own.unpad(&fx.expected("attn_output")?)?;
    let prefill: f32 = prefill
        .iter()
        .zip(&want)
        .map(|(a, b)| attention::max_abs_diff(a.as_slice(), b.as_slice()))
        .fold(0.0, f32::max);
    let decoded = Batch::concat_seq(decoded)?.to_row_major();
    let decode =
        attention::max_abs_diff(&decoded, &fx.expected("decode_output")?.to_row_major());
    let shown = |d: f32| if d < 1e-5 { "< 1e-5".to_string() } else { format!("{d:.3}") };
    Ok([shown(prefill), shown(decode)])
}
