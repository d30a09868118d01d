//! Chapter 13: fp8's frozen scale. transformers' `Fp8QuantizedLayer` calibrates on the
//! first update; later keys 1, 2, 4 and 8 times larger are clipped. Our cache gives the
//! layer's numbers bit for bit (checked against the fixture it wrote).
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
    same_as_transformers(&cache)
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
