//! Writes every figure of the book to `src/img/`, and the benchmark tables rendered from
//! each committed run (`book_tests::bench::RUNS`, e.g. `src/data/bench-results.json` to
//! `src/generated/bench-table.md`) (run after changing
//! what a figure shows, or after `scripts/bench_compare.py` measured again: `cargo run -p
//! book-tests --bin figures`). The tests `tests/figures.rs` and `tests/bench_tables.rs`
//! fail while they are stale.

use std::process::ExitCode;

use book_tests::bench::{BenchResults, RUNS, render_tables};

fn main() -> ExitCode {
    let root = book_tests::workspace_root();
    let dir = root.join("src/img");
    if let Err(e) = std::fs::create_dir_all(&dir) {
        eprintln!("figures: cannot create {}: {e}", dir.display());
        return ExitCode::FAILURE;
    }
    for fig in book_tests::figures::ALL {
        let path = dir.join(fig.file);
        if let Err(e) = (fig.render)(&path) {
            eprintln!("figures: {}: {e}", fig.file);
            return ExitCode::FAILURE;
        }
        println!("wrote {}", book_tests::display_path(&path, &root));
    }
    for (results, table) in RUNS {
        let written = BenchResults::load(&root.join(results))
            .and_then(|r| Ok(std::fs::write(root.join(table), render_tables(&r))?));
        if let Err(e) = written {
            eprintln!("figures: {table}: {e}");
            return ExitCode::FAILURE;
        }
        println!("wrote {table}");
    }
    ExitCode::SUCCESS
}
