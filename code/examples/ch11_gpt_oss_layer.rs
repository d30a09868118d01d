//! Chapter 11: gpt-oss's full-attention layer with YaRN at positions 5000..5009, against
//! transformers; and the same layer with half of YaRN left out.
extern crate attention;
// ANCHOR: example
use attention::{FIXTURE_DIR, HfLlamaConfig, Rope, YarnScaling};

fn main() -> Result<(), attention::AttnError> {
    let dir = format!("{FIXTURE_DIR}/variants/gpt_oss_yarn"); // model_type "gpt_oss"
    let cfg = HfLlamaConfig::from_file(format!("{dir}/config.json"))?; // rope_type "yarn"
    let layer = load_layer_1(&cfg, &dir)?; // full attention: YaRN tables, sinks, biases
    let rope = checked_rope(&layer, &dir)?; // θ'_i, cos, sin, factor: as transformers'
    let (x, hf) = input_and_output(&dir)?; // (2, 10, 20), and GptOssAttention's output
    let start_pos = 5000; // past the original context of 4096
    let ours = layer.forward(&x, start_pos, None)?;
    let m = rope.attention_factor();
    println!("head_dim {}, attention factor {m:.6}", layer.head_dim());
    println!("max |ours - transformers|:");
    println!("  YaRN as configured    {}", small(&ours, &hf));
    let gpt_oss = YarnScaling::GPT_OSS; // half of YaRN: θ'_i with factor 1; m with θ_i
    let no_m = YarnScaling { attention_factor: Some(1.0), ..gpt_oss };
    let only_m = YarnScaling { factor: 1.0, attention_factor: Some(m), ..gpt_oss };
    let (d, n, base) = (layer.head_dim(), rope.max_positions(), cfg.rope_theta);
    for (what, y) in [("no attention factor", no_m), ("factor, unscaled θ_i", only_m)] {
        let tables = Rope::with_scaling(d, n, base, Some(y.into()))?;
        let out = layer.clone().with_rope(Some(tables))?.forward(&x, start_pos, None)?;
        println!("  {what:<21} {:.1e}", diff(&out, &hf));
    }
    Ok(())
}
// ANCHOR_END: example

use attention::{Batch, GroupedQueryAttention, TensorFile};

/// Layer 1 of the fixture's checkpoint (a full-attention layer; gpt-oss alternates
/// sliding and full layers), loaded by the config's reader with the layer's YaRN tables,
/// its learned sinks and its biases.
fn load_layer_1(
    cfg: &HfLlamaConfig,
    dir: &str,
) -> attention::Result<GroupedQueryAttention> {
    let prefix = "model.layers.1.self_attn.";
    let weights =
        attention::open_layer_tensors(format!("{dir}/model.safetensors"), prefix)?;
    cfg.load_attention(&weights, prefix)
}

/// The fixture's input `hidden_states` `(2, 10, 20)` and transformers' `GptOssAttention`
/// output for it at positions 5000..5009, `attn_output` `(2, 10, 20)`.
fn input_and_output(dir: &str) -> attention::Result<(Batch, Batch)> {
    let file = |name: &str| TensorFile::open(format!("{dir}/{name}.safetensors"));
    Ok((file("input")?.batch("hidden_states")?, file("expected")?.batch("attn_output")?))
}

/// The largest absolute difference between two batches of the same shape.
fn diff(a: &Batch, b: &Batch) -> f32 {
    attention::max_abs_diff(&a.to_row_major(), &b.to_row_major())
}

/// A difference within PyTorch's f32 `assert_close` tolerance (rtol 1.3e-6, atol 1e-5),
/// printed as the bound `< 1e-5` (its last digits depend on the CPU). The frequencies
/// agree bit for bit and the tables to 2.5e-7 (see `checked_rope`); what remains is f32
/// rounding, in sums taken in different orders.
fn small(a: &Batch, b: &Batch) -> &'static str {
    attention::assert_batch_close(a, b, attention::Tolerance::F32);
    assert!(diff(a, b) < 1e-5);
    "< 1e-5"
}

/// The layer's RoPE tables, checked against those transformers' `GptOssRotaryEmbedding`
/// stored in the fixture at positions 5000..5009, which are **half width**
/// `(10, head_dim / 2)`: gpt-oss rotates with one cos and one sin per pair
/// (`emb = freqs`), where Llama's tables repeat them in both halves. The tables are the
/// crate's own for gpt-oss's YaRN; the frequencies equal transformers' bit for bit (at
/// head_dim 12 and base 150 000 torch's f32 power is correctly rounded at every pair; at
/// head_dim 64 it is not at pairs 6 and 10, see `ch11_yarn_frequencies`); cos and sin
/// within 2.5e-7: two f32 cos (glibc's, SLEEF's), each within 1 ulp of the exact value,
/// times the factor 1.35.
fn checked_rope<'a>(
    layer: &'a GroupedQueryAttention,
    dir: &str,
) -> attention::Result<&'a Rope> {
    let rope = layer.rope().expect("gpt-oss's layers have RoPE tables");
    let (d, n) = (rope.head_dim(), rope.max_positions());
    let yarn = Some(YarnScaling::GPT_OSS.into());
    assert_eq!(*rope, Rope::with_scaling(d, n, 150_000.0, yarn)?, "gpt-oss's YaRN");
    let hf = TensorFile::open(format!("{dir}/expected.safetensors"))?;
    assert_eq!(rope.inv_freq(), hf.tensor("inv_freq")?.data, "bit for bit");
    let (cos, sin) = (hf.tensor("cos")?, hf.tensor("sin")?);
    assert_eq!(cos.shape, [10, d / 2], "half width");
    for r in 0..10 {
        for i in 0..d / 2 {
            let (c, s) = rope.cos_sin(5000 + r, i)?;
            let k = r * d / 2 + i;
            assert!(
                (c - cos.data[k]).abs() <= 2.5e-7 && (s - sin.data[k]).abs() <= 2.5e-7
            );
        }
    }
    Ok(rope)
}
