//! Every output the book shows is generated: `src/output/NAME.txt` is exactly the stdout
//! of `cargo run -p attention --example NAME` (the example of `code/examples/NAME.rs`),
//! and each example has its output file and each output file its example.
//!
//! The examples run with `--profile test`, the profile `cargo test` has just built
//! everything with, so nothing is compiled twice; `scripts/update-outputs.sh` uses the
//! same command.

use std::fs;
use std::path::Path;
use std::process::Command;

use book_tests::output::{UPDATE_HINT, compare, pair};
use book_tests::{files_under, workspace_root};

/// File stems of the `ext` files directly in `dir` (for examples, also `NAME/main.rs`).
fn names(dir: &Path, ext: &str) -> Vec<String> {
    files_under(dir, ext)
        .iter()
        .filter_map(|path| {
            let relative = path.strip_prefix(dir).ok()?;
            let parts: Vec<_> = relative.iter().collect();
            match parts.as_slice() {
                [file] => Path::new(file).file_stem(),
                [folder, main] if *main == "main.rs" => Some(*folder),
                _ => None,
            }
            .map(|s| s.to_string_lossy().into_owned())
        })
        .collect()
}

/// Runs example `name` and returns its stdout.
fn run_example(root: &Path, name: &str) -> Result<String, String> {
    let output = Command::new(env!("CARGO"))
        .args([
            "run",
            "--quiet",
            "--profile",
            "test",
            "-p",
            "attention",
            "--example",
            name,
        ])
        .current_dir(root)
        .output()
        .map_err(|e| format!("example `{name}`: cannot run cargo: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "example `{name}` failed ({}):\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    String::from_utf8(output.stdout)
        .map_err(|e| format!("example `{name}`: stdout is not UTF-8: {e}"))
}

#[test]
fn every_example_output_in_the_book_is_what_the_example_prints() {
    let root = workspace_root();
    let examples = names(&root.join("code/examples"), "rs");
    let outputs = names(&root.join("src/output"), "txt");
    let pairing = pair(&examples, &outputs);

    let mut problems = Vec::new();
    for name in &pairing.missing_output {
        problems.push(format!(
            "example `{name}` has no src/output/{name}.txt to show in the book ({UPDATE_HINT})"
        ));
    }
    for name in &pairing.orphan_output {
        problems.push(format!(
            "src/output/{name}.txt has no example code/examples/{name}.rs (delete it, or restore the example)"
        ));
    }
    for name in &pairing.paired {
        let expected =
            fs::read_to_string(root.join("src/output").join(format!("{name}.txt")))
                .expect("read the committed output");
        match run_example(&root, name)
            .and_then(|actual| compare(name, &expected, &actual))
        {
            Ok(()) => {}
            Err(problem) => problems.push(problem),
        }
    }
    assert!(
        problems.is_empty(),
        "{} problem(s) with the example outputs:\n\n{}\n",
        problems.len(),
        problems.join("\n\n")
    );
}
