//! Writes every figure of the book to `src/img/`, and the benchmark tables rendered from
//! `src/data/bench-results.json` to `src/generated/bench-table.md` (run after changing
//! what a figure shows, or after `scripts/bench_compare.py` measured again: `cargo run -p
//! book-tests --bin figures`). The tests `tests/figures.rs` and `tests/bench_tables.rs`
//! fail while they are stale.

use std::process::ExitCode;

use book_tests::bench::{BenchResults, TABLE_FILE, render_tables};

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
    let table = root.join(TABLE_FILE);
    let written = BenchResults::committed()
        .and_then(|r| Ok(std::fs::write(&table, render_tables(&r))?));
    if let Err(e) = written {
        eprintln!("figures: {TABLE_FILE}: {e}");
        return ExitCode::FAILURE;
    }
    println!("wrote {TABLE_FILE}");
    ExitCode::SUCCESS
}
