//! The `llama-attn` binary on the Hugging Face fixtures (`scripts/gen_hf_fixtures.py`)
//! and on bad input.
//!
//! Outputs are compared with transformers' `LlamaAttention` output under PyTorch's f32
//! `assert_close` default (rtol 1.3e-6, atol 1e-5), as in `hf_reference.rs`, which
//! explains why that holds even at position 131 071. Bad input must give exit code 1
//! (data) or 2 (usage), exactly one line on stderr that starts with `llama-attn: error:`
//! and names the problem, and never a panic.

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
    serde_json::from_str(
        &std::fs::read_to_string(case_dir(name).join("meta.json")).unwrap(),
    )
    .unwrap()
}

/// A fresh scratch folder for one test.
fn scratch(test: &str) -> PathBuf {
    let dir =
        PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("llama_attn_cli").join(test);
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

/// Runs `args`, expects success, and checks the written `attn_output` against the case's
/// expected rows.
fn check_output(name: &str, args: &[String], out: &Path) {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let o = run(&args);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{name}: exit {:?}, stderr: {stderr}", o.status.code());
    assert!(stderr.is_empty(), "{name}: unexpected stderr: {stderr}");
    assert!(String::from_utf8_lossy(&o.stdout).starts_with("attn_output ("), "{name}");
    let got = TensorFile::open(out).unwrap().batch("attn_output").unwrap();
    let input = TensorFile::open(case_dir(name).join("input.safetensors"))
        .unwrap()
        .batch("hidden_states")
        .unwrap();
    assert_eq!(got.shape(), input.shape(), "{name}: output shape = input shape");
    let from = meta(name)["expected_from"].as_u64().unwrap() as usize;
    let got: Batch = got.narrow_seq(from, got.seq_len() - from).unwrap();
    let want = TensorFile::open(case_dir(name).join("expected.safetensors"))
        .unwrap()
        .batch("attn_output")
        .unwrap();
    if let Err(m) = compare(&got.to_row_major(), &want.to_row_major(), &want.shape(), TOL)
    {
        panic!("{name} ({}): {m}", args.join(" "));
    }
}

/// Every case, one full forward: MHA/GQA/MQA, biases, f16/bf16 weights, bf16 input,
/// llama3 scaling, start positions up to 131 064, a non-default prefix
/// (`model.layers.3.self_attn.`).
#[test]
fn every_case_matches_transformers() {
    let dir = scratch("every_case");
    for name in common::hf_cases() {
        let name = name.as_str();
        let out = dir.join(format!("{name}.safetensors"));
        check_output(name, &case_args(name, &out), &out);
    }
}

/// `--decode-from K`: prefill K tokens, then one token at a time through the KV cache,
/// from the case's start position: the same numbers as the full forward (and
/// transformers).
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
        let summary = String::from_utf8_lossy(
            &run(&args.iter().map(String::as_str).collect::<Vec<_>>()).stdout,
        )
        .into_owned();
        assert!(summary.contains(&format!("prefill {k} + ")), "{name}: {summary}");
    }
}

