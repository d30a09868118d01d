//! Chapter 10: QK-norm as Qwen3 does it (x̂ · w, with biases) and as Gemma 3 does it
//! (x̂ · (1 + w), a window layer with its local RoPE base), against transformers.
extern crate attention;
// ANCHOR: example
use attention::{Batch, HfFixture};

fn main() -> Result<(), attention::AttnError> {
    for case in ["variants/qwen3_qknorm", "variants/gemma3_sliding"] {
        let fx = HfFixture::load(case)?;
        let layer = fx.layer()?;
        let norm = layer.qk_norm().unwrap(); // from q_norm.weight, k_norm.weight
        let rope = layer.rope().unwrap();
        println!(
            "{case}: {:?}, eps {:e}, RoPE pair 1 frequency {:.4}",
            norm.style,
            norm.eps,
            rope.inv_freq()[1]
        );
        let x = fx.input()?;
        let whole = layer.forward(&x, fx.start_pos, None)?;
        let decoded = layer.forward_prefill_decode(&x, fx.start_pos, fx.decode_from)?;
        let hf = fx.expected("attn_output")?;
        println!(
            "  max |ours - transformers|: whole {}, decoded {}",
            small(&whole, &hf),
            small(&decoded, &hf)
        );
    }
    Ok(())
}
// ANCHOR_END: example

/// A difference within PyTorch's f32 `assert_close` tolerance, printed as the bound
/// `< 1e-5` (its last digits depend on the CPU).
fn small(a: &Batch, b: &Batch) -> &'static str {
    attention::assert_batch_close(a, b, attention::Tolerance::F32);
    assert!(attention::max_abs_diff(&a.to_row_major(), &b.to_row_major()) < 1e-5);
    "< 1e-5"
}
