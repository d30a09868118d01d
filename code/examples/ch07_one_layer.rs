//! Chapter 7: one layer of a Hugging Face checkpoint at positions 131066..131071, full
//! and decoded, vs transformers.
extern crate attention;
// ANCHOR: example
use attention::{
    Batch, FIXTURE_DIR, HfLlamaConfig, TensorFile, Tolerance, assert_batch_close,
    max_abs_diff, open_layer_tensors,
};

fn main() -> Result<(), attention::AttnError> {
    // A tiny Llama 3.1-style checkpoint made by transformers
    // (scripts/gen_hf_fixtures.py): config.json with rope_scaling factor 8, bf16 weights
    // for layer 0, head_dim 128 with hidden_size 32
    let dir = format!("{FIXTURE_DIR}/hf/llama31_end_bf16");
    let cfg = HfLlamaConfig::from_file(format!("{dir}/config.json"))?;
    let scaling = cfg.rope_scaling.unwrap();
    println!(
        "hidden_size {}, {} heads of {}, {} KV head, rope_theta {},\n\
            llama3 factor {}, {} positions",
        cfg.hidden_size,
        cfg.num_attention_heads,
        cfg.head_dim,
        cfg.num_key_value_heads,
        cfg.rope_theta,
        scaling.factor,
        cfg.max_position_embeddings
    );
    let prefix = "model.layers.0.self_attn.";
    // this layer's tensors only
    let weights = open_layer_tensors(format!("{dir}/model.safetensors"), prefix)?;
    println!("read:");
    for name in weights.names()? {
        println!("  {name}");
    }
    // the whole file, opened only to list what open_layer_tensors left out
    let all = TensorFile::open(format!("{dir}/model.safetensors"))?.names()?;
    let skipped: Vec<&String> = all.iter().filter(|n| !n.starts_with(prefix)).collect();
    println!("not read: {skipped:?}");
    assert_eq!(skipped, ["model.layers.0.input_layernorm.weight"]);
    assert!(weights.names()?.iter().all(|n| n.starts_with(prefix)));
    let attn = cfg.load_attention(&weights, prefix)?;

    let x: Batch =
        TensorFile::open(format!("{dir}/input.safetensors"))?.batch("hidden_states")?;
    let start_pos = 131_066; // the last 6 positions of the 131 072-token context
    let full = attn.forward(&x, start_pos, None)?; // one pass, no cache
    // prefill 2, then 4 single steps
    let decoded = attn.forward_prefill_decode(&x, start_pos, 2)?;
    // transformers: LlamaAttention (eager) with LlamaRotaryEmbedding at position_ids
    // 131066..131071
    let hf =
        TensorFile::open(format!("{dir}/expected.safetensors"))?.batch("attn_output")?;
    assert_batch_close(&full, &hf, Tolerance::F32);
    assert_batch_close(&decoded, &hf, Tolerance::F32);
    // The last bits depend on the CPU (the order products are summed in, the math
    // library's cos and sin): we print the bound each difference is checked against, not
    // its exact value.
    let d = |a: &Batch| max_abs_diff(&a.to_row_major(), &hf.to_row_major());
    assert!(d(&full) < 1e-6 && d(&decoded) < 1e-6);
    println!(
        "attn_output {:?}:\n  max |full - transformers| < 1e-6, \
            max |decoded - transformers| < 1e-6",
        full.shape()
    );
    println!(
        "token 131071, first 4 values (transformers'): {:.4?}",
        &hf.items()[0].row(5).iter().take(4).collect::<Vec<_>>()
    );
    Ok(())
}
// ANCHOR_END: example
