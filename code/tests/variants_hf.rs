//! One attention layer of each model after Llama 3 (Mistral, Qwen3, Gemma 2, Gemma 3,
//! gpt-oss; with YaRN, and Gemma 3's linear RoPE scaling), loaded from its config.json
//! and safetensors by the crate's Hugging Face loader, against transformers 5.24 (`scripts/gen_variant_fixtures.py`, fixtures in
//! `tests/fixtures/variants/<case>/`, versions in each meta.json). DeepSeek's cases,
//! multi-head latent attention, are `mla_hf.rs`'s; here, only their refusal.
//!
//! Each case's reference is the model's own base model in eager mode, the layer's input
//! swapped in by a hook, in f32 on one CPU thread:
//!
//! ```text
//! config = XConfig.from_pretrained(case_dir); config._attn_implementation = "eager"
//! model = XModel(config); model.layers[L].self_attn.load_state_dict(attn.state_dict())
//! attn_output:   model(inputs_embeds=x, position_ids=arange(start_pos, start_pos + seq))
//! decode_output: tokens 0..decode_from as one forward, then one token per forward,
//!                through DynamicCache(config=config) (sliding layers keep W - 1 tokens)
//! ```
//!
//! **Tolerance.** PyTorch's `assert_close` default for f32 (rtol 1.3e-6, atol 1e-5),
//! [`Tolerance::F32`], for every case, kernel and path (measured: at most about 1e-6).
//! The crate forms RoPE angles as transformers does (f32 `θ_i`, f32 product `pos · θ_i`)
//! and its YaRN frequencies step for step, so what remains is summation order and the
//! last bits of two f32 `cos`, `exp` and `tanh` implementations. The RoPE tables
//! themselves are compared at [`TABLE_ATOL`].

use std::path::{Path, PathBuf};

use attention::hf::{LayerKind, ModelType};
use attention::support::io::save_tensors;
use attention::*;
use serde_json::Value;

const TOL: Tolerance = Tolerance::F32;

/// cos and sin of the same f32 angle by glibc's `cosf`/`sinf` (ours) and PyTorch's
/// vectorised kernels: each within about 1 ulp, so about 2 ulps apart, 2 · 2⁻²⁴ ≈ 1.2e-7
/// for values in [0.5, 1), times YaRN's attention factor (1.35 for gpt-oss), plus the
/// f32 rounding of that product: 2.5e-7 (measured: 6.0e-8, and 1.2e-7 with YaRN). A
/// wrong base or frequency (Gemma 3's local base on a full layer, YaRN off by one pair)
/// is off by far more; the frequencies themselves are compared bit for bit.
const TABLE_ATOL: f32 = 2.5e-7;

/// The grouped-query cases, of those `scripts/gen_variant_fixtures.py` writes: the first
/// ten (f32), one bf16 case per model type (`*_bf16`, weights stored as bf16, two of them
/// with a bf16 input too), three at long positions (`mistral_long` from 30000,
/// `qwen3_long` from 40000, `gemma3_full_long` from 100000) and four with RoPE scaling
/// (`gemma3_full_linear` and `gemma3_sliding_linear` from 20000, `qwen3_yarn` and
/// `mistral_yarn` from 40000). Its DeepSeek-V2 and V3 cases are multi-head latent
/// attention, another layer, which `HfLlamaConfig::load_mla` loads (`mla_hf.rs`):
/// `load_attention` must refuse them.
const N_CASES: usize = 22;

/// The DeepSeek-V2 and V3 cases (multi-head latent attention).
const N_MLA_CASES: usize = 5;

fn variants_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/variants")
}

