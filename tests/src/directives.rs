//! mdBook's `{{#…}}` directives: finding them in a chapter and expanding them exactly as the
//! `links` preprocessor of mdBook 0.5.4 does (`mdbook-driver/src/builtin_preprocessors/links.rs`
//! and `links/take_lines.rs`).
//!
//! The build script compiles this file on its own (`#[path]` module) to expand the chapters
//! before skeptic reads them, and the library re-exports it for the checks. It therefore uses
//! nothing but `std`.
//!
//! Behaviour copied from mdBook, quirks included, so that what skeptic compiles is what the reader
//! sees and what `mdbook test` compiles:
//! - `{{#include f}}` and line ranges keep every line verbatim, `ANCHOR` markers included;
//!   `{{#include f:name}}` keeps the lines between `ANCHOR: name` and the first `ANCHOR_END: name`,
//!   dropping every line that carries an `ANCHOR:` or `ANCHOR_END:` marker.
//! - `{{#rustdoc_include f:name}}` inserts the whole file, the lines outside the anchor prefixed
//!   with `# ` (hidden, but compiled); marker lines are dropped.
//! - Line numbers are 1-based and the end is inclusive: `f:2:4` is lines 2, 3 and 4; `f:3` is line 3
//!   alone; `f:3:` runs to the end; `f::4` starts at line 1.
//! - Included text is expanded again (paths then relative to the included file), ten levels deep.
//! - `\{{#…}}` is an escape: the backslash is removed and nothing is expanded.
//! - A directive whose file cannot be read is left in the text as is (mdBook logs an ERROR).

use std::fs;
use std::path::{Path, PathBuf};

/// How deep included text is expanded again, as in mdBook (`MAX_LINK_NESTED_DEPTH`).
pub const MAX_DEPTH: usize = 10;

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

    /// Whether `index` (0-based) is inside a line range.
    fn contains(&self, index: usize) -> bool {
        match self {
            Selection::Lines { start, end } => index >= *start && end.is_none_or(|end| index < end),
            Selection::Anchor(_) => false,
        }
    }
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
    /// `{{#playground path attrs…}}` (and its old name `playpen`).
    Playground(PathBuf, Vec<String>),
    /// `{{#title text}}`: sets the page title, renders as nothing.
    Title(String),
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
            Kind::Include(p, _) | Kind::RustdocInclude(p, _) | Kind::Playground(p, _) => Some(p),
            Kind::Escaped | Kind::Title(_) => None,
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

/// Finds the directives of `text`, in order, as mdBook's regex does:
///
/// ```text
/// \\\{\{\#.*\}\}                                   escaped: to the last `}}` of the line
/// | \{\{\s*\#([a-zA-Z0-9_]+)\s+([^}]+)\}\}         {{ #type rest }}
/// ```
///
/// A match whose type is unknown (`{{#foo bar}}`) is skipped, text and all, like mdBook does.
pub fn find_directives(text: &str) -> Vec<Directive<'_>> {
    let mut found = Vec::new();
    let mut i = 0;
    while let Some(offset) = text[i..].find(['\\', '{']) {
        let at = i + offset;
        match match_at(text, at) {
            Some((end, kind)) => {
                if let Some(kind) = kind {
                    found.push(Directive { start: at, end, text: &text[at..end], kind });
                }
                i = end;
            }
            // Both `\` and `{` are one byte long.
            None => i = at + 1,
        }
    }
    found
}

