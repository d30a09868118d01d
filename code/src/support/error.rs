//! The crate's one error type.
//!
//! Every public function that can receive a bad shape, an impossible configuration, a
//! full cache or a broken file returns [`Result`]: a reader who feeds in the wrong thing
//! gets a message that names the offending shapes and values, never a panic deep inside
//! nalgebra and never a silently wrong number. The variants carry typed fields
//! (dimensions, indices, byte counts, the operating system's [`std::io::Error`]), so a
//! caller can match on what went wrong rather than parse a message.

use std::fmt;
use std::sync::Arc;

use thiserror::Error;

/// A shape as an error message shows it: each dimension a number, or `_` where any size
/// is fine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dims(pub Vec<Option<usize>>);

impl Dims {
    /// A fully known shape.
    pub fn exact(dims: &[usize]) -> Self {
        Self(dims.iter().map(|&d| Some(d)).collect())
    }

    /// A shape with some dimensions left open (`None` prints as `_`).
    pub fn pattern(dims: &[Option<usize>]) -> Self {
        Self(dims.to_vec())
    }
}

impl fmt::Display for Dims {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self
            .0
            .iter()
            .map(|d| d.map_or_else(|| "_".to_string(), |d| d.to_string()))
            .collect();
        write!(f, "({})", parts.join(", "))
    }
}

/// The operating system's error behind an [`AttnError::Io`], kept as the error's
/// `source()`.
///
/// Shared (`Arc`) so that [`AttnError`] stays `Clone`; two are equal when their kind and
/// message are.
#[derive(Clone, Debug)]
pub struct IoSource(pub Arc<std::io::Error>);

impl PartialEq for IoSource {
    fn eq(&self, other: &Self) -> bool {
        self.0.kind() == other.0.kind() && self.0.to_string() == other.0.to_string()
    }
}

impl fmt::Display for IoSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for IoSource {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.0)
    }
}

