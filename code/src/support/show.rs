//! Printing for the book's examples: one row of numbers, or a labelled table, in the
//! layout every chapter's output uses (4 decimals, columns 8 wide), so that an example
//! shows its idea rather than its formatting.
//!
//! ```
//! use attention::show;
//! let m = nalgebra::DMatrix::from_row_slice(2, 3, &[0.1, 0.25, 1.0, -2.0, 0.0, 3.5]);
//! assert_eq!(show::row(&[0.1_f32, 1.0]), "  0.1000  1.0000");
//! assert_eq!(
//!     show::table("x", &["a", "b", "c"], &["row 0", "row 1"], &m),
//!     "x                a       b       c\n  row 0     0.1000  0.2500  1.0000\n  \
//!      row 1    -2.0000  0.0000  3.5000\n"
//! );
//! ```

use nalgebra::DMatrix;

/// The six tokens of the toy sentence ("Your journey starts with one step"), the labels
/// of its rows (queries) and columns (keys).
pub const TOY_TOKENS: [&str; 6] = ["Your", "journey", "starts", "with", "one", "step"];

/// Numbers with 4 decimals, each right-aligned in a column 8 wide: one row of a printed
/// table. Takes anything that yields `&f32`: a slice, a `Vec`, `&DMatrix`, `m.row(i).iter()`.
pub fn row<'a>(values: impl IntoIterator<Item = &'a f32>) -> String {
    row_width(values, 8)
}

/// As [`row`], in columns `width` wide (for numbers too large for 8).
pub fn row_width<'a>(values: impl IntoIterator<Item = &'a f32>, width: usize) -> String {
    values.into_iter().map(|v| format!("{v:width$.4}")).collect()
}

/// A table: `title` followed by the column labels, then each row of `m` labelled with
/// the matching entry of `rows` (indented 2, 8 wide); numbers as in [`row`]. Rows
/// without a label are left out. Ends with a newline.
pub fn table(title: &str, columns: &[&str], rows: &[&str], m: &DMatrix<f32>) -> String {
    let mut out = format!("{title:<10}");
    for c in columns {
        out += &format!("{c:>8}");
    }
    out.push('\n');
    for (label, r) in rows.iter().zip(m.row_iter()) {
        out += &format!("  {label:<8}{}\n", row(r.iter()));
    }
    out
}

/// Prints [`table`].
pub fn print_table(title: &str, columns: &[&str], rows: &[&str], m: &DMatrix<f32>) {
    print!("{}", table(title, columns, rows, m));
}