/// Tries the directive regex at byte `at`: the end of the match and, if it is a known directive,
/// its kind.
fn match_at(text: &str, at: usize) -> Option<(usize, Option<Kind>)> {
    let rest = &text[at..];
    if rest.starts_with("\\{{#") {
        // `.*` does not cross a newline and is greedy: the last `}}` of the line.
        let line = &rest[..rest.find('\n').unwrap_or(rest.len())];
        let close = line[4..].rfind("}}")? + 4;
        return Some((at + close + 2, Some(Kind::Escaped)));
    }
    let body = rest.strip_prefix("{{")?;
    let body = body.trim_start_matches(char::is_whitespace);
    let body = body.strip_prefix('#')?;
    let type_len = body.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(body.len());
    if type_len == 0 {
        return None;
    }
    let (typ, after_type) = body.split_at(type_len);
    let ws_len = after_type.find(|c: char| !c.is_whitespace()).unwrap_or(after_type.len());
    if ws_len == 0 {
        return None;
    }
    let mut args_start = ws_len;
    let args_len = after_type[ws_len..].find('}').unwrap_or(after_type.len() - ws_len);
    let mut args = &after_type[ws_len..ws_len + args_len];
    if args.is_empty() {
        // `[^}]+` needs one character: the regex gives it the last whitespace character.
        let last_ws = after_type[..ws_len].chars().next_back()?;
        if ws_len == last_ws.len_utf8() {
            return None;
        }
        args_start = ws_len - last_ws.len_utf8();
        args = &after_type[args_start..ws_len];
    }
    let close_at = args_start + args.len();
    if !after_type[close_at..].starts_with("}}") {
        return None;
    }
    let end = text.len() - after_type.len() + close_at + 2;
    Some((end, kind_of(typ, args)))
}

/// The directive for type `typ` with arguments `args`, as mdBook's `Link::from_capture`.
fn kind_of(typ: &str, args: &str) -> Option<Kind> {
    if typ == "title" {
        return Some(Kind::Title(args.to_owned()));
    }
    let mut words = args.split_whitespace();
    let file = words.next()?;
    match typ {
        "include" => {
            let (path, selection) = parse_path(file);
            Some(Kind::Include(path, selection))
        }
        "rustdoc_include" => {
            let (path, selection) = parse_path(file);
            Some(Kind::RustdocInclude(path, selection))
        }
        "playground" | "playpen" => Some(Kind::Playground(file.into(), words.map(str::to_owned).collect())),
        _ => None,
    }
}

/// Splits `path:selection` as mdBook's `parse_include_path` and `parse_range_or_anchor` do.
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
    let selection = match (start, end) {
        (Some(start), Some(Ok(end))) => Selection::Lines { start, end: Some(end) },
        (Some(start), Some(Err(_))) => Selection::Lines { start, end: None },
        (Some(start), None) => Selection::Lines { start, end: Some(start + 1) },
        (None, Some(Ok(end))) => Selection::Lines { start: 0, end: Some(end) },
        (None, None) | (None, Some(Err(_))) => Selection::WHOLE,
    };
    (path.into(), selection)
}

/// The name of the anchor opened on `line` (`ANCHOR: name`), if any.
pub fn anchor_start(line: &str) -> Option<&str> {
    marker(line, "ANCHOR:")
}

/// The name of the anchor closed on `line` (`ANCHOR_END: name`), if any.
pub fn anchor_end(line: &str) -> Option<&str> {
    marker(line, "ANCHOR_END:")
}

/// mdBook's `TAG:\s*(?P<anchor_name>[\w_-]+)`: the first occurrence of `tag` followed by a name.
fn marker<'a>(line: &'a str, tag: &str) -> Option<&'a str> {
    line.match_indices(tag).find_map(|(at, _)| {
        let after = line[at + tag.len()..].trim_start_matches(char::is_whitespace);
        let len = after.find(|c: char| !(c.is_alphanumeric() || c == '_' || c == '-')).unwrap_or(after.len());
        (len > 0).then(|| &after[..len])
    })
}

/// `{{#include f}}` or a line range: the lines as they are, joined with `\n`.
pub fn take_lines(text: &str, start: usize, end: Option<usize>) -> String {
    let lines = text.lines().skip(start);
    match end {
        Some(end) => lines.take(end.saturating_sub(start)).collect::<Vec<_>>().join("\n"),
        None => lines.collect::<Vec<_>>().join("\n"),
    }
}

