//! `src/generated/bench-table.md` (included by the chapter "Making attention fast") is
//! exactly what `book_tests::bench::render_tables` renders from
//! `src/data/bench-results.json`: neither is typed by hand. `scripts/bench_compare.py`
//! rewrites both; `cargo run -p book-tests --bin figures` renders the table again from
//! the committed measurements.

use std::fs;
use std::process::Command;

use book_tests::bench::{BenchResults, RESULTS_FILE, RUNS, TABLE_FILE, render_tables};
use book_tests::workspace_root;

#[test]
fn every_committed_run_has_its_table_rendered_from_its_measurements() {
    for (results, table) in RUNS {
        let rendered =
            render_tables(&BenchResults::load(&workspace_root().join(results)).unwrap());
        let committed = fs::read_to_string(workspace_root().join(table))
            .unwrap_or_else(|e| panic!("{table} is committed: {e}"));
        assert!(
            committed == rendered,
            "{table} differs from the rendering of {results}; run `cargo run -p book-tests \
             --bin figures` and commit it"
        );
    }
}

#[test]
fn the_books_results_table_is_rendered_from_the_measurements() {
    let rendered = render_tables(&BenchResults::committed().unwrap());
    let committed = fs::read_to_string(workspace_root().join(TABLE_FILE))
        .expect("the table is committed");
    assert!(
        committed == rendered,
        "{TABLE_FILE} differs from the rendering of {RESULTS_FILE}; run `cargo run -p book-tests --bin figures` \
         (or scripts/bench_compare.py, which measures again) and commit it"
    );
    for needle in
        ["**Prefill**", "**Two threads**", "**Decode**", "**Memory**", "**Goals**"]
    {
        assert!(rendered.contains(needle), "the table has its {needle} part");
    }
}

fn bench_table(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_bench-table"))
        .args(args)
        .output()
        .expect("runs bench-table");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).expect("utf-8 stdout"),
        String::from_utf8(out.stderr).expect("utf-8 stderr"),
    )
}

