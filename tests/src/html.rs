//! Checks of the built book (`book/`): what `mdbook build` does not check.
//!
//! - every internal link (`href` or `src`, relative or root-relative) points at a file
//!   that exists in the book, and its `#fragment` at an `id` (or `<a name>`) of the
//!   target page;
//! - nothing references a CDN (the KaTeX CSS and fonts are self-hosted so the math
//!   renders offline): attribute values, inline `<script>`/`<style>`, and the book's CSS
//!   files;
//! - every relative `url(…)` of the book's CSS files (the KaTeX and mdBook fonts) exists;
//! - no formula failed to render (`katex-error`, which mdbook-katex emits when
//!   `throw-on-error = false`; with the default, failures are caught in the build log
//!   instead).
//!
//! Links with a scheme (`https:`, `mailto:`, `data:`…) and protocol-relative `//host`
//! links are not followed. A page's `<base href>` is honoured (mdBook's 404.html has
//! `<base href="/">`). Prose is not searched for CDN names, so a chapter may mention
//! them.
//!
//! mdBook's print.html rewrites links between chapters to fragments of the print page
//! (`ch1.md#a-section` becomes `#a-section`); those are checked like any other fragment.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

use scraper::{Html, Selector};
use walkdir::WalkDir;

use crate::{files_under, normalize};

/// Hosts of public CDNs the book must not depend on.
pub const CDN_MARKERS: [&str; 4] = ["jsdelivr", "cdnjs", "unpkg", "googleapis"];

/// What one page links to and defines.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Page {
    /// `id` attributes and `<a name>` values: the fragments that can point into the page.
    pub ids: BTreeSet<String>,
    /// `(attribute, value)` of every `href` and `src`.
    pub links: Vec<(String, String)>,
    /// The `<base href>` value, if any.
    pub base: Option<String>,
    /// CDN references found, with where they were found.
    pub cdn: Vec<String>,
    /// How many elements have the class `katex-error`.
    pub katex_errors: usize,
}

fn selector(css: &str) -> Selector {
    Selector::parse(css).expect("a valid selector")
}

/// Parses one HTML page.
pub fn parse_page(html: &str) -> Page {
    let document = Html::parse_document(html);
    let mut page = Page::default();
    for element in document.select(&selector("*")) {
        let value = element.value();
        if let Some(id) = value.id() {
            page.ids.insert(id.to_owned());
        }
        if value.name() == "a"
            && let Some(name) = value.attr("name")
        {
            page.ids.insert(name.to_owned());
        }
        if value.name() == "base" {
            page.base = value.attr("href").map(str::to_owned);
        }
        for (attr, v) in value.attrs() {
            if attr == "href" || attr == "src" {
                page.links.push((attr.to_owned(), v.to_owned()));
            }
            if let Some(cdn) = cdn_in(v) {
                page.cdn.push(format!("<{} {attr}=\"{v}\"> ({cdn})", value.name()));
            }
        }
        if matches!(value.name(), "script" | "style") {
            let text: String = element.text().collect();
            if let Some(cdn) = cdn_in(&text) {
                page.cdn.push(format!("inline <{}> mentions {cdn}", value.name()));
            }
        }
        if value.classes().any(|c| c == "katex-error") {
            page.katex_errors += 1;
        }
    }
    page
}

/// The first CDN marker in `text`, if any (case-insensitive).
pub fn cdn_in(text: &str) -> Option<&'static str> {
    let lower = text.to_ascii_lowercase();
    CDN_MARKERS.into_iter().find(|m| lower.contains(m))
}

/// Where a link points.
#[derive(Debug, PartialEq, Eq)]
pub enum Target {
    /// Has a scheme (`https:`, `mailto:`, `data:`…) or is protocol-relative: not checked
    /// here.
    External,
    /// A file of the book (path relative to the book root, `.`/`..` resolved), and a
    /// fragment.
    Internal {
        /// Path from the book root; `None` if the link leaves the book.
        path: Option<PathBuf>,
        /// The decoded fragment, without `#`; `None` or empty means none.
        fragment: Option<String>,
    },
}