/// The default prefix is layer 0's (`model.layers.0.self_attn.`), and the
/// sharded-checkpoint index (`model.safetensors.index.json`) is followed to the shard
/// that holds the layer.
#[test]
fn default_prefix_and_sharded_index() {
    let dir = scratch("prefix_index");
    let out = dir.join("gqa.safetensors");
    let args: Vec<String> = case_args("gqa", &out);
    let without_prefix: Vec<String> = args
        .iter()
        .enumerate()
        .filter(|(i, _)| !(4..6).contains(i))
        .map(|(_, a)| a.clone())
        .collect();
    check_output("gqa", &without_prefix, &out);

    // an index whose weight_map sends layer 0 to a shard in the same folder
    std::fs::copy(
        case_dir("gqa").join("model.safetensors"),
        dir.join("model-00002-of-00002.safetensors"),
    )
    .unwrap();
    let names = ["q_proj", "k_proj", "v_proj", "o_proj"]
        .map(|p| format!("model.layers.0.self_attn.{p}.weight"));
    let mut map = serde_json::Map::new();
    for n in names {
        map.insert(n, Value::from("model-00002-of-00002.safetensors"));
    }
    map.insert(
        "model.embed_tokens.weight".into(),
        Value::from("model-00001-of-00002.safetensors"),
    );
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

/// Runs `args` and checks: exit code `code`, nothing on stdout, exactly one stderr line
/// starting with `llama-attn: error:` and containing every `needle`, no panic.
#[track_caller]
fn assert_fails(args: &[&str], code: i32, needles: &[&str]) {
    let o = run(args);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(code), "args {args:?}: stderr {stderr}");
    assert!(
        o.stdout.is_empty(),
        "args {args:?}: stdout {}",
        String::from_utf8_lossy(&o.stdout)
    );
    assert!(!stderr.contains("panicked"), "args {args:?}: {stderr}");
    assert_eq!(stderr.lines().count(), 1, "args {args:?}: not one line: {stderr}");
    assert!(stderr.starts_with("llama-attn: error: "), "{stderr}");
    for needle in needles {
        assert!(
            stderr.contains(needle),
            "args {args:?}: stderr lacks {needle:?}: {stderr}"
        );
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
    assert_fails(
        &[&full[..], &["--start-pos", "minus one"]].concat(),
        2,
        &["--start-pos", "minus one"],
    );
    assert_fails(
        &[&full[..], &["--decode-from", "-2"]].concat(),
        2,
        &["--decode-from", "-2"],
    );
    assert_fails(
        &[&full[..], &["extra.safetensors"]].concat(),
        2,
        &["extra.safetensors"],
    );
}

/// A safetensors file with one tensor of the given dtype, shape and raw bytes.
fn write_raw(
    path: &Path,
    name: &str,
    dtype: safetensors::Dtype,
    shape: &[usize],
    bytes: &[u8],
) {
    let view =
        safetensors::tensor::TensorView::new(dtype, shape.to_vec(), bytes).unwrap();
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
        ["--config", cfg, "--weights", w, "--input", x, "--output", &out]
            .map(String::from)
            .to_vec()
    };
    let fails = |a: Vec<String>, extra: &[&str], needles: &[&str]| {
        let mut all: Vec<&str> = a.iter().map(String::as_str).collect();
        all.extend_from_slice(extra);
        assert_fails(&all, 1, needles);
    };

    // missing files
    fails(
        args("/no/such/config.json", &w, &x),
        &[],
        &["/no/such/config.json", "No such file"],
    );
    fails(args(&cfg, "/no/such/w.safetensors", &x), &[], &["/no/such/w.safetensors"]);
    fails(args(&cfg, &w, "/no/such/x.safetensors"), &[], &["/no/such/x.safetensors"]);
    // a file that is not safetensors
    let junk = s(dir.join("junk.safetensors"));
    std::fs::write(&junk, b"definitely not a safetensors file").unwrap();
    fails(
        args(&cfg, &junk, &x),
        &[],
        &["junk.safetensors", "not a valid safetensors file"],
    );
    fails(
        args(&cfg, &w, &junk),
        &[],
        &["junk.safetensors", "not a valid safetensors file"],
    );
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
    attention::support::io::save_tensors(
        &no_o,
        &[("model.layers.0.self_attn.q_proj.weight", &q)],
    )
    .unwrap();
    fails(
        args(&cfg, &no_o, &x),
        &[],
        &["missing tensor `model.layers.0.self_attn.k_proj.weight`"],
    );
    // wrong shapes: another case's weights, another case's input, a 2-D input
    let mha_w = s(case_dir("mha").join("model.safetensors"));
    fails(
        args(&cfg, &mha_w, &x),
        &[],
        &["q_proj.weight", "expected (48, 40)", "got (48, 48)"],
    );
    let mha_x = s(case_dir("mha").join("input.safetensors"));
    fails(
        args(&cfg, &w, &mha_x),
        &[],
        &["hidden_states", "(2, 7, 48)", "hidden_size = 40"],
    );
    let flat = s(dir.join("flat.safetensors"));
    write_raw(
        Path::new(&flat),
        "hidden_states",
        safetensors::Dtype::F32,
        &[2, 40],
        &[0u8; 320],
    );
    fails(args(&cfg, &w, &flat), &[], &["hidden_states", "(2, 40)", "(batch, seq, 40)"]);
    // wrong dtypes: integer hidden states, f64 weights
    let ints = s(dir.join("ints.safetensors"));
    write_raw(
        Path::new(&ints),
        "hidden_states",
        safetensors::Dtype::I64,
        &[1, 2, 40],
        &[0u8; 640],
    );
    fails(
        args(&cfg, &w, &ints),
        &[],
        &["hidden_states", "dtype I64", "expected F32, F16 or BF16"],
    );
    let f64w = s(dir.join("f64.safetensors"));
    write_raw(
        Path::new(&f64w),
        "model.layers.0.self_attn.q_proj.weight",
        safetensors::Dtype::F64,
        &[48, 40],
        &[0u8; 48 * 40 * 8],
    );
    fails(args(&cfg, &f64w, &x), &[], &["q_proj.weight", "dtype F64"]);

    // configs: missing key, wrong type, not dividing, odd head_dim, unsupported RoPE,
    // bias mismatch
    let base: Value =
        serde_json::from_str(&std::fs::read_to_string(&cfg).unwrap()).unwrap();
    let with =
        |name: &str, edit: &dyn Fn(&mut serde_json::Map<String, Value>)| -> String {
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
    fails(
        args(&c, &w, &x),
        &[],
        &["num_attention_heads = 4 is not divisible by num_key_value_heads = 3"],
    );
    let c = with("heads7", &|m| {
        m.insert("num_attention_heads".into(), Value::from(7));
    });
    fails(
        args(&c, &w, &x),
        &[],
        &["hidden_size = 40 is not divisible by num_attention_heads = 7"],
    );
    let c = with("odd_head_dim", &|m| {
        m.insert("head_dim".into(), Value::from(11));
    });
    fails(args(&c, &w, &x), &[], &["even head_dim", "11"]);
    let c = with("yarn", &|m| {
        m.insert(
            "rope_scaling".into(),
            serde_json::json!({"rope_type": "yarn", "factor": 4.0}),
        );
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

    // positions: past max_position_embeddings (256), and an absurd start that would
    // overflow
    fails(
        args(&cfg, &w, &x),
        &["--start-pos", "250"],
        &["positions 250..259", "max_position_embeddings = 256"],
    );
    fails(
        args(&cfg, &w, &x),
        &["--start-pos", &usize::MAX.to_string()],
        &["max_position_embeddings = 256"],
    );
    fails(
        args(&cfg, &w, &x),
        &["--decode-from", "10"],
        &["--decode-from 10", "9 tokens"],
    );
}

/// Runs `sh -c script BIN args…`, the script ending in `exec "$0" "$@"` with its own
/// redirections.
fn run_in_shell(script: &str, args: &[&str]) -> Output {
    Command::new("sh")
        .arg("-c")
        .arg(script)
        .arg(BIN)
        .args(args)
        .output()
        .expect("sh runs")
}

/// The gqa case's arguments (config, weights, input) writing to `out`, as owned strings.
fn gqa_args(out: &Path) -> Vec<String> {
    case_args("gqa", out)
}

fn strs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

/// Hostile weights and inputs (issue #9): exit 1 with one line naming the file, never
/// wrong numbers.
#[test]
fn hostile_files_exit_with_1() {
    let dir = scratch("hostile");
    let out = dir.join("y.safetensors");
    let good = std::fs::read(case_dir("gqa").join("model.safetensors")).unwrap();
    let n = u64::from_le_bytes(good[..8].try_into().unwrap()) as usize;
    let mut header: serde_json::Map<String, Value> =
        serde_json::from_slice(&good[8..8 + n]).unwrap();
    let data = &good[8 + n..];
    let write = |name: &str,
                 header: &serde_json::Map<String, Value>,
                 declared_delta: i64|
     -> String {
        let mut text = Value::Object(header.clone()).to_string();
        text.push(' '); // padding, so that a length one short still leaves valid JSON
        let mut bytes = (text.len() as u64)
            .wrapping_add_signed(declared_delta)
            .to_le_bytes()
            .to_vec();
        bytes.extend_from_slice(text.as_bytes());
        bytes.extend_from_slice(data);
        let path = dir.join(name);
        std::fs::write(&path, bytes).unwrap();
        path.display().to_string()
    };
    let with_weights = |w: &str| {
        let mut a = gqa_args(&out);
        a[3] = w.to_string();
        a
    };
    // a header length one byte short: every weight one byte off (used to give NaNs and
    // exit 0)
    let w = write("short.safetensors", &header, -1);
    assert_fails(
        &strs(&with_weights(&w)),
        1,
        &["short.safetensors: not a valid safetensors file"],
    );
    // q_proj's bytes overlapping k_proj's (used to print wrong numbers and exit 0)
    header["model.layers.0.self_attn.q_proj.weight"]["data_offsets"] =
        serde_json::json!([160, 7840]);
    let w = write("overlap.safetensors", &header, 0);
    assert_fails(
        &strs(&with_weights(&w)),
        1,
        &["overlap.safetensors", "q_proj.weight", "overlap"],
    );
    // offsets up to 2^64 - 1 (used to panic)
    header["model.layers.0.self_attn.q_proj.weight"]["data_offsets"] =
        serde_json::json!([0u64, u64::MAX]);
    let w = write("huge.safetensors", &header, 0);
    assert_fails(&strs(&with_weights(&w)), 1, &["huge.safetensors", "q_proj.weight"]);
    // a directory as weights says so (it used to say "shorter than 8 bytes")
    let d = dir.display().to_string();
    assert_fails(&strs(&with_weights(&d)), 1, &["is a directory"]);
    // an index that sends the layer out of its folder
    let index = dir.join("model.safetensors.index.json");
    let map: serde_json::Map<String, Value> = ["q_proj", "k_proj", "v_proj", "o_proj"]
        .iter()
        .map(|p| {
            (
                format!("model.layers.0.self_attn.{p}.weight"),
                Value::from("../../../../etc/passwd"),
            )
        })
        .collect();
    std::fs::write(&index, serde_json::json!({"weight_map": map}).to_string()).unwrap();
    let i = index.display().to_string();
    assert_fails(
        &strs(&with_weights(&i)),
        1,
        &["index.json", "`../../../../etc/passwd`", "`..`"],
    );
    // inputs and configs that never end or block: refused, not read
    let mut a = gqa_args(&out);
    a[7] = "/dev/zero".into();
    assert_fails(&strs(&a), 1, &["/dev/zero: is a special file"]);
    let mut a = gqa_args(&out);
    a[1] = "/dev/zero".into();
    assert_fails(&strs(&a), 1, &["/dev/zero: is a special file"]);
    let fifo = dir.join("fifo");
    if Command::new("mkfifo").arg(&fifo).status().is_ok_and(|s| s.success()) {
        for slot in [1, 7] {
            let mut a = gqa_args(&out);
            a[slot] = fifo.display().to_string();
            assert_fails(&strs(&a), 1, &["fifo: is a special file"]);
        }
    }
    assert!(!out.exists(), "nothing was written");
}

/// Flags given twice, numbers too large, empty paths: usage errors (exit 2), each named.
#[test]
fn repeated_flags_and_odd_values_exit_with_2() {
    let dir = scratch("usage_more");
    let out = dir.join("y.safetensors");
    let args = gqa_args(&out);
    let with = |extra: &[&'static str]| -> Vec<String> {
        args.iter().cloned().chain(extra.iter().map(|e| e.to_string())).collect()
    };
    assert_fails(
        &strs(&with(&["--start-pos", "1"])),
        2,
        &["--start-pos given more than once"],
    );
    let twice = with(&["--prefix", "model.layers.1.self_attn."]);
    assert_fails(&strs(&twice), 2, &["--prefix given more than once"]);
    let twice = with(&["--decode-from", "1", "--decode-from", "2"]);
    assert_fails(&strs(&twice), 2, &["--decode-from given more"]);
    for flag in ["--config", "--weights", "--input", "--output"] {
        assert_fails(
            &strs(&with(&[flag, "x"])),
            2,
            &[&format!("{flag} given more than once")],
        );
    }
    let mut a = strs(&args);
    a[11] = "18446744073709551616";
    assert_fails(&a, 2, &["--start-pos 18446744073709551616 is too large"]);
    let mut a = strs(&args);
    a[1] = "";
    let o = run(&a);
    assert_fails(&a, 2, &["--config needs a path, got an empty string"]);
    assert!(!String::from_utf8_lossy(&o.stderr).contains(": No such file"));
    assert!(!out.exists(), "nothing was written");
}

/// `--output` naming a file that is read (directly, through a symbolic link or a hard
/// link) is refused, and the file is left as it was.
#[test]
fn an_output_that_is_an_input_is_refused() {
    let dir = scratch("output_is_input");
    for file in ["config.json", "model.safetensors", "input.safetensors"] {
        std::fs::copy(case_dir("gqa").join(file), dir.join(file)).unwrap();
    }
    std::os::unix::fs::symlink(
        dir.join("input.safetensors"),
        dir.join("symlink.safetensors"),
    )
    .unwrap();
    std::fs::hard_link(dir.join("model.safetensors"), dir.join("hardlink.safetensors"))
        .unwrap();
    let before: Vec<Vec<u8>> = ["config.json", "model.safetensors", "input.safetensors"]
        .map(|f| std::fs::read(dir.join(f)).unwrap())
        .into();
    let p = |f: &str| dir.join(f).display().to_string();
    for (output, flag) in [
        ("input.safetensors", "--input"),
        ("model.safetensors", "--weights"),
        ("config.json", "--config"),
        ("symlink.safetensors", "--input"),
        ("hardlink.safetensors", "--weights"),
    ] {
        let args = [
            "--config",
            &p("config.json"),
            "--weights",
            &p("model.safetensors"),
            "--input",
            &p("input.safetensors"),
            "--output",
            &p(output),
        ];
        assert_fails(&args, 2, &[output, &format!("is the same file as {flag}")]);
    }
    let after: Vec<Vec<u8>> = ["config.json", "model.safetensors", "input.safetensors"]
        .map(|f| std::fs::read(dir.join(f)).unwrap())
        .into();
    assert!(before == after, "a file that is read was changed");
}

/// A write that fails (here: past a file size limit, as on a full disk) leaves the
/// previous output whole and no temporary file behind.
#[test]
fn a_failed_write_keeps_the_previous_output() {
    let dir = scratch("full_disk");
    let out = dir.join("y.safetensors");
    let args = gqa_args(&out);
    check_output("gqa", &args, &out);
    let previous = std::fs::read(&out).unwrap();
    assert!(previous.len() > 2048);
    // SIGXFSZ ignored, so that writing past the limit fails with EFBIG instead of killing
    // the process
    let o = run_in_shell("trap '' XFSZ; ulimit -f 2 && exec \"$0\" \"$@\"", &strs(&args));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("llama-attn: error: ") && stderr.contains("y.safetensors"),
        "{stderr}"
    );
    assert_eq!(std::fs::read(&out).unwrap(), previous, "the previous output was changed");
    let left: Vec<_> =
        std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(
        left,
        [std::ffi::OsString::from("y.safetensors")],
        "temporary files left behind"
    );
}

/// An error message that cannot be written (stderr on a full device, or closed) is no
/// reason to panic: the exit code still says what went wrong.
#[test]
fn a_full_or_closed_stderr_does_not_panic() {
    for redirect in ["2>/dev/full", "2>&-"] {
        let script = format!("exec \"$0\" \"$@\" {redirect}");
        assert_eq!(
            run_in_shell(&script, &["--frobnicate"]).status.code(),
            Some(2),
            "{redirect}"
        );
        let o = run_in_shell(
            &script,
            &[
                "--config",
                "/no/such.json",
                "--weights",
                "w",
                "--input",
                "x",
                "--output",
                "y",
            ],
        );
        assert_eq!(o.status.code(), Some(1), "{redirect}");
    }
}

/// A long prompt runs through the tiled kernel in bounded memory: 8192 tokens would need
/// a 256 MiB score matrix per head if the whole seq × seq matrix were allocated; the run
/// is limited to 192 MiB of address space.
#[test]
fn a_long_input_runs_in_bounded_memory() {
    use attention::{Tensor, save_tensors};
    let dir = scratch("long");
    let (hidden, heads, kv_heads, head_dim, seq) =
        (16usize, 2usize, 1usize, 8usize, 8192usize);
    let config = serde_json::json!({
        "model_type": "llama", "hidden_size": hidden, "num_attention_heads": heads,
        "num_key_value_heads": kv_heads, "head_dim": head_dim, "max_position_embeddings": 131072,
        "rope_theta": 500000.0, "attention_bias": false,
    });
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    let values = |n: usize, seed: usize| -> Vec<f32> {
        (0..n)
            .map(|i| (((i * 7919 + seed * 104729) % 1000) as f32 / 1000.0 - 0.5) * 0.5)
            .collect()
    };
    let t = |rows: usize, cols: usize, seed| {
        Tensor::new(vec![rows, cols], values(rows * cols, seed)).unwrap()
    };
    let (q, k, v, o) = (
        t(heads * head_dim, hidden, 1),
        t(kv_heads * head_dim, hidden, 2),
        t(kv_heads * head_dim, hidden, 3),
        t(hidden, heads * head_dim, 4),
    );
    let names = ["q_proj", "k_proj", "v_proj", "o_proj"]
        .map(|p| format!("model.layers.0.self_attn.{p}.weight"));
    let tensors: Vec<(&str, &Tensor)> =
        names.iter().map(String::as_str).zip([&q, &k, &v, &o]).collect();
    save_tensors(dir.join("model.safetensors"), &tensors).unwrap();
    let x = Tensor::new(vec![1, seq, hidden], values(seq * hidden, 5)).unwrap();
    save_tensors(dir.join("x.safetensors"), &[("hidden_states", &x)]).unwrap();
    let p = |f: &str| dir.join(f).display().to_string();
    let args = [
        "--config",
        &p("config.json"),
        "--weights",
        &p("model.safetensors"),
        "--input",
        &p("x.safetensors"),
        "--output",
        &p("y.safetensors"),
        "--start-pos",
        "100000",
    ];
    let started = std::time::Instant::now();
    let o = run_in_shell("ulimit -v 196608 && exec \"$0\" \"$@\"", &args);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "exit {:?}: {stderr}", o.status.code());
    assert!(started.elapsed().as_secs() < 120, "took {:?}", started.elapsed());
    let y = TensorFile::open(dir.join("y.safetensors"))
        .unwrap()
        .tensor("attn_output")
        .unwrap();
    assert_eq!(y.shape, [1, seq, hidden]);
    assert!(y.data.iter().all(|v| v.is_finite()));
}

/// A `rope_scaling` without `rope_type` runs unscaled, as transformers does, and says so
/// on stderr; the output is still transformers' (which ignores the object too).
#[test]
fn a_config_warning_reaches_stderr() {
    let dir = scratch("config_warning");
    let mut cfg: Value = serde_json::from_str(
        &std::fs::read_to_string(case_dir("mha").join("config.json")).unwrap(),
    )
    .unwrap();
    cfg["rope_scaling"] = serde_json::json!({ "factor": 8.0 });
    let config = dir.join("config.json");
    std::fs::write(&config, cfg.to_string()).unwrap();
    let out = dir.join("out.safetensors");
    let mut args = case_args("mha", &out);
    args[1] = config.display().to_string(); // after "--config"
    let output = run(&strs(&args));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(
        stderr.starts_with("llama-attn: warning: ") && stderr.contains("rope_type"),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    let got = TensorFile::open(&out).unwrap().batch("attn_output").unwrap();
    let want = TensorFile::open(case_dir("mha").join("expected.safetensors"))
        .unwrap()
        .batch("attn_output")
        .unwrap();
    assert_eq!(meta("mha")["expected_from"], 0);
    if let Err(m) = compare(&got.to_row_major(), &want.to_row_major(), &want.shape(), TOL)
    {
        panic!("unscaled run: {m}");
    }
}

/// A case folder of `scripts/gen_variant_fixtures.py` (Mistral, Qwen3, Gemma 2 and 3,
/// gpt-oss, and DeepSeek-V2's and V3's multi-head latent attention).
fn variant_dir(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/variants").join(name)
}

fn variant_meta(name: &str) -> Value {
    let text = std::fs::read_to_string(variant_dir(name).join("meta.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// The variant cases, sorted, split by the layer the binary runs for them: grouped-query
/// attention, and multi-head latent attention (DeepSeek). Every case's model type is one
/// the binary runs.
fn variant_cases() -> (Vec<String>, Vec<String>) {
    let dir = variant_dir("");
    let mut cases: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| variant_dir(n).join("config.json").is_file())
        .collect();
    cases.sort();
    let (gqa, mla): (Vec<String>, Vec<String>) = cases.into_iter().partition(|n| {
        let t = variant_meta(n)["model_type"].as_str().unwrap().to_string();
        let m = attention::hf::ModelType::from_name(&t);
        assert!(m.is_some(), "{n}: model_type `{t}` is not one the binary runs");
        m.is_some_and(|m| !m.uses_mla())
    });
    // ten f32, five bf16 (one per model type), three at long positions, four with RoPE
    // scaling (Gemma 3's linear on a full and a sliding layer, YaRN on Qwen3 and Mistral)
    assert_eq!(gqa.len(), 22, "grouped-query cases: {gqa:?}");
    // DeepSeek-V3's four and DeepSeek-V2's one
    assert_eq!(mla.len(), 5, "latent attention cases: {mla:?}");
    (gqa, mla)
}

/// The arguments that run variant case `name` as the generator did, writing to `out`.
fn variant_args(name: &str, out: &Path) -> Vec<String> {
    let dir = variant_dir(name);
    let m = variant_meta(name);
    let p = |f: &str| dir.join(f).display().to_string();
    [
        "--config",
        &p("config.json"),
        "--weights",
        &p("model.safetensors"),
        "--prefix",
        m["prefix"].as_str().unwrap(),
        "--input",
        &p("input.safetensors"),
        "--output",
        &out.display().to_string(),
        "--start-pos",
        &m["start_pos"].to_string(),
    ]
    .map(String::from)
    .to_vec()
}

/// Runs `args`, expects success without warnings, and checks the written `attn_output`
/// against the case's expected tensor `want` (all rows); returns stdout.
fn check_variant(name: &str, args: &[String], out: &Path, want: &str) -> String {
    let o = run(&strs(args));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{name}: exit {:?}, stderr: {stderr}", o.status.code());
    assert!(stderr.is_empty(), "{name}: unexpected stderr: {stderr}");
    let got = TensorFile::open(out).unwrap().batch("attn_output").unwrap();
    let want = TensorFile::open(variant_dir(name).join("expected.safetensors"))
        .unwrap()
        .batch(want)
        .unwrap();
    if let Err(m) = compare(&got.to_row_major(), &want.to_row_major(), &want.shape(), TOL)
    {
        panic!("{name} ({}): {m}", args.join(" "));
    }
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Every Mistral, Qwen3, Gemma 2, Gemma 3 and gpt-oss case (f32 and bf16 weights, bf16
/// inputs, positions up to 100000), one forward and `--decode-from` the generator's
/// split, against transformers' outputs; window layers decode through a sliding cache
/// smaller than the sequence.
#[test]
fn variant_cases_match_transformers() {
    let dir = scratch("variants");
    for name in variant_cases().0 {
        let out = dir.join(format!("{name}.safetensors"));
        let args = variant_args(&name, &out);
        let summary = check_variant(&name, &args, &out, "attn_output");
        assert!(summary.contains("(one forward)"), "{name}: {summary}");
        let m = variant_meta(&name);
        let k = m["decode_from"].as_u64().unwrap();
        let mut args = args;
        args.extend(["--decode-from".to_string(), k.to_string()]);
        let summary = check_variant(&name, &args, &out, "decode_output");
        assert!(summary.contains(&format!("prefill {k} + ")), "{name}: {summary}");
        let seq = m["seq"].as_u64().unwrap();
        match m["window"].as_u64() {
            // seq > 2 · window in every window case: the cache holds 2 · window rows
            Some(w) => assert!(
                summary.contains(&format!("sliding cache of {} rows", 2 * w))
                    && 2 * w < seq,
                "{name}: {summary}"
            ),
            None => assert!(
                summary.contains(&format!(" cache of {seq} rows")),
                "{name}: {summary}"
            ),
        }
    }
}

/// A window longer than the sequence never drops a row: `--decode-from` runs through a
/// plain cache of `seq` rows, and equals the one forward (here: causal attention, the
/// window 4096 reaching past all 13 tokens).
#[test]
fn a_window_longer_than_the_input_decodes_too() {
    let dir = scratch("long_window");
    let mut cfg: Value = serde_json::from_str(
        &std::fs::read_to_string(variant_dir("mistral_window").join("config.json"))
            .unwrap(),
    )
    .unwrap();
    cfg["sliding_window"] = Value::from(4096);
    let config = dir.join("config.json");
    std::fs::write(&config, cfg.to_string()).unwrap();
    let (whole, decoded) =
        (dir.join("whole.safetensors"), dir.join("decoded.safetensors"));
    let mut args = variant_args("mistral_window", &whole);
    args[1] = config.display().to_string();
    assert!(run(&strs(&args)).status.success());
    args[9] = decoded.display().to_string();
    args.extend(["--decode-from".into(), "2".into()]);
    let o = run(&strs(&args));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        String::from_utf8_lossy(&o.stdout)
            .contains("prefill 2 + 11 decode steps, cache of 13 rows")
    );
    let read = |p: &Path| TensorFile::open(p).unwrap().batch("attn_output").unwrap();
    attention::assert_batch_close(&read(&decoded), &read(&whole), TOL);
}

/// Every DeepSeek case (multi-head latent attention: DeepSeek-V3 with and without a
/// compressed query, `rope_interleave` true and false, YaRN at positions past 4096, bf16
/// weights with biases; DeepSeek-V2's own attention), one forward and `--decode-from`
/// the generator's split through the latent cache, against transformers' outputs.
#[test]
fn deepseek_cases_match_transformers() {
    let dir = scratch("deepseek");
    for name in variant_cases().1 {
        let out = dir.join(format!("{name}.safetensors"));
        let args = variant_args(&name, &out);
        let summary = check_variant(&name, &args, &out, "attn_output");
        assert!(summary.contains("(one forward)"), "{name}: {summary}");
        let m = variant_meta(&name);
        let k = m["decode_from"].as_u64().unwrap();
        let (seq, width) =
            (m["seq"].as_u64().unwrap(), &m["mla"]["cache_elements_per_token_per_layer"]);
        let mut args = args;
        args.extend(["--decode-from".to_string(), k.to_string()]);
        let summary = check_variant(&name, &args, &out, "decode_output");
        let want = format!(
            "prefill {k} + {} decode steps, latent cache of {seq} rows of {width} numbers",
            seq - k
        );
        assert!(summary.contains(&want), "{name}: {summary}");
    }
}

/// A DeepSeek config the crate would run wrong, or that transformers fails on, is
/// refused with one line naming the key: a `num_key_value_heads` other than the head
/// count, a `head_dim` other than `qk_rope_head_dim`, an odd `qk_rope_head_dim`; a
/// checkpoint of the other query path is refused naming the tensor. Exit 1, nothing
/// written.
#[test]
fn bad_deepseek_configs_exit_with_1() {
    let dir = scratch("deepseek_bad");
    let out = dir.join("y.safetensors");
    let base: Value = serde_json::from_str(
        &std::fs::read_to_string(variant_dir("deepseek_v3_mla").join("config.json"))
            .unwrap(),
    )
    .unwrap();
    for (file, edit, needle) in [
        (
            "kv_heads.json",
            ("num_key_value_heads", serde_json::json!(2)),
            "key `num_key_value_heads` = 2 must equal num_attention_heads = 4",
        ),
        (
            "head_dim.json",
            ("head_dim", serde_json::json!(16)),
            "key `head_dim` = 16 must equal qk_rope_head_dim = 8",
        ),
        (
            "odd_rope.json",
            ("qk_rope_head_dim", serde_json::json!(7)),
            "qk_rope_head_dim must be even",
        ),
        (
            "no_q_lora.json",
            ("q_lora_rank", Value::Null),
            "q_a_proj.weight` is present, but config.json has q_lora_rank = null",
        ),
    ] {
        let mut cfg = base.clone();
        cfg[edit.0] = edit.1;
        if edit.0 == "qk_rope_head_dim" {
            cfg.as_object_mut().unwrap().remove("head_dim");
        }
        let path = dir.join(file);
        std::fs::write(&path, cfg.to_string()).unwrap();
        let mut args = variant_args("deepseek_v3_mla", &out);
        args[1] = path.display().to_string();
        assert_fails(&strs(&args), 1, &[needle]);
        args.extend(["--decode-from".into(), "3".into()]);
        assert_fails(&strs(&args), 1, &[needle]);
    }
    assert!(!out.exists(), "nothing was written");
}

/// A `model_type` the crate does not compute (an unknown name), and a setting it does
/// not (linear RoPE scaling on Gemma 3's sliding layers, where its checkpoints have none;
/// a `dynamic` one): exit 1, one line naming it, nothing written.
#[test]
fn unsupported_model_types_exit_with_1() {
    let dir = scratch("model_types");
    let out = dir.join("y.safetensors");
    let base: Value = serde_json::from_str(
        &std::fs::read_to_string(variant_dir("gemma3_full").join("config.json")).unwrap(),
    )
    .unwrap();
    for (file, edit, needle) in [
        (
            "unknown.json",
            ("model_type", serde_json::json!("gemma4_text")),
            "model_type `gemma4_text` is not supported",
        ),
        (
            "linear.json",
            (
                "rope_parameters",
                serde_json::json!({
                    "full_attention": {"rope_type": "linear", "factor": 8.0},
                    "sliding_attention": {"rope_type": "linear", "factor": 8.0}}),
            ),
            "rope_parameters.sliding_attention.rope_type `linear` is not supported for \
             model_type `gemma3_text` (only `default`)",
        ),
        (
            "dynamic.json",
            ("rope_scaling", serde_json::json!({"rope_type": "dynamic", "factor": 8.0})),
            "rope_scaling.rope_type `dynamic` is not supported for model_type \
             `gemma3_text` (only `default` and `linear`)",
        ),
    ] {
        let mut cfg = base.clone();
        cfg[edit.0] = edit.1;
        let path = dir.join(file);
        std::fs::write(&path, cfg.to_string()).unwrap();
        let mut args = variant_args("gemma3_full", &out);
        args[1] = path.display().to_string();
        assert_fails(&strs(&args), 1, &[file, needle]);
    }
    assert!(!out.exists(), "nothing was written");
}
