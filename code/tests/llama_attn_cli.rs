//! The `llama-attn` binary on the Hugging Face fixtures (`scripts/gen_hf_fixtures.py`) and on bad input.
//!
//! Outputs are compared with transformers' `LlamaAttention` output under PyTorch's f32 `assert_close`
//! default (rtol 1.3e-6, atol 1e-5), as in `hf_reference.rs`, which explains why that holds even at
//! position 131 071. Bad input must give exit code 1 (data) or 2 (usage), exactly one line on stderr
//! that starts with `llama-attn: error:` and names the problem, and never a panic.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use attention::{Batch, TensorFile, Tolerance, compare};
use serde_json::Value;

const TOL: Tolerance = Tolerance::F32;
const BIN: &str = env!("CARGO_BIN_EXE_llama-attn");

fn case_dir(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hf").join(name)
}

fn meta(name: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(case_dir(name).join("meta.json")).unwrap()).unwrap()
}

/// A fresh scratch folder for one test.
fn scratch(test: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("llama_attn_cli").join(test);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn run(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().expect("the llama-attn binary runs")
}

/// The arguments that run case `name` as the generator did, writing to `out`.
fn case_args(name: &str, out: &Path) -> Vec<String> {
    let dir = case_dir(name);
    let m = meta(name);
    let p = |f: &str| dir.join(f).display().to_string();
    vec![
        "--config".into(),
        p("config.json"),
        "--weights".into(),
        p("model.safetensors"),
        "--prefix".into(),
        m["prefix"].as_str().unwrap().into(),
        "--input".into(),
        p("input.safetensors"),
        "--output".into(),
        out.display().to_string(),
        "--start-pos".into(),
        m["start_pos"].to_string(),
    ]
}

/// Runs `args`, expects success, and checks the written `attn_output` against the case's expected rows.
fn check_output(name: &str, args: &[String], out: &Path) {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let o = run(&args);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{name}: exit {:?}, stderr: {stderr}", o.status.code());
    assert!(stderr.is_empty(), "{name}: unexpected stderr: {stderr}");
    assert!(String::from_utf8_lossy(&o.stdout).starts_with("attn_output ("), "{name}");
    let got = TensorFile::open(out).unwrap().batch("attn_output").unwrap();
    let input =
        TensorFile::open(case_dir(name).join("input.safetensors")).unwrap().batch("hidden_states").unwrap();
    assert_eq!(got.shape(), input.shape(), "{name}: output shape = input shape");
    let from = meta(name)["expected_from"].as_u64().unwrap() as usize;
    let got: Batch = got.narrow_seq(from, got.seq_len() - from).unwrap();
    let want =
        TensorFile::open(case_dir(name).join("expected.safetensors")).unwrap().batch("attn_output").unwrap();
    if let Err(m) = compare(&got.to_row_major(), &want.to_row_major(), &want.shape(), TOL) {
        panic!("{name} ({}): {m}", args.join(" "));
    }
}

/// Every case, one full forward: MHA/GQA/MQA, biases, f16/bf16 weights, bf16 input, llama3 scaling,
/// start positions up to 131 064, a non-default prefix (`model.layers.3.self_attn.`).
#[test]
fn every_case_matches_transformers() {
    let dir = scratch("every_case");
    for name in common::hf_cases() {
        let name = name.as_str();
        let out = dir.join(format!("{name}.safetensors"));
        check_output(name, &case_args(name, &out), &out);
    }
}

/// `--decode-from K`: prefill K tokens, then one token at a time through the KV cache, from the case's
/// start position: the same numbers as the full forward (and transformers).
#[test]
fn decode_from_matches_the_full_forward() {
    let dir = scratch("decode_from");
    for (name, k) in [
        ("mha", 0),
        ("gqa", 4),
        ("mqa_bias_f16", 6),
        ("llama31_end_bf16", 1),
        ("llama32_end", 5),
        ("llama32_long_span", 4090),
    ] {
        let out = dir.join(format!("{name}_{k}.safetensors"));
        let mut args = case_args(name, &out);
        args.extend(["--decode-from".to_string(), k.to_string()]);
        check_output(name, &args, &out);
        let summary =
            String::from_utf8_lossy(&run(&args.iter().map(String::as_str).collect::<Vec<_>>()).stdout)
                .into_owned();
        assert!(summary.contains(&format!("prefill {k} + ")), "{name}: {summary}");
    }
}

/// The default prefix is layer 0's (`model.layers.0.self_attn.`), and the sharded-checkpoint index
/// (`model.safetensors.index.json`) is followed to the shard that holds the layer.
#[test]
fn default_prefix_and_sharded_index() {
    let dir = scratch("prefix_index");
    let out = dir.join("gqa.safetensors");
    let args: Vec<String> = case_args("gqa", &out);
    let without_prefix: Vec<String> =
        args.iter().enumerate().filter(|(i, _)| !(4..6).contains(i)).map(|(_, a)| a.clone()).collect();
    check_output("gqa", &without_prefix, &out);

    // an index whose weight_map sends layer 0 to a shard in the same folder
    std::fs::copy(case_dir("gqa").join("model.safetensors"), dir.join("model-00002-of-00002.safetensors"))
        .unwrap();
    let names =
        ["q_proj", "k_proj", "v_proj", "o_proj"].map(|p| format!("model.layers.0.self_attn.{p}.weight"));
    let mut map = serde_json::Map::new();
    for n in names {
        map.insert(n, Value::from("model-00002-of-00002.safetensors"));
    }
    map.insert("model.embed_tokens.weight".into(), Value::from("model-00001-of-00002.safetensors"));
    let index = serde_json::json!({"metadata": {"total_size": 0}, "weight_map": map});
    let index_path = dir.join("model.safetensors.index.json");
    std::fs::write(&index_path, index.to_string()).unwrap();
    let mut args = without_prefix.clone();
    args[3] = index_path.display().to_string();
    check_output("gqa", &args, &out);
}

#[test]
fn help_explains_the_command() {
    for flag in ["--help", "-h"] {
        let o = run(&[flag]);
        assert!(o.status.success());
        let text = String::from_utf8_lossy(&o.stdout);
        for needle in [
            "Usage:",
            "--config",
            "--weights",
            "--prefix",
            "--input",
            "--output",
            "--start-pos",
            "--decode-from",
            "hidden_states",
            "attn_output",
            "Exit status",
        ] {
            assert!(text.contains(needle), "--help lacks {needle}");
        }
    }
}

/// Runs `args` and checks: exit code `code`, nothing on stdout, exactly one stderr line starting with
/// `llama-attn: error:` and containing every `needle`, no panic.
#[track_caller]
fn assert_fails(args: &[&str], code: i32, needles: &[&str]) {
    let o = run(args);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(code), "args {args:?}: stderr {stderr}");
    assert!(o.stdout.is_empty(), "args {args:?}: stdout {}", String::from_utf8_lossy(&o.stdout));
    assert!(!stderr.contains("panicked"), "args {args:?}: {stderr}");
    assert_eq!(stderr.lines().count(), 1, "args {args:?}: not one line: {stderr}");
    assert!(stderr.starts_with("llama-attn: error: "), "{stderr}");
    for needle in needles {
        assert!(stderr.contains(needle), "args {args:?}: stderr lacks {needle:?}: {stderr}");
    }
}