/// The case folders under `tests/fixtures/variants/`, sorted, split by meta.json's
/// `model_type`: the grouped-query models', which `load_attention` reads, and the others
/// (multi-head latent attention, or a type the crate does not know). A new case is picked
/// up by every test that loops over them.
fn all_cases() -> (Vec<String>, Vec<String>) {
    let dir = variants_dir();
    let mut cases: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("config.json").is_file())
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    cases.sort();
    cases.into_iter().partition(|name| {
        let meta = std::fs::read_to_string(dir.join(name).join("meta.json")).unwrap();
        let meta: Value = serde_json::from_str(&meta).unwrap();
        ModelType::from_name(meta["model_type"].as_str().unwrap())
            .is_some_and(|m| !m.uses_mla())
    })
}

/// The cases of the grouped-query model types.
fn case_names() -> Vec<String> {
    let cases = all_cases().0;
    assert_eq!(cases.len(), N_CASES, "cases in {}: {cases:?}", variants_dir().display());
    cases
}

/// The other cases (DeepSeek-V2's and V3's multi-head latent attention) are read, but
/// `load_attention` refuses them with one line that names the model type and
/// `load_mla`: read as a grouped-query layer they would be wrong.
#[test]
fn latent_attention_cases_are_refused_by_load_attention() {
    let others = all_cases().1;
    assert_eq!(others.len(), N_MLA_CASES, "{others:?}");
    for name in others {
        let dir = variants_dir().join(&name);
        let cfg = HfLlamaConfig::from_file(dir.join("config.json")).unwrap();
        assert!(cfg.model.model_type.uses_mla(), "{name}");
        let meta: Value = serde_json::from_str(
            &std::fs::read_to_string(dir.join("meta.json")).unwrap(),
        )
        .unwrap();
        let prefix = meta["prefix"].as_str().unwrap();
        let weights = open_layer_tensors(dir.join("model.safetensors"), prefix).unwrap();
        let e = cfg.load_attention(&weights, prefix).unwrap_err();
        assert!(matches!(e, AttnError::Unsupported(_)), "{name}: {e:?}");
        let e = e.to_string();
        assert!(
            e.contains("is multi-head latent attention") && e.contains("load_mla"),
            "{e}"
        );
        assert!(!e.contains('\n'), "{e}");
    }
}

/// One case: config, meta.json, the loaded layer, its input and transformers' outputs.
struct Case {
    name: String,
    meta: Value,
    cfg: HfLlamaConfig,
    layer: GroupedQueryAttention,
    x: Batch,
    expected: TensorFile,
    start_pos: usize,
    decode_from: usize,
}

impl Case {
    fn load(name: &str) -> Result<Self> {
        let dir = variants_dir().join(name);
        let meta: Value = serde_json::from_str(
            &std::fs::read_to_string(dir.join("meta.json")).unwrap(),
        )
        .unwrap();
        let cfg = HfLlamaConfig::from_file(dir.join("config.json"))?;
        let prefix = meta["prefix"].as_str().unwrap();
        let weights = open_layer_tensors(dir.join("model.safetensors"), prefix)?;
        let layer = cfg.load_attention(&weights, prefix)?;
        let x =
            TensorFile::open(dir.join("input.safetensors"))?.batch("hidden_states")?;
        let count = |key: &str| meta[key].as_u64().unwrap() as usize;
        Ok(Self {
            name: name.to_string(),
            cfg,
            layer,
            x,
            expected: TensorFile::open(dir.join("expected.safetensors"))?,
            start_pos: count("start_pos"),
            decode_from: count("decode_from"),
            meta,
        })
    }

    /// The first `decode_from` tokens as one forward, then one token per forward,
    /// through `layer.new_cache(batch, capacity)`; the cache, to see what it dropped.
    fn decode(
        &self,
        layer: &GroupedQueryAttention,
        capacity: usize,
    ) -> Result<(Batch, LayerKvCache)> {
        let (seq, k) = (self.x.seq_len(), self.decode_from);
        let mut cache = layer.new_cache(self.x.batch_size(), capacity)?;
        let mut outputs = Vec::new();
        if k > 0 {
            let chunk = self.x.narrow_seq(0, k)?;
            outputs.push(layer.forward(&chunk, self.start_pos, Some(&mut cache))?);
        }
        for t in k..seq {
            let token = self.x.narrow_seq(t, 1)?;
            outputs.push(layer.forward(&token, self.start_pos + t, Some(&mut cache))?);
        }
        Ok((Batch::concat_seq(&outputs)?, cache))
    }

