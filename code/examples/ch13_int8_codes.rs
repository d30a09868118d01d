//! Chapter 13: three tokens of one KV head through an int8 cache: their codes and scales,
//! what comes back, and the codes `f32::round` would give the halfway row.
extern crate attention;
extern crate nalgebra;
// ANCHOR: example
use attention::serving::quant::{KvFormat, QuantizedKvCache, RowCodes};
use nalgebra::DMatrix;

fn main() -> Result<(), attention::AttnError> {
    #[rustfmt::skip]
    let keys = DMatrix::from_row_slice(3, 6, &[
        0.8134, -0.4021, 0.0566, 1.27, -1.0243, 0.3391, // an ordinary row
        127.0, 2.5, -3.5, 0.5, 1.5, -0.5,             // amax 127: scale 1, halfway
        0.0, 0.0, 0.0, 0.0, 0.0, 0.0,                 // all zero
    ]);
    // format, batch (sequences), capacity (tokens), n_kv_heads, head_dim
    let mut cache = QuantizedKvCache::new(KvFormat::Int8, 1, 3, 1, 6)?;
    // start_pos 0, then keys and values: one (n_new, n_kv_heads · head_dim) per sequence
    cache.append(0, std::slice::from_ref(&keys), std::slice::from_ref(&keys))?;
    let rows = cache.key_rows(0, 0)?.codes(); // head 0 of sequence 0, no copy
    let RowCodes::Int8 { codes, scales } = rows else { return Ok(()) };
    let back = cache.keys(0)?; // (3, 6), dequantized: code · scale
    for t in 0..3 {
        let row = &codes[6 * t..6 * t + 6];
        println!("token {t}: scale {:e}, codes {row:?}", scales[t]);
        println!("  back  {}", attention::show::row(back.row(t).iter()));
        println!("  error {}", attention::show::row((back.row(t) - keys.row(t)).iter()));
    }
    print_rounded_away(&keys, scales[1]); // the trap: f32::round on token 1
    Ok(())
}
// ANCHOR_END: example

/// Token 1's codes as `f32::round` (halves away from zero) would make them: what a cache
/// that skipped `round_ties_even` would store, and PyTorch would not.
fn print_rounded_away(keys: &DMatrix<f32>, scale: f32) {
    let codes: Vec<i8> = keys
        .row(1)
        .iter()
        .map(|x| (x / scale).round().clamp(-127.0, 127.0) as i8)
        .collect();
    println!("token 1 with f32::round: codes {codes:?}");
}
