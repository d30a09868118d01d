//! Chapter 7: one layer of a Hugging Face checkpoint at positions 131066..131071, full
//! and decoded, vs transformers.
extern crate attention;
// ANCHOR: example
use attention::{Batch, FIXTURE_DIR, HfLlamaConfig, TensorFile, open_layer_tensors};

fn main() -> Result<(), attention::AttnError> {
    // A tiny Llama 3.1-style checkpoint written by transformers, with bf16 weights
    let dir = format!("{FIXTURE_DIR}/hf/llama31_end_bf16");
    let cfg = HfLlamaConfig::from_file(format!("{dir}/config.json"))?;
    print_config(&cfg);
    let prefix = "model.layers.0.self_attn.";
    let weights = open_layer_tensors(format!("{dir}/model.safetensors"), prefix)?;
    println!("read:\n  {}", weights.names()?.join("\n  ")); // this layer's tensors only
    print_not_read(&dir, prefix, &weights)?; // the file's other tensors
    let attn = cfg.load_attention(&weights, prefix)?; // shapes checked, bf16 -> f32
    let file = |name: &str| TensorFile::open(format!("{dir}/{name}.safetensors"));
    let x = file("input")?.batch("hidden_states")?; // (1, 6, 32)
    let start_pos = 131_066; // the last 6 positions of the 131 072-token context
    let full = attn.forward(&x, start_pos, None)?; // one pass, no cache
    let decoded = attn.forward_prefill_decode(&x, start_pos, 2)?; // prefill 2, 4 steps
    let hf = file("expected")?.batch("attn_output")?; // transformers' LlamaAttention
    check_against_transformers(&full, &decoded, &hf);
    println!("attn_output {:?}:", full.shape());
    println!("  max |full - transformers| < 1e-6, max |decoded - transformers| < 1e-6");
    let last: Vec<f32> = hf.items()[0].row(5).iter().take(4).copied().collect();
    println!("token 131071, first 4 values (transformers'): {last:.4?}");
    Ok(())
}
// ANCHOR_END: example

/// Prints the config's attention shapes and RoPE settings.
fn print_config(cfg: &HfLlamaConfig) {
    let (heads, kv_heads) = (cfg.num_attention_heads, cfg.num_key_value_heads);
    let factor = cfg.rope_scaling.unwrap().factor;
    println!(
        "hidden_size {}, {heads} heads of {}, {kv_heads} KV head, rope_theta {},",
        cfg.hidden_size, cfg.head_dim, cfg.rope_theta
    );
    println!("llama3 factor {factor}, {} positions", cfg.max_position_embeddings);
}

/// Opens the whole file, only to list (and check) what `open_layer_tensors` left out;
/// checks that `weights` holds the layer's tensors only.
fn print_not_read(
    dir: &str,
    prefix: &str,
    weights: &TensorFile,
) -> attention::Result<()> {
    let all = TensorFile::open(format!("{dir}/model.safetensors"))?.names()?;
    let skipped: Vec<&String> = all.iter().filter(|n| !n.starts_with(prefix)).collect();
    println!("not read: {skipped:?}");
    assert_eq!(skipped, ["model.layers.0.input_layernorm.weight"]);
    assert!(weights.names()?.iter().all(|n| n.starts_with(prefix)));
    Ok(())
}

/// Both runs match transformers' output (`LlamaAttention`, eager, at `position_ids`
/// 131066..=131071) at PyTorch's f32 tolerance, and within 1e-6. The last bits depend on
/// the CPU (the order products are summed in, the math library's cos and sin): the
/// example prints the bound, not the difference.
fn check_against_transformers(full: &Batch, decoded: &Batch, hf: &Batch) {
    use attention::{Tolerance, assert_batch_close, max_abs_diff};
    assert_batch_close(full, hf, Tolerance::F32);
    assert_batch_close(decoded, hf, Tolerance::F32);
    let d = |a: &Batch| max_abs_diff(&a.to_row_major(), &hf.to_row_major());
    assert!(d(full) < 1e-6 && d(decoded) < 1e-6);
}
