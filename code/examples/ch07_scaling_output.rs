//! Chapter 7: the scaling moves the attention output over long distances only.
extern crate attention;
extern crate serde_json;
// ANCHOR: example
use attention::Rope;

fn main() -> Result<(), attention::AttnError> {
    // Ours vs transformers' LlamaAttention, with and without the scaling: 6 tokens at
    // the end of the context, then a span of 4096 tokens
    for (case, low, high) in
        [("llama31_end_bf16", 1e-5, 1e-4), ("llama32_long_span", 1e-2, 1e-1)]
    {
        let c = Case::load(case)?; // its layer, with the scaled tables of its config.json
        check_against_transformers(&c)?; // at PyTorch's f32 tolerance
        let n_positions = c.start_pos + c.x.seq_len();
        let plain = Rope::new(c.cfg.head_dim, n_positions, c.cfg.rope_theta, None)?;
        let unscaled = c.attn.clone().with_rope(Some(plain))?; // same weights, plain RoPE
        let d = c.max_diff_to_transformers(&c.attn)?;
        let d_plain = c.max_diff_to_transformers(&unscaled)?;
        // We print the bounds we check: the last bits depend on the CPU.
        assert!(d < 1e-6 && (low..high).contains(&d_plain));
        println!("{case} ({}):", c.what());
        let bounds = format!("between {low:e} and {high:e}");
        println!("  max |ours - transformers| < 1e-6;  without scaling: {bounds}");
    }
    Ok(())
}
// ANCHOR_END: example

use attention::{Batch, FIXTURE_DIR, GroupedQueryAttention, HfLlamaConfig, TensorFile};

/// One case of `tests/fixtures/hf`: a transformers layer (loaded as the config says), its
/// input and start position, and transformers' output of the rows `expected_from..`.
struct Case {
    cfg: HfLlamaConfig,
    attn: GroupedQueryAttention,
    x: Batch,
    start_pos: usize,
    expected_from: usize,
    expected: Batch,
}

impl Case {
    fn load(case: &str) -> attention::Result<Self> {
        let dir = format!("{FIXTURE_DIR}/hf/{case}");
        let cfg = HfLlamaConfig::from_file(format!("{dir}/config.json"))?;
        let prefix = "model.layers.0.self_attn.";
        let weights =
            attention::open_layer_tensors(format!("{dir}/model.safetensors"), prefix)?;
        let attn = cfg.load_attention(&weights, prefix)?;
        let meta = std::fs::read_to_string(format!("{dir}/meta.json")).unwrap();
        let meta: serde_json::Value = serde_json::from_str(&meta).unwrap();
        let pos = |key: &str| meta[key].as_u64().unwrap() as usize;
        let file = |name: &str| TensorFile::open(format!("{dir}/{name}.safetensors"));
        Ok(Self {
            x: file("input")?.batch("hidden_states")?,
            expected: file("expected")?.batch("attn_output")?,
            start_pos: pos("start_pos"),
            expected_from: pos("expected_from"),
            cfg,
            attn,
        })
    }

    /// What the case runs ("6 tokens at 131066..=131071"), and how many of its rows
    /// transformers' output holds if not all.
    fn what(&self) -> String {
        let (seq, start) = (self.x.seq_len(), self.start_pos);
        let mut what = format!("{seq} tokens at {start}..={}", start + seq - 1);
        if self.expected_from > 0 {
            what += &format!(", last {} checked", seq - self.expected_from);
        }
        what
    }

    /// `attn`'s output on the case's input: the rows that transformers' output holds.
    fn output(&self, attn: &GroupedQueryAttention) -> attention::Result<Batch> {
        let (from, seq) = (self.expected_from, self.x.seq_len());
        attn.forward(&self.x, self.start_pos, None)?.narrow_seq(from, seq - from)
    }

    /// The largest difference between `attn`'s output and transformers'. (Its last bits
    /// depend on the CPU: the summation order, the math library's cos and sin.)
    fn max_diff_to_transformers(
        &self,
        attn: &GroupedQueryAttention,
    ) -> attention::Result<f32> {
        let out = self.output(attn)?;
        Ok(attention::max_abs_diff(&out.to_row_major(), &self.expected.to_row_major()))
    }
}

/// The case's layer (with the scaling) matches transformers' `LlamaAttention` at
/// PyTorch's f32 tolerance.
fn check_against_transformers(c: &Case) -> attention::Result<()> {
    use attention::{Tolerance, assert_batch_close};
    assert_batch_close(&c.output(&c.attn)?, &c.expected, Tolerance::F32);
    Ok(())
}
