//! Chapter 13's quantized KV cache against its PyTorch references, bit for bit.
//!
//! The fixtures (`tests/fixtures/quant/`, written by `scripts/gen_quant_fixtures.py`,
//! torch 2.15, transformers 5.24) hold the inputs as Hugging Face's cache holds them,
//! `(batch, n_kv_heads, seq, head_dim)`, fed to the cache chunk by chunk, and what the
//! reference stored: codes (int8, packed int4 bytes, fp8 e4m3 bytes), scales, mins, the
//! f32 residual and the dequantized keys and values. int8 and int4 come from our own
//! torch reference; fp8 from transformers' `Fp8QuantizedLayer` itself, e.g. for
//! `fp8_mixed`:
//!
//! ```python
//! layer = Fp8QuantizedLayer()
//! for k, v in zip(chunked(keys, [5, 1, 1, 3]), chunked(values, [5, 1, 1, 3])):
//!     returned = layer.update(k, v)
//! key_codes, key_scale = layer._quantized_keys   # float8_e4m3fn, stored as uint8
//! ```
//!
//! Codes must be equal byte for byte, scales and dequantized numbers bit for bit; a NaN
//! matches any NaN (its payload is the hardware's; the codes of NaN are still compared
//! exactly).

use attention::serving::quant::{
    E4M3_MAX, Int4Grouping, KvFormat, OutputError, QuantizedKvCache, RowCodes,
    attend_quantized, e4m3_to_f32, f32_to_e4m3, forward_quantized, int4_round_trip,
    quantized_attention_error, quantized_kv_bytes_per_layer,
};
use attention::{
    AttentionConfig, AttnError, Batch, DType, GroupedQueryAttention, HeadLayout,
    KernelChoice, Rope, ScoreOptions, splitmix_matrix,
};
use nalgebra::DMatrix;
use proptest::prelude::*;
use rand::SeedableRng;
use safetensors::{Dtype, SafeTensors};

// ---------------------------------------------------------------------------------------
// Reading the fixtures
// ---------------------------------------------------------------------------------------

/// One case: its config (`NAME.json`) and the raw bytes of its tensors.
struct Case {
    name: String,
    meta: serde_json::Value,
    bytes: Vec<u8>,
}

impl Case {
    fn load(name: &str) -> Self {
        let dir = format!("{}/tests/fixtures/quant", env!("CARGO_MANIFEST_DIR"));
        let read = |ext: &str| {
            let path = format!("{dir}/{name}.{ext}");
            std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
        };
        let meta = serde_json::from_slice(&read("json")).unwrap();
        Self { name: name.into(), meta, bytes: read("safetensors") }
    }

    fn usize(&self, key: &str) -> usize {
        self.meta[key].as_u64().unwrap_or_else(|| panic!("{}: no `{key}`", self.name))
            as usize
    }

    fn chunks(&self) -> Vec<usize> {
        let chunks = self.meta["chunks"].as_array().unwrap();
        chunks.iter().map(|c| c.as_u64().unwrap() as usize).collect()
    }

    /// The tensor's shape and raw little-endian bytes, checking its dtype.
    fn raw(&self, name: &str, dtype: Dtype) -> (Vec<usize>, Vec<u8>) {
        let st = SafeTensors::deserialize(&self.bytes).unwrap();
        let t = st.tensor(name).unwrap_or_else(|e| panic!("{}: {name}: {e}", self.name));
        assert_eq!(t.dtype(), dtype, "{}: {name}", self.name);
        (t.shape().to_vec(), t.data().to_vec())
    }

    fn f32s(&self, name: &str) -> (Vec<usize>, Vec<f32>) {
        let (shape, raw) = self.raw(name, Dtype::F32);
        let data = raw.chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap()));
        (shape, data.collect())
    }

    fn u8s(&self, name: &str) -> (Vec<usize>, Vec<u8>) {
        self.raw(name, Dtype::U8)
    }

    fn i8s(&self, name: &str) -> (Vec<usize>, Vec<i8>) {
        let (shape, raw) = self.raw(name, Dtype::I8);
        (shape, raw.into_iter().map(|b| b as i8).collect())
    }

    /// Sequence `b` of a `(batch, heads, seq, head_dim)` tensor as the crate's `(seq,
    /// heads · head_dim)` matrix, rows `start .. start + len`.
    fn seq_matrix(&self, name: &str, b: usize, start: usize, len: usize) -> DMatrix<f32> {
        let (shape, data) = self.f32s(name);
        let [_, heads, seq, d] = shape[..] else { panic!("{name}: {shape:?}") };
        DMatrix::from_fn(len, heads * d, |t, c| {
            data[((b * heads + c / d) * seq + start + t) * d + c % d]
        })
    }

    /// The `[b, h]` block of a `(batch, heads, ...)` tensor, flattened.
    fn block<T: Copy>(&self, shape: &[usize], data: &[T], b: usize, h: usize) -> Vec<T> {
        let per_head: usize = shape[2..].iter().product();
        let at = (b * shape[1] + h) * per_head;
        data[at..at + per_head].to_vec()
    }

    /// A cache in `format` fed the case's keys and values chunk by chunk.
    fn run(&self, format: KvFormat) -> QuantizedKvCache {
        let (batch, heads, d) =
            (self.usize("batch"), self.usize("n_kv_heads"), self.usize("head_dim"));
        let chunks = self.chunks();
        let total: usize = chunks.iter().sum();
        // capacity larger than needed, and different from every other size
        let mut cache =
            QuantizedKvCache::new(format, batch, total + 3, heads, d).unwrap();
        let mut start = 0;
        for n in chunks {
            let keys: Vec<_> =
                (0..batch).map(|b| self.seq_matrix("keys", b, start, n)).collect();
            let values: Vec<_> =
                (0..batch).map(|b| self.seq_matrix("values", b, start, n)).collect();
            cache.append(start, &keys, &values).unwrap();
            start += n;
        }
        assert_eq!(cache.len(), total);
        cache
    }
}

