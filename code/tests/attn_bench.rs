//! The `attn-bench` binary: a smoke test of its benchmark run (tiny shapes, well under a
//! second), its memory, peak and bandwidth runs, its help, and its usage errors. (The
//! book's results tables are rendered from the committed measurements by the
//! `book-tests` package, and checked there: `tests/tests/bench_tables.rs`.)

use std::process::{Command, Stdio};

fn bench(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_attn-bench"))
        .args(args)
        .output()
        .expect("runs attn-bench");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).expect("utf-8 stdout"),
        String::from_utf8(out.stderr).expect("utf-8 stderr"),
    )
}

#[test]
fn quick_run_prints_one_json_object_per_case() {
    let (code, stdout, stderr) = bench(&["--quick"]);
    assert_eq!(code, 0, "{stderr}");
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect();
    let mut cases: Vec<&str> =
        lines.iter().map(|l| l["case"].as_str().unwrap()).collect();
    cases.dedup();
    for case in [
        "prefill_naive",
        "prefill_flash",
        "prefill_naive_fast_exp",
        "prefill_flash_block_skip",
        "prefill_flash_no_skip",
        "prefill_flash_unfused_exp",
        "decode",
        "decode_unaligned",
        "decode_split_k",
        "decode_int8",
        "decode_int4",
        "decode_paged",
    ] {
        assert!(cases.contains(&case), "{case} in {cases:?}");
    }
    for l in &lines {
        for key in ["seq", "n_heads", "n_kv_heads", "head_dim", "threads"] {
            assert!(l[key].as_u64().is_some_and(|n| n > 0), "{key} in {l}");
        }
        assert!(l["median_ms"].as_f64().is_some_and(|ms| ms > 0.0), "{l}");
        let simd = l["simd"].as_str();
        assert!(matches!(simd, Some("avx512" | "avx2" | "baseline")), "simd in {l}");
        // prefill_flash lines also report the rate their products achieved; decode lines
        // the bytes of cache a step reads and the rate it read them at
        let case = l["case"].as_str().unwrap();
        let (flash, decode) =
            (case.starts_with("prefill_flash"), case.starts_with("decode"));
        // one-thread unaligned and paged decode: and the aligned decode timed beside them
        let paired = matches!(case, "decode_unaligned" | "decode_paged")
            && l["threads"].as_u64() == Some(1);
        let fields = if flash {
            9
        } else if case == "decode_split_k" || paired {
            11 // and "splits", or "paired_decode_ms"
        } else if decode {
            10
        } else {
            8
        };
        assert_eq!(
            l.as_object().unwrap().len(),
            fields,
            "exactly the documented fields: {l}"
        );
        if flash {
            assert!(l["gflops"].as_f64().is_some_and(|g| g > 0.0), "{l}");
        }
        if paired {
            assert!(l["paired_decode_ms"].as_f64().is_some_and(|ms| ms > 0.0), "{l}");
        }
        if decode {
            assert!(l["bytes_per_token"].as_u64().is_some_and(|b| b > 0), "{l}");
            assert!(l["gb_per_s"].as_f64().is_some_and(|g| g > 0.0), "{l}");
        }
    }
}

/// The bytes a decode step reads: the f32 cache (contiguous or paged) `2 · seq ·
/// kv_dim · 4`; int8 a byte per number and an f32 scale per row; int4 (KIVI, groups of
/// 32, 128 rows in f32) less than int8. All at context 300, GQA 12/4, head_dim 64.
#[test]
fn decode_lines_count_the_bytes_of_their_cache() {
    let (code, stdout, stderr) = bench(&["--quick", "--seq", "300", "--threads", "1"]);
    assert_eq!(code, 0, "{stderr}");
    let bytes = |case: &str| {
        stdout
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .find(|l| l["case"] == case)
            .and_then(|l| l["bytes_per_token"].as_u64())
            .unwrap_or_else(|| panic!("a {case} line in {stdout}"))
    };
    let f32_bytes = 2 * 300 * 4 * 64 * 4;
    assert_eq!(bytes("decode"), f32_bytes);
    assert_eq!(bytes("decode_unaligned"), f32_bytes);
    assert_eq!(bytes("decode_paged"), f32_bytes);
    assert_eq!(bytes("decode_int8"), 2 * 300 * 4 * (64 + 4));
    // 160 rows quantized (5 groups of 32), 140 in f32
    let int4 = 4 * (160 * 32 + 5 * 64 * 8 + 160 * (32 + 8) + 2 * 140 * 64 * 4);
    assert_eq!(bytes("decode_int4"), int4);
}

/// `--bandwidth --quick`: one line, one core's read rate on a 1 MiB buffer.
#[test]
fn bandwidth_reports_the_read_rate() {
    let (code, stdout, stderr) = bench(&["--bandwidth", "--quick"]);
    assert_eq!(code, 0, "{stderr}");
    let l: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(l["case"], "bandwidth");
    assert_eq!(l["bytes"], 1 << 20);
    assert!(l["gb_per_s"].as_f64().is_some_and(|g| g > 0.0), "{l}");
    assert_eq!(l.as_object().unwrap().len(), 5, "exactly the documented fields: {l}");
}