    /// Compares `got` with the expected tensor `name`; returns the largest difference.
    fn check(&self, what: &str, got: &Batch, name: &str) -> f32 {
        let want = self.expected.batch(name).unwrap();
        let (g, w) = (got.to_row_major(), want.to_row_major());
        if let Err(m) = compare(&g, &w, &want.shape(), TOL) {
            panic!("{} {what}: {m}", self.name);
        }
        max_abs_diff(&g, &w)
    }
}

/// Every case, prefill and cached decode, with the kernel the layer picks and with the
/// tiled (flash) kernel forced, against transformers. Sliding layers decode through a
/// cache of `window + 1` rows, fewer than the sequence, so rows are dropped on the way,
/// as transformers' `DynamicSlidingWindowLayer` drops them.
#[test]
fn every_case_matches_transformers() {
    for name in case_names() {
        let case = Case::load(&name).unwrap();
        let seq = case.x.seq_len();
        let window = case.layer.scores().window;
        let capacity = window.map_or(seq, |w| (w + 1).max(case.decode_from));
        for kernel in [KernelChoice::Auto, KernelChoice::Flash] {
            let layer = case.layer.clone().with_kernel(kernel);
            let whole = layer.forward(&case.x, case.start_pos, None).unwrap();
            let d_whole =
                case.check(&format!("{kernel:?} prefill"), &whole, "attn_output");
            let (decoded, cache) = case.decode(&layer, capacity).unwrap();
            let d_decode =
                case.check(&format!("{kernel:?} decode"), &decoded, "decode_output");
            if window.is_some() {
                assert!(capacity < seq && cache.dropped() > 0, "{name}: nothing dropped");
            }
            println!(
                "{name:15} {kernel:?}: max |ours - transformers| prefill {d_whole:.2e}, \
                 decode {d_decode:.2e} (cache of {capacity} rows for {seq} tokens)"
            );
        }
    }
}