/// Everything that can go wrong in this crate. Messages name the offending shapes and
/// values.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum AttnError {
    /// A matrix, batch or tensor did not have the shape an operation needs.
    #[error("shape mismatch in {what}: expected {expected}, got {got}")]
    Shape {
        /// Which operation or argument (e.g. "Linear::forward input").
        what: String,
        /// The shape that was needed, e.g. `(_, 12)`.
        expected: Dims,
        /// The shape that was given, e.g. `(7, 16)`.
        got: Dims,
    },
    /// A flat buffer did not hold as many values as its shape needs.
    #[error("{what}: shape {shape} needs {expected} values, got {got}")]
    Length {
        /// Which operation or tensor.
        what: String,
        /// The shape the values were meant to fill.
        shape: Dims,
        /// The product of the shape.
        expected: usize,
        /// How many values there were.
        got: usize,
    },
    /// An index (a sequence of a batch, a layer, a dimension pair) past the end of what
    /// it indexes.
    #[error("{what} index {index} is out of range (there are {len})")]
    IndexOutOfRange {
        /// What was indexed, e.g. "LayerKvCache sequence".
        what: &'static str,
        /// The index asked for.
        index: usize,
        /// How many there are (valid indices are `0..len`).
        len: usize,
    },
    /// Causal attention of `n_queries` queries whose first sits `query_offset` keys in
    /// needs at least `query_offset + n_queries` keys: the newest query's own key is
    /// missing.
    #[error(
        "causal attention of {n_queries} queries at query_offset {query_offset} needs \
            at least {} keys, got {n_keys}",
        *query_offset as u128 + *n_queries as u128
    )]
    MissingKeys {
        /// Queries.
        n_queries: usize,
        /// Keys before the first query's own key.
        query_offset: usize,
        /// Keys given.
        n_keys: usize,
    },
    /// A size that must be positive was zero.
    #[error("invalid config: {what} must be at least 1, got 0")]
    ZeroSize {
        /// Which size, e.g. "n_heads".
        what: &'static str,
    },
    /// One size must divide another (e.g. `d_model` by `n_heads`).
    #[error(
        "invalid config: {numerator_name} = {numerator} is not divisible by \
            {denominator_name} = {denominator}"
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
    /// Sizes whose product (elements or bytes) does not fit in memory: the product
    /// overflows `usize`, or is larger than this crate allocates, or the allocator
    /// refused it.
    #[error("{what} is too large: {bytes} bytes ({detail})")]
    TooLarge {
        /// What would have been allocated, with its shape, e.g. "LayerKvCache (1,
        /// 1099511627776, 1)".
        what: String,
        /// The bytes it would need (`u128`, so that even an overflowing product is shown
        /// exactly).
        bytes: u128,
        /// Why it was refused.
        detail: &'static str,
    },
    /// Any other impossible configuration value (a negative RoPE base, a NaN factor,
    /// ...).
    #[error("invalid config: {0}")]
    Config(String),
    /// A config asks for something this crate does not implement (another model type, a
    /// RoPE type).
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// Positions `start_pos .. start_pos + len` reach past a precomputed table or a
    /// context length.
    #[error("positions {start_pos}..{} exceed the maximum of {max_positions} positions", *start_pos as u128 + *len as u128)]
    PositionOutOfRange {
        /// First position asked for.
        start_pos: usize,
        /// How many positions from there.
        len: usize,
        /// How many positions are available (valid positions are `0..max_positions`).
        max_positions: usize,
    },
    /// Appending to a KV cache would pass its capacity.
    #[error(
        "KV cache full: holds {len} of {capacity} positions, cannot append {adding} more"
    )]
    CacheFull {
        /// Positions the cache was allocated for.
        capacity: usize,
        /// Positions already filled.
        len: usize,
        /// Positions the caller tried to add.
        adding: usize,
    },
    /// A cached forward pass was called with a `start_pos` that does not continue the
    /// cache.
    #[error(
        "start_pos {start_pos} does not continue the KV cache, whose next position is \
            {next_pos}"
    )]
    CachePosition {
        /// What the caller passed.
        start_pos: usize,
        /// The position the cache expects next (its first position plus the positions it
        /// holds).
        next_pos: usize,
    },
    /// A cache was made for another layer shape or batch than the forward pass it is
    /// given to.
    #[error("KV cache mismatch: {0}")]
    CacheMismatch(String),
    /// A paged KV cache's block pool has fewer free blocks than an append needs (chapter
    /// 14). The cache is unchanged.
    #[error(
        "KV block pool exhausted: {free} of {n_blocks} blocks free, the append needs \
            {needed}"
    )]
    PoolExhausted {
        /// Blocks the append would take (new blocks, and a copy of a shared last block).
        needed: usize,
        /// Blocks free in the pool.
        free: usize,
        /// Blocks in the pool.
        n_blocks: usize,
    },
    /// A paged KV cache was given a sequence id it never issued, or one already freed
    /// (chapter 14).
    #[error(
        "{}",
        if *freed {
            format!("sequence {id} was freed")
        } else {
            format!("no sequence {id} in the KV cache")
        }
    )]
    UnknownSequence {
        /// The id given.
        id: usize,
        /// Whether the cache issued it and it has been freed since.
        freed: bool,
    },
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The operating system's error.
        source: IoSource,
    },
    /// A file was read but its contents are not what was expected (corrupt, wrong dtype,
    /// missing key).
    #[error("{path}: {message}")]
    Format {
        /// The file (or a description of the data source).
        path: String,
        /// What is wrong, naming the tensor or key.
        message: String,
    },
    /// A file describes something refused for a reason with a variant of its own (a
    /// `config.json` whose head counts do not divide, an odd `head_dim`): that error,
    /// typed, and the file it came from.
    #[error("{path}: {source}")]
    InFile {
        /// The file (or a description of the data source).
        path: String,
        /// What is wrong with what the file describes.
        source: Box<AttnError>,
    },
}

/// The crate's result type.
pub type Result<T> = std::result::Result<T, AttnError>;

impl AttnError {
    /// An [`AttnError::Io`] for `path` from the operating system's error.
    pub fn io(path: impl fmt::Display, error: std::io::Error) -> Self {
        AttnError::Io { path: path.to_string(), source: IoSource(Arc::new(error)) }
    }
}

/// Formats a shape as `(a, b, c)` for error messages.
pub(crate) fn fmt_shape(dims: &[usize]) -> String {
    Dims::exact(dims).to_string()
}

/// Builds an [`AttnError::Shape`] from a pattern (`None` = any size) and the shape given.
pub(crate) fn shape_err(
    what: impl Into<String>,
    expected: &[Option<usize>],
    got: &[usize],
) -> AttnError {
    AttnError::Shape {
        what: what.into(),
        expected: Dims::pattern(expected),
        got: Dims::exact(got),
    }
}

/// Returns an error when `value` is zero.
pub(crate) fn nonzero(what: &'static str, value: usize) -> Result<()> {
    if value == 0 { Err(AttnError::ZeroSize { what }) } else { Ok(()) }
}