/// `{{#include f:name}}`: the lines after `ANCHOR: name` up to the first `ANCHOR_END: name`,
/// without any marker line.
pub fn take_anchored_lines(text: &str, anchor: &str) -> String {
    let mut kept = Vec::new();
    let mut inside = false;
    for line in text.lines() {
        if inside {
            match anchor_end(line) {
                Some(name) if name == anchor => break,
                Some(_) => {}
                None => {
                    if anchor_start(line).is_none() {
                        kept.push(line);
                    }
                }
            }
        } else if anchor_start(line) == Some(anchor) {
            inside = true;
        }
    }
    kept.join("\n")
}

/// `{{#rustdoc_include f:a:b}}`: every line, those outside the range prefixed with `# `.
pub fn take_rustdoc_include_lines(text: &str, range: &Selection) -> String {
    let mut out = String::with_capacity(text.len());
    for (index, line) in text.lines().enumerate() {
        if !range.contains(index) {
            out.push_str("# ");
        }
        out.push_str(line);
        out.push('\n');
    }
    out.pop();
    out
}

/// `{{#rustdoc_include f:name}}`: every line, those outside the anchor prefixed with `# `,
/// marker lines dropped.
pub fn take_rustdoc_include_anchored_lines(text: &str, anchor: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut inside = false;
    for line in text.lines() {
        if inside {
            match anchor_end(line) {
                Some(name) => {
                    if name == anchor {
                        inside = false;
                    }
                }
                None => {
                    if anchor_start(line).is_none() {
                        out.push_str(line);
                        out.push('\n');
                    }
                }
            }
        } else if let Some(name) = anchor_start(line) {
            if name == anchor {
                inside = true;
            }
        } else if anchor_end(line).is_none() {
            out.push_str("# ");
            out.push_str(line);
            out.push('\n');
        }
    }
    out.pop();
    out
}

/// The text a directive renders as, given the contents of its file (ignored for escapes and
/// titles).
pub fn render(directive: &Directive<'_>, contents: &str) -> String {
    match &directive.kind {
        Kind::Escaped => directive.text[1..].to_owned(),
        Kind::Title(_) => String::new(),
        Kind::Include(_, Selection::Lines { start, end }) => take_lines(contents, *start, *end),
        Kind::Include(_, Selection::Anchor(anchor)) => take_anchored_lines(contents, anchor),
        Kind::RustdocInclude(_, Selection::Anchor(anchor)) => {
            take_rustdoc_include_anchored_lines(contents, anchor)
        }
        Kind::RustdocInclude(_, range) => take_rustdoc_include_lines(contents, range),
        Kind::Playground(_, attrs) => {
            let fence = if attrs.is_empty() { "rust" } else { "rust," };
            let newline = if contents.ends_with('\n') { "" } else { "\n" };
            format!("```{fence}{}\n{contents}{newline}```\n", attrs.join(","))
        }
    }
}

/// The result of expanding a chapter.
#[derive(Debug, Default)]
pub struct Expansion {
    /// The chapter text with every directive expanded.
    pub text: String,
    /// Every file that was read (for `cargo:rerun-if-changed`).
    pub files_read: Vec<PathBuf>,
    /// What mdBook would log as an ERROR (unreadable file, include nested too deep).
    pub errors: Vec<String>,
}

/// Expands every directive of `text`, whose relative paths start at folder `base` (the chapter's
/// folder), as mdBook's `replace_all`.
pub fn expand(text: &str, base: &Path) -> Expansion {
    let mut expansion = Expansion::default();
    expansion.text = expand_into(text, base, 0, &mut expansion);
    expansion
}

