//! One Llama attention layer against Hugging Face transformers
//! (`scripts/gen_hf_fixtures.py`, fixtures in `tests/fixtures/hf/<case>/`): config.json
//! parsing, bf16/f16/f32 weights, llama3 RoPE scaling at long positions (up to 131 071),
//! start positions, prefill + decode, and Meta's interleaved layout.
//!
//! Each case's reference is, in transformers (version in its meta.json):
//!
//! ```text
//! config = LlamaConfig.from_pretrained(case_dir); config._attn_implementation = "eager"
//! attn = LlamaAttention(config, layer_idx=0); rotary = LlamaRotaryEmbedding(config)
//! cos, sin = rotary(hidden_states, torch.arange(start_pos, start_pos + seq).expand(batch, seq))
//! attn_output, _ = attn(hidden_states, position_embeddings=(cos, sin), attention_mask=causal -inf mask)
//! ```
//!
//! **Tolerance.** PyTorch's `assert_close` default for f32 (rtol 1.3e-6, atol 1e-5) for
//! every output, including positions 131 064 .. 131 071. That it holds there is not a
//! given: an angle near 1.3e5 rad has an f32 ulp of 2⁻⁷ ≈ 0.0078, so a different but
//! equally reasonable way to compute it (f64, or `θ_i` rounded differently) moves cos/sin
//! by up to ~1e-2. It holds because the crate forms the angle exactly as transformers
//! does: `θ_i` in f32 (bit-identical, checked below), then the f32 product `pos · θ_i`.
//! What remains is the last-bit difference of two f32 `cos` implementations (checked
//! below at 2e-7, a few ulps of a number ≤ 1) and of summation order in the products.

mod common;

use std::path::PathBuf;

use attention::*;
use serde_json::Value;

const TOL: Tolerance = Tolerance::F32;
/// cos/sin of the same f32 angle by glibc's `cosf`/`sinf` (ours) and PyTorch's vectorised
/// kernels: each within about 1 ulp of the true value, so within about 2 ulps of each
/// other, 2 · 2⁻²⁴ ≈ 1.2e-7 for values in [0.5, 1) (ch07_precision measures 6.0e-8 at
/// 131066..131071). A different angle (θ_i off by one bit, or formed in f64) would differ
/// by up to ~1e-2 at position 131 071, far outside this.
const TABLE_ATOL: f32 = 2e-7;

fn case_dir(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hf").join(name)
}

/// A case: its parsed config, meta.json, input, expected tensors and the loaded layer.
struct Case {
    name: String,
    cfg: HfLlamaConfig,
    meta: Value,
    x: Batch,
    expected: TensorFile,
    attn: GroupedQueryAttention,
    start_pos: usize,
    /// The expected tensors hold positions `start_pos + expected_from .. start_pos + seq`
    /// only.
    expected_from: usize,
}

impl Case {
    fn load(name: &str) -> Result<Self> {
        let dir = case_dir(name);
        let meta: Value = serde_json::from_str(
            &std::fs::read_to_string(dir.join("meta.json")).unwrap(),
        )
        .unwrap();
        let cfg = HfLlamaConfig::from_file(dir.join("config.json"))?;
        let prefix = meta["prefix"].as_str().unwrap();
        let weights = open_layer_tensors(dir.join("model.safetensors"), prefix)?;
        let start_pos = meta["start_pos"].as_u64().unwrap() as usize;
        let attn = cfg.load_attention(&weights, prefix)?;
        let x =
            TensorFile::open(dir.join("input.safetensors"))?.batch("hidden_states")?;
        let expected = TensorFile::open(dir.join("expected.safetensors"))?;
        let expected_from = meta["expected_from"].as_u64().unwrap() as usize;
        Ok(Self {
            name: name.to_string(),
            cfg,
            meta,
            x,
            expected,
            attn,
            start_pos,
            expected_from,
        })
    }

