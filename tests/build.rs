//! Has skeptic compile and run every Rust block of the book's chapters.
//!
//! skeptic passes mdBook directives to rustc verbatim, so this script first writes expanded
//! copies of the chapters (every `*.md` under `src/` but `SUMMARY.md`) into
//! `$OUT_DIR/chapters/`, expanding `{{#include}}` and `{{#rustdoc_include}}` exactly as mdBook
//! 0.5 does (`src/directives.rs`, shared with the tests), then generates the tests from the
//! copies. `tests/skeptic.rs` includes them.
//!
//! A failing test is named after the chapter, its section and the line of the block in the
//! *expanded* copy (`$OUT_DIR/chapters/<chapter>.md`), not in the source chapter.

use std::env;
use std::fs;
use std::path::{Path, PathBuf};

#[allow(dead_code, reason = "the module is shared with the library, which uses more of it")]
#[path = "src/directives.rs"]
mod directives;

fn main() {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let root = manifest_dir.parent().expect("tests/ is inside the workspace");
    let src = root.join("src");
    let out_dir = PathBuf::from(env::var("OUT_DIR").expect("set by cargo"));

    // New, renamed or deleted chapters, and edits to the included code.
    rerun_if_changed(&src);
    for dir in ["code/src", "code/examples"] {
        let dir = root.join(dir);
        if dir.exists() {
            rerun_if_changed(&dir);
        } else {
            // Watch the parent so the folder's creation is noticed.
            rerun_if_changed(dir.parent().expect("has a parent"));
        }
    }

    let copies_dir = out_dir.join("chapters");
    let mut copies = Vec::new();
    for chapter in directives::chapter_files(&src) {
        rerun_if_changed(&chapter);
        let text =
            fs::read_to_string(&chapter).unwrap_or_else(|e| panic!("cannot read {}: {e}", chapter.display()));
        let folder = chapter.parent().expect("a chapter is in a folder");
        let expansion = directives::expand(&text, folder);
        for file in &expansion.files_read {
            if file.exists() {
                rerun_if_changed(file);
            }
        }
        for error in &expansion.errors {
            // Left unexpanded, like mdBook does; tests/includes.rs says what is wrong.
            println!("cargo:warning={}: {error}", chapter.strip_prefix(root).unwrap_or(&chapter).display());
        }
        let copy = copies_dir.join(chapter.strip_prefix(&src).expect("found under src/"));
        let inputs = std::iter::once(&chapter).chain(&expansion.files_read);
        write_copy(&copy, &expansion.text, inputs);
        copies.push(copy);
    }
    // Copies of chapters that no longer exist.
    for stale in directives::files_under(&copies_dir, "md") {
        if !copies.contains(&stale) {
            let _ = fs::remove_file(stale);
        }
    }

    if copies.is_empty() {
        // skeptic writes nothing for an empty list; tests/skeptic.rs still includes the file.
        fs::write(out_dir.join("skeptic-tests.rs"), "").expect("write skeptic-tests.rs");
    } else {
        skeptic::generate_doc_tests(&copies);
    }
}

/// Writes an expanded chapter, only if its text changed, and dates it like its newest input.
///
/// skeptic prints `cargo:rerun-if-changed` for the files it is given. A copy written while
/// this script runs would be newer than the run itself, so cargo would run the script (and
/// rebuild the tests) again on every `cargo test`; backdating it to its inputs avoids that.
fn write_copy<'a>(copy: &Path, text: &str, inputs: impl Iterator<Item = &'a PathBuf>) {
    if fs::read_to_string(copy).ok().as_deref() != Some(text) {
        fs::create_dir_all(copy.parent().expect("has a parent")).expect("create OUT_DIR folder");
        fs::write(copy, text).expect("write the expanded chapter");
    }
    let newest_input = inputs.filter_map(|p| fs::metadata(p).and_then(|m| m.modified()).ok()).max();
    if let Some(time) = newest_input {
        let file = fs::File::options().write(true).open(copy).expect("open the expanded chapter");
        file.set_modified(time).expect("set the expanded chapter's date");
    }
}

fn rerun_if_changed(path: &Path) {
    println!("cargo:rerun-if-changed={}", path.display());
}