fn expand_into(text: &str, base: &Path, depth: usize, expansion: &mut Expansion) -> String {
    let mut out = String::with_capacity(text.len());
    let mut previous_end = 0;
    for directive in find_directives(text) {
        out.push_str(&text[previous_end..directive.start]);
        let contents = match directive.path() {
            Some(path) => {
                let target = base.join(path);
                expansion.files_read.push(target.clone());
                match fs::read_to_string(&target) {
                    Ok(contents) => Some((contents, target)),
                    Err(e) => {
                        expansion.errors.push(format!(
                            "Could not read file for link {} ({}): {e}",
                            directive.text,
                            target.display()
                        ));
                        // Keep the directive as written, like mdBook.
                        previous_end = directive.start;
                        continue;
                    }
                }
            }
            None => None,
        };
        match contents {
            Some((contents, target)) => {
                let rendered = render(&directive, &contents);
                if depth < MAX_DEPTH {
                    let folder = target.parent().unwrap_or(Path::new("")).to_path_buf();
                    let nested = expand_into(&rendered, &folder, depth + 1, expansion);
                    out.push_str(&nested);
                } else {
                    expansion.errors.push(format!(
                        "Stack depth exceeded expanding {}: check for cyclic includes",
                        directive.text
                    ));
                }
            }
            None => out.push_str(&render(&directive, "")),
        }
        previous_end = directive.end;
    }
    out.push_str(&text[previous_end..]);
    out
}

/// Every chapter of the book: the `*.md` files under `src_dir`, recursively, except
/// `SUMMARY.md`, sorted.
pub fn chapter_files(src_dir: &Path) -> Vec<PathBuf> {
    let mut chapters: Vec<PathBuf> = files_under(src_dir, "md")
        .into_iter()
        .filter(|p| p.file_name().is_some_and(|n| n != "SUMMARY.md"))
        .collect();
    chapters.sort();
    chapters
}

/// Every file under `dir` (recursively) whose extension is `ext`, sorted; none if `dir` is
/// missing.
pub fn files_under(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|e| e == ext) {
                found.push(path);
            }
        }
    }
    found.sort();
    found
}