#[test]
fn bad_usage_exits_with_2() {
    let dir = scratch("usage");
    let out = dir.join("y.safetensors").display().to_string();
    let cfg = case_dir("gqa").join("config.json").display().to_string();
    let w = case_dir("gqa").join("model.safetensors").display().to_string();
    let x = case_dir("gqa").join("input.safetensors").display().to_string();
    let full = ["--config", &cfg, "--weights", &w, "--input", &x, "--output", &out];
    assert_fails(&[], 2, &["missing --config"]);
    assert_fails(&full[..6], 2, &["missing --output"]);
    assert_fails(&["--frobnicate"], 2, &["--frobnicate"]);
    assert_fails(&["--config"], 2, &["--config"]);
    assert_fails(&[&full[..], &["--start-pos", "minus one"]].concat(), 2, &["--start-pos", "minus one"]);
    assert_fails(&[&full[..], &["--decode-from", "-2"]].concat(), 2, &["--decode-from", "-2"]);
    assert_fails(&[&full[..], &["extra.safetensors"]].concat(), 2, &["extra.safetensors"]);
}

/// A safetensors file with one tensor of the given dtype, shape and raw bytes.
fn write_raw(path: &Path, name: &str, dtype: safetensors::Dtype, shape: &[usize], bytes: &[u8]) {
    let view = safetensors::tensor::TensorView::new(dtype, shape.to_vec(), bytes).unwrap();
    let data = safetensors::serialize([(name.to_string(), view)], None).unwrap();
    std::fs::write(path, data).unwrap();
}

