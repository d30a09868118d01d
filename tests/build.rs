//! Has skeptic compile and run every Rust block of the book's chapters.
//!
//! skeptic passes mdBook directives to rustc verbatim, so this script first writes
//! expanded copies of the chapters (every `*.md` under `src/` but `SUMMARY.md`) into
//! `$OUT_DIR/chapters/`, then generates the tests from the copies; `tests/skeptic.rs`
//! includes them. The chapters are expanded by mdBook's own `links` preprocessor
//! (`LinkPreprocessor` of `mdbook-driver` =0.5.4, the version of the pinned `mdbook`),
//! the expansion `mdbook test` hands to rustdoc: `{{#include}}` as the reader sees it,
//! `{{#rustdoc_include}}` with the rest of the file behind hidden `# ` lines.
//!
//! It also checks that `src/links.rs` (the directive finder of the include checks) finds
//! exactly the directives mdBook expands, and writes what differs to
//! `$OUT_DIR/directive-mismatches.txt` for `tests/includes.rs` to report.
//!
//! A failing test is named after the chapter, its section and the line of the block in
//! the *expanded* copy (`$OUT_DIR/chapters/<chapter>.md`), not in the source chapter.

use std::env;
use std::fs;
use std::path::{Path, PathBuf};

use mdbook_driver::book::{Book, BookItem, Chapter};
use mdbook_driver::builtin_preprocessors::LinkPreprocessor;
use mdbook_driver::config::Config;
use mdbook_preprocessor::{Preprocessor, PreprocessorContext};
use walkdir::WalkDir;

#[allow(
    dead_code,
    reason = "the module is shared with the library, which uses more of it"
)]
#[path = "src/links.rs"]
mod links;

fn main() {
    let manifest_dir =
        PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("set by cargo"));
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

    let chapters: Vec<(PathBuf, String)> = md_files(&src)
        .into_iter()
        .filter(|p| p.file_name().is_some_and(|n| n != "SUMMARY.md"))
        .map(|path| {
            let text = fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
            (path, text)
        })
        .collect();

    let mut mismatches = String::new();
    for (chapter, text) in &chapters {
        rerun_if_changed(chapter);
        let folder = chapter.parent().expect("a chapter is in a folder");
        for file in links::included_files(text, folder) {
            if file.exists() {
                rerun_if_changed(&file);
            } else {
                // Left unexpanded, like mdBook does; tests/includes.rs says what is
                // wrong.
                let shown = chapter.strip_prefix(root).unwrap_or(chapter).display();
                println!(
                    "cargo:warning={shown}: cannot read included file {}",
                    file.display()
                );
            }
        }
    }

    let expanded = expand(&src, &chapters);
    let copies_dir = out_dir.join("chapters");
    let mut copies = Vec::new();
    for ((chapter, text), expansion) in chapters.iter().zip(&expanded) {
        let shown = chapter.strip_prefix(root).unwrap_or(chapter).display().to_string();
        mismatches.push_str(&check_directives(&src, chapter, text, expansion, &shown));
        let copy = copies_dir.join(chapter.strip_prefix(&src).expect("found under src/"));
        let folder = chapter.parent().expect("a chapter is in a folder");
        let inputs =
            std::iter::once(chapter.clone()).chain(links::included_files(text, folder));
        write_copy(&copy, expansion, inputs);
        copies.push(copy);
    }
    // Copies of chapters that no longer exist.
    for stale in md_files(&copies_dir) {
        if !copies.contains(&stale) {
            let _ = fs::remove_file(stale);
        }
    }
    fs::write(out_dir.join("directive-mismatches.txt"), mismatches)
        .expect("write directive-mismatches.txt");

    if copies.is_empty() {
        // skeptic writes nothing for an empty list; tests/skeptic.rs still includes the
        // file.
        fs::write(out_dir.join("skeptic-tests.rs"), "").expect("write skeptic-tests.rs");
    } else {
        skeptic::generate_doc_tests(&copies);
    }
}

/// Expands the `(path, text)` chapters under `src` with mdBook's `links` preprocessor, as
/// `mdbook test` does (renderer `test`); returns the expanded texts, in order.
fn expand(src: &Path, chapters: &[(PathBuf, String)]) -> Vec<String> {
    let mut book = Book::new();
    for (path, text) in chapters {
        let relative = path.strip_prefix(src).expect("found under src/");
        let name = relative.display().to_string();
        book.push_item(BookItem::Chapter(Chapter::new(
            &name,
            text.clone(),
            relative,
            Vec::new(),
        )));
    }
    let mut config = Config::default();
    config.book.src = src.to_path_buf();
    let context = PreprocessorContext::new(src.to_path_buf(), config, "test".to_owned());
    let book =
        LinkPreprocessor::new().run(&context, book).expect("mdBook's links preprocessor");
    book.chapters().map(|chapter| chapter.content.clone()).collect()
}

/// Whether `src/links.rs` finds in `text` exactly the directives mdBook expands: the
/// chapter with each directive found replaced by mdBook's expansion of that directive
/// alone must be mdBook's expansion of the whole chapter. Returns a report, empty if so.
fn check_directives(
    src: &Path,
    chapter: &Path,
    text: &str,
    expansion: &str,
    shown: &str,
) -> String {
    let directives = links::find_directives(text);
    let alone: Vec<(PathBuf, String)> =
        directives.iter().map(|d| (chapter.to_path_buf(), d.text.to_owned())).collect();
    let pieces = expand(src, &alone);
    let mut spliced = String::with_capacity(expansion.len());
    let mut previous_end = 0;
    for (directive, piece) in directives.iter().zip(&pieces) {
        spliced.push_str(&text[previous_end..directive.start]);
        spliced.push_str(piece);
        previous_end = directive.end;
    }
    spliced.push_str(&text[previous_end..]);
    if spliced == expansion {
        return String::new();
    }
    let found: Vec<String> = directives
        .iter()
        .map(|d| format!("  line {}: {}", links::line_of(text, d.start), d.text))
        .collect();
    format!(
        "{shown}: tests/src/links.rs finds other directives than mdBook expands; it finds:\n{}\n",
        found.join("\n")
    )
}

/// Every `*.md` file under `dir`, recursively, sorted; none if `dir` is missing.
fn md_files(dir: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = WalkDir::new(dir)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| {
            e.file_type().is_file() && e.path().extension().is_some_and(|x| x == "md")
        })
        .map(walkdir::DirEntry::into_path)
        .collect();
    found.sort();
    found
}

/// Writes an expanded chapter, only if its text changed, and dates it like its newest
/// input.
///
/// skeptic prints `cargo:rerun-if-changed` for the files it is given. A copy written
/// while this script runs would be newer than the run itself, so cargo would run the
/// script (and rebuild the tests) again on every `cargo test`; backdating it to its
/// inputs avoids that.
fn write_copy(copy: &Path, text: &str, inputs: impl Iterator<Item = PathBuf>) {
    if fs::read_to_string(copy).ok().as_deref() != Some(text) {
        fs::create_dir_all(copy.parent().expect("has a parent"))
            .expect("create OUT_DIR folder");
        fs::write(copy, text).expect("write the expanded chapter");
    }
    let newest_input =
        inputs.filter_map(|p| fs::metadata(p).and_then(|m| m.modified()).ok()).max();
    if let Some(time) = newest_input {
        let file = fs::File::options()
            .write(true)
            .open(copy)
            .expect("open the expanded chapter");
        file.set_modified(time).expect("set the expanded chapter's date");
    }
}

fn rerun_if_changed(path: &Path) {
    println!("cargo:rerun-if-changed={}", path.display());
}
