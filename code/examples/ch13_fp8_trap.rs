//! Chapter 13: fp8's frozen scale. transformers' `Fp8QuantizedLayer` calibrates on the
//! first update; later keys 1, 2, 4 and 8 times larger are clipped. Our cache gives the
//! layer's numbers bit for bit (checked against the fixture it wrote). Then one NaN in
//! the first update: every later key NaN in fp8, one row in int8.
extern crate attention;
extern crate nalgebra;
extern crate serde_json;
// ANCHOR: example
use attention::serving::quant::{E4M3_MAX, KvFormat, QuantizedKvCache, attend_quantized};
use attention::{HeadLayout, grouped_attention, splitmix_matrix};

fn main() -> Result<(), attention::AttnError> {
    let (keys, values) = transformers_inputs()?; // (20, 2·16): what the layer was given
    let heads = HeadLayout::new(4, 2, 16)?; // 4 query heads over 2 KV heads of 16
    let mut cache = QuantizedKvCache::for_heads(KvFormat::Fp8E4M3, 1, 20, heads)?;
    let first = (keys.rows(0, 16).clone_owned(), values.rows(0, 16).clone_owned());
    cache.append(0, &[first.0], &[first.1])?; // calibrates: scale = amax / 448
    let fits = E4M3_MAX * cache.fp8_scales().map_or(f32::NAN, |s| s.0); // 448 · scale
    println!("calibrated on 16 tokens: |keys| up to {fits:.3} fit");
    println!("token  max |key|  max |stored - key|  max |output - f32 output|");
    for t in 16..20 {
        let (k, v) = (keys.rows(t, 1).clone_owned(), values.rows(t, 1).clone_owned());
        cache.append(t, &[k], &[v])?; // cast with the frozen scale
        let key_error = (cache.keys(0)?.row(t) - keys.row(t)).abs().max();
        let q = splitmix_matrix(t as u64, 1, 64, 1.0); // a query at position t
        let (k, v) = (keys.rows(0, t + 1), values.rows(0, t + 1));
        let exact = grouped_attention(&q, k, v, heads, t)?;
        let error = (attend_quantized(&q, &cache, 0, heads, t)? - exact).abs().max();
        println!("{t:5} {:10.3} {key_error:19.3} {error:26.4}", keys.row(t).abs().max());
    }
    same_as_transformers(&cache)?;
    one_nan_in_calibration() // transformers' fixture fp8_nan_prefill, and int8
}
// ANCHOR_END: example

/// The fixture `quant/fp8_outgrown` (written by `scripts/gen_quant_fixtures.py`).
fn fixture() -> attention::Result<attention::TensorFile> {
    attention::TensorFile::open(format!(
        "{}/quant/fp8_outgrown.safetensors",
        attention::FIXTURE_DIR
    ))
}

/// The `(1, heads, seq, head_dim)` tensor `name` as a `(seq, heads · head_dim)` matrix.
fn seq_major(name: &str) -> attention::Result<nalgebra::DMatrix<f32>> {
    let t = fixture()?.tensor(name)?;
    let [1, heads, seq, d] = t.shape[..] else { panic!("{name}: {:?}", t.shape) };
    Ok(nalgebra::DMatrix::from_fn(seq, heads * d, |s, c| {
        t.data[((c / d) * seq + s) * d + c % d]
    }))
}

/// The keys and values transformers' layer was given.
fn transformers_inputs()
-> attention::Result<(nalgebra::DMatrix<f32>, nalgebra::DMatrix<f32>)> {
    Ok((seq_major("keys")?, seq_major("values")?))
}

/// Our dequantized keys and values equal what the layer's last `update` returned, bit for
/// bit, and so do the per-token errors the generator measured with it
/// (`max_error_per_token`).
fn same_as_transformers(cache: &QuantizedKvCache) -> attention::Result<()> {
    let (keys, values) = (cache.keys(0)?, cache.values(0)?);
    let same = |a: &nalgebra::DMatrix<f32>, b: &nalgebra::DMatrix<f32>| {
        a.iter().zip(b.iter()).all(|(x, y)| x.to_bits() == y.to_bits())
    };
    assert!(same(&keys, &seq_major("dequantized_keys")?));
    assert!(same(&values, &seq_major("dequantized_values")?));
    let path = format!("{}/quant/fp8_outgrown.json", attention::FIXTURE_DIR);
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let inputs = seq_major("keys")?;
    for (t, want) in meta["max_error_per_token"].as_array().unwrap().iter().enumerate() {
        let got = (keys.row(t) - inputs.row(t)).abs().max();
        assert_eq!(got, want.as_f64().unwrap() as f32, "token {t}");
    }
    println!("(transformers' Fp8QuantizedLayer: the same codes, scale and errors)");
    Ok(())
}

/// Sequence `b` of the `(batch, heads, seq, head_dim)` tensor `name` of the fixture
/// `quant/fp8_nan_prefill` as a `(seq, heads · head_dim)` matrix.
fn nan_fixture(name: &str, b: usize) -> attention::Result<nalgebra::DMatrix<f32>> {
    let path = format!("{}/quant/fp8_nan_prefill.safetensors", attention::FIXTURE_DIR);
    let t = attention::TensorFile::open(path)?.tensor(name)?;
    let [_, heads, seq, d] = t.shape[..] else { panic!("{name}: {:?}", t.shape) };
    Ok(nalgebra::DMatrix::from_fn(seq, heads * d, |s, c| {
        t.data[((b * heads + c / d) * seq + s) * d + c % d]
    }))
}

/// One NaN among the first update's keys (transformers' fixture `fp8_nan_prefill`: 2
/// sequences of 6 tokens, 2 KV heads of 6, fed as 4 tokens then 2, the NaN in sequence
/// 1, token 1): the NaN keys after the second update in transformers' states, in our
/// fp8 cache (asserted equal) and in an int8 cache fed the same tokens.
fn one_nan_in_calibration() -> attention::Result<()> {
    let keys = [nan_fixture("keys", 0)?, nan_fixture("keys", 1)?];
    let values = [nan_fixture("values", 0)?, nan_fixture("values", 1)?];
    let nans = |format: KvFormat| -> attention::Result<usize> {
        let mut cache = QuantizedKvCache::new(format, 2, 6, 2, 6)?;
        for (start, n) in [(0, 4), (4, 2)] {
            let part = |m: &[nalgebra::DMatrix<f32>; 2]| {
                m.clone().map(|x| x.rows(start, n).into())
            };
            cache.append(start, &part(&keys), &part(&values))?;
        }
        let all = [cache.keys(0)?, cache.keys(1)?];
        Ok(all.iter().flat_map(|m| m.iter()).filter(|x| x.is_nan()).count())
    };
    let theirs =
        [nan_fixture("dequantized_keys", 0)?, nan_fixture("dequantized_keys", 1)?];
    let theirs = theirs.iter().flat_map(|m| m.iter()).filter(|x| x.is_nan()).count();
    let (fp8, int8) = (nans(KvFormat::Fp8E4M3)?, nans(KvFormat::Int8)?);
    assert_eq!(fp8, theirs);
    let (first, all) = (2 * 4 * keys[0].ncols(), 2 * 6 * keys[0].ncols());
    println!("one NaN among the first update's {first} keys; NaN keys after the second:");
    println!(
        "  fp8 {fp8} of {all} (transformers' layer: {theirs}), int8 {int8} of {all}"
    );
    Ok(())
}