#[test]
fn bad_data_exits_with_1_and_names_the_problem() {
    let dir = scratch("data");
    let s = |p: PathBuf| p.display().to_string();
    let out = s(dir.join("y.safetensors"));
    let (cfg, w, x) = (
        s(case_dir("gqa").join("config.json")),
        s(case_dir("gqa").join("model.safetensors")),
        s(case_dir("gqa").join("input.safetensors")),
    );
    let args = |cfg: &str, w: &str, x: &str| -> Vec<String> {
        ["--config", cfg, "--weights", w, "--input", x, "--output", &out].map(String::from).to_vec()
    };
    let fails = |a: Vec<String>, extra: &[&str], needles: &[&str]| {
        let mut all: Vec<&str> = a.iter().map(String::as_str).collect();
        all.extend_from_slice(extra);
        assert_fails(&all, 1, needles);
    };

    // missing files
    fails(args("/no/such/config.json", &w, &x), &[], &["/no/such/config.json", "No such file"]);
    fails(args(&cfg, "/no/such/w.safetensors", &x), &[], &["/no/such/w.safetensors"]);
    fails(args(&cfg, &w, "/no/such/x.safetensors"), &[], &["/no/such/x.safetensors"]);
    // a file that is not safetensors
    let junk = s(dir.join("junk.safetensors"));
    std::fs::write(&junk, b"definitely not a safetensors file").unwrap();
    fails(args(&cfg, &junk, &x), &[], &["junk.safetensors", "not a valid safetensors file"]);
    fails(args(&cfg, &w, &junk), &[], &["junk.safetensors", "not a valid safetensors file"]);
    // missing tensors
    let expected = s(case_dir("gqa").join("expected.safetensors"));
    fails(args(&cfg, &w, &expected), &[], &["missing tensor `hidden_states`"]);
    fails(
        args(&cfg, &w, &x),
        &["--prefix", "model.layers.7.self_attn."],
        &["no tensor name starts with `model.layers.7.self_attn.`"],
    );
    let no_o = s(dir.join("no_o_proj.safetensors"));
    let whole = TensorFile::open(case_dir("gqa").join("model.safetensors")).unwrap();
    let q = whole.tensor("model.layers.0.self_attn.q_proj.weight").unwrap();
    attention::support::io::save_tensors(&no_o, &[("model.layers.0.self_attn.q_proj.weight", &q)]).unwrap();
    fails(args(&cfg, &no_o, &x), &[], &["missing tensor `model.layers.0.self_attn.k_proj.weight`"]);
    // wrong shapes: another case's weights, another case's input, a 2-D input
    let mha_w = s(case_dir("mha").join("model.safetensors"));
    fails(args(&cfg, &mha_w, &x), &[], &["q_proj.weight", "expected (48, 40)", "got (48, 48)"]);
    let mha_x = s(case_dir("mha").join("input.safetensors"));
    fails(args(&cfg, &w, &mha_x), &[], &["hidden_states", "(2, 7, 48)", "hidden_size = 40"]);
    let flat = s(dir.join("flat.safetensors"));
    write_raw(Path::new(&flat), "hidden_states", safetensors::Dtype::F32, &[2, 40], &[0u8; 320]);
    fails(args(&cfg, &w, &flat), &[], &["hidden_states", "(2, 40)", "(batch, seq, 40)"]);
    // wrong dtypes: integer hidden states, f64 weights
    let ints = s(dir.join("ints.safetensors"));
    write_raw(Path::new(&ints), "hidden_states", safetensors::Dtype::I64, &[1, 2, 40], &[0u8; 640]);
    fails(args(&cfg, &w, &ints), &[], &["hidden_states", "dtype I64", "expected F32, F16 or BF16"]);
    let f64w = s(dir.join("f64.safetensors"));
    write_raw(
        Path::new(&f64w),
        "model.layers.0.self_attn.q_proj.weight",
        safetensors::Dtype::F64,
        &[48, 40],
        &[0u8; 48 * 40 * 8],
    );
    fails(args(&cfg, &f64w, &x), &[], &["q_proj.weight", "dtype F64"]);

    // configs: missing key, wrong type, not dividing, odd head_dim, unsupported RoPE, bias mismatch
    let base: Value = serde_json::from_str(&std::fs::read_to_string(&cfg).unwrap()).unwrap();
    let with = |name: &str, edit: &dyn Fn(&mut serde_json::Map<String, Value>)| -> String {
        let mut v = base.clone();
        edit(v.as_object_mut().unwrap());
        let path = s(dir.join(format!("{name}.json")));
        std::fs::write(&path, v.to_string()).unwrap();
        path
    };
    let c = with("no_hidden", &|m| {
        m.remove("hidden_size");
    });
    fails(args(&c, &w, &x), &[], &["no_hidden.json", "missing key `hidden_size`"]);
    let c = with("string_heads", &|m| {
        m.insert("num_attention_heads".into(), Value::from("four"));
    });
    fails(args(&c, &w, &x), &[], &["num_attention_heads", "integer"]);
    let c = with("kv3", &|m| {
        m.insert("num_key_value_heads".into(), Value::from(3));
    });
    fails(args(&c, &w, &x), &[], &["num_attention_heads = 4 is not divisible by num_key_value_heads = 3"]);
    let c = with("heads7", &|m| {
        m.insert("num_attention_heads".into(), Value::from(7));
    });
    fails(args(&c, &w, &x), &[], &["hidden_size = 40 is not divisible by num_attention_heads = 7"]);
    let c = with("odd_head_dim", &|m| {
        m.insert("head_dim".into(), Value::from(11));
    });
    fails(args(&c, &w, &x), &[], &["even head_dim", "11"]);
    let c = with("yarn", &|m| {
        m.insert("rope_scaling".into(), serde_json::json!({"rope_type": "yarn", "factor": 4.0}));
    });
    fails(args(&c, &w, &x), &[], &["rope_type `yarn` is not supported"]);
    let c = with("bias", &|m| {
        m.insert("attention_bias".into(), Value::from(true));
    });
    fails(
        args(&c, &w, &x),
        &[],
        &["missing tensor `model.layers.0.self_attn.q_proj.bias`", "attention_bias"],
    );
    let c = with("not_json", &|_| {});
    std::fs::write(&c, "{ \"hidden_size\": 40,").unwrap();
    fails(args(&c, &w, &x), &[], &["not_json.json", "invalid JSON"]);

    // positions: past max_position_embeddings (256), and an absurd start that would overflow
    fails(
        args(&cfg, &w, &x),
        &["--start-pos", "250"],
        &["positions 250..259", "max_position_embeddings = 256"],
    );
    fails(args(&cfg, &w, &x), &["--start-pos", &usize::MAX.to_string()], &["max_position_embeddings = 256"]);
    fails(args(&cfg, &w, &x), &["--decode-from", "10"], &["--decode-from 10", "9 tokens"]);
}