/// Bit-for-bit equality of f32 numbers, a NaN matching any NaN; names the first
/// difference.
fn assert_bits(what: &str, got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let same = g.to_bits() == w.to_bits() || (g.is_nan() && w.is_nan());
        assert!(
            same,
            "{what}[{i}]: got {g:e} ({:#010x}), want {w:e} ({:#010x})",
            g.to_bits(),
            w.to_bits()
        );
    }
}

fn assert_codes<T: PartialEq + std::fmt::Debug>(what: &str, got: &[T], want: &[T]) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    if let Some(i) = (0..got.len()).find(|&i| got[i] != want[i]) {
        panic!("{what}[{i}]: got {:?}, want {:?}", got[i], want[i]);
    }
}

/// The dequantized keys and values of every sequence equal the reference's.
fn check_dequantized(case: &Case, cache: &QuantizedKvCache) {
    let len = cache.len();
    for b in 0..cache.batch_size() {
        for (name, got) in
            [("dequantized_keys", cache.keys(b)), ("dequantized_values", cache.values(b))]
        {
            let want = case.seq_matrix(name, b, 0, len);
            let what = format!("{} {name} of sequence {b}", case.name);
            assert_bits(&what, got.unwrap().as_slice(), want.as_slice());
        }
    }
}

// ---------------------------------------------------------------------------------------
// int8
// ---------------------------------------------------------------------------------------

fn check_int8(name: &str) {
    let case = Case::load(name);
    let cache = case.run(KvFormat::Int8);
    for (part, codes, scales) in
        [("key", "key_codes", "key_scales"), ("value", "value_codes", "value_scales")]
    {
        let (code_shape, want_codes) = case.i8s(codes);
        let (scale_shape, want_scales) = case.f32s(scales);
        for b in 0..cache.batch_size() {
            for h in 0..cache.n_kv_heads() {
                let rows = if part == "key" {
                    cache.key_rows(b, h)
                } else {
                    cache.value_rows(b, h)
                };
                let RowCodes::Int8 { codes, scales } = rows.unwrap().codes() else {
                    panic!("{name}: not int8 rows")
                };
                let what = format!("{name} {part} codes [{b}, {h}]");
                assert_codes(&what, codes, &case.block(&code_shape, &want_codes, b, h));
                let what = format!("{name} {part} scales [{b}, {h}]");
                assert_bits(&what, scales, &case.block(&scale_shape, &want_scales, b, h));
            }
        }
    }
    check_dequantized(&case, &cache);
}

#[test]
fn int8_codes_and_scales_equal_the_reference() {
    check_int8("int8_mixed"); // 2 sequences, 3 KV heads of 10, 14 tokens in 5 chunks
    check_int8("int8_mqa"); // 3 sequences, 1 KV head of 12, 11 tokens in 2 chunks
}

/// A NaN in a row: scale NaN, codes 0, the row dequantizes to NaN; an inf: scale inf,
/// the row dequantizes to NaN too (`0 · inf`). Only that token's head.
#[test]
fn int8_nan_and_inf_rows_as_the_reference() {
    check_int8("int8_nan");
    let case = Case::load("int8_nan");
    let cache = case.run(KvFormat::Int8);
    let keys = cache.keys(1).unwrap(); // NaN at sequence 1, head 1, token 4, channel 3
    let d = cache.head_dim();
    let nan_cells = keys.iter().filter(|x| x.is_nan()).count();
    assert_eq!(nan_cells, d, "one row of one head");
    assert!((0..d).all(|c| keys[(4, d + c)].is_nan()));
    assert!(cache.values(1).unwrap().row(4).columns(d, d).iter().all(|x| x.is_nan()));
}

// ---------------------------------------------------------------------------------------
// int4
// ---------------------------------------------------------------------------------------

