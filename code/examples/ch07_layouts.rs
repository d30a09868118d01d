//! Chapter 7: Meta's interleaved layout with Meta's weights equals split-halves with the
//! permuted weights.
extern crate attention;
extern crate nalgebra;
// ANCHOR: example
use attention::{
    Batch, FIXTURE_DIR, GroupedQueryAttention, HfLlamaConfig, Linear, QkvoWeights,
    RopeLayout, TensorFile, Tolerance, assert_batch_close, max_abs_diff,
    open_layer_tensors, permute_hf_to_meta, permute_meta_to_hf,
};
use nalgebra::DMatrix;

fn main() -> Result<(), attention::AttnError> {
    // Where the rows of one head (head_dim 8) go: row r of a "weight" holds the number r
    let rows = Linear::new(DMatrix::from_fn(8, 1, |r, _| r as f32), None)?;
    let hf_rows: Vec<f32> =
        permute_meta_to_hf(&rows, 1)?.weight().iter().copied().collect();
    println!("Meta rows in Hugging Face order: {hf_rows:?}");

    // transformers' layer (case gqa: 4 heads, 2 KV heads, head_dim 12, positions 37..45)
    // ...
    let dir = format!("{FIXTURE_DIR}/hf/gqa");
    let cfg = HfLlamaConfig::from_file(format!("{dir}/config.json"))?;
    let hf = cfg.load_attention(
        &open_layer_tensors(
            format!("{dir}/model.safetensors"),
            "model.layers.0.self_attn.",
        )?,
        "model.layers.0.self_attn.",
    )?;
    // ... and the same layer in Meta's layout, un-permuted by the generator (Meta's names
    // wq, wk, wv, wo)
    let meta = TensorFile::open(format!("{dir}/meta_layout.safetensors"))?;
    let w = |n: &str| meta.linear(&format!("layers.0.attention.{n}."));
    assert_eq!(permute_hf_to_meta(&hf.weights().w_query, 4)?, w("wq")?); // n_heads for q
    assert_eq!(permute_hf_to_meta(&hf.weights().w_key, 2)?, w("wk")?); // n_kv_heads for k
    println!(
        "permute_hf_to_meta(q_proj, 4) == wq and permute_hf_to_meta(k_proj, 2) == wk: \
            exactly"
    );

    let x =
        // (2, 9, 40)
        TensorFile::open(format!("{dir}/input.safetensors"))?.batch("hidden_states")?;
    let expected = TensorFile::open(format!("{dir}/expected.safetensors"))?;
    let meta_weights = || -> attention::Result<QkvoWeights> {
        Ok(QkvoWeights {
            w_query: w("wq")?,
            w_key: w("wk")?,
            w_value: w("wv")?,
            out_proj: w("wo")?,
        })
    };
    let rope = hf.rope().unwrap();
    // the same angles, pairs (2i, 2i+1)
    let meta_rope = rope.clone().with_layout(RopeLayout::Interleaved);
    let meta_attn = GroupedQueryAttention::new(meta_weights()?, 4, 2, Some(meta_rope))?;
    let interleaved = meta_attn.forward(&x, 37, None)?;
    let split_halves = hf.forward(&x, 37, None)?;
    // Meta's own formulation (complex numbers on pairs (2i, 2i+1)) and transformers'
    // LlamaAttention
    assert_batch_close(
        &interleaved,
        &expected.batch("meta_attn_output")?,
        Tolerance::F32,
    );
    assert_batch_close(&split_halves, &expected.batch("attn_output")?, Tolerance::F32);
    // The last bits depend on the order products are summed in (and so on the CPU): we
    // print the bound each difference is checked against, not its exact value.
    let d = |a: &Batch, b: &Batch| max_abs_diff(&a.to_row_major(), &b.to_row_major());
    assert!(d(&interleaved, &split_halves) < 1e-6);
    assert!(d(&interleaved, &expected.batch("meta_attn_output")?) < 1e-6);
    println!("max |interleaved + Meta weights - split-halves + HF weights| < 1e-6");
    println!("max |interleaved + Meta weights - Meta-style PyTorch|        < 1e-6");

    // The wrong pairing: Meta's weights run through split-halves RoPE
    let wrong = GroupedQueryAttention::new(meta_weights()?, 4, 2, Some(rope.clone()))?;
    let wrong_out = wrong.forward(&x, 37, None)?;
    let off = d(&wrong_out, &expected.batch("attn_output")?);
    // far from the noise above, and from the edges of what prints as 1.9e-1, on every
    // machine
    assert!((0.185..0.195).contains(&off));
    println!("max |Meta weights + split-halves - transformers|             = {off:.1e}");
    Ok(())
}
// ANCHOR_END: example