/// Returns an error when `numerator` is not a multiple of `denominator` (which must be
/// non-zero).
pub(crate) fn divisible(
    numerator_name: &'static str,
    numerator: usize,
    denominator_name: &'static str,
    denominator: usize,
) -> Result<()> {
    nonzero(denominator_name, denominator)?;
    if !numerator.is_multiple_of(denominator) {
        Err(AttnError::NotDivisible {
            numerator_name,
            numerator,
            denominator_name,
            denominator,
        })
    } else {
        Ok(())
    }
}

/// The largest buffer of f32 this crate allocates in one piece, at most: 2³⁶ bytes (64
/// GiB). On Linux the bound is the machine's physical memory when that is smaller
/// ([`max_alloc_bytes`]). Larger requests are refused with [`AttnError::TooLarge`] before
/// the allocator is asked: an allocation failure aborts the process, a too-large `Vec`
/// panics with "capacity overflow", and on Linux an allocation larger than the memory
/// succeeds and gets the process killed when used.
pub const MAX_ALLOC_BYTES: u128 = 1 << 36;

/// The bound the crate's size checks enforce: [`MAX_ALLOC_BYTES`], or the physical memory
/// (`MemTotal` in `/proc/meminfo`) where it is smaller.
pub fn max_alloc_bytes() -> u128 {
    static BOUND: std::sync::OnceLock<u128> = std::sync::OnceLock::new();
    *BOUND.get_or_init(|| {
        let mem_total = std::fs::read_to_string("/proc/meminfo").ok().and_then(|text| {
            let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
            let kib: u128 = line.split_whitespace().nth(1)?.parse().ok()?;
            Some(kib * 1024)
        });
        mem_total.map_or(MAX_ALLOC_BYTES, |m| m.min(MAX_ALLOC_BYTES))
    })
}

/// The number of elements of a buffer of shape `dims` (f32), or [`AttnError::TooLarge`]
/// when the product overflows or passes [`max_alloc_bytes`].
pub(crate) fn checked_len(what: impl fmt::Display, dims: &[usize]) -> Result<usize> {
    let elements: u128 = dims.iter().fold(1u128, |acc, &d| acc.saturating_mul(d as u128));
    let bytes = elements.saturating_mul(4);
    if bytes > max_alloc_bytes() {
        return Err(AttnError::TooLarge {
            what: format!("{what} {}", fmt_shape(dims)),
            bytes,
            detail: "more than this machine's memory, or than the 64 GiB this crate \
                allocates at once",
        });
    }
    Ok(elements as usize) // fits: at most 2^34 elements
}

/// A vector of `len` zeros, asking the allocator without aborting on failure.
pub(crate) fn try_zeros(what: impl fmt::Display, dims: &[usize]) -> Result<Vec<f32>> {
    try_zeros_with_spare(what, dims, 0)
}

/// [`try_zeros`] with `spare` more zeros after the `dims` elements (`spare` is small:
/// [`checked_len`] bounds the elements to 2^34, so the sum cannot overflow).
pub(crate) fn try_zeros_with_spare(
    what: impl fmt::Display,
    dims: &[usize],
    spare: usize,
) -> Result<Vec<f32>> {
    let len = checked_len(&what, dims)? + spare;
    let mut v = Vec::new();
    v.try_reserve_exact(len).map_err(|_| AttnError::TooLarge {
        what: format!("{what} {}", fmt_shape(dims)),
        bytes: len as u128 * 4,
        detail: "the allocator refused it",
    })?;
    v.resize(len, 0.0);
    Ok(v)
}

/// A `(rows, cols)` zero matrix, with its size checked and its allocation fallible (see
/// [`try_zeros`]).
pub(crate) fn try_zero_matrix(
    what: impl fmt::Display,
    rows: usize,
    cols: usize,
) -> Result<nalgebra::DMatrix<f32>> {
    let data = try_zeros(what, &[rows, cols])?;
    Ok(nalgebra::DMatrix::from_vec(rows, cols, data))
}

/// `start + len` as a position range end, or [`AttnError::PositionOutOfRange`] against
/// `max` when it passes `max` or overflows.
pub(crate) fn check_range(
    start_pos: usize,
    len: usize,
    max_positions: usize,
) -> Result<usize> {
    match start_pos.checked_add(len) {
        Some(end) if end <= max_positions => Ok(end),
        _ => Err(AttnError::PositionOutOfRange { start_pos, len, max_positions }),
    }
}
