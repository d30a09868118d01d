//! Chapter 12's multi-head latent attention, loaded from config.json and safetensors by
//! the crate's Hugging Face loader (`HfLlamaConfig::load_mla`), against transformers 5.24's
//! `DeepseekV3Attention` (fixtures `variants/deepseek_v3_*`) and `DeepseekV2Attention`
//! (`variants/deepseek_v2_mla`), made by `scripts/gen_variant_fixtures.py`, versions in
//! each meta.json: the whole sequence and a decode through the latent cache, by both
//! paths, and the cache's contents against what transformers' cache holds.
//!
//! Each case's reference is `DeepseekV3Model` (`DeepseekV2Model`) in eager mode, f32, one
//! CPU thread, the layer's input swapped in by a hook:
//!
//! ```text
//! config = DeepseekV3Config.from_pretrained(case_dir); config._attn_implementation = "eager"
//! model = DeepseekV3Model(config); model.layers[1].self_attn.load_state_dict(weights)
//! attn_output:   model(inputs_embeds=x, position_ids=arange(start_pos, start_pos + seq))
//! decode_output: tokens 0..decode_from as one forward, then one token per forward,
//!                through DynamicCache(config=config)
//! latent_cache, rope_key_cache: that cache's keys and values for the layer at the end
//! ```
//!
//! **Tolerance.** PyTorch's `assert_close` default for f32 (rtol 1.3e-6, atol 1e-5),
//! [`Tolerance::F32`], for outputs (measured: about 1e-7 to 3e-7); the cached latents and
//! RoPE keys at `CACHE_ATOL` = 1e-5, the same absolute bound: they are one projection, one
//! RMSNorm and one rotation of the input, each summed in another order than PyTorch's.

use std::path::PathBuf;

use attention::hf::{MlaFields, ModelType};
use attention::support::io::save_tensors;
use attention::*;
use serde_json::Value;

const CASES: [&str; 5] = [
    "deepseek_v3_mla",
    "deepseek_v3_no_q_lora",
    "deepseek_v3_yarn",
    "deepseek_v3_bias",
    "deepseek_v2_mla",
];

/// The cached latents and RoPE keys against transformers' cache (see the module's
/// comment).
const CACHE_ATOL: f32 = 1e-5;

/// cos and sin of the same f32 angle by glibc and PyTorch, as in `variants_hf.rs`: about 2
/// ulps of values below 1 (DeepSeek-V3's YaRN attention factor is exactly 1).
const TABLE_ATOL: f32 = 2.5e-7;

fn fixture(case: &str) -> HfFixture {
    HfFixture::load(&format!("variants/{case}")).unwrap()
}

fn meta(fx: &HfFixture) -> Value {
    serde_json::from_str(&std::fs::read_to_string(fx.dir.join("meta.json")).unwrap())
        .unwrap()
}