    /// The rows of a full output that the expected tensors hold.
    fn tail(&self, out: &Batch) -> Result<Batch> {
        out.narrow_seq(self.expected_from, self.x.seq_len() - self.expected_from)
    }

    /// `attn` on every sequence at the case's positions, the rows the expected tensors
    /// hold.
    fn forward(&self, attn: &GroupedQueryAttention) -> Result<Batch> {
        self.tail(&attn.forward(&self.x, self.start_pos, None)?)
    }
}

/// Our config.json reading agrees with transformers' (its parsed values are in
/// meta.json's `hf_parsed`).
#[test]
fn config_json_is_read_as_transformers_reads_it() -> Result<()> {
    for name in common::hf_cases() {
        let name = name.as_str();
        let c = Case::load(name)?;
        let hf = &c.meta["hf_parsed"];
        let u = |k: &str| hf[k].as_u64().unwrap() as usize;
        assert_eq!(c.cfg.hidden_size, u("hidden_size"), "{name}");
        assert_eq!(c.cfg.num_attention_heads, u("num_attention_heads"), "{name}");
        assert_eq!(c.cfg.num_key_value_heads, u("num_key_value_heads"), "{name}");
        assert_eq!(c.cfg.head_dim, u("head_dim"), "{name}");
        assert_eq!(c.cfg.max_position_embeddings, u("max_position_embeddings"), "{name}");
        assert_eq!(
            c.cfg.attention_bias,
            hf["attention_bias"].as_bool().unwrap(),
            "{name}"
        );
        assert_eq!(c.cfg.rope_theta, hf["rope_theta"].as_f64().unwrap() as f32, "{name}");
        match c.cfg.rope_scaling {
            None => assert_eq!(hf["rope_type"], "default", "{name}"),
            Some(s) => {
                assert_eq!(hf["rope_type"], "llama3", "{name}");
                assert_eq!(s.factor, hf["factor"].as_f64().unwrap() as f32, "{name}");
                assert_eq!(
                    s.low_freq_factor,
                    hf["low_freq_factor"].as_f64().unwrap() as f32,
                    "{name}"
                );
                assert_eq!(
                    s.high_freq_factor,
                    hf["high_freq_factor"].as_f64().unwrap() as f32,
                    "{name}"
                );
                assert_eq!(
                    s.original_max_position_embeddings,
                    u("original_max_position_embeddings"),
                    "{name}"
                );
            }
        }
    }
    Ok(())
}

/// `LlamaRotaryEmbedding.inv_freq` (llama3-scaled where configured) bit for bit, and its
/// cos/sin at the case's positions (`rotary(x, position_ids)`, shape (seq, head_dim),
/// both halves repeating the angles).
#[test]
fn rope_frequencies_and_tables_match_transformers() -> Result<()> {
    for name in common::hf_cases() {
        let name = name.as_str();
        let c = Case::load(name)?;
        let rope = c.attn.rope().unwrap();
        assert_eq!(
            rope.inv_freq(),
            &c.expected.tensor("inv_freq")?.data[..],
            "{name}: inv_freq"
        );
        let (cos, sin) = (c.expected.matrix("cos")?, c.expected.matrix("sin")?);
        let half = c.cfg.head_dim / 2;
        let mut worst: f32 = 0.0;
        for t in 0..cos.nrows() {
            for i in 0..half {
                let (ours_c, ours_s) =
                    rope.cos_sin(c.start_pos + c.expected_from + t, i)?;
                for col in [i, i + half] {
                    worst = worst
                        .max((ours_c - cos[(t, col)]).abs())
                        .max((ours_s - sin[(t, col)]).abs());
                }
            }
        }
        assert!(worst <= TABLE_ATOL, "{name}: cos/sin differ by {worst:e}");
    }
    Ok(())
}