/// Resolves link `value` found on page `page` (path relative to the book root), given the
/// page's `<base href>`.
pub fn resolve(page: &Path, base: Option<&str>, value: &str) -> Target {
    let value = value.trim();
    let scheme = value.find(':').map(|i| &value[..i]).filter(|s| {
        s.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
    });
    if scheme.is_some() || value.starts_with("//") {
        return Target::External;
    }
    let (rest, fragment) = match value.split_once('#') {
        Some((rest, fragment)) => (rest, Some(percent_decode(fragment))),
        None => (value, None),
    };
    let rest = rest.split('?').next().unwrap_or("");
    let page_dir = page.parent().unwrap_or(Path::new(""));
    // The folder relative links start from, from the book root ("" = the root itself).
    let from: PathBuf = match base {
        Some(base) if base.starts_with('/') => {
            PathBuf::from(base.trim_start_matches('/'))
        }
        Some(base) => page_dir.join(base),
        None => page_dir.to_path_buf(),
    };
    let path = if rest.is_empty() {
        // `#x` or `?q`: the page itself. Browsers resolve a bare `#x` against `<base>`,
        // so on mdBook's 404.html (`<base href="/">`) the heading's own
        // `#document-not-found-404` really points at index.html: a harmless mdBook quirk,
        // checked against the page itself.
        if base.is_some() && !value.starts_with('#') {
            from.clone()
        } else {
            page.to_path_buf()
        }
    } else if let Some(absolute) = rest.strip_prefix('/') {
        PathBuf::from(percent_decode(absolute))
    } else {
        from.join(percent_decode(rest))
    };
    let path = normalize(&path);
    let leaves = path.components().next() == Some(std::path::Component::ParentDir);
    Target::Internal { path: (!leaves).then_some(path), fragment }
}

