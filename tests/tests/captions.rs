//! Every listing a chapter shows from the crate has a caption right above it: `Listing
//! N-M · <code>path</code>` and, for a runnable example, the command that runs it.
//! Numbers run 1, 2, 3, ... in each chapter (exercise solutions, folded away in
//! `<details>` with the file and command in their summary, are not numbered).

use std::fs;

use book_tests::workspace_root;

/// The caption a listing of `path` (with `anchor`) must have as number `n` of chapter
/// `ch`.
fn expected_caption(ch: u32, n: usize, path: &str, anchor: Option<&str>) -> String {
    let head =
        format!("<p class=\"listing-caption\">Listing {ch}-{n} · <code>{path}</code>");
    match (path.strip_prefix("code/examples/"), anchor) {
        (Some(file), _) => {
            let name = file.trim_end_matches(".rs");
            format!("{head} · <code>cargo run -p attention --example {name}</code></p>")
        }
        (None, Some(a)) => format!("{head} · <code>{a}</code></p>"),
        (None, None) => format!("{head}</p>"),
    }
}

/// The included path and anchor of a line `{{#include ../PATH:ANCHOR}}` (or `rustdoc_include`).
fn include_target(line: &str) -> Option<(&str, Option<&str>)> {
    let inner = line.strip_prefix("{{#")?.strip_suffix("}}")?;
    let target = inner
        .strip_prefix("rustdoc_include ../")
        .or_else(|| inner.strip_prefix("include ../"))?;
    target.starts_with("code/").then(|| match target.split_once(':') {
        Some((path, anchor)) => (path, Some(anchor)),
        None => (target, None),
    })
}

#[test]
fn every_crate_listing_has_a_numbered_caption() {
    let mut problems = Vec::new();
    let mut chapters = 0;
    for ch in 1..=16 {
        let dir = workspace_root().join("src");
        let Some(file) =
            fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).find(|p| {
                p.file_name()
                    .unwrap()
                    .to_string_lossy()
                    .starts_with(&format!("ch{ch:02}-"))
            })
        else {
            continue;
        };
        chapters += 1;
        let text = fs::read_to_string(&file).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        let (mut n, mut in_details) = (0, false);
        for (i, line) in lines.iter().enumerate() {
            in_details = (in_details || line.trim_start().starts_with("<details>"))
                && !line.trim_start().starts_with("</details>");
            let Some((path, anchor)) = lines.get(i + 1).and_then(|l| include_target(l))
            else {
                continue;
            };
            if !line.starts_with("```rust") || in_details {
                continue;
            }
            n += 1;
            let want = expected_caption(ch, n, path, anchor);
            // the caption, then one blank line, then the fence
            let got = if i >= 2 { lines[i - 2] } else { "" };
            if got != want || !lines[i - 1].is_empty() {
                problems.push(format!(
                    "{}:{}: want `{want}`, got `{got}`",
                    file.display(),
                    i + 1
                ));
            }
        }
        assert!(n > 0, "{}: no listing found", file.display());
    }
    assert_eq!(chapters, 16, "chapters 1 to 16 exist");
    assert!(
        problems.is_empty(),
        "listings without their caption:\n{}",
        problems.join("\n")
    );
}

#[test]
fn captions_are_recognised() {
    assert_eq!(
        include_target(
            "{{#rustdoc_include ../code/examples/ch02_offset_mask.rs:example}}"
        ),
        Some(("code/examples/ch02_offset_mask.rs", Some("example")))
    );
    assert_eq!(include_target("{{#include output/ch02_offset_mask.txt}}"), None);
    assert_eq!(
        expected_caption(2, 3, "code/examples/ch02_offset_mask.rs", Some("example")),
        "<p class=\"listing-caption\">Listing 2-3 · <code>code/examples/ch02_offset_mask.rs</code> · \
         <code>cargo run -p attention --example ch02_offset_mask</code></p>"
    );
}