#[cfg(test)]
mod tests {
    //! Mostly mdBook 0.5.4's own tests of `find_links` and `take_lines`, ported.
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
        assert_eq!(at("{{#include file.rs:10:20}}"), [(22, 48, include(file, lines(9, Some(20))))]);
        assert_eq!(at("{{#include file.rs:10}}"), [(22, 45, include(file, lines(9, Some(10))))]);
        assert_eq!(at("{{#include file.rs:10:}}"), [(22, 46, include(file, lines(9, None)))]);
        assert_eq!(at("{{#include file.rs::20}}"), [(22, 46, include(file, lines(0, Some(20))))]);
        assert_eq!(at("{{#include file.rs::}}"), [(22, 44, include(file, Selection::WHOLE))]);
        assert_eq!(at("{{#include file.rs}}"), [(22, 42, include(file, Selection::WHOLE))]);
        assert_eq!(
            at("{{#include file.rs:anchor}}"),
            [(22, 49, include(file, Selection::Anchor("anchor".into())))]
        );
        assert_eq!(at("{{#include file.rs::NaN}}")[0].2, include(file, Selection::WHOLE));
        assert_eq!(
            at("{{#rustdoc_include ../code/examples/mask.rs:main}}")[0].2,
            Kind::RustdocInclude("../code/examples/mask.rs".into(), Selection::Anchor("main".into()))
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
        assert_eq!(
            found[2].kind,
            Kind::Playground("my.rs".into(), vec!["editable".into(), "no_run".into(), "should_panic".into()])
        );
        assert_eq!((found[2].start, found[2].end), (133, 183));
        // Spaces inside the braces, a title, a directive over two lines.
        assert_eq!(
            kinds("{{ #include  a.rs }}{{#title  My  title}}{{#include\nb.rs}}"),
            [
                (0, 20, include("a.rs", Selection::WHOLE)),
                (20, 41, Kind::Title("My  title".into())),
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
    fn take_lines_test() {
        let s = "Lorem\nipsum\ndolor\nsit\namet";
        assert_eq!(take_lines(s, 1, Some(3)), "ipsum\ndolor");
        assert_eq!(take_lines(s, 3, None), "sit\namet");
        assert_eq!(take_lines(s, 0, Some(3)), "Lorem\nipsum\ndolor");
        assert_eq!(take_lines(s, 0, None), s);
        assert_eq!(take_lines(s, 4, Some(3)), "");
        assert_eq!(take_lines(s, 0, Some(100)), s);
    }

    #[test]
    fn take_anchored_lines_test() {
        let s = "Lorem\nipsum\ndolor\nANCHOR_END: test\nsit\namet";
        assert_eq!(take_anchored_lines(s, "test"), "");
        let s = "Lorem\nipsum\nANCHOR: test\ndolor\nsit\namet";
        assert_eq!(take_anchored_lines(s, "test"), "dolor\nsit\namet");
        let s = "Lorem\nANCHOR: test\nipsum\nANCHOR: test\ndolor\nsit\namet\nANCHOR_END: test\nlorem\nipsum";
        assert_eq!(take_anchored_lines(s, "test"), "ipsum\ndolor\nsit\namet");
        let s = "Lorem\nANCHOR:    test2\nipsum\nANCHOR: test\ndolor\nsit\namet\nANCHOR_END: test\nlorem\nANCHOR_END:test2\nipsum";
        assert_eq!(take_anchored_lines(s, "test2"), "ipsum\ndolor\nsit\namet\nlorem");
        assert_eq!(take_anchored_lines(s, "test"), "dolor\nsit\namet");
        assert_eq!(take_anchored_lines(s, "something"), "");
    }

    #[test]
    fn take_rustdoc_include_test() {
        let s = "Lorem\nipsum\ndolor\nsit\namet";
        assert_eq!(take_rustdoc_include_lines(s, &lines(1, Some(3))), "# Lorem\nipsum\ndolor\n# sit\n# amet");
        assert_eq!(take_rustdoc_include_lines(s, &Selection::WHOLE), s);
        let s = "Lorem\nANCHOR:    test2\nipsum\nANCHOR: test\ndolor\nsit\namet\nANCHOR_END: test\nlorem\nANCHOR_END:test2\nipsum";
        assert_eq!(
            take_rustdoc_include_anchored_lines(s, "test2"),
            "# Lorem\nipsum\ndolor\nsit\namet\nlorem\n# ipsum"
        );
        assert_eq!(
            take_rustdoc_include_anchored_lines(s, "test"),
            "# Lorem\n# ipsum\ndolor\nsit\namet\n# lorem\n# ipsum"
        );
        let s =
            "Lorem\nANCHOR: test\nipsum\nANCHOR_END: test\ndolor\nANCHOR: test\nsit\nANCHOR_END: test\namet";
        assert_eq!(take_rustdoc_include_anchored_lines(s, "test"), "# Lorem\nipsum\n# dolor\nsit\n# amet");
    }

    #[test]
    fn expand_nests_escapes_and_keeps_unreadable_directives() {
        let dir = std::env::temp_dir().join(format!("book-tests-expand-{}", std::process::id()));
        fs::create_dir_all(dir.join("code")).unwrap();
        fs::write(
            dir.join("code/a.rs"),
            "use x;\n// ANCHOR: f\nfn f() {}\n// ANCHOR_END: f\n// \\{{#include nope}}\n{{#include b.txt}}\n",
        )
        .unwrap();
        fs::write(dir.join("code/b.txt"), "from b").unwrap();
        let chapter = "A {{#include code/a.rs:f}}\n```rust\n{{#rustdoc_include code/a.rs:f}}\n```\n{{#include code/a.rs:5:6}}\n{{#include gone.rs}} end";
        let e = expand(chapter, &dir);
        assert_eq!(
            e.text,
            "A fn f() {}\n```rust\n# use x;\nfn f() {}\n# // {{#include nope}}\n# from b\n```\n// {{#include nope}}\nfrom b\n{{#include gone.rs}} end"
        );
        assert_eq!(e.errors.len(), 1, "{:?}", e.errors);
        assert!(e.errors[0].contains("{{#include gone.rs}}"));
        assert!(e.files_read.contains(&dir.join("code/b.txt")));
        fs::remove_dir_all(dir).unwrap();
    }
}
