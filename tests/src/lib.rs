//! Checks of the book "Attention from Scratch, in Rust" that mdBook does not make itself.
//!
//! mdBook renders a misspelled anchor as nothing and still exits 0 when an included file
//! is missing; mdbook-katex exits 0 when a formula fails to render. This package closes
//! those gaps:
//!
//! - `build.rs` expands the chapters' `{{#include}}` directives with mdBook's own `links`
//!   preprocessor (the `mdbook-driver` library) and has skeptic compile and run every
//!   Rust block (`tests/skeptic.rs`);
//! - [`includes`] checks every include, anchor and `ignore` block (`tests/includes.rs`),
//!   finding the directives with [`links`];
//! - [`output`] compares each example's stdout with the copy the book shows
//!   (`tests/example_output.rs`);
//! - [`figures`] draws the book's figures from the crate's numbers (bin `figures`; the
//!   test `tests/figures.rs` fails when a committed figure is stale);
//! - [`html`] checks the links, fragments, CDN references and KaTeX errors of the built
//!   book (the `check-html` binary, run by `scripts/test.sh` after `mdbook build`);
//! - [`bench`](mod@bench) reads `src/data/bench-results.json`, the one reader of the
//!   measurements, for the speed figure and the results tables (bins `figures` and
//!   `bench-table`).
//!
//! Every check is a function over strings, unit-tested on small inputs, plus a thin layer
//! that reads the real files.

pub mod bench;
pub mod figures;
pub mod html;
pub mod includes;
pub mod links;
pub mod output;

use std::path::{Component, Path, PathBuf};

use walkdir::WalkDir;

/// The workspace root (the folder holding `book.toml`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests package lives in a subfolder of the workspace")
        .to_path_buf()
}

/// Resolves `.` and `..` in `path` without touching the file system (`a/b/../c` is
/// `a/c`).
pub fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => match out.components().next_back() {
                Some(Component::Normal(_)) => {
                    out.pop();
                }
                Some(Component::RootDir | Component::Prefix(_)) => {}
                _ => out.push(".."),
            },
            other => out.push(other),
        }
    }
    out
}

/// Every file under `dir` (recursively) whose extension is `ext`, sorted; none if `dir`
/// is missing.
pub fn files_under(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = WalkDir::new(dir)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| {
            e.file_type().is_file() && e.path().extension().is_some_and(|x| x == ext)
        })
        .map(walkdir::DirEntry::into_path)
        .collect();
    found.sort();
    found
}

/// `path` relative to `base` if it lies under it, else `path` itself (for messages).
pub fn display_path(path: &Path, base: &Path) -> String {
    path.strip_prefix(base).unwrap_or(path).display().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_resolves_dots_lexically() {
        assert_eq!(
            normalize(Path::new("/w/src/../code/./src/a.rs")),
            Path::new("/w/code/src/a.rs")
        );
        assert_eq!(normalize(Path::new("../../x")), Path::new("../../x"));
        assert_eq!(normalize(Path::new("a/../../x")), Path::new("../x"));
    }
}