/// `LlamaAttention` output (eager, explicit causal mask) for every case: MHA, GQA, MQA,
/// explicit head_dim, biases, f16 and bf16 weights, llama3 scaling with factor 8 and 32
/// at positions up to 131 071.
#[test]
fn attention_output_matches_transformers() -> Result<()> {
    for name in common::hf_cases() {
        let name = name.as_str();
        let c = Case::load(name)?;
        let want = c.expected.batch("attn_output")?;
        let got = c.forward(&c.attn)?;
        assert_eq!(got.shape(), want.shape(), "{name}");
        if let Err(m) =
            compare(&got.to_row_major(), &want.to_row_major(), &want.shape(), TOL)
        {
            panic!("{}: {m}", c.name);
        }
    }
    Ok(())
}

/// Where the llama3 scaling shows. RoPE scores depend on the *distance* between query and
/// key: in a window of a few tokens the scaled and unscaled layers give nearly the same
/// output, wherever the window sits. What a short window does test at long positions is
/// the tables: cos/sin of `pos · θ_i` at positions ≥ 20 000, which the scaling changes
/// completely (checked against transformers above). The long-span case has keys up to
/// 4095 positions back, and there the output itself moves far outside the tolerance
/// without the scaling.
#[test]
fn long_positions_and_distances_make_the_scaling_matter() -> Result<()> {
    for name in [
        "llama31_end_bf16",
        "llama31_mid",
        "llama32_mid_bf16",
        "llama32_long_span",
        "llama32_end",
    ] {
        let c = Case::load(name)?;
        assert!(c.cfg.rope_scaling.is_some() && c.start_pos >= 20_000, "{name}");
        let n_positions = c.start_pos + c.x.seq_len();
        let plain = Rope::new(c.cfg.head_dim, n_positions, c.cfg.rope_theta, None)?;
        let scaled = c.attn.rope().unwrap();
        let mut table_diff: f32 = 0.0;
        for i in 0..c.cfg.head_dim / 2 {
            let (a, b) =
                (scaled.cos_sin(n_positions - 1, i)?, plain.cos_sin(n_positions - 1, i)?);
            table_diff = table_diff.max((a.0 - b.0).abs());
        }
        assert!(table_diff > 0.1, "{name}: tables differ by only {table_diff}");
        if name == "llama32_long_span" {
            let unscaled = c.attn.clone().with_rope(Some(plain))?;
            let want = c.expected.batch("attn_output")?.to_row_major();
            let diff = max_abs_diff(&c.forward(&unscaled)?.to_row_major(), &want);
            assert!(
                diff > 100.0 * TOL.atol,
                "{name}: unscaled RoPE is only {diff:e} away"
            );
        }
    }
    Ok(())
}

/// Prefill `K` tokens, then decode the rest one at a time through the KV cache, from the
/// case's start position: equal to transformers' full forward for every `K` tried (0 =
/// all tokens one by one).
#[test]
fn prefill_then_decode_matches_the_full_forward() -> Result<()> {
    for name in common::hf_cases() {
        let name = name.as_str();
        let c = Case::load(name)?;
        let want = c.expected.batch("attn_output")?;
        let seq = c.x.seq_len();
        // the long span: prefill all but the 8 checked rows, decode those (4096 steps
        // would be slow)
        let prefills = if seq > 100 { vec![seq - 8] } else { vec![0, 1, seq / 2, seq] };
        for prefill in prefills {
            let got =
                c.tail(&c.attn.forward_prefill_decode(&c.x, c.start_pos, prefill)?)?;
            if let Err(m) =
                compare(&got.to_row_major(), &want.to_row_major(), &want.shape(), TOL)
            {
                panic!("{name}, prefill {prefill}: {m}");
            }
        }
    }
    Ok(())
}

