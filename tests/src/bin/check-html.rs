//! Checks the built book: `cargo run -q -p book-tests --bin check-html -- book` (after
//! `mdbook build`; `scripts/test.sh` runs it).
//!
//! Fails on a broken internal link or `#fragment`, a reference to a CDN, or a KaTeX
//! error. See `book_tests::html` for the rules.

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let book =
        PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| "book".to_owned()));
    match book_tests::html::check_book(&book) {
        Ok(problems) if problems.is_empty() => {
            println!("check-html: {} is fine", book.display());
            ExitCode::SUCCESS
        }
        Ok(problems) => {
            for problem in &problems {
                eprintln!("{problem}");
            }
            eprintln!("check-html: {} problem(s) in {}", problems.len(), book.display());
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("check-html: {e}");
            ExitCode::FAILURE
        }
    }
}
