//! The crate's one error type.
//!
//! Every public function that can receive a bad shape, an impossible configuration, a full cache or a
//! broken file returns [`Result`]: a reader who feeds in the wrong thing gets a message that names the
//! offending shapes and values, never a panic deep inside nalgebra and never a silently wrong number.

use thiserror::Error;

/// Everything that can go wrong in this crate. Messages name the offending shapes and values.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum AttnError {
    /// A matrix or batch did not have the shape an operation needs.
    #[error("shape mismatch in {context}: expected {expected}, got {got}")]
    Shape {
        /// Which operation or argument (e.g. "Linear::forward input").
        context: String,
        /// The shape that was needed, e.g. "(_, 12)".
        expected: String,
        /// The shape that was given, e.g. "(7, 16)".
        got: String,
    },
    /// A size that must be positive was zero.
    #[error("invalid config: {what} must be at least 1, got 0")]
    ZeroSize {
        /// Which size, e.g. "n_heads".
        what: &'static str,
    },
    /// One size must divide another (e.g. `d_model` by `n_heads`).
    #[error(
        "invalid config: {numerator_name} = {numerator} is not divisible by {denominator_name} = {denominator}"
    )]
    NotDivisible {
        /// The name of the size that must be a multiple, e.g. "d_model".
        numerator_name: &'static str,
        /// Its value.
        numerator: usize,
        /// The name of the divisor, e.g. "n_heads".
        denominator_name: &'static str,
        /// Its value.
        denominator: usize,
    },
    /// RoPE rotates pairs of dimensions, so `head_dim` must be even.
    #[error("invalid config: RoPE needs an even head_dim, got {head_dim}")]
    OddHeadDim {
        /// The odd value.
        head_dim: usize,
    },
    /// Any other impossible configuration value (a negative RoPE base, a NaN factor, ...).
    #[error("invalid config: {0}")]
    Config(String),
    /// Positions `start_pos .. start_pos + seq_len` reach past a precomputed table or a context length.
    #[error("positions {start_pos}..{end} exceed the maximum of {max_positions} positions")]
    PositionOutOfRange {
        /// First position asked for.
        start_pos: usize,
        /// One past the last position asked for.
        end: usize,
        /// How many positions are available (valid positions are `0..max_positions`).
        max_positions: usize,
    },
    /// Appending to a KV cache would pass its capacity.
    #[error("KV cache full: holds {len} of {capacity} positions, cannot append {adding} more")]
    CacheFull {
        /// Positions the cache was allocated for.
        capacity: usize,
        /// Positions already filled.
        len: usize,
        /// Positions the caller tried to add.
        adding: usize,
    },
    /// A cached forward pass was called with a `start_pos` that does not match the cache.
    #[error("start_pos {start_pos} does not match the KV cache, which holds {cache_len} positions")]
    CachePosition {
        /// What the caller passed.
        start_pos: usize,
        /// What the cache holds.
        cache_len: usize,
    },
    /// A file could not be read or written.
    #[error("{path}: {message}")]
    Io {
        /// The file.
        path: String,
        /// The operating system's message.
        message: String,
    },
    /// A file was read but its contents are not what was expected (corrupt, wrong dtype, missing key).
    #[error("{path}: {message}")]
    Format {
        /// The file (or a description of the data source).
        path: String,
        /// What is wrong, naming the tensor or key.
        message: String,
    },
}

/// The crate's result type.
pub type Result<T> = std::result::Result<T, AttnError>;

/// Formats a shape as `(a, b, c)` for error messages.
pub(crate) fn fmt_shape(dims: &[usize]) -> String {
    let inner: Vec<String> = dims.iter().map(|d| d.to_string()).collect();
    format!("({})", inner.join(", "))
}

/// Builds an [`AttnError::Shape`].
pub(crate) fn shape_err(context: impl Into<String>, expected: impl Into<String>, got: &[usize]) -> AttnError {
    AttnError::Shape { context: context.into(), expected: expected.into(), got: fmt_shape(got) }
}

/// Returns an error when `value` is zero.
pub(crate) fn nonzero(what: &'static str, value: usize) -> Result<()> {
    if value == 0 { Err(AttnError::ZeroSize { what }) } else { Ok(()) }
}

/// Returns an error when `numerator` is not a multiple of `denominator` (which must be non-zero).
pub(crate) fn divisible(
    numerator_name: &'static str,
    numerator: usize,
    denominator_name: &'static str,
    denominator: usize,
) -> Result<()> {
    nonzero(denominator_name, denominator)?;
    if !numerator.is_multiple_of(denominator) {
        Err(AttnError::NotDivisible { numerator_name, numerator, denominator_name, denominator })
    } else {
        Ok(())
    }
}
