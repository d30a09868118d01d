//! Finding mdBook's `{{#…}}` directives in a chapter, for the checks of
//! [`crate::includes`] and for the build script's `cargo:rerun-if-changed` list.
//!
//! The chapters are *expanded* by mdBook 0.5.4's own `links` preprocessor
//! (`mdbook_driver::builtin_preprocessors::LinkPreprocessor`, run by `build.rs`). Its
//! parser is private, so this module finds the directives with the same regular
//! expressions (`find_links` in `mdbook-driver/src/builtin_preprocessors/links.rs`, the
//! anchor markers in `links/take_lines.rs`) and reads `path:lines` and `path:anchor` as
//! it does. `build.rs` checks on every chapter that the directives found here are exactly
//! the ones mdBook expands (`tests/includes.rs` reports any difference).
//!
//! mdBook's reading, quirks included:
//! - line numbers are 1-based and the end is inclusive: `f:2:4` is lines 2, 3 and 4;
//!   `f:3` is line 3 alone; `f:3:` runs to the end; `f::4` starts at line 1; anything
//!   else after the colon is an anchor name;
//! - `\{{#…}}` is an escape, up to the last `}}` of its line: nothing is expanded;
//! - a directive of an unknown type (`{{#foo bar}}`) is left as it is.
//!
//! The build script compiles this file on its own (`#[path]` module), so it uses nothing
//! but `std` and `regex`.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use regex::{Captures, Regex};

/// mdBook's `find_links` regex, verbatim.
static LINK: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?x)              # insignificant whitespace mode
        \\\{\{\#.*\}\}      # match escaped link
        |                   # or
        \{\{\s*             # link opening parens and whitespace
        \#([a-zA-Z0-9_]+)   # link type
        \s+                 # separating whitespace
        ([^}]+)             # link target path and space separated properties
        \}\}                # link closing parens",
    )
    .expect("a valid regex")
});

/// mdBook's anchor markers, verbatim.
static ANCHOR_START: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"ANCHOR:\s*(?P<anchor_name>[\w_-]+)").expect("a valid regex")
});
static ANCHOR_END: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"ANCHOR_END:\s*(?P<anchor_name>[\w_-]+)").expect("a valid regex")
});

/// Which part of a file a directive selects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    /// Lines `start..end` (0-based, end exclusive, `None` = to the end of the file).
    /// The whole file is `start: 0, end: None`.
    Lines {
        /// First line, 0-based.
        start: usize,
        /// One past the last line, 0-based; `None` runs to the end of the file.
        end: Option<usize>,
    },
    /// The lines between `ANCHOR: name` and `ANCHOR_END: name`.
    Anchor(String),
}

impl Selection {
    /// The whole file.
    pub const WHOLE: Selection = Selection::Lines { start: 0, end: None };
}

/// What a directive does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// `\{{#…}}`: rendered without the backslash, not expanded.
    Escaped,
    /// `{{#include path…}}`.
    Include(PathBuf, Selection),
    /// `{{#rustdoc_include path…}}`.
    RustdocInclude(PathBuf, Selection),
    /// `{{#playground path attrs…}}` (and its old name `playpen`): the whole file.
    Playground(PathBuf),
    /// `{{#title text}}`: sets the page title, renders as nothing.
    Title,
}

/// One directive found in a text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Directive<'a> {
    /// Byte offset of the first character (`{` or the escaping `\`).
    pub start: usize,
    /// Byte offset just past the closing `}}`.
    pub end: usize,
    /// The directive as written, e.g. `{{#include ../code/src/sdpa.rs:causal_mask}}`.
    pub text: &'a str,
    /// What it does.
    pub kind: Kind,
}

impl Directive<'_> {
    /// The file this directive reads, if any.
    pub fn path(&self) -> Option<&Path> {
        match &self.kind {
            Kind::Include(p, _) | Kind::RustdocInclude(p, _) | Kind::Playground(p) => {
                Some(p)
            }
            Kind::Escaped | Kind::Title => None,
        }
    }

    /// The part of the file this directive selects, if it reads one with a selection.
    pub fn selection(&self) -> Option<&Selection> {
        match &self.kind {
            Kind::Include(_, s) | Kind::RustdocInclude(_, s) => Some(s),
            _ => None,
        }
    }
}