/// Decodes `%XX` escapes (invalid ones are kept as they are).
pub fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: Option<&u8>| b.and_then(|&b| (b as char).to_digit(16));
        if bytes[i] == b'%'
            && let (Some(hi), Some(lo)) = (hex(bytes.get(i + 1)), hex(bytes.get(i + 2)))
        {
            out.push((hi * 16 + lo) as u8);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Checks parsed pages against the book's files. `pages` maps each HTML page (path from
/// the book root) to what it holds; `files` is every file of the book. Returns one
/// message per problem.
pub fn check(pages: &BTreeMap<PathBuf, Page>, files: &BTreeSet<PathBuf>) -> Vec<String> {
    let mut problems = Vec::new();
    for (path, page) in pages {
        let shown = path.display();
        for cdn in &page.cdn {
            problems.push(format!("{shown}: references a CDN: {cdn}"));
        }
        if page.katex_errors > 0 {
            problems.push(format!(
                "{shown}: {} formula(s) failed to render (class `katex-error`)",
                page.katex_errors
            ));
        }
        for (attr, value) in &page.links {
            let Target::Internal { path: target, fragment } =
                resolve(path, page.base.as_deref(), value)
            else {
                continue;
            };
            let Some(mut target) = target else {
                problems
                    .push(format!("{shown}: {attr}=\"{value}\" points outside the book"));
                continue;
            };
            if target.as_os_str().is_empty() || !files.contains(&target) {
                let index = target.join("index.html");
                if files.contains(&index) {
                    target = index;
                } else {
                    problems.push(format!(
                        "{shown}: {attr}=\"{value}\": {} does not exist",
                        if target.as_os_str().is_empty() {
                            "index.html".to_owned()
                        } else {
                            target.display().to_string()
                        }
                    ));
                    continue;
                }
            }
            let Some(fragment) = fragment.filter(|f| !f.is_empty()) else {
                continue;
            };
            if let Some(target_page) = pages.get(&target)
                && !target_page.ids.contains(&fragment)
            {
                problems.push(format!(
                    "{shown}: {attr}=\"{value}\": no id=\"{fragment}\" in {}",
                    target.display()
                ));
            }
        }
    }
    problems
}

/// Checks the built book in folder `book`: its HTML pages and CSS files.
pub fn check_book(book: &Path) -> Result<Vec<String>, String> {
    if !book.join("index.html").is_file() {
        return Err(format!(
            "{} has no index.html: run `mdbook build` first",
            book.display()
        ));
    }
    let files: BTreeSet<PathBuf> = WalkDir::new(book)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
        .filter_map(|e| e.path().strip_prefix(book).ok().map(Path::to_path_buf))
        .collect();
    let mut pages = BTreeMap::new();
    for html in files_under(book, "html") {
        let text =
            fs::read_to_string(&html).map_err(|e| format!("{}: {e}", html.display()))?;
        let relative = html.strip_prefix(book).unwrap_or(&html).to_path_buf();
        pages.insert(relative, parse_page(&text));
    }
    let mut problems = dedup_counted(check(&pages, &files));
    for css in files_under(book, "css") {
        let text =
            fs::read_to_string(&css).map_err(|e| format!("{}: {e}", css.display()))?;
        let relative = css.strip_prefix(book).unwrap_or(&css).to_path_buf();
        problems.extend(check_css(&relative, &text, &files));
    }
    Ok(problems)
}

/// The `url(…)` references of a stylesheet (quotes removed), e.g. KaTeX's fonts.
pub fn css_urls(css: &str) -> Vec<String> {
    css.match_indices("url(")
        .filter_map(|(at, _)| {
            let rest = &css[at + 4..];
            let inner = &rest[..rest.find(')')?];
            Some(inner.trim().trim_matches(['"', '\'']).to_owned())
        })
        .collect()
}

/// Checks a stylesheet (path from the book root): no CDN, and every relative `url(…)`
/// (the KaTeX and mdBook fonts) names a file of the book.
pub fn check_css(path: &Path, css: &str, files: &BTreeSet<PathBuf>) -> Vec<String> {
    let shown = path.display();
    let mut problems = Vec::new();
    if let Some(cdn) = cdn_in(css) {
        problems.push(format!("{shown}: references a CDN ({cdn})"));
    }
    for url in css_urls(css) {
        if let Target::Internal { path: target, .. } = resolve(path, None, &url) {
            match target {
                Some(target) if files.contains(&target) => {}
                Some(target) => problems.push(format!(
                    "{shown}: url({url}): {} does not exist",
                    target.display()
                )),
                None => {
                    problems.push(format!("{shown}: url({url}) points outside the book"))
                }
            }
        }
    }
    dedup_counted(problems)
}

/// Merges repeated messages (the same broken link twice on a page) into one, `(N times)`,
/// keeping the order of first appearance.
pub fn dedup_counted(messages: Vec<String>) -> Vec<String> {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for m in &messages {
        *counts.entry(m).or_default() += 1;
    }
    let mut seen = BTreeSet::new();
    messages
        .iter()
        .filter(|m| seen.insert(m.as_str()))
        .map(|m| match counts[m.as_str()] {
            1 => m.clone(),
            n => format!("{m} ({n} times)"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn book(pages: &[(&str, &str)], other_files: &[&str]) -> Vec<String> {
        let parsed: BTreeMap<PathBuf, Page> =
            pages.iter().map(|(p, html)| (PathBuf::from(p), parse_page(html))).collect();
        let files: BTreeSet<PathBuf> = pages
            .iter()
            .map(|(p, _)| *p)
            .chain(other_files.iter().copied())
            .map(PathBuf::from)
            .collect();
        check(&parsed, &files)
    }

    const HEAD: &str =
        r#"<html><head><link rel="stylesheet" href="../katex/katex.min.css"></head>"#;

    #[test]
    fn good_links_pass() {
        let ch = format!(
            r##"{HEAD}<body><h2 id="causal-mask">M</h2><a href="#causal-mask">x</a>
            <a href="../index.html#intro">i</a><a href="./b.html">b</a><a href="/">root</a>
            <a href="https://example.com/x#y">e</a><a href="mailto:a@b.c">m</a>
            <img src="../img/a%20b.png"><script>if (a < b) {{ x = "<a href='nope.html'>"; }}</script>
            <a href="b.html?x=1#sec">q</a></body></html>"##
        );
        let problems = book(
            &[
                ("ch/a.html", &ch),
                ("ch/b.html", r#"<p id="sec">s</p>"#),
                ("index.html", r#"<h1 id="intro">I</h1>"#),
            ],
            &["katex/katex.min.css", "img/a b.png"],
        );
        assert_eq!(problems, Vec::<String>::new());
    }

    #[test]
    fn a_missing_file_is_reported() {
        let p = book(&[("a.html", r#"<a href="ch02.html">x</a>"#)], &[]);
        assert_eq!(p, ["a.html: href=\"ch02.html\": ch02.html does not exist"]);
        let css = book(&[("a.html", r#"<link href="katex/katex.min.css">"#)], &[]);
        assert_eq!(css.len(), 1, "{css:?}");
    }

    #[test]
    fn a_missing_fragment_is_reported() {
        let p = book(
            &[
                ("a.html", r##"<a href="b.html#nope">x</a><a href="#self">y</a>"##),
                ("b.html", r#"<h2 id="yes">Y</h2>"#),
            ],
            &[],
        );
        assert_eq!(
            p,
            [
                "a.html: href=\"b.html#nope\": no id=\"nope\" in b.html",
                "a.html: href=\"#self\": no id=\"self\" in a.html",
            ]
        );
    }

    #[test]
    fn a_name_anchor_and_encoded_fragment_count() {
        let p = book(
            &[(
                "a.html",
                r##"<a name="legacy"></a><h2 id="σ-softmax">s</h2><a href="#legacy">l</a><a href="#%CF%83-softmax">s</a>"##,
            )],
            &[],
        );
        assert_eq!(p, Vec::<String>::new());
    }

    #[test]
    fn a_link_leaving_the_book_is_reported() {
        let p = book(&[("a.html", r#"<a href="../outside.html">x</a>"#)], &[]);
        assert_eq!(p, ["a.html: href=\"../outside.html\" points outside the book"]);
    }

    #[test]
    fn cdn_references_are_reported_but_not_in_prose() {
        let p = book(
            &[(
                "a.html",
                r#"<link rel="stylesheet" href="https://cdn.jsdelivr.net/npm/katex@0.16.4/dist/katex.min.css">
                <script src="https://unpkg.com/x.js"></script>
                <style>@import url("https://fonts.googleapis.com/css");</style>
                <p>We do not use jsdelivr or cdnjs.</p>"#,
            )],
            &[],
        );
        assert_eq!(p.len(), 3, "{p:?}");
        assert!(p[0].contains("jsdelivr"), "{}", p[0]);
        assert!(p[1].contains("unpkg"), "{}", p[1]);
        assert!(p[2].contains("inline <style> mentions googleapis"), "{}", p[2]);
    }

    #[test]
    fn katex_errors_are_reported() {
        let p = book(
            &[(
                "a.html",
                r#"<span class="katex-error" title="ParseError">\frac{</span>"#,
            )],
            &[],
        );
        assert_eq!(p, ["a.html: 1 formula(s) failed to render (class `katex-error`)"]);
    }

    #[test]
    fn base_href_is_honoured() {
        // mdBook's 404.html: `<base href="/">`, links written from the root.
        let page = r#"<base href="/"><link href="css/x.css"><a href="/">home</a>"#;
        assert_eq!(
            book(&[("404.html", page), ("index.html", "")], &["css/x.css"]),
            Vec::<String>::new()
        );
        assert_eq!(
            resolve(Path::new("sub/p.html"), Some("/"), "css/x.css"),
            Target::Internal { path: Some("css/x.css".into()), fragment: None }
        );
    }

    #[test]
    fn css_font_urls_are_checked() {
        let css = r#"@font-face{src:url(fonts/KaTeX_Main.woff2) format("woff2"),url('fonts/gone.woff')}
            .x{background:url("data:image/png;base64,AAAA")} .y{background:url(https://unpkg.com/a.png)}"#;
        assert_eq!(
            css_urls(css),
            [
                "fonts/KaTeX_Main.woff2",
                "fonts/gone.woff",
                "data:image/png;base64,AAAA",
                "https://unpkg.com/a.png"
            ]
        );
        let files = BTreeSet::from([PathBuf::from("katex/fonts/KaTeX_Main.woff2")]);
        assert_eq!(
            check_css(Path::new("katex/katex.min.css"), css, &files),
            [
                "katex/katex.min.css: references a CDN (unpkg)",
                "katex/katex.min.css: url(fonts/gone.woff): katex/fonts/gone.woff does not exist",
            ]
        );
    }

    #[test]
    fn repeated_problems_are_merged() {
        let m = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(dedup_counted(m(&["b", "a", "b", "b"])), m(&["b (3 times)", "a"]));
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%20b%zz%"), "a b%zz%");
        assert_eq!(percent_decode("%CF%83"), "σ");
    }
}