fn check_int4(name: &str) {
    let case = Case::load(name);
    let (group, residual) = (case.usize("group"), case.usize("residual"));
    let cache = case.run(KvFormat::Int4 { group, residual });
    assert_eq!(cache.quantized_len(), case.usize("n_quantized"), "{name}");
    for part in ["key", "value"] {
        let (code_shape, want_codes) = case.u8s(&format!("{part}_codes"));
        let (scale_shape, want_scales) = case.f32s(&format!("{part}_scales"));
        let (_, want_mins) = case.f32s(&format!("{part}_mins"));
        for b in 0..cache.batch_size() {
            for h in 0..cache.n_kv_heads() {
                let rows = if part == "key" {
                    cache.key_rows(b, h)
                } else {
                    cache.value_rows(b, h)
                };
                let RowCodes::Int4 { codes, scales, mins, per_channel } =
                    rows.unwrap().codes()
                else {
                    panic!("{name}: not int4 rows")
                };
                assert_eq!(per_channel, (part == "key").then_some(group));
                let at = |what: &str| format!("{name} {part} {what} [{b}, {h}]");
                assert_codes(
                    &at("codes"),
                    codes,
                    &case.block(&code_shape, &want_codes, b, h),
                );
                let want = case.block(&scale_shape, &want_scales, b, h);
                assert_bits(&at("scales"), scales, &want);
                let want = case.block(&scale_shape, &want_mins, b, h);
                assert_bits(&at("mins"), mins, &want);
            }
        }
    }
    let waiting = cache.len() - cache.quantized_len();
    for b in 0..cache.batch_size() {
        for (part, got) in [
            ("residual_keys", cache.residual_keys(b)),
            ("residual_values", cache.residual_values(b)),
        ] {
            let want = case.seq_matrix(part, b, 0, waiting);
            let got = got.unwrap().clone_owned();
            assert_bits(
                &format!("{name} {part} of sequence {b}"),
                got.as_slice(),
                want.as_slice(),
            );
        }
    }
    check_dequantized(&case, &cache);
}

#[test]
fn int4_codes_scales_and_residual_equal_the_reference() {
    check_int4("int4_mixed"); // G 4, R 3: 2 sequences, 3 KV heads of 10, 20 tokens
    check_int4("int4_no_residual"); // G 3, R 0: quantized as soon as a group fills
    check_int4("int4_long_prefill"); // G 5, R 4: a prefill of 23 quantizes 3 groups
}

/// A NaN key element: its channel's scale and min for that group are NaN, the group's
/// column dequantizes to NaN; an inf value: that token's head dequantizes to NaN.
#[test]
fn int4_nan_and_inf_as_the_reference() {
    check_int4("int4_nan");
    let case = Case::load("int4_nan");
    let cache = case.run(KvFormat::Int4 { group: 2, residual: 1 });
    let keys = cache.keys(0).unwrap(); // NaN at sequence 0, head 1, token 2, channel 3
    let nan_cells: Vec<(usize, usize)> = (0..keys.nrows())
        .flat_map(|t| (0..keys.ncols()).map(move |c| (t, c)))
        .filter(|&(t, c)| keys[(t, c)].is_nan())
        .collect();
    assert_eq!(
        nan_cells,
        [(2, 7), (3, 7)],
        "channel 3 of head 1, tokens 2 and 3 (one group)"
    );
}

/// With the residual at least as long as the sequence nothing is quantized: the cache
/// gives back exactly what it was given.
#[test]
fn int4_residual_longer_than_the_sequence_is_exact() {
    let keys = splitmix_matrix(5, 9, 12, 3.0);
    let values = splitmix_matrix(6, 9, 12, 3.0);
    let mut cache =
        QuantizedKvCache::new(KvFormat::Int4 { group: 4, residual: 9 }, 1, 11, 2, 6)
            .unwrap();
    cache.append(0, std::slice::from_ref(&keys), std::slice::from_ref(&values)).unwrap();
    assert_eq!(cache.quantized_len(), 0);
    assert_eq!(cache.keys(0).unwrap(), keys);
    assert_eq!(cache.values(0).unwrap(), values);
}

// ---------------------------------------------------------------------------------------
// fp8
// ---------------------------------------------------------------------------------------

