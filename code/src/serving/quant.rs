//! Chapter 13: a KV cache that stores keys and values in fewer bits.
//!
//! Three formats ([`KvFormat`]), each reproduced bit for bit against a PyTorch reference
//! (`scripts/gen_quant_fixtures.py`, `code/tests/quant_kv.rs`):
//!
//! - **int8**, symmetric, one f32 scale per token and KV head (our own torch reference);
//! - **int4 after KIVI** (Liu et al. 2024, "KIVI: A Tuning-Free Asymmetric 2bit
//!   Quantization for KV Cache"): keys per channel over groups of `group` tokens,
//!   values per token, asymmetric (a scale and a min), two codes per byte, the newest
//!   tokens kept in f32 (our own torch reference, after KIVI's code). One
//!   simplification: a value row has one scale and min, where KIVI has one per `group`
//!   channels of the row;
//! - **fp8 e4m3** as transformers 5.24's `Fp8QuantizedLayer`: one f32 scale per tensor,
//!   calibrated on the first append and frozen (checked against that layer itself).
//!
//! [`QuantizedKvCache`] appends tokens like chapter 6's [`crate::LayerKvCache`] and hands
//! attention dequantized f32 rows ([`attend_quantized`], [`forward_quantized`]): an f32
//! copy of the cache, so it saves memory, not reading time. The codes as stored are lent
//! by [`QuantizedKvCache::key_rows`] and [`QuantizedKvCache::value_rows`].
//! [`quantized_kv_bytes_per_layer`] counts the memory, [`study_inputs`] and
//! [`quantized_attention_error`] measure what each format costs in accuracy.

use nalgebra::{DMatrix, DMatrixView};

use crate::mechanisms::config::AttentionConfig;
use crate::mechanisms::gqa::GroupedQueryAttention;
use crate::mechanisms::memory::DType;
use crate::mechanisms::rope::Rope;
use crate::mechanisms::sdpa::{HeadLayout, grouped_attention};
use crate::support::batch::Batch;
use crate::support::error::{
    AttnError, Result, check_range, divisible, max_alloc_bytes, nonzero, shape_err,
};
use crate::support::init::splitmix_uniform;

/// The smallest scale any format here uses: f32's smallest normal number, 2⁻¹²⁶
/// (`torch.finfo(torch.float32).tiny`). A row or group whose values are all equal would
/// get scale 0 and codes `0 / 0`; with this floor its codes are 0 and it dequantizes
/// exactly (to 0, or to its min).
pub const MIN_SCALE: f32 = f32::MIN_POSITIVE;

/// The largest finite float8 e4m3fn number: `1.75 · 2⁸`.
pub const E4M3_MAX: f32 = 448.0;

// ANCHOR: kv_format
/// How a [`QuantizedKvCache`] stores keys and values (one KV head of one token is a
/// *row* of `head_dim` numbers).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KvFormat {
    /// 8-bit integers, symmetric: one f32 scale per row, `x ≈ code · scale`, codes in
    /// `-127 ..= 127`.
    Int8,
    /// 4-bit integers after KIVI, asymmetric: `x ≈ code · scale + min`, codes in
    /// `0 ..= 15`, two per byte. Keys get a scale and a min per channel for each group of
    /// `group` tokens; values one per row (KIVI: one per `group` channels of the row).
    /// The newest tokens wait in f32 and are quantized `group` at a time, so that at
    /// least `residual` (and fewer than `residual + group`) stay exact.
    Int4 {
        /// Tokens per key group.
        group: usize,
        /// Newest tokens always kept in f32.
        residual: usize,
    },
    /// float8 e4m3 (4 exponent bits, 3 mantissa bits, no infinities): one f32 scale for
    /// all keys and one for all values, `amax / 448` of the first append, then frozen.
    Fp8E4M3,
}
// ANCHOR_END: kv_format

impl KvFormat {
    /// int4 with groups of 32 tokens (KIVI's example script) and the 128 newest tokens
    /// in f32 (the residual of transformers' `QuantizedCache`).
    pub const KIVI: Self = Self::Int4 { group: 32, residual: 128 };

    /// A short name for tables: `int8`, `int4 G32 R128`, `fp8 e4m3`.
    pub fn name(&self) -> String {
        match self {
            Self::Int8 => "int8".into(),
            Self::Int4 { group, residual } => format!("int4 G{group} R{residual}"),
            Self::Fp8E4M3 => "fp8 e4m3".into(),
        }
    }