/// 1-based line number of byte offset `offset` in `text`.
pub fn line_of(text: &str, offset: usize) -> usize {
    text[..offset].bytes().filter(|&b| b == b'\n').count() + 1
}

/// The directives of `text`, in order, as mdBook's `find_links` finds them.
pub fn find_directives(text: &str) -> Vec<Directive<'_>> {
    LINK.captures_iter(text).filter_map(directive).collect()
}

/// mdBook's `Link::from_capture`: `None` for an unknown type.
fn directive(cap: Captures<'_>) -> Option<Directive<'_>> {
    let all = cap.get(0)?;
    let kind = match (cap.get(1), cap.get(2)) {
        (Some(typ), Some(_)) if typ.as_str() == "title" => Kind::Title,
        (Some(typ), Some(rest)) => {
            let file = rest.as_str().split_whitespace().next()?;
            match typ.as_str() {
                "include" => {
                    let (path, selection) = parse_path(file);
                    Kind::Include(path, selection)
                }
                "rustdoc_include" => {
                    let (path, selection) = parse_path(file);
                    Kind::RustdocInclude(path, selection)
                }
                "playground" | "playpen" => Kind::Playground(file.into()),
                _ => return None,
            }
        }
        _ if all.as_str().starts_with('\\') => Kind::Escaped,
        _ => return None,
    };
    Some(Directive { start: all.start(), end: all.end(), text: all.as_str(), kind })
}

/// Splits `path:selection` as mdBook's `parse_include_path` and `parse_range_or_anchor`
/// do.
fn parse_path(file: &str) -> (PathBuf, Selection) {
    let (path, selection) = file.split_once(':').unwrap_or((file, ""));
    let mut parts = selection.splitn(3, ':');
    let first = parts.next().unwrap_or("");
    let start = if let Ok(line) = first.parse::<usize>() {
        Some(line.saturating_sub(1))
    } else if first.is_empty() {
        None
    } else {
        return (path.into(), Selection::Anchor(first.to_owned()));
    };
    let end = parts.next().map(str::parse::<usize>);
    let (start, end) = match (start, end) {
        (Some(start), Some(Ok(end))) => (start, Some(end)),
        (Some(start), Some(Err(_))) => (start, None),
        (Some(start), None) => (start, Some(start + 1)),
        (None, Some(Ok(end))) => (0, Some(end)),
        (None, None | Some(Err(_))) => (0, None),
    };
    (path.into(), Selection::Lines { start, end })
}

/// The anchor a line opens (`ANCHOR: name`), as mdBook reads it.
pub fn anchor_start(line: &str) -> Option<&str> {
    ANCHOR_START.captures(line).and_then(|c| c.name("anchor_name")).map(|m| m.as_str())
}

/// The anchor a line closes (`ANCHOR_END: name`), as mdBook reads it.
pub fn anchor_end(line: &str) -> Option<&str> {
    ANCHOR_END.captures(line).and_then(|c| c.name("anchor_name")).map(|m| m.as_str())
}

/// Every file `text` includes, directly or through the files it includes, its relative
/// paths starting at folder `base` (mdBook expands included text again, from the included
/// file's folder). A file that cannot be read is listed too. A superset of what mdBook
/// reads: a file's every directive is followed, not only those of the lines it shows.
pub fn included_files(text: &str, base: &Path) -> BTreeSet<PathBuf> {
    let mut found = BTreeSet::new();
    let mut pending = vec![(text.to_owned(), base.to_path_buf())];
    while let Some((text, base)) = pending.pop() {
        for directive in find_directives(&text) {
            let Some(path) = directive.path() else { continue };
            let target = base.join(path);
            if found.insert(target.clone())
                && let Ok(contents) = fs::read_to_string(&target)
            {
                let folder = target.parent().unwrap_or(Path::new("")).to_path_buf();
                pending.push((contents, folder));
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    //! Mostly mdBook 0.5.4's own tests of `find_links`, ported.
    use super::*;

    fn kinds(s: &str) -> Vec<(usize, usize, Kind)> {
        find_directives(s).into_iter().map(|d| (d.start, d.end, d.kind)).collect()
    }

    fn include(path: &str, selection: Selection) -> Kind {
        Kind::Include(path.into(), selection)
    }

    fn lines(start: usize, end: Option<usize>) -> Selection {
        Selection::Lines { start, end }
    }

    #[test]
    fn no_partial_empty_or_unknown_directives() {
        for s in [
            "Some random text without link...",
            "Some random text with {{#playground...",
            "Some random text with {{#include...",
            "Some random text with \\{{#include...",
            "Some random text with {{#playground}} and {{#playground   }} {{}} {{#}}...",
            "Some random text with {{#playgroundz ar.rs}} and {{#incn}} {{baz}} {{#bar}}...",
        ] {
            assert_eq!(kinds(s), [], "{s}");
        }
    }

    #[test]
    fn selections() {
        let at = |s: &str| kinds(&format!("Some random text with {s}..."));
        let file = "file.rs";
        assert_eq!(
            at("{{#include file.rs:10:20}}"),
            [(22, 48, include(file, lines(9, Some(20))))]
        );
        assert_eq!(
            at("{{#include file.rs:10}}"),
            [(22, 45, include(file, lines(9, Some(10))))]
        );
        assert_eq!(
            at("{{#include file.rs:10:}}"),
            [(22, 46, include(file, lines(9, None)))]
        );
        assert_eq!(
            at("{{#include file.rs::20}}"),
            [(22, 46, include(file, lines(0, Some(20))))]
        );
        assert_eq!(
            at("{{#include file.rs::}}"),
            [(22, 44, include(file, Selection::WHOLE))]
        );
        assert_eq!(
            at("{{#include file.rs}}"),
            [(22, 42, include(file, Selection::WHOLE))]
        );
        assert_eq!(
            at("{{#include file.rs:anchor}}"),
            [(22, 49, include(file, Selection::Anchor("anchor".into())))]
        );
        assert_eq!(at("{{#include file.rs::NaN}}")[0].2, include(file, Selection::WHOLE));
        assert_eq!(
            at("{{#rustdoc_include ../code/examples/mask.rs:main}}")[0].2,
            Kind::RustdocInclude(
                "../code/examples/mask.rs".into(),
                Selection::Anchor("main".into())
            )
        );
    }

    #[test]
    fn all_kinds_and_escapes() {
        let s = "Some random text with escaped playground {{#include file.rs}} and \\{{#contents are \
                 insignifficant in escaped link}} some more\n text  {{#playground my.rs editable \
                 no_run should_panic}} ...";
        let found = find_directives(s);
        assert_eq!(found.len(), 3);
        assert_eq!((found[0].start, found[0].end), (41, 61));
        assert_eq!(found[1].kind, Kind::Escaped);
        assert_eq!((found[1].start, found[1].end), (66, 115));
        assert_eq!(found[2].kind, Kind::Playground("my.rs".into()));
        assert_eq!((found[2].start, found[2].end), (133, 183));
        // Spaces inside the braces, a title, a directive over two lines.
        assert_eq!(
            kinds("{{ #include  a.rs }}{{#title  My  title}}{{#include\nb.rs}}"),
            [
                (0, 20, include("a.rs", Selection::WHOLE)),
                (20, 41, Kind::Title),
                (41, 58, include("b.rs", Selection::WHOLE)),
            ]
        );
    }

    #[test]
    fn anchors_are_found_like_mdbook_regex() {
        assert_eq!(anchor_start("    // ANCHOR: causal_mask"), Some("causal_mask"));
        assert_eq!(anchor_start("// ANCHOR:rope-apply trailing"), Some("rope-apply"));
        assert_eq!(anchor_start("// ANCHOR_END: x"), None);
        assert_eq!(anchor_start("// ANCHOR: // ANCHOR: b"), Some("b"));
        assert_eq!(anchor_end("/* ANCHOR_END: x */"), Some("x"));
    }

    #[test]
    fn included_files_follow_nested_includes_but_not_escapes() {
        let dir = std::env::temp_dir()
            .join(format!("book-tests-included-{}", std::process::id()));
        fs::create_dir_all(dir.join("code")).unwrap();
        fs::write(dir.join("code/a.rs"), "// \\{{#include nope}}\n{{#include b.txt}}\n")
            .unwrap();
        fs::write(dir.join("code/b.txt"), "{{#include a.rs:2}}").unwrap();
        let found = included_files("{{#include code/a.rs:f}} {{#include gone.rs}}", &dir);
        assert_eq!(
            found.into_iter().collect::<Vec<_>>(),
            [dir.join("code/a.rs"), dir.join("code/b.txt"), dir.join("gone.rs")]
        );
        fs::remove_dir_all(dir).unwrap();
    }
}