fn check_fp8(name: &str) {
    let case = Case::load(name);
    let cache = case.run(KvFormat::Fp8E4M3);
    let (key_scale, value_scale) = cache.fp8_scales().unwrap();
    assert_bits(&format!("{name} key_scale"), &[key_scale], &case.f32s("key_scale").1);
    assert_bits(
        &format!("{name} value_scale"),
        &[value_scale],
        &case.f32s("value_scale").1,
    );
    for part in ["key", "value"] {
        let (shape, want) = case.u8s(&format!("{part}_codes"));
        for b in 0..cache.batch_size() {
            for h in 0..cache.n_kv_heads() {
                let rows = if part == "key" {
                    cache.key_rows(b, h)
                } else {
                    cache.value_rows(b, h)
                };
                let RowCodes::Fp8 { codes, scale } = rows.unwrap().codes() else {
                    panic!("{name}: not fp8 rows")
                };
                let want_scale = if part == "key" { key_scale } else { value_scale };
                assert_bits(&format!("{name} {part} scale"), &[scale], &[want_scale]);
                let what = format!("{name} {part} codes [{b}, {h}]");
                assert_codes(&what, codes, &case.block(&shape, &want, b, h));
            }
        }
    }
    if case.chunks().len() > 1 {
        check_dequantized(&case, &cache); // what the layer's last `update` returned
    }
}

#[test]
fn fp8_codes_and_scales_equal_transformers_layer() {
    check_fp8("fp8_mixed"); // 2 sequences, 3 KV heads of 10, chunks 5, 1, 1, 3
    check_fp8("fp8_prefill_only"); // 3 sequences, 1 KV head of 12, one chunk
    check_fp8("fp8_saturating"); // later tokens 6 times larger: codes saturate at ±448
    check_fp8("fp8_outgrown"); // the trap of chapter 13: tokens 1, 2, 4, 8 times larger
}

/// A NaN in a later token stays NaN (code 0x7F); an inf saturates to 448 · scale.
#[test]
fn fp8_nan_and_inf_as_transformers_layer() {
    check_fp8("fp8_nan");
    let case = Case::load("fp8_nan");
    let cache = case.run(KvFormat::Fp8E4M3);
    let (_, value_scale) = cache.fp8_scales().unwrap();
    let values = cache.values(1).unwrap(); // inf at sequence 1, head 0, token 5, column 0
    assert_eq!(values[(5, 0)], E4M3_MAX * value_scale);
    assert!(cache.keys(1).unwrap()[(5, 2)].is_nan());
}

/// A NaN in the tokens that calibrate makes the key scale NaN: every key, of every
/// sequence, later ones too, is NaN; an inf makes the value scale inf and every value
/// `0 · inf` = NaN. transformers' layer does the same (the fixture holds what it
/// returned).
#[test]
fn fp8_nan_in_the_calibration_poisons_every_token() {
    check_fp8("fp8_nan_prefill");
    let cache = Case::load("fp8_nan_prefill").run(KvFormat::Fp8E4M3);
    let (key_scale, value_scale) = cache.fp8_scales().unwrap();
    assert!(key_scale.is_nan() && value_scale == f32::INFINITY);
    for b in 0..cache.batch_size() {
        assert!(cache.keys(b).unwrap().iter().all(|x| x.is_nan()));
        assert!(cache.values(b).unwrap().iter().all(|x| x.is_nan()));
    }
}

/// transformers' scale is one number for the whole batch: the sequence with the largest
/// key sets it for all, and a later `reset` calibrates again.
#[test]
fn fp8_scale_is_shared_by_the_batch_and_recalibrated_after_reset() {
    let small = splitmix_matrix(1, 4, 6, 1.0);
    let large = splitmix_matrix(2, 4, 6, 8.0);
    let mut cache = QuantizedKvCache::new(KvFormat::Fp8E4M3, 2, 8, 3, 2).unwrap();
    cache
        .append(0, &[small.clone(), large.clone()], &[small.clone(), small.clone()])
        .unwrap();
    let amax = large.iter().fold(0.0f32, |m, x| m.max(x.abs()));
    assert_eq!(cache.fp8_scales().unwrap().0, amax / E4M3_MAX);
    cache.reset();
    assert_eq!(cache.fp8_scales(), None);
    cache
        .append(0, &[small.clone(), small.clone()], &[small.clone(), small.clone()])
        .unwrap();
    let amax = small.iter().fold(0.0f32, |m, x| m.max(x.abs()));
    assert_eq!(cache.fp8_scales().unwrap().0, amax / E4M3_MAX);
}

/// torch's f32 -> e4m3 cast is a step function of the bit pattern: the fixture lists its
/// 256 runs, found by casting all 2^32 patterns with torch. Ours gives torch's code on
/// every one of the 2^32 patterns (about ten seconds at the test profile's opt-level 1).
#[test]
fn f32_to_e4m3_equals_torch_on_all_bit_patterns() {
    let case = Case::load("fp8_cast");
    let (_, starts_raw) = case.raw("starts", Dtype::I64);
    let starts: Vec<u64> = starts_raw
        .chunks_exact(8)
        .map(|b| i64::from_le_bytes(b.try_into().unwrap()) as u64)
        .collect();
    let (_, codes) = case.u8s("codes");
    assert_eq!((starts.len(), starts[0]), (256, 0));
    for (i, &start) in starts.iter().enumerate() {
        let end = starts.get(i + 1).copied().unwrap_or(1 << 32); // exclusive
        let bad =
            (start..end).find(|&b| f32_to_e4m3(f32::from_bits(b as u32)) != codes[i]);
        if let Some(bits) = bad {
            let (x, got) =
                (f32::from_bits(bits as u32), f32_to_e4m3(f32::from_bits(bits as u32)));
            panic!("{x:e} ({bits:#010x}): got {got:#04x}, want {:#04x}", codes[i]);
        }
    }
}

