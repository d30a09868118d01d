//! Renders benchmark measurements as chapter 8's markdown tables (`book_tests::bench`):
//!
//! ```text
//! cargo run -p book-tests --bin bench-table                        # the committed results, to stdout
//! cargo run -p book-tests --bin bench-table -- --input R.json --output T.md
//! ```
//!
//! `scripts/bench_compare.py` runs it after a measurement (and on its `--quick` run's
//! temporary results). The `figures` binary writes `src/generated/bench-table.md` from
//! the committed results too, and the test `tests/bench_tables.rs` fails while that file
//! is stale.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use book_tests::bench::{BenchResults, RESULTS_FILE, render_tables};

const HELP: &str = "\
bench-table: render benchmark measurements as the book's markdown tables

Usage:
  bench-table [--input RESULTS.json] [--output TABLE.md]

Options:
  --input PATH    results written by scripts/bench_compare.py [default: src/data/bench-results.json]
  --output PATH   file to write the markdown to (overwritten) [default: stdout]
  -h, --help      print this help

Each flag may be given once. Exit status: 0 on success, 1 when the input cannot be read or
parsed or the output cannot be written, 2 on bad usage.";

/// What went wrong, and so which exit code to return.
enum Failure {
    /// Bad command line: exit code 2.
    Usage(String),
    /// Unreadable or malformed results, or an unwritable output: exit code 1.
    Data(String),
}

impl From<lexopt::Error> for Failure {
    fn from(e: lexopt::Error) -> Self {
        Failure::Usage(e.to_string())
    }
}

/// Stores the path given to a flag, or fails if the flag was given before.
fn once(slot: &mut Option<PathBuf>, flag: &str, value: PathBuf) -> Result<(), Failure> {
    match slot.replace(value) {
        Some(_) => Err(Failure::Usage(format!("{flag} is given more than once"))),
        None => Ok(()),
    }
}

/// The parsed command line.
struct Args {
    /// The results file; `None` for the committed one.
    input: Option<PathBuf>,
    /// The markdown file to write; `None` for stdout.
    output: Option<PathBuf>,
}

/// Parses the command line; `Ok(None)` when `--help` was asked for.
fn parse_args() -> Result<Option<Args>, Failure> {
    use lexopt::prelude::*;
    let (mut input, mut output) = (None, None);
    let mut parser = lexopt::Parser::from_env();
    while let Some(arg) = parser.next()? {
        match arg {
            Long("input") => once(&mut input, "--input", parser.value()?.into())?,
            Long("output") => once(&mut output, "--output", parser.value()?.into())?,
            Short('h') | Long("help") => return Ok(None),
            _ => return Err(arg.unexpected().into()),
        }
    }
    Ok(Some(Args { input, output }))
}

/// Reads the results, renders them, writes the markdown.
fn run(args: Args) -> Result<(), Failure> {
    let input =
        args.input.unwrap_or_else(|| book_tests::workspace_root().join(RESULTS_FILE));
    let results = BenchResults::load(&input).map_err(|e| Failure::Data(e.to_string()))?;
    let md = render_tables(&results);
    match args.output {
        Some(path) => std::fs::write(&path, md)
            .map_err(|e| Failure::Data(format!("{}: {e}", path.display()))),
        None => std::io::stdout()
            .write_all(md.as_bytes())
            .map_err(|e| Failure::Data(format!("stdout: {e}"))),
    }
}

fn main() -> ExitCode {
    let result = parse_args().and_then(|args| match args {
        None => {
            let _ = writeln!(std::io::stdout(), "{HELP}");
            Ok(())
        }
        Some(args) => run(args),
    });
    // one line per error, whatever the message contained
    let one_line = |m: String| m.split_whitespace().collect::<Vec<_>>().join(" ");
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Usage(m)) => {
            eprintln!("bench-table: error: {} (try --help)", one_line(m));
            ExitCode::from(2)
        }
        Err(Failure::Data(m)) => {
            eprintln!("bench-table: error: {}", one_line(m));
            ExitCode::from(1)
        }
    }
}