    fn validate(&self, head_dim: usize) -> Result<()> {
        if let Self::Int4 { group, .. } = *self {
            nonzero("int4 group", group)?;
            divisible("head_dim", head_dim, "int4 codes per byte", 2)?;
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------
// The codes, one number or one row at a time
// ---------------------------------------------------------------------------------------

/// `max |x|`, NaN when any `x` is NaN, as `torch.amax` (`f32::max` would skip a NaN).
fn amax_abs(xs: impl IntoIterator<Item = f32>) -> f32 {
    xs.into_iter().fold(0.0, |m, x| {
        if m.is_nan() || x.is_nan() { f32::NAN } else { m.max(x.abs()) }
    })
}

/// `(min, max)`, both NaN when any `x` is NaN, as `torch.amin` and `torch.amax`.
fn min_max(xs: impl IntoIterator<Item = f32>) -> (f32, f32) {
    xs.into_iter().fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), x| {
        if lo.is_nan() || x.is_nan() {
            (f32::NAN, f32::NAN)
        } else {
            (lo.min(x), hi.max(x))
        }
    })
}

/// `scale.clamp(min=MIN_SCALE)` as torch computes it: a NaN stays NaN.
fn at_least_min_scale(scale: f32) -> f32 {
    if scale < MIN_SCALE { MIN_SCALE } else { scale }
}

// ANCHOR: int8_row
/// Quantizes one row to int8 codes and returns its scale: `amax / 127`, at least
/// [`MIN_SCALE`]; each code is `x / scale` rounded half to even (as `torch.round`),
/// clamped to ±127. A NaN in the row makes the scale NaN and every code 0 (Rust's `as`
/// casts NaN to 0), so the row dequantizes to NaN, as the reference does.
fn quantize_int8_row(row: &[f32], codes: &mut [i8]) -> f32 {
    let scale = at_least_min_scale(amax_abs(row.iter().copied()) / 127.0);
    for (code, &x) in codes.iter_mut().zip(row) {
        *code = (x / scale).round_ties_even().clamp(-127.0, 127.0) as i8;
    }
    scale
}
// ANCHOR_END: int8_row

// ANCHOR: int4_code
/// The scale of an int4 group from its min and max (KIVI): `(max − min) / 15`, at least
/// [`MIN_SCALE`].
fn int4_scale(min: f32, max: f32) -> f32 {
    at_least_min_scale((max - min) / 15.0)
}

/// One int4 code in KIVI's order: subtract the min, divide by the scale, clamp to
/// `0 ..= 15`, round half to even. NaN gives 0.
fn int4_code(x: f32, scale: f32, min: f32) -> u8 {
    ((x - min) / scale).clamp(0.0, 15.0).round_ties_even() as u8
}

/// Two codes in one byte: column `2j` in the low nibble, `2j + 1` in the high one. (KIVI
/// also puts the lower index in the lower bits, but packs eight codes per int32, keys
/// along the tokens and values along the channels.)
fn pack_pair(even: u8, odd: u8) -> u8 {
    even | (odd << 4)
}
// ANCHOR_END: int4_code

// ANCHOR: f32_to_e4m3
/// The float8 e4m3fn byte nearest to `x`, as `x.to(torch.float8_e4m3fn)` in torch 2.15:
/// round to nearest, ties to even, subnormals included; **saturating**: everything from
/// 448 up, infinity too, becomes ±448 (`0x7E`); NaN stays NaN (`0x7F`), sign kept.
pub fn f32_to_e4m3(x: f32) -> u8 {
    let sign = ((x.to_bits() >> 24) & 0x80) as u8;
    let a = x.abs();
    if a.is_nan() {
        return sign | 0x7F;
    }
    if a >= E4M3_MAX {
        return sign | 0x7E;
    }
    if a < 1.0 / 64.0 {
        // subnormal: multiples of 2^-9 (a · 512 is exact); 8 · 2^-9 is the first normal
        return sign | (a * 512.0).round_ties_even() as u8;
    }
    let exp = ((a.to_bits() >> 23) & 0xFF) as i32 - 127; // -6 ..= 8
    // the significand in eighths: 8 ..= 16 (a · 2^(3 - exp) is exact)
    let eighths = (a * pow2(3 - exp)).round_ties_even() as u8;
    let (exp, eighths) = if eighths == 16 { (exp + 1, 8) } else { (exp, eighths) };
    sign | (((exp + 7) as u8) << 3) | (eighths - 8)
}
// ANCHOR_END: f32_to_e4m3

/// The f32 value of a float8 e4m3fn byte (exact), as torch's `.float()`: NaN codes
/// (`0x7F`, `0xFF`) give the NaN torch gives, `0x7FF00000` with the code's sign.
pub fn e4m3_to_f32(code: u8) -> f32 {
    let (exp, mantissa) = ((code >> 3) & 0x0F, code & 0x07);
    if exp == 0x0F && mantissa == 0x07 {
        return f32::from_bits(0x7FF0_0000 | ((code as u32 & 0x80) << 24));
    }
    let magnitude = if exp == 0 {
        mantissa as f32 / 512.0
    } else {
        (8 + mantissa) as f32 * pow2(exp as i32 - 10)
    };
    if code & 0x80 != 0 { -magnitude } else { magnitude }
}

/// `2^e` for a normal exponent, built from its bits (exact).
fn pow2(e: i32) -> f32 {
    f32::from_bits(((e + 127) as u32) << 23)
}

// ---------------------------------------------------------------------------------------
// What a kernel reads
// ---------------------------------------------------------------------------------------

/// The codes and scales of one KV head's quantized rows, borrowed from a
/// [`QuantizedKvCache`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum RowCodes<'a> {
    /// `codes` `(rows, head_dim)` row-major, `scales` one per row: `x = code · scale`.
    Int8 {
        /// The codes.
        codes: &'a [i8],
        /// One per row.
        scales: &'a [f32],
    },
    /// `codes` `(rows, head_dim / 2)` row-major, column `2j` in the low nibble of byte
    /// `j`: `x = code · scale + min`.
    Int4 {
        /// The packed codes.
        codes: &'a [u8],
        /// Keys: `(rows / group, head_dim)`, one per channel and group; values: one per
        /// row.
        scales: &'a [f32],
        /// Shaped like `scales`.
        mins: &'a [f32],
        /// Keys: `Some(group)`; values: `None`.
        per_channel: Option<usize>,
    },
    /// `codes` `(rows, head_dim)` row-major e4m3 bytes: `x = e4m3_to_f32(code) · scale`.
    Fp8 {
        /// The codes.
        codes: &'a [u8],
        /// The per-tensor scale.
        scale: f32,
    },
}

/// The quantized rows of one KV head of one sequence: `rows` rows of `head_dim` numbers.
/// Only a [`QuantizedKvCache`] makes one, so its slices always fit its sizes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct QuantizedRows<'a> {
    rows: usize,
    head_dim: usize,
    codes: RowCodes<'a>,
}

impl<'a> QuantizedRows<'a> {
    /// Rows held as codes (the cache's [`QuantizedKvCache::quantized_len`]).
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Numbers per row.
    pub fn head_dim(&self) -> usize {
        self.head_dim
    }

