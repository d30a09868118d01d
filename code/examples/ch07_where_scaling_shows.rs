//! Chapter 7: the scaling moves the RoPE tables at long positions and the output over
//! long distances only.
extern crate attention;
extern crate serde_json;
// ANCHOR: example
use attention::{
    Batch, FIXTURE_DIR, GroupedQueryAttention, HfLlamaConfig, Rope, TensorFile,
    Tolerance, assert_batch_close, max_abs_diff, open_layer_tensors,
};

/// A case's layer with its own (scaled) tables and with plain RoPE; outputs of the
/// expected rows.
fn scaled_and_plain(case: &str) -> Result<(Batch, Batch, Batch), attention::AttnError> {
    let dir = format!("{FIXTURE_DIR}/hf/{case}");
    let cfg = HfLlamaConfig::from_file(format!("{dir}/config.json"))?;
    let attn = cfg.load_attention(
        &open_layer_tensors(
            format!("{dir}/model.safetensors"),
            "model.layers.0.self_attn.",
        )?,
        "model.layers.0.self_attn.",
    )?;
    let meta: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(format!("{dir}/meta.json")).unwrap(),
    )
    .unwrap();
    let (start, from) = (
        meta["start_pos"].as_u64().unwrap() as usize,
        meta["expected_from"].as_u64().unwrap() as usize,
    );
    let x =
        TensorFile::open(format!("{dir}/input.safetensors"))?.batch("hidden_states")?;
    let plain_rope = Rope::new(cfg.head_dim, start + x.seq_len(), cfg.rope_theta, None)?;
    // the same weights, unscaled tables
    let plain = attn.clone().with_rope(Some(plain_rope))?;
    let tail = |a: &GroupedQueryAttention| {
        a.forward(&x, start, None)?.narrow_seq(from, x.seq_len() - from)
    };
    let hf =
        TensorFile::open(format!("{dir}/expected.safetensors"))?.batch("attn_output")?;
    Ok((tail(&attn)?, tail(&plain)?, hf))
}

fn main() -> Result<(), attention::AttnError> {
    // The tables: cos(pos · θ_i) of Llama 3.2's pair 20 (a "divided" pair), scaled vs
    // plain
    let scaled =
        Rope::new(64, 131_072, 500_000.0, Some(attention::Llama3Scaling::LLAMA_3_2))?;
    let plain = Rope::new(64, 131_072, 500_000.0, None)?;
    // 5 decimals: the f32 cos of a large angle may differ in its last bit from one math
    // library to the next, and none of these values is within a few bits of a 5-decimal
    // rounding edge
    println!("pair 20 of head_dim 64: cos scaled  cos plain");
    for pos in [5, 100, 8_191, 40_000, 131_071] {
        println!(
            "  position {pos:>7}: {:>14.5} {:>10.5}",
            scaled.cos_sin(pos, 20)?.0,
            plain.cos_sin(pos, 20)?.0
        );
    }
    // The output: transformers' LlamaAttention vs ours, with and without the scaling
    let d = |a: &Batch, b: &Batch| max_abs_diff(&a.to_row_major(), &b.to_row_major());
    // The last bits of ours depend on the CPU (summation order, the math library's cos
    // and sin): we print the bounds each difference is checked against, not its exact
    // value.
    for (case, what, (low, high)) in [
        ("llama31_end_bf16", "6 tokens at 131066..131071", (1e-5, 1e-4)),
        (
            "llama32_long_span",
            "4096 tokens at 126976..131071, last 8 checked",
            (1e-2, 1e-1),
        ),
    ] {
        let (ours, ours_plain, hf) = scaled_and_plain(case)?;
        assert_batch_close(&ours, &hf, Tolerance::F32);
        assert!(d(&ours, &hf) < 1e-6 && (low..high).contains(&d(&ours_plain, &hf)));
        println!("{case} ({what}):");
        println!(
            "  max |ours - transformers| < 1e-6;  without scaling: between {low:e} and \
                {high:e}"
        );
    }
    Ok(())
}
// ANCHOR_END: example
