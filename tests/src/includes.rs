//! Checks of the chapters' `{{#include}}` / `{{#rustdoc_include}}` directives, of the
//! anchors in the companion crate, and of the chapters' code blocks.
//!
//! mdBook renders a misspelled anchor as nothing, logs a missing file without failing,
//! and skeptic and `mdbook test` skip `ignore` blocks. So, for every chapter:
//! - every included file exists; a named anchor is opened (`ANCHOR: name`) and closed
//!   (`ANCHOR_END: name`) exactly once, in that order; line ranges lie inside the file; and the
//!   excerpt the reader sees is not empty;
//! - a block tagged `ignore` holds nothing but `{{#include …}}` lines of the companion
//!   crate's code, which cargo compiles anyway, so `ignore` cannot hide a snippet that
//!   does not compile;
//! - every code block is a ```` ``` ```` fence with a language tag: rustdoc (`mdbook
//!   test`) compiles untagged and indented blocks as Rust but skeptic does not, and
//!   mdbook-katex only protects `$` inside backtick fences;
//!
//! and every anchor of the companion crate is shown by some chapter.
//!
//! The functions take the file contents through a closure, so the unit tests run on
//! strings.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

use pulldown_cmark::{CodeBlockKind, Event, Options, Parser, Tag, TagEnd};

use crate::links::{
    Directive, Kind, Selection, anchor_end, anchor_start, find_directives, line_of,
};
use crate::normalize;

/// One problem, located in a chapter or a source file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The file, as it should be shown (relative to the workspace root when possible).
    pub file: String,
    /// 1-based line in `file`.
    pub line: usize,
    /// The directive or code fence concerned, as written.
    pub context: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: ", self.file, self.line)?;
        if !self.context.is_empty() {
            write!(f, "{}: ", self.context)?;
        }
        f.write_str(&self.message)
    }
}

/// A chapter to check.
#[derive(Debug, Clone)]
pub struct Chapter {
    /// Name used in messages, e.g. `src/ch03-01-causal-mask.md`.
    pub name: String,
    /// The folder include paths are relative to (the chapter's folder).
    pub dir: PathBuf,
    /// The chapter's Markdown source.
    pub text: String,
}

/// Reads a file's contents; `None` if it cannot be read.
pub type Reader<'a> = &'a dyn Fn(&Path) -> Option<String>;

/// Anchor problems of one source file: each anchor opened once, closed once after it, and
/// no
/// `ANCHOR_END` without its `ANCHOR`. Returns `(line, anchor, message)`, 1-based lines.
pub fn anchor_problems(text: &str) -> Vec<(usize, String, String)> {
    let mut problems = Vec::new();
    let mut opened: BTreeMap<&str, usize> = BTreeMap::new();
    let mut open: BTreeMap<&str, usize> = BTreeMap::new();
    let mut closed: BTreeMap<&str, usize> = BTreeMap::new();
    for (index, line) in text.lines().enumerate() {
        let n = index + 1;
        if let Some(name) = anchor_start(line) {
            if let Some(first) = opened.get(name) {
                problems.push((
                    n,
                    name.to_owned(),
                    format!("`ANCHOR: {name}` again (first opened on line {first})"),
                ));
            } else {
                opened.insert(name, n);
                open.insert(name, n);
            }
        }
        if let Some(name) = anchor_end(line) {
            if open.remove(name).is_some() {
                closed.insert(name, n);
            } else if let Some(first) = closed.get(name) {
                problems.push((
                    n,
                    name.to_owned(),
                    format!(
                        "`ANCHOR_END: {name}` again (already closed on line {first})"
                    ),
                ));
            } else {
                problems.push((
                    n,
                    name.to_owned(),
                    format!("`ANCHOR_END: {name}` without an `ANCHOR: {name}` before it"),
                ));
            }
        }
    }
    for (name, n) in open {
        problems.push((
            n,
            name.to_owned(),
            format!(
                "`ANCHOR: {name}` is never closed (no `ANCHOR_END: {name}` after it)"
            ),
        ));
    }
    problems.sort();
    problems
}