    /// The codes and their scales.
    pub fn codes(&self) -> RowCodes<'a> {
        self.codes
    }

    /// Row `r` dequantized into `out` (`head_dim` numbers), as the PyTorch reference
    /// dequantizes (one f32 multiply, and for int4 one add: never fused).
    pub fn dequantize_row(&self, r: usize, out: &mut [f32]) -> Result<()> {
        if r >= self.rows {
            let what = "QuantizedRows row";
            return Err(AttnError::IndexOutOfRange { what, index: r, len: self.rows });
        }
        if out.len() != self.head_dim {
            let what = "QuantizedRows::dequantize_row output";
            return Err(shape_err(what, &[Some(self.head_dim)], &[out.len()]));
        }
        let d = self.head_dim;
        match self.codes {
            RowCodes::Int8 { codes, scales } => {
                for (o, &c) in out.iter_mut().zip(&codes[r * d..(r + 1) * d]) {
                    *o = c as f32 * scales[r];
                }
            }
            RowCodes::Int4 { codes, scales, mins, per_channel } => {
                let packed = &codes[r * d / 2..(r + 1) * d / 2];
                for (c, o) in out.iter_mut().enumerate() {
                    let code = (packed[c / 2] >> (4 * (c % 2))) & 0x0F;
                    let at = match per_channel {
                        Some(group) => (r / group) * d + c, // keys: channel c of group
                        None => r,                          // values: the row's own
                    };
                    *o = code as f32 * scales[at] + mins[at];
                }
            }
            RowCodes::Fp8 { codes, scale } => {
                for (o, &c) in out.iter_mut().zip(&codes[r * d..(r + 1) * d]) {
                    *o = e4m3_to_f32(c) * scale;
                }
            }
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------
// The cache
// ---------------------------------------------------------------------------------------

/// One sequence's keys (or values) in one format: per KV head, `capacity` rows of codes.
#[derive(Clone, Debug, PartialEq)]
struct Stored {
    /// int8: `(n_kv_heads, capacity, head_dim)`; empty otherwise.
    int8: Vec<i8>,
    /// fp8: `(n_kv_heads, capacity, head_dim)` e4m3 bytes; int4: `(n_kv_heads,
    /// capacity, head_dim / 2)` packed pairs; empty for int8.
    bytes: Vec<u8>,
    /// int8 and int4 values: `(n_kv_heads, capacity)`; int4 keys: `(n_kv_heads,
    /// capacity / group, head_dim)`; fp8: empty (the scale is per tensor).
    scales: Vec<f32>,
    /// int4: the mins, shaped like `scales`; empty otherwise.
    mins: Vec<f32>,
    /// int4: the newest rows in f32, `(rows, n_kv_heads · head_dim)`, the first
    /// `len − quantized` filled; 0 rows otherwise.
    residual: DMatrix<f32>,
}

// ANCHOR: quantized_kv_cache
/// One layer's KV cache with keys and values in a [`KvFormat`]: for every sequence of the
/// batch, the tokens seen so far (after RoPE, `n_kv_heads` heads), as codes and scales,
/// and for int4 the newest tokens in f32. Sequences advance together, as in chapter 6.
#[derive(Clone, Debug, PartialEq)]
pub struct QuantizedKvCache {
    format: KvFormat,
    n_kv_heads: usize,
    head_dim: usize,
    capacity: usize,
    /// Per sequence.
    keys: Vec<Stored>,
    /// Per sequence.
    values: Vec<Stored>,
    /// Tokens held: rows `0 .. quantized` as codes, `quantized .. len` in f32 (int4).
    len: usize,
    quantized: usize,
    /// The absolute position of row 0, fixed by the first append.
    first_pos: usize,
    /// fp8: the scales of all keys and of all values, fixed by the first append.
    fp8_scales: Option<(f32, f32)>,
}
// ANCHOR_END: quantized_kv_cache

/// Bytes per stored element: codes are bytes, scales and residual rows f32.
const F32_BYTES: u128 = 4;

impl QuantizedKvCache {
    /// A cache in `format` for `batch` sequences of up to `capacity` tokens of
    /// `n_kv_heads` heads of `head_dim`.
    ///
    /// Every buffer is allocated here, its size checked first: a size that overflows or
    /// passes what the crate allocates is [`AttnError::TooLarge`]. int4 needs an even
    /// `head_dim` (two codes per byte) and a group of at least 1.
    pub fn new(
        format: KvFormat,
        batch: usize,
        capacity: usize,
        n_kv_heads: usize,
        head_dim: usize,
    ) -> Result<Self> {
        nonzero("batch", batch)?;
        nonzero("capacity", capacity)?;
        nonzero("n_kv_heads", n_kv_heads)?;
        nonzero("head_dim", head_dim)?;
        format.validate(head_dim)?;
        let shape = Shape { format, capacity, n_kv_heads, head_dim };
        // per sequence: the buffers of keys and values, and their two `Stored` headers
        let headers = 2 * std::mem::size_of::<Stored>() as u128;
        let per_sequence =
            shape.bytes(true).saturating_add(shape.bytes(false)).saturating_add(headers);
        let total = per_sequence.saturating_mul(batch as u128);
        if total > max_alloc_bytes() {
            return Err(AttnError::TooLarge {
                what: format!(
                    "QuantizedKvCache ({}) for {batch} sequences of {capacity} tokens, \
                        {n_kv_heads} KV heads of {head_dim}",
                    format.name()
                ),
                bytes: total,
                detail: "more than this machine's memory, or than the 64 GiB this crate \
                    allocates at once",
            });
        }
        let (mut keys, mut values) = (Vec::new(), Vec::new());
        for v in [&mut keys, &mut values] {
            v.try_reserve_exact(batch).map_err(|_| AttnError::TooLarge {
                what: format!("QuantizedKvCache for {batch} sequences"),
                bytes: total,
                detail: "the allocator refused it",
            })?;
        }
        for _ in 0..batch {
            keys.push(shape.allocate(true)?);
            values.push(shape.allocate(false)?);
        }
        Ok(Self {
            format,
            n_kv_heads,
            head_dim,
            capacity,
            keys,
            values,
            len: 0,
            quantized: 0,
            first_pos: 0,
            fp8_scales: None,
        })
    }

    /// A cache shaped for `heads`' keys and values.
    pub fn for_heads(
        format: KvFormat,
        batch: usize,
        capacity: usize,
        heads: HeadLayout,
    ) -> Result<Self> {
        Self::new(format, batch, capacity, heads.n_kv_heads(), heads.head_dim())
    }

    /// The format.
    pub fn format(&self) -> KvFormat {
        self.format
    }

    /// Tokens held (quantized or not); the next token goes to row `len()`.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing has been appended since creation or the last
    /// [`QuantizedKvCache::reset`].
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Tokens held as codes: all of them for int8 and fp8; for int4 a multiple of the
    /// group, the rest waiting in f32.
    pub fn quantized_len(&self) -> usize {
        self.quantized
    }

    /// Tokens the cache was allocated for.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Sequences in the batch.
    pub fn batch_size(&self) -> usize {
        self.keys.len()
    }

    /// KV heads.
    pub fn n_kv_heads(&self) -> usize {
        self.n_kv_heads
    }

    /// Width of a head.
    pub fn head_dim(&self) -> usize {
        self.head_dim
    }

    /// Width of a token's keys: `n_kv_heads · head_dim`.
    pub fn kv_dim(&self) -> usize {
        self.n_kv_heads * self.head_dim // fits: the allocation was checked
    }

    /// The absolute position of row 0 (0 until the first append says otherwise).
    pub fn first_pos(&self) -> usize {
        self.first_pos
    }

    /// The absolute position the next token must have: `first_pos() + len()`.
    pub fn next_pos(&self) -> usize {
        self.first_pos + self.len // checked by the last append
    }

    /// fp8: the keys' and the values' scales, once the first append has fixed them.
    pub fn fp8_scales(&self) -> Option<(f32, f32)> {
        self.fp8_scales
    }

    /// Bytes held by codes, scales, mins and residual rows (what was allocated).
    pub fn allocated_bytes(&self) -> u128 {
        let shape = self.shape();
        (shape.bytes(true) + shape.bytes(false)) * self.keys.len() as u128
    }

    fn shape(&self) -> Shape {
        let (format, capacity) = (self.format, self.capacity);
        Shape { format, capacity, n_kv_heads: self.n_kv_heads, head_dim: self.head_dim }
    }

    /// Appends the keys and values of new tokens at positions `start_pos ..`, one
    /// `(n_new, n_kv_heads · head_dim)` matrix per sequence, quantizing them as they
    /// arrive.
    ///
    /// Checks as chapter 6's cache does ([`AttnError::Shape`],
    /// [`AttnError::CachePosition`], [`AttnError::CacheFull`]); on any error the cache is
    /// unchanged. NaN and infinity are not errors: they are stored as the PyTorch
    /// reference stores them.
    pub fn append(
        &mut self,
        start_pos: usize,
        keys: &[DMatrix<f32>],
        values: &[DMatrix<f32>],
    ) -> Result<()> {
        let n_new = self.check_shapes(keys, values)?;
        if !self.is_empty() && start_pos != self.next_pos() {
            let next_pos = self.next_pos();
            return Err(AttnError::CachePosition { start_pos, next_pos });
        }
        let first_pos = if self.is_empty() { start_pos } else { self.first_pos };
        check_range(first_pos, self.len + n_new, usize::MAX)?;
        if n_new > self.capacity - self.len {
            let (capacity, len) = (self.capacity, self.len);
            return Err(AttnError::CacheFull { capacity, len, adding: n_new });
        }
        match self.format {
            KvFormat::Int8 => self.append_int8(keys, values),
            KvFormat::Int4 { group, residual } => {
                self.append_int4(keys, values, group, residual)
            }
            KvFormat::Fp8E4M3 => self.append_fp8(keys, values),
        }
        self.first_pos = first_pos;
        self.len += n_new;
        if self.format == KvFormat::Int8 || self.format == KvFormat::Fp8E4M3 {
            self.quantized = self.len;
        }
        Ok(())
    }

    /// Checks that `keys` and `values` hold one `(n_new, kv_dim)` matrix per sequence and
    /// returns `n_new`.
    fn check_shapes(
        &self,
        keys: &[DMatrix<f32>],
        values: &[DMatrix<f32>],
    ) -> Result<usize> {
        let (batch, kv_dim) = (self.keys.len(), self.kv_dim());
        let n_new = keys.first().map_or(0, |k| k.nrows());
        for (name, part) in [("keys", keys), ("values", values)] {
            if part.len() != batch {
                return Err(shape_err(
                    format!("QuantizedKvCache::append {name}: one matrix per sequence"),
                    &[Some(batch)],
                    &[part.len()],
                ));
            }
            if let Some(m) = part.iter().find(|m| m.shape() != (n_new, kv_dim)) {
                return Err(shape_err(
                    format!("QuantizedKvCache::append {name}"),
                    &[Some(n_new), Some(kv_dim)],
                    &[m.nrows(), m.ncols()],
                ));
            }
        }
        Ok(n_new)
    }

    /// int8: each new row gets its codes and scale at rows `len ..`.
    fn append_int8(&mut self, keys: &[DMatrix<f32>], values: &[DMatrix<f32>]) {
        let (d, cap, len) = (self.head_dim, self.capacity, self.len);
        let mut row = vec![0.0; d];
        for (stored, new) in
            self.keys.iter_mut().zip(keys).chain(self.values.iter_mut().zip(values))
        {
            for h in 0..self.n_kv_heads {
                for t in 0..new.nrows() {
                    head_row(new, t, h, &mut row);
                    let at = h * cap + len + t; // row `len + t` of head h
                    let codes = &mut stored.int8[at * d..(at + 1) * d];
                    stored.scales[at] = quantize_int8_row(&row, codes);
                }
            }
        }
    }

    // ANCHOR: fp8_append
    /// fp8 as transformers' `Fp8QuantizedLayer`: the first append fixes one scale for all
    /// keys (every sequence, every head) and one for all values, `amax / 448`; every
    /// later token is cast with them, however large it is.
    fn append_fp8(&mut self, keys: &[DMatrix<f32>], values: &[DMatrix<f32>]) {
        if keys[0].nrows() == 0 {
            return; // nothing to calibrate on, nothing to store
        }
        let calibrate = |part: &[DMatrix<f32>]| {
            let amax = amax_abs(part.iter().flat_map(|m| m.iter().copied()));
            at_least_min_scale(amax / E4M3_MAX)
        };
        let (key_scale, value_scale) =
            *self.fp8_scales.get_or_insert_with(|| (calibrate(keys), calibrate(values)));
        let (d, cap, len) = (self.head_dim, self.capacity, self.len);
        let parts =
            [(&mut self.keys, keys, key_scale), (&mut self.values, values, value_scale)];
        for (stored, new, scale) in parts {
            for (stored, new) in stored.iter_mut().zip(new) {
                for h in 0..self.n_kv_heads {
                    for t in 0..new.nrows() {
                        let at = (h * cap + len + t) * d;
                        for c in 0..d {
                            stored.bytes[at + c] =
                                f32_to_e4m3(new[(t, h * d + c)] / scale);
                        }
                    }
                }
            }
        }
    }
    // ANCHOR_END: fp8_append

    // ANCHOR: int4_append
    /// int4: new rows join the f32 residual; while it holds `residual + group` rows or
    /// more, its oldest `group` rows are quantized (keys one group per channel, values
    /// row by row) and leave it. The newest `residual` rows are always exact.
    fn append_int4(
        &mut self,
        keys: &[DMatrix<f32>],
        values: &[DMatrix<f32>],
        group: usize,
        residual: usize,
    ) {
        let waiting = self.len - self.quantized;
        let pending = waiting + keys[0].nrows(); // not yet quantized, the new ones too
        let n_groups = pending.saturating_sub(residual) / group;
        let shape = self.shape();
        for (b, (k, v)) in keys.iter().zip(values).enumerate() {
            for (stored, new, per_channel) in
                [(&mut self.keys[b], k, true), (&mut self.values[b], v, false)]
            {
                // (waiting + n_new, kv_dim): the residual rows, then the new ones
                let rows = stored.residual.rows(0, waiting).clone_owned();
                let all = concat_rows(&rows, new);
                for g in 0..n_groups {
                    let block = all.rows(g * group, group);
                    let first = self.quantized + g * group; // its first cache row
                    shape.quantize_int4_block(stored, &block, first, per_channel);
                }
                let kept = pending - n_groups * group;
                let tail = all.rows(n_groups * group, kept);
                stored.residual.rows_mut(0, kept).copy_from(&tail);
            }
        }
        self.quantized += n_groups * group;
    }
    // ANCHOR_END: int4_append

    fn check_batch(&self, b: usize) -> Result<()> {
        if b >= self.keys.len() {
            let (what, len) = ("QuantizedKvCache sequence", self.keys.len());
            return Err(AttnError::IndexOutOfRange { what, index: b, len });
        }
        Ok(())
    }

    fn check_head(&self, b: usize, h: usize) -> Result<()> {
        self.check_batch(b)?;
        if h >= self.n_kv_heads {
            let (what, len) = ("QuantizedKvCache KV head", self.n_kv_heads);
            return Err(AttnError::IndexOutOfRange { what, index: h, len });
        }
        Ok(())
    }

    /// The quantized keys of KV head `h` of sequence `b`: rows `0 .. quantized_len()`,
    /// as codes and scales, without a copy (what a kernel reads).
    pub fn key_rows(&self, b: usize, h: usize) -> Result<QuantizedRows<'_>> {
        self.check_head(b, h)?;
        Ok(self.rows(&self.keys[b], h, true))
    }

    /// The quantized values of KV head `h` of sequence `b` (see
    /// [`QuantizedKvCache::key_rows`]).
    pub fn value_rows(&self, b: usize, h: usize) -> Result<QuantizedRows<'_>> {
        self.check_head(b, h)?;
        Ok(self.rows(&self.values[b], h, false))
    }

    fn rows<'a>(
        &'a self,
        stored: &'a Stored,
        h: usize,
        is_key: bool,
    ) -> QuantizedRows<'a> {
        let (d, cap, n) = (self.head_dim, self.capacity, self.quantized);
        let codes = match self.format {
            KvFormat::Int8 => RowCodes::Int8 {
                codes: &stored.int8[h * cap * d..(h * cap + n) * d],
                scales: &stored.scales[h * cap..h * cap + n],
            },
            KvFormat::Int4 { group, .. } => {
                let (per_head, used, per_channel) = if is_key {
                    let groups = cap / group;
                    (groups * d, n / group * d, Some(group))
                } else {
                    (cap, n, None)
                };
                let scales = h * per_head..h * per_head + used;
                RowCodes::Int4 {
                    codes: &stored.bytes[h * cap * d / 2..(h * cap + n) * d / 2],
                    scales: &stored.scales[scales.clone()],
                    mins: &stored.mins[scales],
                    per_channel,
                }
            }
            KvFormat::Fp8E4M3 => {
                let (key_scale, value_scale) = self.fp8_scales.unwrap_or((1.0, 1.0));
                RowCodes::Fp8 {
                    codes: &stored.bytes[h * cap * d..(h * cap + n) * d],
                    scale: if is_key { key_scale } else { value_scale },
                }
            }
        };
        QuantizedRows { rows: n, head_dim: d, codes }
    }

    /// int4: the keys of sequence `b` still in f32, rows `quantized_len() .. len()`:
    /// `(len − quantized_len, n_kv_heads · head_dim)`, a view (empty for int8 and fp8).
    pub fn residual_keys(&self, b: usize) -> Result<DMatrixView<'_, f32>> {
        self.check_batch(b)?;
        Ok(self.keys[b].residual.rows(0, self.len - self.quantized))
    }

    /// int4: the values of sequence `b` still in f32 (see
    /// [`QuantizedKvCache::residual_keys`]).
    pub fn residual_values(&self, b: usize) -> Result<DMatrixView<'_, f32>> {
        self.check_batch(b)?;
        Ok(self.values[b].residual.rows(0, self.len - self.quantized))
    }

    /// The keys of sequence `b` as attention reads them: `(len, n_kv_heads · head_dim)`,
    /// the quantized rows dequantized, then the f32 residual.
    pub fn keys(&self, b: usize) -> Result<DMatrix<f32>> {
        self.check_batch(b)?;
        self.dequantized(&self.keys[b], true)
    }

    /// The values of sequence `b` as attention reads them (see
    /// [`QuantizedKvCache::keys`]).
    pub fn values(&self, b: usize) -> Result<DMatrix<f32>> {
        self.check_batch(b)?;
        self.dequantized(&self.values[b], false)
    }

    fn dequantized(&self, stored: &Stored, is_key: bool) -> Result<DMatrix<f32>> {
        let d = self.head_dim;
        // (len, kv_dim) in f32: up to 8 times the codes' bytes, so allocated fallibly
        let data = try_filled(self.len * self.kv_dim(), 0.0f32)?;
        let mut out = DMatrix::from_vec(self.len, self.kv_dim(), data);
        let mut row = vec![0.0; d];
        for h in 0..self.n_kv_heads {
            let rows = self.rows(stored, h, is_key);
            for r in 0..self.quantized {
                rows.dequantize_row(r, &mut row)?;
                for (c, &x) in row.iter().enumerate() {
                    out[(r, h * d + c)] = x;
                }
            }
        }
        let waiting = self.len - self.quantized;
        out.rows_mut(self.quantized, waiting)
            .copy_from(&stored.residual.rows(0, waiting));
        Ok(out)
    }

    /// Forgets every token (keeps the allocation and the format), ready for new
    /// sequences; fp8 calibrates again on the next append, as transformers' layer after
    /// `reset`.
    pub fn reset(&mut self) {
        self.len = 0;
        self.quantized = 0;
        self.first_pos = 0;
        self.fp8_scales = None;
    }

    /// Checks that `heads` has this cache's KV heads and head width.
    fn check_heads(&self, heads: HeadLayout) -> Result<()> {
        if heads.n_kv_heads() != self.n_kv_heads || heads.head_dim() != self.head_dim {
            return Err(AttnError::CacheMismatch(format!(
                "the cache holds {} KV heads of {}, the attention has {} of {}",
                self.n_kv_heads,
                self.head_dim,
                heads.n_kv_heads(),
                heads.head_dim()
            )));
        }
        Ok(())
    }
}