/// The loader reads what transformers' config class parsed (meta.json's `hf_parsed`,
/// `layer_kind`, `window`, `softcap`, `scaling`), and builds the RoPE tables the model
/// handed this layer (`inv_freq`, `cos`, `sin`): Gemma 3's sliding layers with their own
/// base and never scaled, its full layers with their linear scaling, gpt-oss, Qwen3 and
/// Mistral with YaRN and its attention factor.
#[test]
fn the_loader_reads_what_transformers_parsed() {
    for name in case_names() {
        let case = Case::load(&name).unwrap();
        let (m, cfg, layer) = (&case.meta, &case.cfg, &case.layer);
        let p = &m["hf_parsed"];
        let n = |v: &Value| v.as_u64().unwrap() as usize;
        assert_eq!(cfg.model.model_type.name(), m["model_type"], "{name}");
        assert_eq!(cfg.hidden_size, n(&p["hidden_size"]), "{name}");
        assert_eq!(cfg.num_key_value_heads, n(&p["num_key_value_heads"]), "{name}");
        assert_eq!(cfg.head_dim, n(&p["head_dim"]), "{name}");
        assert_eq!(cfg.attention_bias, p["attention_bias"], "{name}");
        assert_eq!(
            cfg.model.query_pre_attn_scalar,
            p["query_pre_attn_scalar"].as_u64().map(|q| q as usize),
            "{name}"
        );
        if let Some((_, eps)) = cfg.model.qk_norm {
            assert_eq!(eps, p["rms_norm_eps"].as_f64().unwrap() as f32, "{name}");
        }
        let prefix = m["prefix"].as_str().unwrap();
        let kind = cfg.layer_kind(prefix).unwrap();
        let want_kind = match m["layer_kind"].as_str().unwrap() {
            "sliding" => LayerKind::Sliding,
            _ => LayerKind::Full,
        };
        assert_eq!(kind, want_kind, "{name}");
        let o = layer.scores();
        assert_eq!(o.window, m["window"].as_u64().map(|w| w as usize), "{name}");
        assert_eq!(o.softcap, m["softcap"].as_f64().map(|c| c as f32), "{name}");
        let scaling = m["scaling"].as_f64().unwrap() as f32;
        assert_eq!(o.scale_for(layer.head_dim()), scaling, "{name}: softmax scale");
        assert_eq!(o.sinks.is_some(), cfg.model.model_type == ModelType::GptOss);
        let norm = layer.qk_norm().map(|q| q.style);
        assert_eq!(norm, cfg.model.qk_norm.map(|(s, _)| s), "{name}");

        // RoPE: frequencies and the tables at the case's positions
        let rope = layer.rope().unwrap();
        let factor = p["rope_attention_factor"].as_f64().unwrap() as f32;
        assert_eq!(rope.attention_factor(), factor, "{name}: attention factor");
        let inv_freq = case.expected.tensor("inv_freq").unwrap();
        assert_eq!(rope.inv_freq(), &inv_freq.data[..], "{name}: inv_freq");
        let (cos, sin) =
            (case.expected.tensor("cos").unwrap(), case.expected.tensor("sin").unwrap());
        let (rows, width) = (cos.shape[0], cos.shape[1]);
        let half = layer.head_dim() / 2;
        let mut worst = 0f32;
        for t in 0..rows {
            for i in 0..half {
                let (c, s) = rope.cos_sin(case.start_pos + t, i).unwrap();
                // transformers' tables are (seq, head_dim), both halves alike, except
                // gpt-oss's (seq, head_dim / 2)
                for col in [i, i + half].into_iter().filter(|&col| col < width) {
                    worst = worst.max((c - cos.data[t * width + col]).abs());
                    worst = worst.max((s - sin.data[t * width + col]).abs());
                }
            }
        }
        assert!(worst <= TABLE_ATOL, "{name}: RoPE tables differ by {worst:e}");
        println!("{name:15} RoPE tables: max difference {worst:.2e}");
    }
}

