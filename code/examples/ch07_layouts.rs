//! Chapter 7: Meta's interleaved layout with Meta's weights equals split-halves with the
//! permuted weights.
extern crate attention;
extern crate nalgebra;
// ANCHOR: example
use attention::{GroupedQueryAttention, RopeLayout, permute_hf_to_meta};

fn main() -> Result<(), attention::AttnError> {
    let Gqa { hf, meta, x, expected } = Gqa::load()?; // meta: hf's weights, Meta's layout
    assert_eq!(permute_hf_to_meta(&hf.weights().w_query, 4)?, meta.w_query); // n_heads
    print!("permute_hf_to_meta(q_proj, 4) == wq and ");
    assert_eq!(permute_hf_to_meta(&hf.weights().w_key, 2)?, meta.w_key); // n_kv_heads
    println!("permute_hf_to_meta(k_proj, 2) == wk: exactly");
    // Meta's weights with interleaved RoPE: the same angles, on pairs (2i, 2i+1)
    let meta_rope = hf.rope().unwrap().clone().with_layout(RopeLayout::Interleaved);
    let meta_attn = GroupedQueryAttention::new(meta.clone(), 4, 2, Some(meta_rope))?;
    let interleaved = meta_attn.forward(&x, 37, None)?; // (2, 9, 40), positions 37..=45
    let split_halves = hf.forward(&x, 37, None)?;
    check_against_pytorch(&interleaved, &split_halves, &expected)?;
    assert!(max_diff(&interleaved, &split_halves) < 1e-6); // last bits vary by CPU
    println!("max |interleaved + Meta weights - split-halves + HF weights| < 1e-6");
    println!("max |interleaved + Meta weights - Meta-style PyTorch|        < 1e-6");

    // The wrong pairing: Meta's weights through split-halves RoPE. No error, ...
    let wrong = GroupedQueryAttention::new(meta, 4, 2, hf.rope().cloned())?;
    let off = max_diff(&wrong.forward(&x, 37, None)?, &expected.batch("attn_output")?);
    assert!((0.185..0.195).contains(&off)); // ... and 1.9e-1 off on every machine
    println!("max |Meta weights + split-halves - transformers|             = {off:.1e}");
    Ok(())
}
// ANCHOR_END: example

use attention::{
    Batch, FIXTURE_DIR, HfLlamaConfig, QkvoWeights, TensorFile, open_layer_tensors,
};

/// The `gqa` case of `tests/fixtures/hf`: transformers' layer (4 heads, 2 KV heads,
/// head_dim 12), and the same layer un-permuted into Meta's layout by the fixture's
/// generator, under Meta's names (`wq`, `wk`, `wv`, `wo`).
struct Gqa {
    /// transformers' layer, with split-halves RoPE tables
    hf: GroupedQueryAttention,
    /// the same weights in Meta's layout
    meta: QkvoWeights,
    /// the input, `(2, 9, 40)`
    x: Batch,
    /// transformers' output (`attn_output`) and Meta-style PyTorch's (`meta_attn_output`)
    expected: TensorFile,
}

impl Gqa {
    fn load() -> attention::Result<Self> {
        let dir = format!("{FIXTURE_DIR}/hf/gqa");
        let cfg = HfLlamaConfig::from_file(format!("{dir}/config.json"))?;
        let prefix = "model.layers.0.self_attn.";
        let hf = cfg.load_attention(
            &open_layer_tensors(format!("{dir}/model.safetensors"), prefix)?,
            prefix,
        )?;
        let meta = TensorFile::open(format!("{dir}/meta_layout.safetensors"))?;
        let w = |n: &str| meta.linear(&format!("layers.0.attention.{n}."));
        let meta = QkvoWeights {
            w_query: w("wq")?,
            w_key: w("wk")?,
            w_value: w("wv")?,
            out_proj: w("wo")?,
        };
        let x = TensorFile::open(format!("{dir}/input.safetensors"))?
            .batch("hidden_states")?;
        let expected = TensorFile::open(format!("{dir}/expected.safetensors"))?;
        Ok(Self { hf, meta, x, expected })
    }
}

/// The largest difference between two outputs. Its last bits depend on the order
/// products are summed in, and so on the CPU: the example prints the bounds it checks,
/// not the differences.
fn max_diff(a: &Batch, b: &Batch) -> f32 {
    attention::max_abs_diff(&a.to_row_major(), &b.to_row_major())
}

/// Meta's own formulation (complex numbers on pairs (2i, 2i+1)) and transformers'
/// `LlamaAttention`: each layout matches its PyTorch reference.
fn check_against_pytorch(
    interleaved: &Batch,
    split_halves: &Batch,
    expected: &TensorFile,
) -> attention::Result<()> {
    use attention::{Tolerance, assert_batch_close};
    let meta_reference = expected.batch("meta_attn_output")?;
    assert_batch_close(interleaved, &meta_reference, Tolerance::F32);
    assert_batch_close(split_halves, &expected.batch("attn_output")?, Tolerance::F32);
    assert!(max_diff(interleaved, &meta_reference) < 1e-6);
    Ok(())
}