/// The anchors opened in a source file, in order.
pub fn defined_anchors(text: &str) -> Vec<String> {
    text.lines().filter_map(anchor_start).map(str::to_owned).collect()
}

/// Checks one include directive of `chapter` against the file it names.
fn check_directive(
    chapter: &Chapter,
    directive: &Directive<'_>,
    read: Reader<'_>,
) -> Vec<String> {
    let Some(path) = directive.path() else {
        return Vec::new();
    };
    let target = normalize(&chapter.dir.join(path));
    let Some(contents) = read(&target) else {
        let hint = if path.starts_with("output") {
            " (outputs are generated: run scripts/update-outputs.sh)"
        } else {
            ""
        };
        return vec![format!(
            "cannot read `{}` (resolved to {}){hint}",
            path.display(),
            target.display()
        )];
    };
    let Some(selection) = directive.selection() else {
        return Vec::new(); // playground: the whole file
    };
    let shown = path.display();
    let mut problems = Vec::new();
    let excerpt = match selection {
        Selection::Anchor(name) => {
            if !defined_anchors(&contents).contains(name) {
                return vec![format!(
                    "no `ANCHOR: {name}` in {shown} (anchors there: {})",
                    list_or_none(&defined_anchors(&contents))
                )];
            }
            for (line, anchor, message) in anchor_problems(&contents) {
                if &anchor == name {
                    problems.push(format!("{shown}:{line}: {message}"));
                }
            }
            anchored_lines(&contents, name)
        }
        Selection::Lines { start, end } => {
            let count = contents.lines().count();
            let last = end.unwrap_or(count);
            if *start >= count || last > count || *start >= last {
                let range = match end {
                    Some(end) => format!("lines {} to {end}", start + 1),
                    None => format!("lines {} to the end", start + 1),
                };
                return vec![format!("{range} of {shown}, which has {count} lines")];
            }
            contents.lines().skip(*start).take(last - start).collect()
        }
    };
    if excerpt.iter().all(|line| line.trim().is_empty()) {
        problems.push(format!("the excerpt of {shown} it shows is empty"));
    }
    problems
}

/// The lines mdBook shows for `{{#include file:name}}`: those after `ANCHOR: name` up to the
/// first `ANCHOR_END: name`, without any marker line.
fn anchored_lines<'a>(text: &'a str, name: &str) -> Vec<&'a str> {
    let lines = text.lines().skip_while(|line| anchor_start(line) != Some(name)).skip(1);
    let mut shown = Vec::new();
    for line in lines {
        match anchor_end(line) {
            Some(end) if end == name => break,
            Some(_) => {}
            None if anchor_start(line).is_none() => shown.push(line),
            None => {}
        }
    }
    shown
}

fn list_or_none(items: &[String]) -> String {
    if items.is_empty() { "none".to_owned() } else { items.join(", ") }
}

/// The tokens of a code block's info string, split as rustdoc and skeptic do.
fn info_tokens(info: &str) -> impl Iterator<Item = &str> {
    info.split(|c: char| !(c == '_' || c == '-' || c.is_alphanumeric()))
        .filter(|t| !t.is_empty())
}

/// Whether an info string marks a block `ignore` (also rustdoc's `ignore-<target>`).
pub fn is_ignored(info: &str) -> bool {
    info_tokens(info).any(|t| t == "ignore" || t.starts_with("ignore-"))
}