/// A `gemma3` (multimodal) config.json keeps the text model's keys in `text_config`:
/// read there, it is the `gemma3_text` config, and runs the same layer.
#[test]
fn a_gemma3_config_reads_its_text_config() {
    for name in ["gemma3_sliding", "gemma3_full"] {
        let case = Case::load(name).unwrap();
        let path = variants_dir().join(name).join("config.json");
        let text: Value =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let wrapped = serde_json::json!({
            "model_type": "gemma3", "architectures": ["Gemma3ForConditionalGeneration"],
            "text_config": text, "vision_config": {"model_type": "siglip_vision_model"},
        });
        let cfg =
            HfLlamaConfig::from_json_str(&wrapped.to_string(), "gemma3.json").unwrap();
        assert_eq!(cfg, case.cfg, "{name}");
        // errors name the key under text_config
        let mut bad = wrapped.clone();
        bad["text_config"]["sliding_window"] = Value::from(-1);
        let e = HfLlamaConfig::from_json_str(&bad.to_string(), "g.json").unwrap_err();
        assert!(e.to_string().contains("key `text_config.sliding_window`"), "{e}");
        let e = HfLlamaConfig::from_json_str(r#"{"model_type": "gemma3"}"#, "g.json")
            .unwrap_err();
        assert!(e.to_string().contains("`text_config`"), "{e}");
    }
}

/// A case's config.json as JSON.
fn config_json(name: &str) -> Value {
    let path = variants_dir().join(name).join("config.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Gemma 3's linear scaling (`gemma3_full_linear`, factor 8 at base 1e6, head_dim 8),
/// against the frequencies and tables transformers built for the layer:
///
/// ```text
/// inv_freq = 1.0 / (1e6 ** (torch.arange(0, 8, 2, dtype=torch.int64).float() / 8))
/// inv_freq /= 8.0                       # _compute_linear_scaling_rope_parameters
/// cos = (position_ids.float() * inv_freq).cos()     # Gemma3RotaryEmbedding, factor 1
/// ```
///
/// The frequencies match bit for bit: the same f32 power as the unscaled RoPE, then one
/// f32 division. The tables within [`TABLE_ATOL`], at positions 20000 onwards. The
/// sliding layer of the same config (`gemma3_sliding_linear`) rotates with the local base
/// 1e4, unscaled.
#[test]
fn linear_scaling_matches_transformers_bit_for_bit() {
    let full = Case::load("gemma3_full_linear").unwrap();
    let scaling = full.cfg.model.linear.expect("a linear RoPE");
    assert_eq!(scaling, attention::mechanisms::rope::LinearScaling::GEMMA_3);
    let want = full.expected.tensor("inv_freq").unwrap();
    let head_dim = full.cfg.head_dim;
    assert_eq!(scaling.inv_freq(head_dim, 1e6).unwrap(), want.data, "inv_freq");
    let unscaled = rope_inv_freq(head_dim, 1e6).unwrap();
    let divided: Vec<f32> = unscaled.iter().map(|f| f / 8.0).collect();
    assert_eq!(divided, want.data, "θ_i / 8, one f32 division");
    assert_ne!(unscaled, want.data);

    let (seq, start) = (full.x.seq_len(), full.start_pos);
    let rope = Rope::with_linear_scaling(head_dim, start + seq, 1e6, scaling).unwrap();
    assert_eq!(rope.attention_factor(), 1.0);
    let cos = full.expected.tensor("cos").unwrap();
    let sin = full.expected.tensor("sin").unwrap();
    let half = head_dim / 2;
    let mut worst = 0f32;
    for t in 0..seq {
        for i in 0..half {
            let (c, s) = rope.cos_sin(start + t, i).unwrap();
            for col in [i, i + half] {
                worst = worst.max((c - cos.data[t * head_dim + col]).abs());
                worst = worst.max((s - sin.data[t * head_dim + col]).abs());
            }
        }
    }
    assert!(worst <= TABLE_ATOL, "linear RoPE tables differ by {worst:e}");

    let sliding = Case::load("gemma3_sliding_linear").unwrap();
    assert_eq!(sliding.cfg, full.cfg, "one config, two layers");
    let want = sliding.expected.tensor("inv_freq").unwrap();
    assert_eq!(rope_inv_freq(head_dim, 1e4).unwrap(), want.data, "sliding: unscaled");
    let rope = sliding.layer.rope().unwrap();
    assert_eq!(rope.inv_freq(), &want.data[..]);
}

/// The forms a hub config.json writes its RoPE in read the same as the nested
/// `rope_parameters` transformers 5.24 saves: Gemma 3 4B's `rope_theta`,
/// `rope_local_base_freq` and `rope_scaling` (linear, factor 8, full layers only), and
/// Qwen's documented `rope_scaling` YaRN beside a top-level `rope_theta`.
#[test]
fn hub_forms_of_the_scaled_ropes_read_as_the_nested_ones() {
    let case = Case::load("gemma3_full_linear").unwrap();
    let mut hub = config_json("gemma3_full_linear");
    let m = hub.as_object_mut().unwrap();
    m.remove("rope_parameters");
    m.insert("rope_theta".into(), Value::from(1e6));
    m.insert("rope_local_base_freq".into(), Value::from(1e4));
    let linear = serde_json::json!({"factor": 8.0, "rope_type": "linear"});
    m.insert("rope_scaling".into(), linear);
    let cfg = HfLlamaConfig::from_json_str(&hub.to_string(), "gemma3-4b.json").unwrap();
    assert_eq!(cfg, case.cfg);
    assert!(cfg.warnings().is_empty(), "{:?}", cfg.warnings());

    let case = Case::load("qwen3_yarn").unwrap();
    let mut hub = config_json("qwen3_yarn");
    let m = hub.as_object_mut().unwrap();
    let mut rope = m.remove("rope_parameters").unwrap();
    let theta = rope.as_object_mut().unwrap().remove("rope_theta").unwrap();
    m.insert("rope_theta".into(), theta);
    m.insert("rope_scaling".into(), rope);
    let cfg = HfLlamaConfig::from_json_str(&hub.to_string(), "qwen3.json").unwrap();
    assert_eq!(cfg, case.cfg);
    let yarn = cfg.model.yarn.expect("YaRN");
    assert_eq!((yarn.factor, yarn.original_max_position_embeddings), (4.0, 32768));
}

/// A fresh scratch folder for one test.
fn scratch(test: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("variants_hf").join(test);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Case `name`'s weights, with tensor names mapped by `rename` (`None` drops one) and
/// `extra` tensors added, written to `path` and opened.
fn rewritten(
    name: &str,
    path: &Path,
    rename: impl Fn(&str) -> Option<String>,
    extra: &[(&str, Tensor)],
) -> TensorFile {
    let file =
        TensorFile::open(variants_dir().join(name).join("model.safetensors")).unwrap();
    let mut tensors: Vec<(String, Tensor)> = file
        .names()
        .unwrap()
        .iter()
        .filter_map(|n| rename(n).map(|to| (to, file.tensor(n).unwrap())))
        .collect();
    tensors.extend(extra.iter().map(|(n, t)| (n.to_string(), t.clone())));
    let refs: Vec<(&str, &Tensor)> =
        tensors.iter().map(|(n, t)| (n.as_str(), t)).collect();
    save_tensors(path, &refs).unwrap();
    TensorFile::open(path).unwrap()
}

/// Which layer a prefix names matters where layers differ: a prefix without `layers.L.`
/// or past `layer_types` is refused there, and fine for Llama and Mistral.
#[test]
fn the_layer_index_comes_from_the_prefix() {
    assert_eq!(hf::layer_index("model.layers.12.self_attn.").unwrap(), Some(12));
    assert_eq!(
        hf::layer_index("model.language_model.layers.3.self_attn.").unwrap(),
        Some(3)
    );
    assert_eq!(hf::layer_index("self_attn.").unwrap(), None);
    assert_eq!(hf::layer_index("model.layers.x.self_attn.").unwrap(), None);
    assert!(hf::layer_index("model.layers.99999999999999999999999.").is_err());

    let dir = scratch("layer_index");
    for (name, refused) in [("gemma2_sliding", true), ("mistral_window", false)] {
        let case = Case::load(name).unwrap();
        let prefix = case.meta["prefix"].as_str().unwrap().to_string();
        let path = dir.join(format!("{name}.safetensors"));
        let file = rewritten(name, &path, |n| Some(n.replace(&prefix, "attn.")), &[]);
        let got = case.cfg.load_attention(&file, "attn.");
        if refused {
            let e = got.unwrap_err().to_string();
            assert!(e.contains("the prefix `attn.` names no layer"), "{e}");
            assert!(e.contains("gemma2"), "{e}");
        } else {
            let layer = got.unwrap();
            assert_eq!(layer.scores().window, case.layer.scores().window);
        }
    }
    // layer 7 of a two-layer Gemma 2
    let case = Case::load("gemma2_full").unwrap();
    let path = dir.join("layer7.safetensors");
    let file = rewritten(
        "gemma2_full",
        &path,
        |n| Some(n.replace("layers.1.", "layers.7.")),
        &[],
    );
    let e = case.cfg.load_attention(&file, "model.layers.7.self_attn.").unwrap_err();
    assert!(e.to_string().contains("names layer 7, but layer_types has 2 layers"), "{e}");
}

/// Tensors are checked against the model: a QK-norm, sink or bias tensor of the wrong
/// length is a shape error naming it; a missing one is named; one the model does not
/// have (a Qwen3 checkpoint under a Llama config.json) is refused, not ignored.
#[test]
fn model_tensors_are_checked() {
    let dir = scratch("tensors");
    let case = Case::load("qwen3_qknorm").unwrap();
    let prefix = case.meta["prefix"].as_str().unwrap();
    let q_norm = format!("{prefix}q_norm.weight");
    let short = Tensor::new(vec![7], vec![1.0; 7]).unwrap();
    let file = rewritten(
        "qwen3_qknorm",
        &dir.join("short_norm.safetensors"),
        |n| (n != q_norm).then(|| n.to_string()),
        &[(q_norm.as_str(), short)],
    );
    let e = case.cfg.load_attention(&file, prefix).unwrap_err();
    assert!(matches!(e, AttnError::Shape { .. }), "{e:?}");
    assert!(
        e.to_string().contains("q_norm.weight` (head_dim)")
            && e.to_string().contains("expected (10), got (7)"),
        "{e}"
    );
    let file = rewritten(
        "qwen3_qknorm",
        &dir.join("no_norm.safetensors"),
        |n| (n != q_norm).then(|| n.to_string()),
        &[],
    );
    let e = case.cfg.load_attention(&file, prefix).unwrap_err().to_string();
    assert!(e.contains(&format!("missing tensor `{q_norm}`")), "{e}");
    // the same weights under a Llama config.json: the norms say it is not Llama
    let mut llama = case.cfg.clone();
    llama.model = hf::ModelFields::llama();
    let weights =
        open_layer_tensors(variants_dir().join("qwen3_qknorm/model.safetensors"), prefix)
            .unwrap();
    let e = llama.load_attention(&weights, prefix).unwrap_err().to_string();
    assert!(
        e.contains("q_norm.weight` is present, but model_type `llama` has no QK-norm"),
        "{e}"
    );

    let case = Case::load("gpt_oss_sinks").unwrap();
    let prefix = case.meta["prefix"].as_str().unwrap();
    let sinks = format!("{prefix}sinks");
    let wrong = Tensor::new(vec![2, 3], vec![0.0; 6]).unwrap();
    let file = rewritten(
        "gpt_oss_sinks",
        &dir.join("sinks.safetensors"),
        |n| (n != sinks).then(|| n.to_string()),
        &[(sinks.as_str(), wrong)],
    );
    let e = case.cfg.load_attention(&file, prefix).unwrap_err().to_string();
    assert!(
        e.contains("sinks` (num_attention_heads)")
            && e.contains("expected (6), got (2, 3)"),
        "{e}"
    );
    let file = rewritten(
        "gpt_oss_sinks",
        &dir.join("no_bias.safetensors"),
        |n| (!n.ends_with("o_proj.bias")).then(|| n.to_string()),
        &[],
    );
    let e = case.cfg.load_attention(&file, prefix).unwrap_err().to_string();
    assert!(e.contains("o_proj.bias") && e.contains("attention_bias = true"), "{e}");
    // Mistral has no biases, whatever config.json says
    let case = Case::load("mistral_window").unwrap();
    let bias = Tensor::new(vec![48], vec![0.0; 48]).unwrap();
    let file = rewritten(
        "mistral_window",
        &dir.join("mistral_bias.safetensors"),
        |n| Some(n.to_string()),
        &[("model.layers.0.self_attn.q_proj.bias", bias)],
    );
    let e = case.cfg.load_attention(&file, "model.layers.0.self_attn.").unwrap_err();
    assert!(e.to_string().contains("MistralAttention has no biases"), "{e}");
}
