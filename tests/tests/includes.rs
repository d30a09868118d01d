//! The chapters' includes resolve to what the author meant, and nothing is left out.
//!
//! - every `{{#include}}` / `{{#rustdoc_include}}` names an existing file, an existing and
//!   balanced anchor, or a line range inside the file, and shows a non-empty excerpt;
//! - `ignore` blocks hold only `{{#include}}` lines of the companion crate's code, and every code
//!   block is a tagged backtick fence;
//! - the anchors of `code/src` and `code/examples` are balanced, and each one is shown by some
//!   chapter;
//! - the expansion that skeptic compiles (`build.rs`) is exactly what mdBook renders.
//!
//! Rules and messages: `book_tests::includes`.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use book_tests::directives::{chapter_files, expand, files_under};
use book_tests::includes::{Chapter, anchor_problems, chapter_problems, defined_anchors, used_anchors};
use book_tests::{display_path, normalize, workspace_root};

fn read(path: &Path) -> Option<String> {
    fs::read_to_string(path).ok()
}

fn chapters(root: &Path) -> Vec<Chapter> {
    chapter_files(&root.join("src"))
        .into_iter()
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
            if seen.insert(name.clone()) && !used.contains(&(normalize(&file), name.clone())) {
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

/// skeptic compiles the chapters as `build.rs` expands them: make sure that is what mdBook
/// shows, by running mdBook's own `markdown` renderer (the chapters after its preprocessors)
/// over the real chapters, into a temporary folder.
#[test]
fn expansion_matches_mdbook() {
    let root = workspace_root();
    let Some(mdbook) = find_mdbook() else {
        // scripts/test.sh installs mdbook first, so this only happens outside it.
        eprintln!("warning: mdbook not found (run scripts/install-tools.sh); comparison skipped");
        return;
    };
    let work = std::env::temp_dir().join(format!("book-tests-mdbook-md-{}", std::process::id()));
    let _ = fs::remove_dir_all(&work);
    fs::create_dir_all(&work).expect("create a temporary folder");
    let out = work.join("out");
    // `create-missing = false`: never write into the real src/.
    let config = format!(
        "[book]\ntitle = \"expansion check\"\nsrc = {:?}\n\n[build]\ncreate-missing = false\n\
         build-dir = {:?}\n\n[output.markdown]\n",
        root.join("src").display().to_string(),
        out.display().to_string(),
    );
    fs::write(work.join("book.toml"), config).expect("write book.toml");
    let run = Command::new(mdbook).arg("build").arg(&work).output().expect("run mdbook");
    assert!(
        run.status.success(),
        "mdbook build (markdown renderer) failed:\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let src = root.join("src");
    let mut problems = Vec::new();
    let mut compared = 0;
    for chapter in chapter_files(&src) {
        let relative = chapter.strip_prefix(&src).expect("under src/");
        // Only the chapters listed in SUMMARY.md are rendered.
        let Ok(rendered) = fs::read_to_string(out.join(relative)) else {
            continue;
        };
        let text = fs::read_to_string(&chapter).expect("read the chapter");
        let ours = expand(&text, chapter.parent().expect("in a folder")).text;
        compared += 1;
        if ours != rendered {
            problems.push(format!(
                "{}: build.rs expands it differently from mdBook (`-` mdBook, `+` build.rs):\n{}",
                display_path(&chapter, &root),
                book_tests::output::line_diff(&rendered, &ours, 2)
            ));
        }
    }
    let _ = fs::remove_dir_all(&work);
    assert!(compared > 0, "mdBook rendered none of the chapters");
    fail_with("chapter(s) expanded differently", &problems);
}

/// `mdbook` on the PATH, else in cargo's bin folder.
fn find_mdbook() -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|dir| dir.join("mdbook"));
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .map(|home| home.join("bin/mdbook"));
    on_path.chain(cargo_home).find(|p| p.is_file())
}