/// Decoding: every one of the 256 codes gives torch's f32 (NaN payloads included), and
/// every non-NaN code survives a round trip.
#[test]
fn e4m3_to_f32_equals_torch_for_all_256_codes() {
    let case = Case::load("fp8_cast");
    let (_, decoded) = case.f32s("decoded");
    for code in 0..=255u8 {
        let (got, want) = (e4m3_to_f32(code), decoded[code as usize]);
        assert_eq!(
            got.to_bits(),
            want.to_bits(),
            "code {code:#04x}: got {got:e}, want {want:e}"
        );
        if !got.is_nan() {
            assert_eq!(f32_to_e4m3(got), code, "round trip of {code:#04x}");
        }
    }
}

// ---------------------------------------------------------------------------------------
// Round trips, over random shapes and numbers
// ---------------------------------------------------------------------------------------

/// A cache of one sequence holding `keys` as its keys and values, all appended at once.
fn filled(
    format: KvFormat,
    keys: &DMatrix<f32>,
    heads: usize,
    d: usize,
) -> QuantizedKvCache {
    let mut cache = QuantizedKvCache::new(format, 1, keys.nrows(), heads, d).unwrap();
    cache.append(0, std::slice::from_ref(keys), std::slice::from_ref(keys)).unwrap();
    cache
}

/// The largest |x| of one head of one row.
fn row_amax(m: &DMatrix<f32>, t: usize, h: usize, d: usize) -> f32 {
    (0..d).map(|c| m[(t, h * d + c)].abs()).fold(0.0, f32::max)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// int8: `|x − x̂| ≤ scale / 2`, plus the f32 rounding of `x / scale` and of `code
    /// · scale` (at most 127 + 127 ulps of 2⁻²⁴ relative: bound `0.5001 · scale`).
    #[test]
    fn int8_round_trip_is_within_half_a_step(
        seq in 1usize..9, heads in 1usize..4, d in 1usize..7, seed in 0u64..1000,
        bound in 1e-3f64..1e3,
    ) {
        let keys = splitmix_matrix(seed, seq, heads * d, bound);
        let cache = filled(KvFormat::Int8, &keys, heads, d);
        let got = cache.keys(0).unwrap();
        for t in 0..seq {
            for h in 0..heads {
                let step = row_amax(&keys, t, h, d) / 127.0;
                for c in h * d..(h + 1) * d {
                    prop_assert!((got[(t, c)] - keys[(t, c)]).abs() <= 0.5001 * step);
                }
            }
        }
    }

    /// int4: `|x − x̂| ≤ step / 2` with `step = (max − min) / 15` of the group, plus f32
    /// rounding: `0.5001 · step + 2⁻²² · max(|min|, |max|)` (the add of the min).
    #[test]
    fn int4_round_trip_is_within_half_a_step(
        chunks in prop::collection::vec(1usize..6, 1..5), heads in 1usize..3,
        half_d in 1usize..4, group in 1usize..5, residual in 0usize..4, seed in 0u64..999,
    ) {
        let d = 2 * half_d;
        let total: usize = chunks.iter().sum();
        let keys = splitmix_matrix(seed, total, heads * d, 4.0);
        let values = splitmix_matrix(seed + 1, total, heads * d, 0.5);
        let format = KvFormat::Int4 { group, residual };
        let mut cache = QuantizedKvCache::new(format, 1, total, heads, d).unwrap();
        let mut start = 0;
        for n in chunks {
            let k = keys.rows(start, n).clone_owned();
            let v = values.rows(start, n).clone_owned();
            cache.append(start, &[k], &[v]).unwrap();
            start += n;
            let waiting = cache.len() - cache.quantized_len();
            prop_assert!(cache.quantized_len().is_multiple_of(group));
            prop_assert!(waiting < residual + group);
            prop_assert!(waiting >= residual.min(cache.len()));
        }
        let q = cache.quantized_len();
        let (got_k, got_v) = (cache.keys(0).unwrap(), cache.values(0).unwrap());
        let bound = |xs: &[f32]| {
            let lo = xs.iter().copied().fold(f32::MAX, f32::min);
            let hi = xs.iter().copied().fold(f32::MIN, f32::max);
            0.5001 * (hi - lo) / 15.0 + 2f32.powi(-22) * lo.abs().max(hi.abs())
        };
        for c in 0..heads * d {
            for g in 0..q / group {
                let rows = g * group..(g + 1) * group;
                let column: Vec<f32> = rows.clone().map(|t| keys[(t, c)]).collect();
                for t in rows {
                    prop_assert!((got_k[(t, c)] - keys[(t, c)]).abs() <= bound(&column));
                }
            }
        }
        for t in 0..q {
            for h in 0..heads {
                let columns = h * d..(h + 1) * d;
                let row: Vec<f32> = columns.clone().map(|c| values[(t, c)]).collect();
                for c in columns {
                    prop_assert!((got_v[(t, c)] - values[(t, c)]).abs() <= bound(&row));
                }
            }
        }
        // the residual rows are exact
        prop_assert_eq!(got_k.rows(q, total - q), keys.rows(q, total - q));
        prop_assert_eq!(got_v.rows(q, total - q), values.rows(q, total - q));
    }

    /// fp8, calibrated on the whole input: relative error at most 2⁻⁴ (half of 3 mantissa
    /// bits) for normal codes, absolute at most 2⁻¹⁰ · scale in the subnormal range;
    /// nothing saturates.
    #[test]
    fn fp8_round_trip_is_within_half_an_ulp(
        seq in 1usize..9, heads in 1usize..4, d in 1usize..7, seed in 0u64..1000,
        bound in 1e-3f64..1e3,
    ) {
        let keys = splitmix_matrix(seed, seq, heads * d, bound);
        let cache = filled(KvFormat::Fp8E4M3, &keys, heads, d);
        let scale = cache.fp8_scales().unwrap().0;
        let got = cache.keys(0).unwrap();
        for (g, x) in got.iter().zip(keys.iter()) {
            let err = (g - x).abs();
            prop_assert!(err <= 2f32.powi(-4) * x.abs() * 1.0001 + 2f32.powi(-10) * scale,
                "{} -> {}", x, g);
        }
    }
}

