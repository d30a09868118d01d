//! Checks of the book "Attention from Scratch, in Rust" that mdBook does not make itself.
//!
//! mdBook renders a misspelled anchor as nothing and still exits 0 when an included file is
//! missing; mdbook-katex exits 0 when a formula fails to render. This package closes those gaps:
//!
//! - `build.rs` expands the chapters' `{{#include}}` directives ([`directives`]) and has skeptic
//!   compile and run every Rust block (`tests/skeptic.rs`);
//! - [`includes`] checks every include, anchor and `ignore` block (`tests/includes.rs`);
//! - [`output`] compares each example's stdout with the copy the book shows
//!   (`tests/example_output.rs`);
//! - [`figures`] draws the book's figures from the crate's numbers (bin `figures`; the test
//!   `tests/figures.rs` fails when a committed figure is stale);
//! - [`html`] checks the links, fragments, CDN references and KaTeX errors of the built book
//!   (the `check-html` binary, run by `scripts/test.sh` after `mdbook build`).
//!
//! Every check is a function over strings, unit-tested on small inputs, plus a thin layer that
//! reads the real files.

pub mod bench;
pub mod directives;
pub mod figures;
pub mod html;
pub mod includes;
pub mod output;

use std::path::{Component, Path, PathBuf};

/// The workspace root (the folder holding `book.toml`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests package lives in a subfolder of the workspace")
        .to_path_buf()
}

/// Resolves `.` and `..` in `path` without touching the file system (`a/b/../c` is `a/c`).
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

/// `path` relative to `base` if it lies under it, else `path` itself (for messages).
pub fn display_path(path: &Path, base: &Path) -> String {
    path.strip_prefix(base).unwrap_or(path).display().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_resolves_dots_lexically() {
        assert_eq!(normalize(Path::new("/w/src/../code/./src/a.rs")), Path::new("/w/code/src/a.rs"));
        assert_eq!(normalize(Path::new("../../x")), Path::new("../../x"));
        assert_eq!(normalize(Path::new("a/../../x")), Path::new("../x"));
    }
}