/// From the case's start position, `forward_prefill_decode` is the layer's cached forward
/// called chunk by chunk on a cache whose first position is `start_pos`.
#[test]
fn prefill_decode_equals_the_cached_forward_by_hand() -> Result<()> {
    let c = Case::load("llama31_mid")?;
    assert!(c.start_pos > 0);
    let mut cache = c.attn.new_cache(c.x.batch_size(), 64)?;
    let mut parts =
        vec![c.attn.forward(&c.x.narrow_seq(0, 3)?, c.start_pos, Some(&mut cache))?];
    for t in 3..c.x.seq_len() {
        parts.push(c.attn.forward(
            &c.x.narrow_seq(t, 1)?,
            c.start_pos + t,
            Some(&mut cache),
        )?);
    }
    assert_eq!(cache.first_pos(), c.start_pos);
    let ours = c.attn.forward_prefill_decode(&c.x, c.start_pos, 3)?;
    assert_batch_close(&ours, &Batch::concat_seq(&parts)?, Tolerance::new(0.0, 0.0));
    Ok(())
}

/// Meta's layout: un-permuting transformers' q/k weights gives Meta's (as the generator's
/// inverse of `convert_llama_weights_to_hf.permute`), and Meta-style attention
/// (complex-number RoPE on pairs (2i, 2i+1)) with those weights equals our interleaved
/// RoPE and transformers' output.
#[test]
fn meta_interleaved_layout_matches_meta_style_reference() -> Result<()> {
    let c = Case::load("gqa")?;
    let meta = TensorFile::open(case_dir("gqa").join("meta_layout.safetensors"))?;
    let w = |n: &str| meta.linear(&format!("layers.0.attention.{n}."));
    let (wq, wk) = (w("wq")?, w("wk")?);
    let hf = c.attn.weights();
    assert_eq!(permute_hf_to_meta(&hf.w_query, c.cfg.num_attention_heads)?, wq);
    assert_eq!(permute_hf_to_meta(&hf.w_key, c.cfg.num_key_value_heads)?, wk);
    assert_eq!(permute_meta_to_hf(&wq, c.cfg.num_attention_heads)?, hf.w_query);
    let rope = c.attn.rope().unwrap();
    let meta_weights =
        QkvoWeights { w_query: wq, w_key: wk, w_value: w("wv")?, out_proj: w("wo")? };
    let meta_attn = GroupedQueryAttention::new(
        meta_weights,
        c.cfg.num_attention_heads,
        c.cfg.num_key_value_heads,
        Some(rope.clone().with_layout(RopeLayout::Interleaved)),
    )?;
    let ours = meta_attn.forward(&c.x, c.start_pos, None)?;
    assert_batch_close(&ours, &c.expected.batch("meta_attn_output")?, TOL);
    assert_batch_close(&ours, &c.expected.batch("attn_output")?, TOL);
    // and the layouts are not interchangeable: Meta's weights with split-halves RoPE are
    // wrong
    let wrong = meta_attn.clone().with_rope(Some(rope.clone()))?;
    let diff = max_abs_diff(&c.forward(&wrong)?.to_row_major(), &ours.to_row_major());
    assert!(
        diff > 100.0 * TOL.atol,
        "mixing layouts changed the output by only {diff:e}"
    );
    Ok(())
}

/// The whole file and the prefix-only reader give the same layer; the reader skips other
/// tensors.
#[test]
fn reading_only_the_layer_equals_reading_the_whole_file() -> Result<()> {
    let dir = case_dir("mqa_bias_f16");
    let prefix = "model.layers.3.self_attn.";
    let part = open_layer_tensors(dir.join("model.safetensors"), prefix)?;
    let whole = TensorFile::open(dir.join("model.safetensors"))?;
    assert!(whole.contains("model.layers.3.input_layernorm.weight")?);
    assert!(!part.contains("model.layers.3.input_layernorm.weight")?);
    assert_eq!(part.names()?.len(), 8, "q/k/v/o weights and biases");
    for name in part.names()? {
        assert_eq!(part.tensor(&name)?, whole.tensor(&name)?, "{name}");
    }
    let cfg = HfLlamaConfig::from_file(dir.join("config.json"))?;
    assert!(cfg.attention_bias);
    assert_eq!(cfg.load_attention(&part, prefix)?, cfg.load_attention(&whole, prefix)?);
    Ok(())
}