/// Row `t` of KV head `h` of `m` `(rows, n_kv_heads · head_dim)`, copied into `out`.
fn head_row(m: &DMatrix<f32>, t: usize, h: usize, out: &mut [f32]) {
    let d = out.len();
    for (c, o) in out.iter_mut().enumerate() {
        *o = m[(t, h * d + c)];
    }
}

/// `a` above `b` (same width).
fn concat_rows(a: &DMatrix<f32>, b: &DMatrix<f32>) -> DMatrix<f32> {
    let mut out = DMatrix::zeros(a.nrows() + b.nrows(), a.ncols());
    out.rows_mut(0, a.nrows()).copy_from(a);
    out.rows_mut(a.nrows(), b.nrows()).copy_from(b);
    out
}

/// The sizes a cache's buffers are computed from.
#[derive(Clone, Copy, Debug)]
struct Shape {
    format: KvFormat,
    capacity: usize,
    n_kv_heads: usize,
    head_dim: usize,
}

impl Shape {
    /// Elements of each buffer of one sequence's keys (`is_key`) or values: `(int8 codes,
    /// bytes, scales, mins, residual rows)`, in `u128` and saturating, so nothing wraps.
    fn sizes(&self, is_key: bool) -> (u128, u128, u128, u128, u128) {
        let (h, cap, d) = (self.n_kv_heads, self.capacity, self.head_dim);
        let codes = product(&[h, cap, d]);
        match self.format {
            KvFormat::Int8 => (codes, 0, product(&[h, cap]), 0, 0),
            KvFormat::Fp8E4M3 => (0, codes, 0, 0, 0),
            KvFormat::Int4 { group, residual } => {
                let per_head =
                    if is_key { product(&[cap / group, d]) } else { cap as u128 };
                let waiting = (residual as u128 + group as u128 - 1).min(cap as u128);
                let scales = per_head.saturating_mul(h as u128);
                (0, codes / 2, scales, scales, waiting)
            }
        }
    }

