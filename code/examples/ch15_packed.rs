//! Chapter 15: the same batch packed (cu_seqlens, a cache per sequence) and padded
//! (chapter 6's cache, pads included): equal on the real tokens, and the work and cache
//! rows each form spends, for a prefill and 5 decode steps.
extern crate attention;
extern crate nalgebra;
// ANCHOR: example
use attention::serving::ragged::PackedBatch;

fn main() -> Result<(), attention::AttnError> {
    let (layer, mut padded, new_tokens) = fixture()?; // transformers' 6, 1 and 9 tokens
    let mut packed = padded.to_packed()?; // the 16 real tokens, cu_seqlens [0, 6, 7, 16]
    let mut cache = layer.new_cache(3, 9 + 5)?; // padded: 14 columns per sequence
    let mut ragged = layer.new_ragged_cache(&[6 + 5, 1 + 5, 9 + 5])?; // packed: its own
    println!("step      tokens  padded rows  scores: padded  packed  |padded − packed|");
    for t in 0..=5 {
        if t > 0 {
            let x = new_tokens.narrow_seq(t - 1, 1)?; // one token per sequence
            padded = padded.next_tokens(x.clone())?;
            packed = PackedBatch::pack(x.items(), &ragged.next_positions())?;
        }
        let scores = [padded.score_entries(4), packed.score_entries(4, Some(&ragged))?];
        let a = padded.unpad(&layer.forward_padded(&padded, Some(&mut cache))?)?;
        let b = packed.unpack(&layer.forward_packed(&packed, Some(&mut ragged))?)?;
        let rows = [packed.total_tokens(), padded.batch_size() * padded.seq_len()];
        print_step(t, rows, scores, &a, &b);
    }
    print_cache_rows(&cache, &ragged);
    check_against_transformers()
}
// ANCHOR_END: example

use attention::serving::ragged::{PaddedBatch, RaggedKvCache};
use attention::{
    Batch, GroupedQueryAttention, HfFixture, LayerKvCache, TensorFile, Tolerance,
    assert_matrix_close,
};
use nalgebra::DMatrix;

/// The fixture written by transformers 5.24 (`scripts/gen_ragged_fixtures.py`): the
/// layer, the left-padded prefill as transformers took it (`hidden_states`,
/// `attention_mask`, `position_ids`), and the decode steps' new tokens `(3, 5, 36)`.
fn fixture() -> Result<(GroupedQueryAttention, PaddedBatch, Batch), attention::AttnError>
{
    let fx = HfFixture::load("ragged/llama_left_padded")?;
    let inputs = TensorFile::open(fx.dir.join("input.safetensors"))?;
    let (mask, positions) =
        (inputs.tensor("attention_mask")?, inputs.tensor("position_ids")?);
    let padded = PaddedBatch::from_tensors(fx.input()?, &mask, &positions)?;
    Ok((fx.layer()?, padded, inputs.batch("decode_hidden_states")?))
}

/// One line of the table: the step, real tokens and padded rows, score entries of both
/// forms, and their largest difference on the real tokens (asserted below 1e-5, printed
/// as that bound: the last bits depend on the CPU).
fn print_step(
    t: usize,
    [tokens, padded_rows]: [usize; 2],
    [padded, packed]: [u128; 2],
    a: &[DMatrix<f32>],
    b: &[DMatrix<f32>],
) {
    let diff = a
        .iter()
        .zip(b)
        .map(|(x, y)| attention::max_abs_diff(x.as_slice(), y.as_slice()))
        .fold(0.0, f32::max);
    assert!(diff < 1e-5, "{diff}");
    let name = if t == 0 { "prefill".to_string() } else { format!("decode {t}") };
    println!("{name:<9} {tokens:>6} {padded_rows:>12} {padded:>15} {packed:>7}  < 1e-5");
}

/// The rows each form's cache holds after the last step: the padded one a column per
/// sequence for every padded row, the packed one each sequence's tokens only.
fn print_cache_rows(padded: &LayerKvCache, packed: &RaggedKvCache) {
    let (batch, columns) = (padded.batch_size(), padded.len());
    let lens = packed.lens();
    let held: usize = lens.iter().sum();
    let all = batch * columns;
    println!("cache rows: padded {all} ({batch} × {columns}), packed {held} {lens:?}");
}

/// The packed form against transformers' own: its padding-free run of the 16 prefill
/// tokens (`packed_output`), and the decode steps (`decode_output`), within PyTorch's
/// f32 tolerance; and what the prefill becomes without `cu_seqlens`: one causal mask over
/// all 16 tokens (their positions kept), what transformers' padding-free path computes
/// when a cache is passed or a sequence's positions continue the one before.
fn check_against_transformers() -> Result<(), attention::AttnError> {
    let (layer, padded, new_tokens) = fixture()?;
    let fx = HfFixture::load("ragged/llama_left_padded")?;
    let mut ragged = layer.new_ragged_cache(&[11, 6, 14])?;
    let out_prefill = layer.forward_packed(&padded.to_packed()?, Some(&mut ragged))?;
    let want = fx.expected("packed_output")?; // (1, 16, 36)
    assert_matrix_close(&out_prefill, &want.items()[0], Tolerance::F32);
    let decode = fx.expected("decode_output")?; // (3, 5, 36)
    for t in 0..new_tokens.seq_len() {
        let x = new_tokens.narrow_seq(t, 1)?;
        let step = PackedBatch::pack(x.items(), &ragged.next_positions())?;
        let out = layer.forward_packed(&step, Some(&mut ragged))?; // row b: sequence b
        for (b, want) in decode.narrow_seq(t, 1)?.items().iter().enumerate() {
            assert_matrix_close(&out.rows(b, 1).into_owned(), want, Tolerance::F32);
        }
    }
    println!("packed: prefill and decode within PyTorch's f32 tolerance of transformers");
    // the same 16 tokens with their positions but without cu_seqlens: one causal mask
    let packed = padded.to_packed()?;
    let tokens = Batch::single(packed.tokens().clone());
    let n = packed.total_tokens();
    let merged = PaddedBatch::new(tokens, vec![vec![1; n]], vec![packed.positions()])?;
    let merged = layer.forward_padded(&merged, None)?;
    let diff =
        attention::max_abs_diff(merged.items()[0].as_slice(), out_prefill.as_slice());
    println!("without cu_seqlens (one causal mask, same positions): max error {diff:.3}");
    Ok(())
}
