//! The `attn-bench` binary: a smoke test of its benchmark run (tiny shapes, well under a second),
//! its memory run, its errors, and the check that the book's results table is exactly what it
//! renders from the committed measurements.

use std::path::PathBuf;
use std::process::Command;

fn bench(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_attn-bench")).args(args).output().expect("runs attn-bench");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).expect("utf-8 stdout"),
        String::from_utf8(out.stderr).expect("utf-8 stderr"),
    )
}

fn book_file(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..").join(path)
}

#[test]
fn quick_run_prints_one_json_object_per_case() {
    let (code, stdout, stderr) = bench(&["--quick"]);
    assert_eq!(code, 0, "{stderr}");
    let lines: Vec<serde_json::Value> =
        stdout.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}"))).collect();
    let mut cases: Vec<&str> = lines.iter().map(|l| l["case"].as_str().unwrap()).collect();
    cases.dedup();
    assert!(
        cases.contains(&"prefill_naive") && cases.contains(&"prefill_flash") && cases.contains(&"decode")
    );
    for l in &lines {
        for key in ["seq", "n_heads", "n_kv_heads", "head_dim", "threads"] {
            assert!(l[key].as_u64().is_some_and(|n| n > 0), "{key} in {l}");
        }
        assert!(l["median_ms"].as_f64().is_some_and(|ms| ms > 0.0), "{l}");
        assert_eq!(l.as_object().unwrap().len(), 7, "exactly the documented fields: {l}");
    }
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
        assert!(m["peak_rss_bytes"].as_u64().unwrap() > m["inputs_output_bytes"].as_u64().unwrap());
    }
}

#[test]
fn bad_arguments_are_reported() {
    for args in [
        &["--bogus"][..],
        &["--memory"],
        &["--memory", "x"],
        &["--case", "fast"],
        &["--table", "/nonexistent.json"],
    ] {
        let (code, stdout, stderr) = bench(args);
        assert_eq!(code, 2, "{args:?}: {stdout}");
        assert!(stderr.starts_with("attn-bench: "), "{args:?}: {stderr}");
    }
}

/// `src/generated/bench-table.md` (included by the chapter "Making attention fast") must be exactly
/// what `attn-bench --table` renders from `src/data/bench-results.json`: neither is typed by hand,
/// and `scripts/bench_compare.py` rewrites both.
#[test]
fn the_books_results_table_is_rendered_from_the_measurements() {
    let json = book_file("src/data/bench-results.json");
    let table = book_file("src/generated/bench-table.md");
    let (code, rendered, stderr) = bench(&["--table", json.to_str().unwrap()]);
    assert_eq!(code, 0, "{stderr}");
    let committed = std::fs::read_to_string(&table).expect("src/generated/bench-table.md exists");
    assert!(
        committed == rendered,
        "src/generated/bench-table.md differs from `attn-bench --table src/data/bench-results.json`; \
         rerun scripts/bench_compare.py (or render the table again from the JSON)"
    );
    for needle in ["**Prefill**", "**Decode**", "**Memory**", "**Goals**"] {
        assert!(rendered.contains(needle), "the table has its {needle} part");
    }
}