    /// Bytes of one sequence's keys (`is_key`) or values.
    fn bytes(&self, is_key: bool) -> u128 {
        let (int8, bytes, scales, mins, rows) = self.sizes(is_key);
        let residual = rows.saturating_mul(product(&[self.n_kv_heads, self.head_dim]));
        let floats = scales.saturating_add(mins).saturating_add(residual);
        int8.saturating_add(bytes).saturating_add(floats.saturating_mul(F32_BYTES))
    }

    /// The zeroed buffers of one sequence's keys or values (sizes checked by the caller).
    fn allocate(&self, is_key: bool) -> Result<Stored> {
        let (int8, bytes, scales, mins, rows) = self.sizes(is_key);
        let residual = if rows == 0 {
            DMatrix::zeros(0, self.n_kv_heads * self.head_dim)
        } else {
            let data = try_filled(rows as usize * self.n_kv_heads * self.head_dim, 0.0)?;
            DMatrix::from_vec(rows as usize, self.n_kv_heads * self.head_dim, data)
        };
        Ok(Stored {
            int8: try_filled(int8 as usize, 0)?,
            bytes: try_filled(bytes as usize, 0)?,
            scales: try_filled(scales as usize, 0.0)?,
            mins: try_filled(mins as usize, 0.0)?,
            residual,
        })
    }

