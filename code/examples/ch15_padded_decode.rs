//! Chapter 15: the left-padded batch through forward_padded with chapter 6's cache (pads
//! included, as transformers' DynamicCache), a prefill and 5 decode steps in which every
//! sequence sits at its own position, against transformers.
extern crate attention;
extern crate nalgebra;
// ANCHOR: example
use attention::serving::ragged::PaddedBatch;
use attention::{Batch, HfFixture, TensorFile};

fn main() -> Result<(), attention::AttnError> {
    let fx = HfFixture::load("ragged/llama_left_padded")?;
    let layer = fx.layer()?;
    let inputs = TensorFile::open(fx.dir.join("input.safetensors"))?;
    let (mask, positions) =
        (inputs.tensor("attention_mask")?, inputs.tensor("position_ids")?);
    let mut step = PaddedBatch::from_tensors(fx.input()?, &mask, &positions)?;
    let new_tokens = inputs.batch("decode_hidden_states")?; // (3, 5, 36)
    let mut cache = layer.new_cache(3, 9 + 5)?; // 9 padded columns, then 5 new ones
    let prefill = layer.forward_padded(&step, Some(&mut cache))?;
    check_prefill(&step, &prefill, &fx)?;
    let mut outputs = vec![];
    for t in 0..5 {
        step = step.next_tokens(new_tokens.narrow_seq(t, 1)?)?; // mask + 1 column
        let positions: Vec<usize> = step.position_ids().iter().map(|p| p[0]).collect();
        outputs.push(layer.forward_padded(&step, Some(&mut cache))?);
        println!("step {t}: positions {positions:?}, {} cache columns", cache.len());
    }
    check(&Batch::concat_seq(&outputs)?, &fx.expected("decode_output")?);
    println!("decode: 5 steps within 1e-5 of transformers");
    Ok(())
}
// ANCHOR_END: example

/// The prefill's real rows against transformers' (within 1e-5), and the largest
/// magnitude in its pad rows: 0 here (asserted), 0 in transformers' SDPA (asserted), and
/// what transformers' eager attention gives them (`o_proj` of the mean value row, tested
/// in `code/tests/ragged.rs`).
fn check_prefill(
    x: &PaddedBatch,
    ours: &Batch,
    fx: &HfFixture,
) -> Result<(), attention::AttnError> {
    let (eager, sdpa) = (fx.expected("attn_output")?, fx.expected("sdpa_attn_output")?);
    check(
        &Batch::single(stack(&x.unpad(ours)?)),
        &Batch::single(stack(&x.unpad(&eager)?)),
    );
    println!(
        "prefill: real rows within 1e-5 of transformers; largest |value| in pad rows:"
    );
    println!("            real  pads  here  transformers' SDPA  transformers' eager");
    for b in 0..x.batch_size() {
        let n_pads = x.new_columns(b)?.iter().filter(|&&r| r == 0).count();
        let largest = |out: &Batch| {
            out.items()[b].rows(0, n_pads).iter().map(|v| v.abs()).fold(0.0, f32::max)
        };
        assert!(largest(ours) == 0.0 && largest(&sdpa) == 0.0);
        let eager_pads =
            if n_pads == 0 { "-".into() } else { format!("{:.3}", largest(&eager)) };
        let zero = if n_pads == 0 { "-" } else { "0" };
        let real = x.seq_len() - n_pads;
        let columns = format!("{real:>4}  {n_pads:>4}  {zero:>4}  {zero:>18}");
        println!("sequence {b}  {columns}  {eager_pads:>19}");
    }
    Ok(())
}

/// The rows of `parts`, one under the other.
fn stack(parts: &[nalgebra::DMatrix<f32>]) -> nalgebra::DMatrix<f32> {
    let rows: Vec<_> = parts.iter().flat_map(|m| m.row_iter()).collect();
    nalgebra::DMatrix::from_rows(&rows)
}

/// Within PyTorch's f32 `assert_close` tolerance, and within 1e-5 (printed as that
/// bound: the last bits depend on the CPU).
fn check(ours: &Batch, transformers: &Batch) {
    attention::assert_batch_close(ours, transformers, attention::Tolerance::F32);
    let d = attention::max_abs_diff(&ours.to_row_major(), &transformers.to_row_major());
    assert!(d < 1e-5, "{d}");
}