// ---------------------------------------------------------------------------------------
// Attention through the cache, and memory
// ---------------------------------------------------------------------------------------

fn small_layer() -> GroupedQueryAttention {
    let mut rng = rand::rngs::StdRng::seed_from_u64(13);
    let rope = Rope::new(6, 64, 10_000.0, None).unwrap();
    GroupedQueryAttention::random(20, 24, 4, 2, Some(rope), &mut rng)
        .unwrap()
        .with_kernel(KernelChoice::Straightforward)
}

/// int4 with a residual longer than the sequence quantizes nothing: `forward_quantized`
/// equals the f32 cache's forward bit for bit (same kernel). int8 through the cache stays
/// within 1e-2 of it on outputs of size ~1 (random weights; the chapter measures more).
#[test]
fn forward_quantized_matches_the_f32_cache() {
    let layer = small_layer();
    let x = Batch::new(vec![
        splitmix_matrix(7, 11, 20, 1.0),
        splitmix_matrix(8, 11, 20, 1.0),
    ])
    .unwrap();
    let want = layer.forward_prefill_decode(&x, 0, 5).unwrap();
    for (format, tol) in
        [(KvFormat::Int4 { group: 3, residual: 20 }, 0.0), (KvFormat::Int8, 1e-2)]
    {
        let mut cache =
            QuantizedKvCache::for_heads(format, 2, 13, layer.heads()).unwrap();
        let mut outputs = vec![
            forward_quantized(&layer, &x.narrow_seq(0, 5).unwrap(), 0, &mut cache)
                .unwrap(),
        ];
        for t in 5..11 {
            let token = x.narrow_seq(t, 1).unwrap();
            outputs.push(forward_quantized(&layer, &token, t, &mut cache).unwrap());
        }
        let got = Batch::concat_seq(&outputs).unwrap();
        let diff = attention::max_abs_diff(&got.to_row_major(), &want.to_row_major());
        assert!(diff <= tol, "{format:?}: {diff}");
    }
}

/// `quantized_attention_error` is `OutputError::between` of `attend_quantized` and the
/// f32 attention; int8 beats int4 on the same inputs.
#[test]
fn attention_error_is_measured_against_f32() {
    let heads = HeadLayout::new(6, 2, 8).unwrap();
    let q = splitmix_matrix(3, 5, 48, 1.0);
    let (k, v) = (splitmix_matrix(4, 37, 16, 2.0), splitmix_matrix(5, 37, 16, 1.0));
    let int8 = quantized_attention_error(KvFormat::Int8, &q, &k, &v, heads).unwrap();
    let int4 = quantized_attention_error(
        KvFormat::Int4 { group: 4, residual: 0 },
        &q,
        &k,
        &v,
        heads,
    )
    .unwrap();
    assert!(
        0.0 < int8.max && int8.max < int4.max && int8.mean < int4.mean,
        "{int8:?} {int4:?}"
    );
    assert!(int8.mean <= int8.max);
    // no quantization at all: zero error
    let exact = KvFormat::Int4 { group: 4, residual: 37 };
    let zero = quantized_attention_error(exact, &q, &k, &v, heads).unwrap();
    assert_eq!(zero, OutputError { max: 0.0, mean: 0.0 });
}

