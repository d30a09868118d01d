//! The chapters' includes resolve to what the author meant, and nothing is left out.
//!
//! - every `{{#include}}` / `{{#rustdoc_include}}` names an existing file, an existing
//!   and balanced anchor, or a line range inside the file, and shows a non-empty excerpt;
//! - `ignore` blocks hold only `{{#include}}` lines of the companion crate's code, and
//!   every code block is a tagged backtick fence;
//! - the anchors of `code/src` and `code/examples` are balanced, and each one is shown by
//!   some chapter;
//! - the directive finder of these checks (`book_tests::links`) finds exactly the
//!   directives mdBook expands (compared by `build.rs`, which expands the chapters with
//!   mdBook's own `links` preprocessor).
//!
//! Rules and messages: `book_tests::includes`.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use book_tests::includes::{
    Chapter, anchor_problems, chapter_problems, defined_anchors, used_anchors,
};
use book_tests::{display_path, files_under, normalize, workspace_root};

fn read(path: &Path) -> Option<String> {
    fs::read_to_string(path).ok()
}

/// Every chapter of the book: the `*.md` files under `src/`, except `SUMMARY.md`.
fn chapters(root: &Path) -> Vec<Chapter> {
    files_under(&root.join("src"), "md")
        .into_iter()
        .filter(|path| path.file_name().is_some_and(|n| n != "SUMMARY.md"))
        .map(|path| Chapter {
            name: display_path(&path, root),
            dir: path.parent().expect("in a folder").to_path_buf(),
            text: fs::read_to_string(&path).expect("read the chapter"),
        })
        .collect()
}

/// The companion crate's files whose anchors chapters can include.
fn code_files(root: &Path) -> Vec<PathBuf> {
    let mut files = files_under(&root.join("code/src"), "rs");
    files.extend(files_under(&root.join("code/examples"), "rs"));
    files
}

fn fail_with(what: &str, problems: &[String]) {
    assert!(problems.is_empty(), "{} {what}:\n{}\n", problems.len(), problems.join("\n"));
}

#[test]
fn every_include_resolves_and_every_code_block_is_checked() {
    let root = workspace_root();
    let problems: Vec<String> = chapters(&root)
        .iter()
        .flat_map(|c| chapter_problems(c, &root.join("code"), &read))
        .map(|p| p.to_string())
        .collect();
    fail_with("problem(s) with the chapters' includes and code blocks", &problems);
}

#[test]
fn anchors_in_the_companion_crate_are_balanced() {
    let root = workspace_root();
    let mut problems = Vec::new();
    for file in code_files(&root) {
        let text = fs::read_to_string(&file).expect("read the source file");
        for (line, _, message) in anchor_problems(&text) {
            problems.push(format!("{}:{line}: {message}", display_path(&file, &root)));
        }
    }
    fail_with("unbalanced anchor(s)", &problems);
}

#[test]
fn every_anchor_of_the_companion_crate_is_shown_in_the_book() {
    let root = workspace_root();
    let used = used_anchors(&chapters(&root), &read);
    let mut problems = Vec::new();
    for file in code_files(&root) {
        let text = fs::read_to_string(&file).expect("read the source file");
        let mut seen = BTreeSet::new();
        for name in defined_anchors(&text) {
            if seen.insert(name.clone())
                && !used.contains(&(normalize(&file), name.clone()))
            {
                problems.push(format!(
                    "{}: anchor `{name}` is not included by any chapter \
                     (show it, or remove the ANCHOR comments)",
                    display_path(&file, &root)
                ));
            }
        }
    }
    fail_with("unused anchor(s)", &problems);
}

/// The include checks see the directives mdBook expands: `build.rs` expands each chapter
/// with mdBook's `links` preprocessor, and each directive that `book_tests::links` finds
/// on its own, and writes down the chapters where splicing the pieces does not give the
/// whole.
#[test]
fn the_checks_find_the_directives_mdbook_expands() {
    let mismatches = include_str!(concat!(env!("OUT_DIR"), "/directive-mismatches.txt"));
    assert!(mismatches.is_empty(), "{mismatches}");
}
