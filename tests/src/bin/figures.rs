//! Writes every figure of the book to `src/img/` (run after changing what a figure shows:
//! `cargo run -p book-tests --bin figures`). The test `tests/figures.rs` fails while they are stale.

use std::process::ExitCode;

fn main() -> ExitCode {
    let dir = book_tests::workspace_root().join("src/img");
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
        println!("wrote {}", book_tests::display_path(&path, &book_tests::workspace_root()));
    }
    ExitCode::SUCCESS
}