/// `int4_round_trip` per channel and per token equals what the cache stores (residual 0,
/// a length that is a multiple of the group).
#[test]
fn int4_round_trip_equals_the_cache() {
    let (keys, values) =
        (splitmix_matrix(9, 12, 8, 2.0), splitmix_matrix(10, 12, 8, 2.0));
    let mut cache =
        QuantizedKvCache::new(KvFormat::Int4 { group: 4, residual: 0 }, 1, 12, 2, 4)
            .unwrap();
    cache.append(0, std::slice::from_ref(&keys), std::slice::from_ref(&values)).unwrap();
    let per_channel =
        int4_round_trip(&keys, 4, Int4Grouping::PerChannel { group: 4 }).unwrap();
    assert_eq!(cache.keys(0).unwrap(), per_channel);
    assert_eq!(
        cache.values(0).unwrap(),
        int4_round_trip(&values, 4, Int4Grouping::PerToken).unwrap()
    );
}

/// The memory formula counts exactly what a full int8 cache allocates (scales in f32),
/// and for int4 exactly the codes, scales, mins and residual rows a cache holds after
/// `context` tokens.
#[test]
fn memory_formula_counts_what_the_cache_holds() {
    let cfg = AttentionConfig {
        n_kv_heads: 3,
        head_dim: 10,
        ..attention::Preset::SMALL.config
    };
    let cache = QuantizedKvCache::new(KvFormat::Int8, 2, 7, 3, 10).unwrap();
    assert_eq!(
        cache.allocated_bytes(),
        quantized_kv_bytes_per_layer(KvFormat::Int8, &cfg, 2, 7, DType::F32)
    );
    for (group, residual, context) in [(4, 3, 20), (3, 0, 12), (5, 4, 26), (8, 2, 5)] {
        let format = KvFormat::Int4 { group, residual };
        let mut cache = QuantizedKvCache::new(format, 1, context, 3, 10).unwrap();
        let m = splitmix_matrix(11, context, 30, 1.0);
        cache.append(0, std::slice::from_ref(&m), std::slice::from_ref(&m)).unwrap();
        let mut held = 0u128;
        for h in 0..3 {
            for rows in [cache.key_rows(0, h).unwrap(), cache.value_rows(0, h).unwrap()] {
                let RowCodes::Int4 { codes, scales, mins, .. } = rows.codes() else {
                    panic!()
                };
                held += (codes.len() + 4 * scales.len() + 4 * mins.len()) as u128;
            }
        }
        held += 4
            * (cache.residual_keys(0).unwrap().len()
                + cache.residual_values(0).unwrap().len()) as u128;
        let formula = quantized_kv_bytes_per_layer(format, &cfg, 1, context, DType::F32);
        assert_eq!(held, formula, "{format:?}, {context} tokens");
    }
}

// ---------------------------------------------------------------------------------------
// Typed errors
// ---------------------------------------------------------------------------------------

#[test]
fn bad_sizes_are_typed_errors() {
    use KvFormat::*;
    let zero = |r: Result<QuantizedKvCache, AttnError>| {
        matches!(r, Err(AttnError::ZeroSize { .. }))
    };
    assert!(zero(QuantizedKvCache::new(Int8, 0, 4, 2, 6)));
    assert!(zero(QuantizedKvCache::new(Int8, 1, 0, 2, 6)));
    assert!(zero(QuantizedKvCache::new(Fp8E4M3, 1, 4, 0, 6)));
    assert!(zero(QuantizedKvCache::new(Fp8E4M3, 1, 4, 2, 0)));
    assert!(zero(QuantizedKvCache::new(Int4 { group: 0, residual: 2 }, 1, 4, 2, 6)));
    assert!(matches!(
        QuantizedKvCache::new(Int4 { group: 2, residual: 2 }, 1, 4, 2, 5),
        Err(AttnError::NotDivisible { numerator: 5, denominator: 2, .. })
    ));
    // sizes near usize::MAX: refused before anything is allocated, never a panic
    let big = usize::MAX;
    for (format, batch, capacity, heads, d) in [
        (Int8, 1, big, 1, 1),
        (Int8, big, 1, 1, 1),
        (Fp8E4M3, 2, 1 << 40, 1 << 30, 2),
        (Int4 { group: 1, residual: 0 }, 1, big / 2, 2, 2),
        (Int4 { group: big, residual: big }, 1, 1 << 20, big, 2),
        (Int8, 3, 5, big, big),
    ] {
        let err = QuantizedKvCache::new(format, batch, capacity, heads, d).unwrap_err();
        assert!(matches!(err, AttnError::TooLarge { .. }), "{format:?}: {err}");
    }
    // a huge residual or group is fine: the f32 rows are bounded by the capacity
    let cache =
        QuantizedKvCache::new(Int4 { group: big, residual: big }, 1, 6, 2, 4).unwrap();
    assert!(cache.allocated_bytes() < 1000);
    // the memory formula saturates instead of wrapping
    let cfg = attention::Preset::LLAMA_3_8B.config;
    for format in [Int8, Int4 { group: 1, residual: 0 }, Fp8E4M3] {
        let bytes = quantized_kv_bytes_per_layer(format, &cfg, big, big, DType::F32);
        assert!(bytes > u64::MAX as u128, "{format:?}: {bytes}");
    }
}