    /// Quantizes `block` `(group, n_kv_heads · head_dim)` into cache rows `first ..`:
    /// keys per channel (one scale and min per column of each head), values per row.
    fn quantize_int4_block(
        &self,
        stored: &mut Stored,
        block: &DMatrixView<f32>,
        first: usize,
        per_channel: bool,
    ) {
        let (d, cap) = (self.head_dim, self.capacity);
        let group = block.nrows();
        let mut codes = vec![0u8; group * d]; // (group, head_dim), one head at a time
        for h in 0..self.n_kv_heads {
            let head = block.columns(h * d, d);
            if per_channel {
                let at = h * (cap / group) * d + first / group * d; // this group's scales
                for c in 0..d {
                    let (min, max) = min_max(head.column(c).iter().copied());
                    let scale = int4_scale(min, max);
                    (stored.scales[at + c], stored.mins[at + c]) = (scale, min);
                    for t in 0..group {
                        codes[t * d + c] = int4_code(head[(t, c)], scale, min);
                    }
                }
            } else {
                for t in 0..group {
                    let (min, max) = min_max(head.row(t).iter().copied());
                    let scale = int4_scale(min, max);
                    (
                        stored.scales[h * cap + first + t],
                        stored.mins[h * cap + first + t],
                    ) = (scale, min);
                    for c in 0..d {
                        codes[t * d + c] = int4_code(head[(t, c)], scale, min);
                    }
                }
            }
            let packed = &mut stored.bytes
                [(h * cap + first) * d / 2..(h * cap + first + group) * d / 2];
            for (byte, pair) in packed.iter_mut().zip(codes.chunks_exact(2)) {
                *byte = pack_pair(pair[0], pair[1]);
            }
        }
    }
}

/// The product of `dims` in `u128`, saturating.
fn product(dims: &[usize]) -> u128 {
    dims.iter().fold(1u128, |acc, &d| acc.saturating_mul(d as u128))
}

/// A vector of `len` copies of `fill`, asking the allocator without aborting on failure.
fn try_filled<T: Clone>(len: usize, fill: T) -> Result<Vec<T>> {
    let mut v = Vec::new();
    v.try_reserve_exact(len).map_err(|_| AttnError::TooLarge {
        what: format!("QuantizedKvCache buffer of {len} elements"),
        bytes: len as u128 * std::mem::size_of::<T>() as u128,
        detail: "the allocator refused it",
    })?;
    v.resize(len, fill);
    Ok(v)
}

// ---------------------------------------------------------------------------------------
// Attention through the cache
// ---------------------------------------------------------------------------------------

