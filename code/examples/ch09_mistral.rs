//! Chapter 9: a Mistral layer (sliding window 5) from a tiny transformers checkpoint,
//! run whole and decoded through a cache of 6 rows, against transformers.
extern crate attention;
// ANCHOR: example
use attention::{Batch, FIXTURE_DIR, HfLlamaConfig, TensorFile, open_layer_tensors};

fn main() -> Result<(), attention::AttnError> {
    let dir = format!("{FIXTURE_DIR}/variants/mistral_window"); // model_type "mistral"
    let cfg = HfLlamaConfig::from_file(format!("{dir}/config.json"))?;
    let prefix = "model.layers.0.self_attn.";
    let weights = open_layer_tensors(format!("{dir}/model.safetensors"), prefix)?;
    let layer = cfg.load_attention(&weights, prefix)?; // window read from config.json
    let window = layer.scores().window.unwrap(); // 5
    let file = |name: &str| TensorFile::open(format!("{dir}/{name}.safetensors"));
    let x = file("input")?.batch("hidden_states")?; // (3, 13, 40)
    let whole = layer.forward(&x, 0, None)?;
    let mut cache = layer.new_cache(3, window + 1)?; // 6 rows for 13 tokens
    let mut outputs = vec![layer.forward(&x.narrow_seq(0, 3)?, 0, Some(&mut cache))?];
    for t in 3..13 {
        outputs.push(layer.forward(&x.narrow_seq(t, 1)?, t, Some(&mut cache))?);
    }
    let expected = file("expected")?; // MistralAttention's outputs
    check(&whole, &expected.batch("attn_output")?);
    check(&Batch::concat_seq(&outputs)?, &expected.batch("decode_output")?);
    println!("sliding_window {window}: whole and decoded within 1e-5 of transformers");
    println!(
        "cache: {} rows after the last token, {} dropped",
        cache.len(),
        cache.dropped()
    );
    Ok(())
}
// ANCHOR_END: example

/// Within PyTorch's f32 `assert_close` tolerance, and within 1e-5 (printed as that
/// bound: the last bits depend on the CPU).
fn check(ours: &Batch, transformers: &Batch) {
    attention::assert_batch_close(ours, transformers, attention::Tolerance::F32);
    let d = attention::max_abs_diff(&ours.to_row_major(), &transformers.to_row_major());
    assert!(d < 1e-5, "{d}");
}