/// Checks the code blocks of a chapter: tagged backtick fences only, and `ignore` blocks
/// made only of `{{#include …}}` lines of files under `crate_dir`. Returns `(line, fence,
/// message)`.
pub fn code_block_problems(
    chapter: &Chapter,
    crate_dir: &Path,
) -> Vec<(usize, String, String)> {
    let text = &chapter.text;
    let mut problems = Vec::new();
    // The extensions mdBook 0.5 turns on, so the blocks are the ones mdBook sees.
    let options = Options::ENABLE_TABLES
        | Options::ENABLE_FOOTNOTES
        | Options::ENABLE_STRIKETHROUGH
        | Options::ENABLE_TASKLISTS
        | Options::ENABLE_HEADING_ATTRIBUTES;
    let mut block: Option<(usize, String, String)> = None; // (line, info, content)
    for (event, range) in Parser::new_ext(text, options).into_offset_iter() {
        match event {
            Event::Start(Tag::CodeBlock(kind)) => {
                let line = line_of(text, range.start);
                let fence_line = text[range.start..].lines().next().unwrap_or("").trim();
                match kind {
                    CodeBlockKind::Indented => problems.push((
                        line,
                        String::new(),
                        "indented code block: rustdoc would compile it as Rust and mdbook-katex \
                         does not protect `$` in it; use a ``` fence with a language tag"
                            .to_owned(),
                    )),
                    CodeBlockKind::Fenced(info) => {
                        if fence_line.starts_with('~') {
                            problems.push((
                                line,
                                fence_line.to_owned(),
                                "`~~~` fence: mdbook-katex does not protect `$` in it; use ```".to_owned(),
                            ));
                        }
                        if info.trim().is_empty() {
                            problems.push((
                                line,
                                fence_line.to_owned(),
                                "fence without a language tag: rustdoc (`mdbook test`) compiles \
                                 it as Rust, skeptic does not; tag it (`text`, `console`, `rust`…)"
                                    .to_owned(),
                            ));
                        }
                        block = Some((line, info.to_string(), String::new()));
                    }
                }
            }
            Event::Text(t) => {
                if let Some((_, _, content)) = block.as_mut() {
                    content.push_str(&t);
                }
            }
            Event::End(TagEnd::CodeBlock) => {
                if let Some((line, info, content)) = block.take()
                    && is_ignored(&info)
                {
                    for message in ignore_block_problems(chapter, &content, crate_dir) {
                        problems.push((line, format!("```{info}"), message));
                    }
                }
            }
            _ => {}
        }
    }
    problems
}

/// What is wrong with the content of an `ignore` block, if anything.
fn ignore_block_problems(
    chapter: &Chapter,
    content: &str,
    crate_dir: &Path,
) -> Vec<String> {
    let mut problems = Vec::new();
    let mut includes = 0;
    for line in content.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let directives = find_directives(line);
        let sole_include = match directives.as_slice() {
            [d] if d.text == line => match &d.kind {
                Kind::Include(path, _) => Some(path),
                _ => None,
            },
            _ => None,
        };
        match sole_include {
            Some(path) => {
                includes += 1;
                let target = normalize(&chapter.dir.join(path));
                if !target.starts_with(normalize(crate_dir)) {
                    problems.push(format!(
                        "`ignore` block includes {}, which is not the companion crate's code \
                         (only crate code, compiled by cargo, may be shown uncompiled)",
                        path.display()
                    ));
                }
            }
            None => problems.push(format!(
                "`ignore` block has a line that is not a `{{{{#include …}}}}` of crate code: \
                 `{line}` (skeptic and `mdbook test` would never compile it)"
            )),
        }
    }
    if includes == 0 && problems.is_empty() {
        problems.push("empty `ignore` block".to_owned());
    }
    problems
}

/// Every problem of one chapter: its include directives and its code blocks.
pub fn chapter_problems(
    chapter: &Chapter,
    crate_dir: &Path,
    read: Reader<'_>,
) -> Vec<Problem> {
    let mut problems = Vec::new();
    for directive in find_directives(&chapter.text) {
        for message in check_directive(chapter, &directive, read) {
            problems.push(Problem {
                file: chapter.name.clone(),
                line: line_of(&chapter.text, directive.start),
                context: directive.text.to_owned(),
                message,
            });
        }
    }
    for (line, context, message) in code_block_problems(chapter, crate_dir) {
        problems.push(Problem { file: chapter.name.clone(), line, context, message });
    }
    problems.sort_by_key(|p| p.line);
    problems
}