/// `--peak` measures the FMA ceiling: positive wherever the CPU has FMA (0 at the
/// baseline level), and the same JSON line shape.
#[test]
fn peak_reports_the_fma_rate() {
    let (code, stdout, stderr) = bench(&["--peak"]);
    assert_eq!(code, 0, "{stderr}");
    let l: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(l["case"], "fma_peak");
    let gflops = l["gflops"].as_f64().unwrap();
    if l["simd"] == "baseline" {
        assert_eq!(gflops, 0.0);
    } else {
        assert!(gflops > 1.0, "{l}");
    }
}

#[test]
fn flags_select_the_cases() {
    let (code, stdout, stderr) = bench(&[
        "--quick",
        "--case",
        "decode",
        "--seq=33",
        "--threads",
        "1",
        "--reps",
        "1",
    ]);
    assert_eq!(code, 0, "{stderr}");
    let lines: Vec<serde_json::Value> =
        stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 1, "one case, one thread count: {stdout}");
    assert_eq!(lines[0]["case"], "decode");
    assert_eq!(lines[0]["seq"], 33);
    assert_eq!(lines[0]["threads"], 1);
}

#[test]
fn memory_run_reports_peak_rss_beside_the_naive_need() {
    let (code, stdout, stderr) = bench(&["--memory", "300"]);
    assert_eq!(code, 0, "{stderr}");
    let m: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(m["case"], "memory");
    assert_eq!(m["naive_scores_one_head_bytes"], 300 * 300 * 4);
    assert_eq!(m["naive_scores_all_heads_bytes"], 12 * 300 * 300 * 4);
    if cfg!(target_os = "linux") {
        assert!(
            m["peak_rss_bytes"].as_u64().unwrap()
                > m["inputs_output_bytes"].as_u64().unwrap()
        );
    }
}

#[test]
fn help_lists_every_flag() {
    for flag in ["-h", "--help"] {
        let (code, stdout, stderr) = bench(&[flag]);
        assert_eq!(code, 0, "{stderr}");
        for documented in [
            "--quick",
            "--memory",
            "--threads",
            "--seq",
            "--case",
            "--reps",
            "--peak",
            "--bandwidth",
            "--help",
        ] {
            assert!(
                stdout.contains(documented),
                "{flag} mentions {documented}: {stdout}"
            );
        }
        assert!(
            !stdout.contains("--table"),
            "the tables are rendered by book-tests now: {stdout}"
        );
    }
}

/// Runs `attn-bench` with arguments it must refuse: exit code 2 and one line on stderr
/// that starts with the program's name and contains `needle`.
fn assert_usage_error(args: &[&str], needle: &str) {
    let (code, stdout, stderr) = bench(args);
    assert_eq!(code, 2, "{args:?}: {stdout}{stderr}");
    assert!(stdout.is_empty(), "{args:?} measured nothing: {stdout}");
    assert!(stderr.starts_with("attn-bench: error: "), "{args:?}: {stderr}");
    assert_eq!(stderr.lines().count(), 1, "{args:?}: one line: {stderr}");
    assert!(stderr.contains(needle), "{args:?}: {stderr} should mention {needle:?}");
}

#[test]
fn bad_arguments_are_usage_errors() {
    assert_usage_error(&["--bogus"], "--bogus");
    assert_usage_error(&["--table", "src/data/bench-results.json"], "--table");
    assert_usage_error(&["extra"], "extra");
    assert_usage_error(&["--memory"], "--memory");
    assert_usage_error(&["--memory", "x"], "--memory needs a positive integer, got `x`");
    assert_usage_error(&["--reps", "0"], "--reps needs a positive integer, got `0`");
    assert_usage_error(&["--threads", "-1"], "--threads");
    assert_usage_error(&["--case", "fast"], "unknown case `fast`");
    assert_usage_error(
        &["--case", "decode_fp16"],
        "decode_int8, decode_int4, decode_paged",
    );
}

#[test]
fn repeated_flags_are_usage_errors() {
    assert_usage_error(&["--quick", "--quick"], "--quick is given more than once");
    assert_usage_error(&["--seq", "16", "--seq", "70"], "--seq is given more than once");
    assert_usage_error(
        &["--quick", "--case", "decode", "--case=decode"],
        "--case is given more than once",
    );
    assert_usage_error(
        &["--threads", "2", "--reps", "1", "--threads", "3"],
        "--threads is given more than once",
    );
}

/// `attn-bench | head -1`: the reader goes away; the bench reports it, it does not panic.
#[test]
fn a_closed_stdout_is_an_error_not_a_panic() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_attn-bench"))
        .arg("--quick")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("runs attn-bench");
    drop(child.stdout.take()); // closed before the first line is written
    let out = child.wait_with_output().expect("attn-bench ends");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("cannot write") && !stderr.contains("panicked"), "{stderr}");
}