#[test]
fn bad_appends_are_typed_errors_and_change_nothing() {
    for format in
        [KvFormat::Int8, KvFormat::Int4 { group: 2, residual: 1 }, KvFormat::Fp8E4M3]
    {
        let mut cache = QuantizedKvCache::new(format, 2, 5, 2, 4).unwrap();
        let rows = |n: usize, w: usize| vec![DMatrix::from_element(n, w, 0.5); 2];
        cache.append(3, &rows(2, 8), &rows(2, 8)).unwrap();
        let before = cache.clone();
        let errors = [
            cache.append(5, &rows(1, 7), &rows(1, 7)).unwrap_err(), // width
            cache.append(5, &rows(1, 8)[..1], &rows(1, 8)[..1]).unwrap_err(), // batch
            cache.append(5, &rows(1, 8), &rows(2, 8)).unwrap_err(), // keys vs values
            cache.append(4, &rows(1, 8), &rows(1, 8)).unwrap_err(), // position
            cache.append(5, &rows(4, 8), &rows(4, 8)).unwrap_err(), // full
        ];
        assert!(matches!(errors[0], AttnError::Shape { .. }), "{}", errors[0]);
        assert!(matches!(errors[1], AttnError::Shape { .. }), "{}", errors[1]);
        assert!(matches!(errors[2], AttnError::Shape { .. }), "{}", errors[2]);
        assert_eq!(errors[3], AttnError::CachePosition { start_pos: 4, next_pos: 5 });
        assert_eq!(errors[4], AttnError::CacheFull { capacity: 5, len: 2, adding: 4 });
        assert_eq!(cache, before, "{format:?}");
        // positions past usize::MAX
        let mut fresh = QuantizedKvCache::new(format, 2, 5, 2, 4).unwrap();
        let err = fresh.append(usize::MAX - 1, &rows(3, 8), &rows(3, 8)).unwrap_err();
        assert!(matches!(err, AttnError::PositionOutOfRange { .. }), "{err}");
        assert!(fresh.is_empty());
        // indices
        assert!(matches!(
            cache.keys(2),
            Err(AttnError::IndexOutOfRange { index: 2, len: 2, .. })
        ));
        assert!(matches!(cache.key_rows(0, 2), Err(AttnError::IndexOutOfRange { .. })));
        assert!(matches!(
            cache.residual_values(5),
            Err(AttnError::IndexOutOfRange { .. })
        ));
        let rows = cache.value_rows(1, 1).unwrap();
        let mut out = vec![0.0; 4];
        if rows.rows() > 0 {
            assert!(rows.dequantize_row(0, &mut out).is_ok());
            assert!(matches!(
                rows.dequantize_row(0, &mut out[..3]),
                Err(AttnError::Shape { .. })
            ));
        }
        assert!(matches!(
            rows.dequantize_row(rows.rows(), &mut out),
            Err(AttnError::IndexOutOfRange { .. })
        ));
    }
}

#[test]
fn attention_through_a_mismatched_cache_is_a_typed_error() {
    let cache = QuantizedKvCache::new(KvFormat::Int8, 1, 4, 2, 6).unwrap();
    let q = DMatrix::zeros(1, 24);
    let heads = HeadLayout::new(4, 1, 6).unwrap();
    assert!(matches!(
        attend_quantized(&q, &cache, 0, heads, 0),
        Err(AttnError::CacheMismatch(_))
    ));
    let layer = small_layer();
    let x = Batch::zeros(1, 2, 20).unwrap();
    let mut wrong_batch =
        QuantizedKvCache::for_heads(KvFormat::Int8, 2, 4, layer.heads()).unwrap();
    let err = forward_quantized(&layer, &x, 0, &mut wrong_batch).unwrap_err();
    assert!(matches!(err, AttnError::CacheMismatch(_)), "{err}");
    let windowed = small_layer()
        .with_scores(ScoreOptions { window: Some(3), ..Default::default() })
        .unwrap();
    let mut cache =
        QuantizedKvCache::for_heads(KvFormat::Int8, 1, 4, layer.heads()).unwrap();
    let err = forward_quantized(&windowed, &x, 0, &mut cache).unwrap_err();
    assert!(matches!(err, AttnError::Unsupported(_)), "{err}");
    let err = forward_quantized(&layer, &Batch::zeros(1, 2, 19).unwrap(), 0, &mut cache);
    assert!(matches!(err, Err(AttnError::Shape { .. })));
    assert!(cache.is_empty());
}