/// The anchors the chapters show, as `(normalized file, anchor)`. A whole-file
/// `{{#include}}` shows every anchor of the file; a `rustdoc_include` without a selection
/// too.
pub fn used_anchors(
    chapters: &[Chapter],
    read: Reader<'_>,
) -> BTreeSet<(PathBuf, String)> {
    let mut used = BTreeSet::new();
    for chapter in chapters {
        for directive in find_directives(&chapter.text) {
            let (Some(path), Some(selection)) = (directive.path(), directive.selection())
            else {
                continue;
            };
            let target = normalize(&chapter.dir.join(path));
            match selection {
                Selection::Anchor(name) => {
                    used.insert((target, name.clone()));
                }
                whole if *whole == Selection::WHOLE => {
                    for name in
                        read(&target).as_deref().map(defined_anchors).unwrap_or_default()
                    {
                        used.insert((target.clone(), name));
                    }
                }
                Selection::Lines { .. } => {}
            }
        }
    }
    used
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    const LIB: &str = "\
//! A module.
// ANCHOR: softmax
pub fn softmax() {}
// ANCHOR_END: softmax

// ANCHOR: empty
// ANCHOR_END: empty
// ANCHOR: unclosed
pub fn unclosed() {}
";

    fn files() -> HashMap<PathBuf, String> {
        HashMap::from([
            (PathBuf::from("/w/code/src/lib.rs"), LIB.to_owned()),
            (PathBuf::from("/w/notes/other.rs"), "fn main() {}\n".to_owned()),
        ])
    }

    fn problems_of(text: &str) -> Vec<String> {
        let files = files();
        let read = |p: &Path| files.get(p).cloned();
        let chapter = Chapter {
            name: "src/ch.md".to_owned(),
            dir: PathBuf::from("/w/src"),
            text: text.to_owned(),
        };
        chapter_problems(&chapter, Path::new("/w/code"), &read)
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn a_good_include_passes() {
        let ok = "# T\n\n```rust,ignore\n{{#include ../code/src/lib.rs:softmax}}\n```\n";
        assert_eq!(problems_of(ok), Vec::<String>::new());
        let range = "```rust,ignore\n{{#include ../code/src/lib.rs:2:3}}\n```\n";
        assert_eq!(problems_of(range), Vec::<String>::new());
    }

    #[test]
    fn a_missing_anchor_is_reported_with_chapter_line_and_directive() {
        let p = problems_of(
            "# T\n\n```rust,ignore\n{{#include ../code/src/lib.rs:sofmax}}\n```\n",
        );
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(
            p[0].starts_with(
                "src/ch.md:4: {{#include ../code/src/lib.rs:sofmax}}: no `ANCHOR: sofmax`"
            ),
            "{}",
            p[0]
        );
        assert!(p[0].contains("anchors there: softmax, empty, unclosed"), "{}", p[0]);
    }

    #[test]
    fn an_unbalanced_anchor_is_reported() {
        let p = problems_of(
            "```rust,ignore\n{{#include ../code/src/lib.rs:unclosed}}\n```\n",
        );
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(p[0].contains("`ANCHOR: unclosed` is never closed"), "{}", p[0]);
        assert!(p[0].contains("lib.rs:8:"), "{}", p[0]);
    }

    #[test]
    fn an_empty_excerpt_is_reported() {
        let p =
            problems_of("```rust,ignore\n{{#include ../code/src/lib.rs:empty}}\n```\n");
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(p[0].contains("is empty"), "{}", p[0]);
    }

    #[test]
    fn a_missing_file_and_a_bad_range_are_reported() {
        let p = problems_of(
            "{{#include ../code/src/nope.rs}}\n\n{{#include ../code/src/lib.rs:8:20}}\n",
        );
        assert_eq!(p.len(), 2, "{p:?}");
        assert!(
            p[0].starts_with("src/ch.md:1:") && p[0].contains("cannot read"),
            "{}",
            p[0]
        );
        assert!(
            p[1].starts_with("src/ch.md:3:") && p[1].contains("lines 8 to 20 of"),
            "{}",
            p[1]
        );
        let past_end = problems_of("{{#include ../code/src/lib.rs:30}}\n");
        assert!(past_end[0].contains("which has 9 lines"), "{past_end:?}");
    }

    #[test]
    fn a_bad_ignore_block_is_reported() {
        // Code hidden behind `ignore` would never be compiled.
        let p = problems_of("# T\n\n```rust,ignore\nlet x: u32 = \"oops\";\n```\n");
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(p[0].starts_with("src/ch.md:3: ```rust,ignore:"), "{}", p[0]);
        assert!(p[0].contains("let x: u32"), "{}", p[0]);
        // An include followed by extra code is just as bad.
        let mixed =
            "```rust,ignore\n{{#include ../code/src/lib.rs:softmax}}\nsoftmax();\n```\n";
        assert_eq!(problems_of(mixed).len(), 1);
        // Including something that is not crate code.
        let outside = "```rust,ignore\n{{#include ../notes/other.rs}}\n```\n";
        assert!(problems_of(outside)[0].contains("not the companion crate"));
        // rustdoc_include is meant to be compiled: not allowed in an ignore block.
        let rdi =
            "```rust,ignore\n{{#rustdoc_include ../code/src/lib.rs:softmax}}\n```\n";
        assert_eq!(problems_of(rdi).len(), 1);
        assert_eq!(
            problems_of("```ignore\n```\n"),
            vec!["src/ch.md:1: ```ignore: empty `ignore` block"]
        );
    }

    #[test]
    fn untagged_tilde_and_indented_blocks_are_reported() {
        let p =
            problems_of("A\n\n```\nplain\n```\n\n~~~text\n$x$\n~~~\n\n    indented\n");
        assert_eq!(p.len(), 3, "{p:?}");
        assert!(p[0].starts_with("src/ch.md:3: ```: fence without a language tag"));
        assert!(p[1].starts_with("src/ch.md:7: ~~~text: `~~~` fence"));
        assert!(p[2].starts_with("src/ch.md:11: indented code block"));
    }

    #[test]
    fn escaped_directives_are_not_checked() {
        assert!(problems_of("```text\n\\{{#include nope.rs}}\n```\n").is_empty());
    }

    #[test]
    fn anchor_balance() {
        let text = "\
// ANCHOR: a
// ANCHOR_END: a
// ANCHOR_END: b
// ANCHOR: c
// ANCHOR: a
// ANCHOR_END: c
// ANCHOR_END: c
";
        let p: Vec<String> = anchor_problems(text)
            .into_iter()
            .map(|(l, a, m)| format!("{l} {a}: {m}"))
            .collect();
        assert_eq!(
            p,
            [
                "3 b: `ANCHOR_END: b` without an `ANCHOR: b` before it",
                "5 a: `ANCHOR: a` again (first opened on line 1)",
                "7 c: `ANCHOR_END: c` again (already closed on line 6)",
            ]
        );
        assert!(anchor_problems(LIB).iter().any(|(l, a, _)| *l == 8 && a == "unclosed"));
    }

    #[test]
    fn used_anchors_counts_named_and_whole_file_includes() {
        let files = files();
        let read = |p: &Path| files.get(p).cloned();
        let chapter = |text: &str| Chapter {
            name: "c.md".into(),
            dir: "/w/src".into(),
            text: text.into(),
        };
        let named =
            used_anchors(&[chapter("{{#include ../code/src/lib.rs:softmax}}")], &read);
        assert_eq!(
            named.into_iter().collect::<Vec<_>>(),
            [(PathBuf::from("/w/code/src/lib.rs"), "softmax".to_owned())]
        );
        let whole = used_anchors(&[chapter("{{#include ../code/src/lib.rs}}")], &read);
        assert_eq!(whole.len(), 3);
        let range =
            used_anchors(&[chapter("{{#include ../code/src/lib.rs:1:4}}")], &read);
        assert!(range.is_empty());
    }
}