// ANCHOR: attend_quantized
/// Grouped-query attention of sequence `b`'s queries `q` `(n, n_heads · head_dim)` over
/// the cache's keys and values, dequantized to f32 first; query `i` sees cache rows `0
/// ..= query_offset + i`, as in [`grouped_attention`]. The attention reads that f32
/// copy, not the codes; reading the codes in place is the next step.
pub fn attend_quantized(
    q: &DMatrix<f32>,
    cache: &QuantizedKvCache,
    b: usize,
    heads: HeadLayout,
    query_offset: usize,
) -> Result<DMatrix<f32>> {
    cache.check_heads(heads)?;
    let (keys, values) = (cache.keys(b)?, cache.values(b)?); // (len, n_kv_heads·head_dim)
    grouped_attention(q, keys.as_view(), values.as_view(), heads, query_offset)
}
// ANCHOR_END: attend_quantized

/// `layer`'s forward pass through a quantized cache: as
/// [`GroupedQueryAttention::forward`] with a cache (project, append, attend, output
/// projection), the attention reading the dequantized keys and values. Only Llama 3's
/// plain scores ([`crate::ScoreOptions::is_plain`]); other options are
/// [`AttnError::Unsupported`].
pub fn forward_quantized(
    layer: &GroupedQueryAttention,
    x: &Batch,
    start_pos: usize,
    cache: &mut QuantizedKvCache,
) -> Result<Batch> {
    if !layer.scores().is_plain() {
        let msg = "forward_quantized: scores other than Llama 3's plain causal attention";
        return Err(AttnError::Unsupported(msg.into()));
    }
    if cache.batch_size() != x.batch_size() {
        return Err(AttnError::CacheMismatch(format!(
            "the cache holds {} sequences, the batch has {}",
            cache.batch_size(),
            x.batch_size()
        )));
    }
    cache.check_heads(layer.heads())?;
    let (mut queries, mut keys, mut values) = (vec![], vec![], vec![]);
    for item in x.items() {
        let (q, k, v) = layer.project(item, start_pos)?; // checks the input width
        queries.push(q);
        keys.push(k);
        values.push(v);
    }
    cache.append(start_pos, &keys, &values)?;
    let query_offset = cache.len() - x.seq_len(); // cache rows before the first query
    let outputs = queries
        .iter()
        .enumerate()
        .map(|(b, q)| {
            let context = attend_quantized(q, cache, b, layer.heads(), query_offset)?;
            layer.weights().out_proj.forward(&context) // (seq, d_out)
        })
        .collect::<Result<Vec<_>>>()?;
    Batch::new(outputs)
}

// ---------------------------------------------------------------------------------------
// Memory
// ---------------------------------------------------------------------------------------

// ANCHOR: quantized_kv_bytes
/// Bytes of one layer's cache in `format` once `batch` sequences hold `context` tokens:
/// codes, plus scales and mins, plus int4's f32 residual, the scales, mins and residual
/// counted in `side` (this crate keeps them in f32; KIVI in f16). fp8 adds its two f32
/// scales per layer. Computed in `u128`, saturating.
pub fn quantized_kv_bytes_per_layer(
    format: KvFormat,
    cfg: &AttentionConfig,
    batch: usize,
    context: usize,
    side: DType,
) -> u128 {
    let (ctx, d, s) = (context as u128, cfg.head_dim as u128, side.size_bytes() as u128);
    let m = |xs: &[u128]| xs.iter().fold(1u128, |acc, &x| acc.saturating_mul(x));
    let per_head = match format {
        // keys and values: a byte per number and a scale per token
        KvFormat::Int8 => m(&[2, ctx, d.saturating_add(s)]),
        KvFormat::Fp8E4M3 => m(&[2, ctx, d]),
        KvFormat::Int4 { group, residual } => {
            let groups = ctx.saturating_sub(residual as u128) / group.max(1) as u128;
            let quantized = groups * group as u128; // <= ctx
            let (half, rest) = (d.div_ceil(2), ctx - quantized);
            // keys: a scale and a min per channel and group; values: per token
            let keys = m(&[quantized, half]).saturating_add(m(&[groups, d, 2, s]));
            let values = m(&[quantized, half.saturating_add(2 * s)]);
            let residual_rows = m(&[2, rest, d, s]); // keys and values, in `side`
            keys.saturating_add(values).saturating_add(residual_rows)
        }
    };
    let fp8_scales = if format == KvFormat::Fp8E4M3 { 2 * F32_BYTES } else { 0 };
    m(&[per_head, cfg.n_kv_heads as u128, batch as u128]).saturating_add(fp8_scales)
}
// ANCHOR_END: quantized_kv_bytes

// ---------------------------------------------------------------------------------------
// Measuring the error
// ---------------------------------------------------------------------------------------

/// The inputs of chapter 13's error measurements.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StudyData {
    /// Queries, keys and values standard normal in every channel.
    Gaussian,
    /// Keys plus [`OUTLIER_OFFSET`] in the four channels of each head's two most slowly
    /// rotating RoPE pairs: large in a few fixed channels, as KIVI found real keys to be.
    OutlierChannels,
    /// Values of every [`LARGE_TOKEN_EVERY`]-th token [`LARGE_TOKEN_FACTOR`] times
    /// larger: a few tokens with large values, the rest as [`StudyData::Gaussian`].
    LargeValueTokens,
}

/// The offset [`StudyData::OutlierChannels`] adds to its outlier channels (before RoPE).
pub const OUTLIER_OFFSET: f32 = 12.0;

/// Which tokens [`StudyData::LargeValueTokens`] enlarges: `0, 37, 74, ...`.
pub const LARGE_TOKEN_EVERY: usize = 37;

/// How much [`StudyData::LargeValueTokens`] enlarges them.
pub const LARGE_TOKEN_FACTOR: f32 = 8.0;

