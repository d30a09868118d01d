//! The outputs the book shows: `src/output/NAME.txt` must be exactly the stdout of
//! `code/examples/NAME.rs`, so that no output in the book is typed by hand or gets stale.

use std::collections::BTreeSet;

use similar::{Algorithm, ChangeTag};

/// The command that regenerates every committed output.
pub const UPDATE_HINT: &str =
    "run scripts/update-outputs.sh to regenerate src/output/*.txt, then review the diff";

/// How examples and committed outputs pair up, by name.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Pairing {
    /// Names with both an example and an output file.
    pub paired: Vec<String>,
    /// Examples without `src/output/NAME.txt`.
    pub missing_output: Vec<String>,
    /// Output files without `code/examples/NAME.rs`.
    pub orphan_output: Vec<String>,
}

/// Pairs example names with output names.
pub fn pair(examples: &[String], outputs: &[String]) -> Pairing {
    let examples: BTreeSet<&String> = examples.iter().collect();
    let outputs: BTreeSet<&String> = outputs.iter().collect();
    Pairing {
        paired: examples.intersection(&outputs).map(|s| s.to_string()).collect(),
        missing_output: examples.difference(&outputs).map(|s| s.to_string()).collect(),
        orphan_output: outputs.difference(&examples).map(|s| s.to_string()).collect(),
    }
}

/// Compares what example `name` printed (`actual`) with the committed output
/// (`expected`), byte for byte. On a difference, the error shows a line diff and how to
/// update the file.
pub fn compare(name: &str, expected: &str, actual: &str) -> Result<(), String> {
    if expected == actual {
        return Ok(());
    }
    let diff = line_diff(expected, actual, 2);
    let diff = if diff.is_empty() {
        // Same lines: only the line endings or the final newline differ.
        format!(
            "  (the lines are equal; the line endings or the final newline differ: \
             file ends {:?}, program ends {:?})\n",
            tail(expected),
            tail(actual)
        )
    } else {
        diff
    };
    Err(format!(
        "example `{name}`: its stdout differs from src/output/{name}.txt \
         (`-` file, `+` program):\n{diff}hint: {UPDATE_HINT}"
    ))
}

fn tail(s: &str) -> &str {
    let start = s.char_indices().rev().nth(9).map_or(0, |(i, _)| i);
    &s[start..]
}

/// A unified-style diff of two texts by lines, with `context` unchanged lines around each
/// change and 1-based line numbers (`-12 |` old line 12, `+12 |` new line 12); hunks are
/// separated by `  ...`. Empty if the texts have the same lines (line endings and a final
/// newline aside).
///
/// The diff is the `similar` crate's (Myers' algorithm) over the lines, each without its
/// line ending; within a change, removed lines come before added ones.
pub fn line_diff(old: &str, new: &str, context: usize) -> String {
    let a: Vec<&str> = old.lines().collect();
    let b: Vec<&str> = new.lines().collect();
    let ops = similar::capture_diff_slices(Algorithm::Myers, &a, &b);
    let mut out = String::new();
    for (hunk, ops) in similar::group_diff_ops(ops, context).iter().enumerate() {
        if hunk > 0 {
            out.push_str("  ...\n");
        }
        for change in ops.iter().flat_map(|op| op.iter_changes(&a, &b)) {
            let (tag, index) = match change.tag() {
                ChangeTag::Equal => (' ', change.old_index()),
                ChangeTag::Delete => ('-', change.old_index()),
                ChangeTag::Insert => ('+', change.new_index()),
            };
            let number = index
                .expect("an equal or removed line has an old index, an added one a new")
                + 1;
            out.push_str(&format!("{tag}{number:>4} | {}\n", change.value()));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_outputs_pass() {
        assert_eq!(compare("x", "a\nb\n", "a\nb\n"), Ok(()));
    }

    #[test]
    fn a_changed_number_shows_in_the_diff_with_the_hint() {
        let expected = "shape (2, 3)\nrow 0: 0.1 0.2\nrow 1: 0.3 0.4\nrow 2: 0.5 0.6\nrow 3: 0.7 0.8\nrow 4: 0.9 1.0\ndone\n";
        let actual = expected.replace("0.5 0.6", "0.5 0.7");
        let err = compare("mask", expected, &actual).unwrap_err();
        assert!(
            err.starts_with(
                "example `mask`: its stdout differs from src/output/mask.txt"
            )
        );
        assert!(
            err.contains("-   4 | row 2: 0.5 0.6\n+   4 | row 2: 0.5 0.7\n"),
            "{err}"
        );
        // Two lines of context on each side, not the first line.
        assert!(err.contains("    2 | row 0: 0.1 0.2\n"), "{err}");
        assert!(!err.contains("shape (2, 3)"), "{err}");
        assert!(err.ends_with(UPDATE_HINT), "{err}");
    }

    #[test]
    fn missing_and_extra_lines_are_shown() {
        let d = line_diff("a\nb\nc\n", "a\nc\nd\n", 1);
        assert_eq!(d, "    1 | a\n-   2 | b\n    3 | c\n+   3 | d\n");
    }

    #[test]
    fn distant_changes_are_separated() {
        let old: String = (0..20).map(|i| format!("{i}\n")).collect();
        let new: String = (0..20)
            .map(|i| match i {
                2 => "two\n".to_owned(),
                17 => "seventeen\n".to_owned(),
                _ => format!("{i}\n"),
            })
            .collect();
        let d = line_diff(&old, &new, 1);
        assert!(d.contains("  ...\n"), "{d}");
        assert_eq!(d.lines().filter(|l| l.starts_with('-')).count(), 2, "{d}");
    }

    #[test]
    fn a_missing_final_newline_is_a_difference() {
        let err = compare("x", "a\n", "a").unwrap_err();
        assert!(err.contains("the final newline differ"), "{err}");
    }

    #[test]
    fn pairing_finds_both_kinds_of_orphans() {
        let s = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let p = pair(&s(&["mask", "rope", "gqa"]), &s(&["mask", "gqa", "old"]));
        assert_eq!(p.paired, s(&["gqa", "mask"]));
        assert_eq!(p.missing_output, s(&["rope"]));
        assert_eq!(p.orphan_output, s(&["old"]));
    }
}