/// What `scripts/bench_compare.py` does: render a results file given by path, to stdout
/// or a file.
#[test]
fn bench_table_renders_a_given_file_to_stdout_or_a_file() {
    let input = workspace_root().join(RESULTS_FILE);
    let expected = fs::read_to_string(workspace_root().join(TABLE_FILE)).unwrap();
    let (code, stdout, stderr) = bench_table(&["--input", input.to_str().unwrap()]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout, expected);

    let output =
        std::env::temp_dir().join(format!("bench-table-{}.md", std::process::id()));
    let (code, stdout, stderr) = bench_table(&[
        "--input",
        input.to_str().unwrap(),
        "--output",
        output.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.is_empty(), "{stdout}");
    assert_eq!(fs::read_to_string(&output).unwrap(), expected);
    fs::remove_file(&output).ok();
}

#[test]
fn bench_table_reports_errors_on_one_line() {
    for (args, code, needle) in [
        (&["--input", "/nonexistent/results.json"][..], 1, "/nonexistent/results.json"),
        (&["--bogus"], 2, "--bogus"),
        (
            &["--input", "a.json", "--input", "b.json"],
            2,
            "--input is given more than once",
        ),
    ] {
        let (got, stdout, stderr) = bench_table(args);
        assert_eq!(got, code, "{args:?}: {stdout}{stderr}");
        assert!(stderr.starts_with("bench-table: error: "), "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
    }
}

/// Chapter 8's prose quotes the flash and decode ratios of the runs its tables show.
/// `scripts/bench_compare.py` rewrites the tables, not the prose: after a new run this test
/// fails until the sentences are brought up to date (they also say what the numbers mean).
#[test]
fn chapter_8_quotes_the_ratios_of_the_runs_it_shows() {
    use book_tests::bench::{BenchRow, Case};
    let chapter =
        fs::read_to_string(workspace_root().join("src/ch08-00-making-attention-fast.md"))
            .unwrap();
    // the prose wraps lines anywhere: compare with every run of whitespace made one space
    let chapter = chapter.split_whitespace().collect::<Vec<_>>().join(" ");
    for (results, _) in book_tests::bench::fast_runs() {
        let run = BenchResults::load(&workspace_root().join(results)).unwrap();
        let ratio = |case: Case, seq: u64, n_kv_heads: u64| {
            let row = run
                .results
                .iter()
                .find(|r| {
                    r.case == case
                        && r.seq == seq
                        && r.n_kv_heads == n_kv_heads
                        && r.threads == 1
                })
                .unwrap_or_else(|| panic!("{results}: no {case:?} row at seq {seq}"));
            format!("{:.2}", row.ratio())
        };
        let flash =
            |seq| (ratio(Case::PrefillFlash, seq, 12), ratio(Case::PrefillFlash, seq, 4));
        let ((m1, g1), (m4, g4)) = (flash(1024), flash(4096));
        let quote = format!(
            "takes {m1} and {g1} of SDPA's time at seq 1024 (MHA and GQA) and {m4} and {g4} at \
             seq 4096"
        );
        assert!(chapter.contains(&quote), "chapter 8 should say \"{quote}\" ({results})");
    }
    let run = BenchResults::committed().unwrap();
    let decode = run
        .results
        .iter()
        .find(|r| r.case == Case::Decode && r.seq == 4096 && r.threads == 1)
        .expect("a decode row at context 4096");
    let quote = format!("takes {:.2} of SDPA's time in this run", decode.ratio());
    assert!(chapter.contains(&quote), "chapter 8 should say \"{quote}\"");
    // the Zen 4 section: decode against SDPA at 4096, and two threads against one at
    // 32 768, at the widest level and capped at AVX2
    let zen4 = |file: &str| BenchResults::load(&workspace_root().join(file)).unwrap();
    let (native, avx2) = (
        zen4("src/data/bench-results-zen4.json"),
        zen4("src/data/bench-results-avx2-zen4.json"),
    );
    fn ours(run: &BenchResults, case: Case, seq: u64, threads: u64) -> &BenchRow {
        run.results
            .iter()
            .find(|r| {
                r.case == case
                    && r.seq == seq
                    && r.n_kv_heads == 4
                    && r.threads == threads
            })
            .unwrap_or_else(|| panic!("no {case:?} row at {seq} on {threads} threads"))
    }
    let speedup = |run: &BenchResults, case: Case| {
        format!(
            "{:.2}",
            ours(run, case, 32768, 1).ours_ms / ours(run, case, 32768, 2).ours_ms
        )
    };
    for quote in [
        format!(
            "takes {:.2} of SDPA's time at the widest level and {:.2} capped at AVX2",
            ours(&native, Case::Decode, 4096, 1).ratio(),
            ours(&avx2, Case::Decode, 4096, 1).ratio()
        ),
        format!(
            "two threads are {} times as fast as one ({} with split-K)",
            speedup(&native, Case::Decode),
            speedup(&native, Case::DecodeSplitK)
        ),
        format!(
            "two threads were {} times as fast as one in that run ({} with split-K",
            speedup(&avx2, Case::Decode),
            speedup(&avx2, Case::DecodeSplitK)
        ),
    ] {
        assert!(chapter.contains(&quote), "chapter 8 should say \"{quote}\"");
    }
}

/// Chapters 13 and 14 quote the decode times, ratios and read rates of the serving runs
/// whose tables they show (`src/data/bench-serving-results.json`, the Xeon's, and
/// `bench-serving-results-zen4.json`); after a new `bench_compare.py --suite serving` run
/// this fails until the sentences are brought up to date.
#[test]
fn chapters_13_and_14_quote_the_serving_runs_they_show() {
    use book_tests::bench::{Case, SERVING_RESULTS_FILE, fmt_ms, serving_runs};
    let (mut ch13, mut ch14) = (Vec::new(), Vec::new());
    for (results, _) in serving_runs() {
        let run = BenchResults::load(&workspace_root().join(results)).unwrap();
        let row = |case: Case, seq: u64| {
            run.results
                .iter()
                .find(|r| r.case == case && r.seq == seq && r.threads == 1)
                .unwrap_or_else(|| panic!("{results}: no {case:?} row at context {seq}"))
        };
        let (f32_4k, f32_32k) = (row(Case::Decode, 4096), row(Case::Decode, 32768));
        let (int8_4k, int8_32k) =
            (row(Case::DecodeInt8, 4096), row(Case::DecodeInt8, 32768));
        let (paged_4k, paged_32k) =
            (row(Case::DecodePaged, 4096), row(Case::DecodePaged, 32768));
        let rate =
            |r: &book_tests::bench::BenchRow| format!("{:.1}", r.gb_per_s.unwrap());
        let bandwidth = run.machine.read_bandwidth.as_ref().expect("the run measured it");
        let (read_8mib, read_64mib) = (bandwidth[0].gb_per_s, bandwidth[1].gb_per_s);
        ch13.push(format!(
            "decodes {:.1} times faster than chapter 8's kernel at 4096 positions ({} ms against \
             {} ms), {:.1} times at 32 768: {:.2} and {:.2} of PyTorch's time",
            f32_4k.ours_ms / int8_4k.ours_ms,
            fmt_ms(int8_4k.ours_ms),
            fmt_ms(f32_4k.ours_ms),
            f32_32k.ours_ms / int8_32k.ours_ms,
            int8_4k.ratio(),
            int8_32k.ratio()
        ));
        // against the contiguous kernel timed call for call beside the paged one, as the
        // goals table divides, or (in runs before it was) against the `decode` row
        let paged_ratio = |paged: &book_tests::bench::BenchRow,
                           f32: &book_tests::bench::BenchRow| {
            paged.ours_ms / paged.paired_decode_ms.unwrap_or(f32.ours_ms)
        };
        ch14.push(format!(
            "takes {} ms at 4096 positions and {} ms at 32 768, {:.2} and {:.2} of chapter 8's \
             contiguous kernel",
            fmt_ms(paged_4k.ours_ms),
            fmt_ms(paged_32k.ours_ms),
            paged_ratio(paged_4k, f32_4k),
            paged_ratio(paged_32k, f32_32k)
        ));
        if *results == SERVING_RESULTS_FILE {
            // the main run's read rates and int4, in chapter 13
            ch13.push(format!(
                "{} GB/s, where one core reads {read_8mib:.1} GB/s from a buffer of the same size \
                 and chapter 8's f32 kernel reads {}",
                rate(int8_4k),
                rate(f32_4k)
            ));
            ch13.push(format!(
                "slower than int8 ({} ms)",
                fmt_ms(row(Case::DecodeInt4, 4096).ours_ms)
            ));
        } else {
            // the second machine's read rates at 32 768, in chapter 14
            ch14.push(format!(
                "at 32 768 positions they read {} and {} GB/s, where one core reads \
                 {read_64mib:.1} GB/s from a buffer of the same size",
                rate(f32_32k),
                rate(paged_32k)
            ));
        }
    }
    for (file, quotes) in [
        ("src/ch13-00-quantized-kv-cache.md", &ch13[..]),
        ("src/ch14-00-paged-cache.md", &ch14[..]),
    ] {
        let text = fs::read_to_string(workspace_root().join(file)).unwrap();
        let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
        for quote in quotes {
            assert!(text.contains(quote.as_str()), "{file} should say \"{quote}\"");
        }
    }
}
