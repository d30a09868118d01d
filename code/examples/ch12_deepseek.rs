//! Chapter 12: a DeepSeek-V3 attention layer from a tiny transformers checkpoint, whole
//! and decoded through its latent cache, against transformers.
extern crate attention;
// ANCHOR: example
use attention::{Batch, HfFixture, MlaPath};

fn main() -> Result<(), attention::AttnError> {
    let fx = HfFixture::load("variants/deepseek_v3_mla")?; // model_type "deepseek_v3"
    let mla = fx.mla_layer()?.with_path(MlaPath::Expanded); // the definition
    print_shape(mla.shape());
    let x = fx.input()?; // (2, 11, 48) at positions 3..14
    let whole = mla.forward(&x, fx.start_pos, None)?;
    let mut cache = mla.new_cache(2, 11)?;
    let prefill = x.narrow_seq(0, fx.decode_from)?;
    let mut outputs = vec![mla.forward(&prefill, fx.start_pos, Some(&mut cache))?];
    for t in fx.decode_from..11 {
        let token = x.narrow_seq(t, 1)?;
        outputs.push(mla.forward(&token, fx.start_pos + t, Some(&mut cache))?);
    }
    let decoded = Batch::concat_seq(&outputs)?;
    let hf = fx.expected("attn_output")?; // DeepseekV3Attention's output
    println!("max |ours - transformers|:");
    println!("  whole {}, decoded {}", small(&whole, &hf), small(&decoded, &hf));
    let width = mla.shape().cache_width();
    println!("cache: {} tokens x {width} numbers per sequence", cache.len());
    Ok(())
}
// ANCHOR_END: example

/// Prints the layer's sizes.
fn print_shape(s: attention::MlaShape) {
    let (heads, r, q) = (s.n_heads, s.kv_lora_rank, s.q_lora_rank.unwrap());
    let (nope, rope, v) = (s.qk_nope_head_dim, s.qk_rope_head_dim, s.v_head_dim);
    println!(
        "{heads} heads, latent {r}, query rank {q}; q/k heads {nope} + {rope}, values {v}"
    );
}

/// A difference within PyTorch's f32 `assert_close` tolerance, printed as the bound
/// `< 1e-5` (its last digits depend on the CPU).
fn small(a: &Batch, b: &Batch) -> &'static str {
    attention::assert_batch_close(a, b, attention::Tolerance::F32);
    assert!(attention::max_abs_diff(&a.to_row_major(), &b.to_row_major()) < 1e-5);
    "< 1e-5"
}