/// A fresh scratch folder for one test.
fn scratch(test: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("mla_hf").join(test);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The case's config.json as JSON, to edit.
fn config_json(case: &str) -> Value {
    let path = fixture(case).dir.join("config.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Asserts `ours[(t, c)]` against row `(b, t)` of a `(batch, 1, seq, width)` tensor,
/// column `theirs_col(c)`, within [`CACHE_ATOL`].
fn check_cache(
    what: &str,
    ours: nalgebra::DMatrixView<'_, f32>,
    theirs: &Tensor,
    b: usize,
    theirs_col: impl Fn(usize) -> usize,
) {
    let [_, _, seq, width] = theirs.shape[..] else { panic!("{what}: not 4-D") };
    assert_eq!(ours.shape(), (seq, width), "{what}");
    for t in 0..seq {
        for c in 0..width {
            let want = theirs.data[(b * seq + t) * width + theirs_col(c)];
            let got = ours[(t, c)];
            assert!(
                (got - want).abs() <= CACHE_ATOL,
                "{what}: sequence {b}, token {t}, column {c}: got {got}, want {want}, \
                 difference {}",
                (got - want).abs()
            );
        }
    }
}

/// Every case, by both paths: the whole sequence, and a prefill then one token at a
/// time through the latent cache, against transformers; then the cache against
/// transformers' own: the normalized latents as they are, the rotated RoPE keys in
/// transformers' order (with `rope_interleave`, `DeepseekV3Attention` rotates pairs
/// `(2i, 2i + 1)` but writes them de-interleaved, `[x[0::2] | x[1::2]]`; q and k
/// alike, so the scores do not change; `DeepseekV2Attention`'s complex product keeps
/// them in place).
#[test]
fn mla_matches_transformers_whole_and_decoded_by_both_paths() {
    for case in CASES {
        let fx = fixture(case);
        let layer = fx.mla_layer().unwrap();
        let x = fx.input().unwrap();
        let want = fx.expected("attn_output").unwrap();
        let want_decoded = fx.expected("decode_output").unwrap();
        let (start_pos, decode_from) = (fx.start_pos, fx.decode_from);
        let hf = TensorFile::open(fx.dir.join("expected.safetensors")).unwrap();
        let (latents, rope_keys) =
            (hf.tensor("latent_cache").unwrap(), hf.tensor("rope_key_cache").unwrap());
        let half = layer.shape().qk_rope_head_dim / 2;
        let deinterleaved = layer.rope().layout() == RopeLayout::Interleaved
            && fx.config.model.model_type == ModelType::DeepseekV3;
        for path in [MlaPath::Expanded, MlaPath::Absorbed] {
            let l = layer.clone().with_path(path);
            let whole = l.forward(&x, start_pos, None).unwrap();
            assert_batch_close(&whole, &want, Tolerance::F32);
            let mut cache = l.new_cache(x.batch_size(), x.seq_len()).unwrap();
            let prefill = x.narrow_seq(0, decode_from).unwrap();
            let mut outs =
                vec![l.forward(&prefill, start_pos, Some(&mut cache)).unwrap()];
            for t in decode_from..x.seq_len() {
                let token = x.narrow_seq(t, 1).unwrap();
                outs.push(l.forward(&token, start_pos + t, Some(&mut cache)).unwrap());
            }
            let decoded = Batch::concat_seq(&outs).unwrap();
            assert_batch_close(&decoded, &want_decoded, Tolerance::F32);
            assert_eq!(cache.len(), x.seq_len());
            for b in 0..x.batch_size() {
                let what = format!("{case} {path:?} latent cache");
                check_cache(&what, cache.latents(b).unwrap(), &latents, b, |c| c);
                // ours keeps pair i at (2i, 2i + 1); DeepseekV3Attention's cache at
                // (i, half + i)
                let col =
                    |c: usize| if deinterleaved { c / 2 + (c % 2) * half } else { c };
                let what = format!("{case} {path:?} RoPE key cache");
                check_cache(&what, cache.rope_keys(b).unwrap(), &rope_keys, b, col);
            }
            let d = max_abs_diff(&whole.to_row_major(), &want.to_row_major());
            let dd = max_abs_diff(&decoded.to_row_major(), &want_decoded.to_row_major());
            println!("{case:22} {path:?}: whole {d:.2e}, decoded {dd:.2e}");
        }
    }
}

/// The loader reads what `DeepseekV3Config` (`DeepseekV2Config`) parsed (meta.json's
/// `mla` and `hf_parsed`), sets the softmax scale transformers' attention set
/// (`scaling`, a Python float, rounded to f32 as torch does), and builds the RoPE tables
/// the model handed the layer (`inv_freq` bit for bit, `cos`/`sin` at [`TABLE_ATOL`]):
/// `qk_rope_head_dim` wide, or for DeepSeek-V2 the real and imaginary parts of its
/// complex table, `qk_rope_head_dim / 2` wide.
#[test]
fn the_loader_reads_what_transformers_parsed() {
    for case in CASES {
        let fx = fixture(case);
        let (cfg, m) = (&fx.config, meta(&fx));
        let (mla, p) = (&m["mla"], &m["hf_parsed"]);
        let n = |v: &Value| v.as_u64().unwrap() as usize;
        assert_eq!(cfg.model.model_type.name(), m["model_type"], "{case}");
        assert!(cfg.model.model_type.uses_mla(), "{case}");
        let fields = cfg.model.mla.unwrap();
        let layout = match mla["rope_interleave"].as_bool().unwrap() {
            true => RopeLayout::Interleaved,
            false => RopeLayout::SplitHalves,
        };
        let want = MlaFields {
            q_lora_rank: mla["q_lora_rank"].as_u64().map(|r| r as usize),
            kv_lora_rank: n(&mla["kv_lora_rank"]),
            qk_nope_head_dim: n(&mla["qk_nope_head_dim"]),
            qk_rope_head_dim: n(&mla["qk_rope_head_dim"]),
            v_head_dim: n(&mla["v_head_dim"]),
            rope_layout: layout,
        };
        assert_eq!(fields, want, "{case}");
        // transformers' head_dim is qk_rope_head_dim; the heads are qk_head_dim wide
        assert_eq!(cfg.head_dim, n(&mla["config_head_dim"]), "{case}");
        assert_eq!(cfg.mla_shape().unwrap().qk_head_dim(), n(&mla["qk_head_dim"]));
        assert_eq!(cfg.num_key_value_heads, n(&p["num_key_value_heads"]), "{case}");
        assert_eq!(cfg.attention_bias, p["attention_bias"], "{case}");
        assert!(cfg.warnings().is_empty(), "{case}: {:?}", cfg.warnings());

        let layer = fx.mla_layer().unwrap();
        let scaling = mla["scaling"].as_f64().unwrap() as f32;
        assert_eq!(layer.scale(), scaling, "{case}: softmax scale");
        assert_eq!(cfg.mla_scale().unwrap(), scaling, "{case}");
        let rope = layer.rope();
        assert_eq!((rope.head_dim(), rope.layout()), (want.qk_rope_head_dim, layout));
        let factor = p["rope_attention_factor"].as_f64().unwrap() as f32;
        assert_eq!(rope.attention_factor(), factor, "{case}: attention factor");
        let hf = TensorFile::open(fx.dir.join("expected.safetensors")).unwrap();
        let inv_freq = hf.tensor("inv_freq").unwrap();
        assert_eq!(rope.inv_freq(), &inv_freq.data[..], "{case}: inv_freq");
        // transformers' tables are (seq, qk_rope_head_dim), both halves alike, except
        // DeepSeek-V2's (seq, qk_rope_head_dim / 2)
        let (cos, sin) = (hf.tensor("cos").unwrap(), hf.tensor("sin").unwrap());
        let (rows, width, half) = (cos.shape[0], cos.shape[1], want.qk_rope_head_dim / 2);
        assert!(width == 2 * half || width == half, "{case}: table width {width}");
        let mut worst = 0f32;
        for t in 0..rows {
            for i in 0..half {
                let (c, s) = rope.cos_sin(fx.start_pos + t, i).unwrap();
                for col in [i, i + half].into_iter().filter(|&col| col < width) {
                    worst = worst.max((c - cos.data[t * width + col]).abs());
                    worst = worst.max((s - sin.data[t * width + col]).abs());
                }
            }
        }
        assert!(worst <= TABLE_ATOL, "{case}: RoPE tables differ by {worst:e}");
    }
}

/// `load_attention` refuses a DeepSeek config and names `load_mla`; `load_mla` refuses a
/// grouped-query model and names `load_attention`; `AttentionConfig` cannot describe MLA.
#[test]
fn each_loader_refuses_the_other_kind_of_layer() {
    let fx = fixture("deepseek_v3_mla");
    let e = fx.layer().unwrap_err();
    assert!(matches!(e, AttnError::Unsupported(_)), "{e:?}");
    let e = e.to_string();
    assert!(e.contains("model_type `deepseek_v3` is multi-head latent attention"), "{e}");
    assert!(e.contains("load_mla"), "{e}");
    let e = fx.config.attention_config().unwrap_err().to_string();
    assert!(e.contains("load_mla"), "{e}");

    let gqa = HfFixture::load("variants/qwen3_qknorm").unwrap();
    let e = gqa.mla_layer().unwrap_err();
    assert!(matches!(e, AttnError::Unsupported(_)), "{e:?}");
    assert!(
        e.to_string().contains("model_type `qwen3` has no multi-head latent attention")
            && e.to_string().contains("load_attention"),
        "{e}"
    );
    assert!(gqa.config.mla_scale().is_err());
}

/// RoPE tables are built for the positions asked for, no more: a run past them is a
/// typed error, and tables past `max_position_embeddings` are refused.
#[test]
fn rope_tables_are_bounded_by_the_positions_asked_for() {
    let fx = fixture("deepseek_v3_yarn"); // positions 5000..5011
    let weights =
        open_layer_tensors(fx.dir.join("model.safetensors"), &fx.prefix).unwrap();
    let end = fx.start_pos + fx.input().unwrap().seq_len();
    let layer = fx.config.load_mla_for_positions(&weights, &fx.prefix, end).unwrap();
    let whole = layer.forward(&fx.input().unwrap(), fx.start_pos, None).unwrap();
    assert_batch_close(&whole, &fx.expected("attn_output").unwrap(), Tolerance::F32);
    let short = fx.config.load_mla_for_positions(&weights, &fx.prefix, end - 1).unwrap();
    let e = short.forward(&fx.input().unwrap(), fx.start_pos, None).unwrap_err();
    assert!(matches!(e, AttnError::PositionOutOfRange { .. }), "{e:?}");
    let past = fx.config.max_position_embeddings + 1;
    let e = fx.config.load_mla_for_positions(&weights, &fx.prefix, past).unwrap_err();
    assert!(matches!(e, AttnError::PositionOutOfRange { .. }), "{e:?}");
}

/// `deepseek_v2` is read as transformers' `DeepseekV2Config` reads it, and its layer is
/// DeepSeek-V3's with `rope_interleave` true: `DeepseekV2Attention` computes the same
/// projections, norms, scale and YaRN, and always rotates interleaved pairs (its complex
/// `view_as_complex` rotation), whatever `rope_interleave` says; it ignores `head_dim`.
/// Its class defaults `num_key_value_heads` to the head count, and refuses a
/// `hidden_size` that the heads do not divide.
#[test]
fn deepseek_v2_reads_as_v3_with_interleaved_rope() {
    let v2 = |case: &str, edit: &dyn Fn(&mut Value)| {
        let mut c = config_json(case);
        c["model_type"] = "deepseek_v2".into();
        edit(&mut c);
        HfLlamaConfig::from_json_str(&c.to_string(), "v2/config.json")
    };
    for case in ["deepseek_v3_mla", "deepseek_v3_yarn", "deepseek_v3_bias"] {
        let fx = fixture(case);
        let cfg = v2(case, &|_| {}).unwrap();
        assert_eq!(cfg.model.model_type, ModelType::DeepseekV2);
        assert_eq!(cfg.model.mla, fx.config.model.mla, "{case}");
        let weights =
            open_layer_tensors(fx.dir.join("model.safetensors"), &fx.prefix).unwrap();
        let layer = cfg.load_mla(&weights, &fx.prefix).unwrap();
        assert_eq!(layer, fx.mla_layer().unwrap(), "{case}: the same layer");
        assert!(cfg.warnings().is_empty(), "{case}: {:?}", cfg.warnings());
    }
    // rope_interleave false: DeepseekV2Attention interleaves anyway, and we say so
    let cfg = v2("deepseek_v3_no_q_lora", &|_| {}).unwrap();
    assert_eq!(cfg.model.mla.unwrap().rope_layout, RopeLayout::Interleaved);
    let w = cfg.warnings();
    assert!(w.len() == 1 && w[0].contains("DeepseekV2Attention always rotates"), "{w:?}");
    // head_dim is ignored; num_key_value_heads defaults to the head count
    let cfg = v2("deepseek_v3_mla", &|c| {
        c["head_dim"] = 16.into();
        c.as_object_mut().unwrap().remove("num_key_value_heads");
    })
    .unwrap();
    assert_eq!((cfg.head_dim, cfg.num_key_value_heads), (8, 4));
    let e = v2("deepseek_v3_mla", &|c| c["hidden_size"] = 50.into()).unwrap_err();
    assert!(
        matches!(&e, AttnError::InFile { source, .. }
        if matches!(**source, AttnError::NotDivisible { .. })),
        "{e:?}"
    );
}

/// The checkpoint is checked against config.json: a tensor of the other query path, a
/// bias on a projection DeepSeek gives none, a missing or misshapen tensor, each named.
#[test]
fn checkpoint_tensors_are_checked_against_the_config() {
    let dir = scratch("tensors");
    let fx = fixture("deepseek_v3_mla");
    let p = fx.prefix.clone();
    let file = TensorFile::open(fx.dir.join("model.safetensors")).unwrap();
    let rewrite = |name: &str, drop: &str, extra: Vec<(String, Tensor)>| {
        let mut tensors: Vec<(String, Tensor)> = file
            .names()
            .unwrap()
            .into_iter()
            .filter(|n| n != drop)
            .map(|n| {
                let t = file.tensor(&n).unwrap();
                (n, t)
            })
            .collect();
        tensors.extend(extra);
        let refs: Vec<(&str, &Tensor)> =
            tensors.iter().map(|(n, t)| (n.as_str(), t)).collect();
        let path = dir.join(format!("{name}.safetensors"));
        save_tensors(&path, &refs).unwrap();
        TensorFile::open(&path).unwrap()
    };
    let zeros = |shape: &[usize]| {
        Tensor::new(shape.to_vec(), vec![0.0; shape.iter().product()]).unwrap()
    };
    // a q_proj beside q_lora_rank = 24: the checkpoint is another configuration's
    let w = rewrite("q_proj", "", vec![(format!("{p}q_proj.weight"), zeros(&[88, 48]))]);
    let e = fx.config.load_mla(&w, &p).unwrap_err().to_string();
    assert!(
        e.contains("q_proj.weight` is present, but config.json has q_lora_rank = 24")
    );
    // the q_lora_rank = null case's weights under this config: no q_a_proj
    let other = fixture("deepseek_v3_no_q_lora");
    let w = open_layer_tensors(other.dir.join("model.safetensors"), &p).unwrap();
    let e = fx.config.load_mla(&w, &p).unwrap_err().to_string();
    assert!(e.contains("q_proj.weight` is present"), "{e}");
    let e = other.config.load_mla(&file, &p).unwrap_err().to_string();
    assert!(
        e.contains("q_a_proj.weight` is present, but config.json has q_lora_rank = null")
    );
    // kv_b_proj never has a bias
    let bias = vec![(format!("{p}kv_b_proj.bias"), zeros(&[96]))];
    let e = fx.config.load_mla(&rewrite("kv_b_bias", "", bias), &p).unwrap_err();
    assert!(e.to_string().contains("DeepseekV3Attention's kv_b_proj has no bias"), "{e}");
    // o_proj's bias without attention_bias
    let bias = vec![(format!("{p}o_proj.bias"), zeros(&[48]))];
    let e = fx.config.load_mla(&rewrite("o_bias", "", bias), &p).unwrap_err();
    assert!(e.to_string().contains("attention_bias = false"), "{e}");
    // the bias case without its q_a_proj bias
    let biased = fixture("deepseek_v3_bias");
    let name = format!("{p}q_a_proj.bias");
    let bf = TensorFile::open(biased.dir.join("model.safetensors")).unwrap();
    let kept: Vec<(String, Tensor)> = bf
        .names()
        .unwrap()
        .into_iter()
        .filter(|n| *n != name)
        .map(|n| {
            let t = bf.tensor(&n).unwrap();
            (n, t)
        })
        .collect();
    let refs: Vec<(&str, &Tensor)> = kept.iter().map(|(n, t)| (n.as_str(), t)).collect();
    let path = dir.join("no_q_a_bias.safetensors");
    save_tensors(&path, &refs).unwrap();
    let e = biased.config.load_mla(&TensorFile::open(&path).unwrap(), &p).unwrap_err();
    assert!(e.to_string().contains(&format!("missing tensor `{name}`")), "{e}");
    // a misshapen kv_b_proj: a shape error naming the tensor and the keys
    let name = format!("{p}kv_b_proj.weight");
    let w = rewrite("kv_b_shape", &name, vec![(name.clone(), zeros(&[95, 20]))]);
    let e = fx.config.load_mla(&w, &p).unwrap_err();
    assert!(matches!(e, AttnError::Shape { .. }), "{e:?}");
    let e = e.to_string();
    assert!(
        e.contains("kv_b_proj.weight` (num_attention_heads·(qk_nope_head_dim + v_head_dim), kv_lora_rank)")
            && e.contains("expected (96, 20), got (95, 20)"),
        "{e}"
    );
    // a missing norm
    let name = format!("{p}kv_a_layernorm.weight");
    let e = fx.config.load_mla(&rewrite("no_norm", &name, vec![]), &p).unwrap_err();
    assert!(e.to_string().contains(&format!("missing tensor `{name}`")), "{e}");
}

/// `MlaShape::DEEPSEEK_V3` (chapter 12's memory table) is DeepSeek-V3's config as
/// transformers serializes it (`fixtures/configs/deepseek_v3.json`, written by
/// `scripts/gen_variant_fixtures.py`), read by the crate's loader; so is its softmax
/// scale, `192^-1/2 · (0.1 · ln 40 + 1)²`.
#[test]
fn the_deepseek_v3_preset_is_its_real_config() {
    let path = format!("{}/configs/deepseek_v3.json", attention::FIXTURE_DIR);
    let cfg = attention::HfLlamaConfig::from_file(path).unwrap();
    assert_eq!(cfg.mla_shape().unwrap(), MlaShape::DEEPSEEK_V3);
    let g = yarn_get_mscale(40.0, 1.0);
    let want = (192f64.powf(-0.5) * g * g) as f32;
    assert_eq!(cfg.mla_scale().unwrap(), want);
}