/// A standard normal number from two [`splitmix_uniform`] draws (Box–Muller, in f64,
/// rounded once): the same on every machine, no generator state.
fn normal(seed: u64, k: u64) -> f32 {
    let u1 = 1.0 - (splitmix_uniform(seed, 2 * k, 1.0) as f64 + 1.0) / 2.0; // (0, 1]
    let u2 = (splitmix_uniform(seed, 2 * k + 1, 1.0) as f64 + 1.0) / 2.0;
    ((-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()) as f32
}

/// A `(rows, cols)` matrix of standard normal numbers (row-major element `k` is
/// `normal(seed, k)`).
fn normal_matrix(seed: u64, rows: usize, cols: usize) -> DMatrix<f32> {
    DMatrix::from_fn(rows, cols, |r, c| normal(seed, (r * cols + c) as u64))
}

/// Inputs for measuring a format: queries `(n_queries, n_heads · head_dim)` at the last
/// positions, keys and values `(seq, n_kv_heads · head_dim)` at positions `0 .. seq`,
/// standard normal but for what `kind` changes (outlier channels need `head_dim >= 4`:
/// narrower heads get none); RoPE (base 500 000, split halves) applied to queries and
/// keys, as a cache holds them.
pub fn study_inputs(
    kind: StudyData,
    heads: HeadLayout,
    seq: usize,
    n_queries: usize,
    seed: u64,
) -> Result<(DMatrix<f32>, DMatrix<f32>, DMatrix<f32>)> {
    if n_queries > seq {
        let msg =
            format!("study_inputs: {n_queries} queries need as many keys, got {seq}");
        return Err(AttnError::Config(msg));
    }
    crate::support::error::checked_len("study_inputs keys", &[seq, heads.kv_dim()])?;
    crate::support::error::checked_len(
        "study_inputs queries",
        &[n_queries, heads.q_dim()],
    )?;
    let d = heads.head_dim();
    let mut q = normal_matrix(seed, n_queries, heads.q_dim());
    let mut k = normal_matrix(seed + 1, seq, heads.kv_dim());
    let mut v = normal_matrix(seed + 2, seq, heads.kv_dim());
    if kind == StudyData::LargeValueTokens {
        for t in (0..seq).step_by(LARGE_TOKEN_EVERY) {
            v.row_mut(t).scale_mut(LARGE_TOKEN_FACTOR);
        }
    }
    if kind == StudyData::OutlierChannels && d >= 4 {
        // pairs (i, i + d/2) for i = d/2 − 2, d/2 − 1: the two lowest frequencies
        let channels = [d / 2 - 2, d / 2 - 1, d - 2, d - 1];
        for h in 0..heads.n_kv_heads() {
            for c in channels {
                k.column_mut(h * d + c).add_scalar_mut(OUTLIER_OFFSET);
            }
        }
    }
    let rope = Rope::new(d, seq, 500_000.0, None)?;
    rope.apply(&mut q, seq - n_queries)?;
    rope.apply(&mut k, 0)?;
    Ok((q, k, v))
}

/// How far an attention output is from the f32 one.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct OutputError {
    /// The largest absolute difference.
    pub max: f32,
    /// The mean absolute difference.
    pub mean: f32,
}

impl OutputError {
    /// The differences of `got` from `want` (same shape), over every element.
    pub fn between(got: &DMatrix<f32>, want: &DMatrix<f32>) -> Result<Self> {
        if got.shape() != want.shape() || got.is_empty() {
            return Err(shape_err(
                "OutputError::between",
                &[Some(want.nrows()), Some(want.ncols())],
                &[got.nrows(), got.ncols()],
            ));
        }
        let diffs = got.iter().zip(want.iter()).map(|(g, w)| (g - w).abs());
        let (max, sum) =
            diffs.fold((0.0f32, 0.0f64), |(m, s), e| (m.max(e), s + e as f64));
        Ok(Self { max, mean: (sum / got.len() as f64) as f32 })
    }
}

/// The error `format` adds to attention: `q` over `keys` and `values` (one sequence)
/// stored in a fresh cache, all appended at once, against the same attention in f32.
pub fn quantized_attention_error(
    format: KvFormat,
    q: &DMatrix<f32>,
    keys: &DMatrix<f32>,
    values: &DMatrix<f32>,
    heads: HeadLayout,
) -> Result<OutputError> {
    let (n, n_queries) = (keys.nrows(), q.nrows());
    let offset = n.checked_sub(n_queries).ok_or(AttnError::MissingKeys {
        n_queries,
        query_offset: 0,
        n_keys: n,
    })?;
    let exact = grouped_attention(q, keys.as_view(), values.as_view(), heads, offset)?;
    let mut cache = QuantizedKvCache::for_heads(format, 1, n.max(1), heads)?;
    cache.append(0, std::slice::from_ref(keys), std::slice::from_ref(values))?;
    let got = attend_quantized(q, &cache, 0, heads, offset)?;
    OutputError::between(&got, &exact)
}

/// How [`int4_round_trip`] groups the numbers that share a scale and a min.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Int4Grouping {
    /// One scale and min per token and head (KIVI's values, without KIVI's groups of
    /// channels within the row).
    PerToken,
    /// One per channel for each run of `group` tokens (KIVI's keys); a last, shorter run
    /// gets its own.
    PerChannel {
        /// Tokens per group.
        group: usize,
    },
}

/// `m` `(seq, n_heads · head_dim)` quantized to int4 and back, each head on its own, in
/// `grouping`: what the cache would give back with no residual, for either arrangement
/// (chapter 13 swaps them to see why KIVI chose theirs).
pub fn int4_round_trip(
    m: &DMatrix<f32>,
    head_dim: usize,
    grouping: Int4Grouping,
) -> Result<DMatrix<f32>> {
    divisible("columns of the int4 input", m.ncols(), "head_dim", head_dim)?;
    let mut out = m.clone();
    let trip = |x: f32, (min, max): (f32, f32)| {
        let scale = int4_scale(min, max);
        int4_code(x, scale, min) as f32 * scale + min
    };
    match grouping {
        Int4Grouping::PerToken => {
            for h in 0..m.ncols() / head_dim {
                for t in 0..m.nrows() {
                    let row = m.view((t, h * head_dim), (1, head_dim));
                    let range = min_max(row.iter().copied());
                    for c in h * head_dim..(h + 1) * head_dim {
                        out[(t, c)] = trip(m[(t, c)], range);
                    }
                }
            }
        }
        Int4Grouping::PerChannel { group } => {
            nonzero("int4 group", group)?;
            for c in 0..m.ncols() {
                for start in (0..m.nrows()).step_by(group) {
                    let len = group.min(m.nrows() - start);
                    let range = min_max(m.view((start, c), (len, 1)).iter().copied());
                    for t in start..start + len {
                        out[(t, c)] = trip(m[(t, c)], range);
                    }
                }
            }
        }
    }
    Ok(out)
}
