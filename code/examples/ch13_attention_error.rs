//! Chapter 13: how far attention through each format lands from f32 attention, on
//! Gaussian keys and on keys with a few large outlier channels.
extern crate attention;
// ANCHOR: example
use attention::HeadLayout;
use attention::serving::quant::{
    KvFormat, StudyData, quantized_attention_error, study_inputs,
};

fn main() -> Result<(), attention::AttnError> {
    let heads = HeadLayout::new(8, 2, 64)?; // 8 query heads over 2 KV heads of 64
    let int4 = KvFormat::Int4 { group: 32, residual: 0 };
    let formats = [KvFormat::Int8, KvFormat::Fp8E4M3, int4, KvFormat::KIVI];
    let kinds = [StudyData::Gaussian, StudyData::OutlierChannels];
    println!("16 queries over 512 cached tokens: |output - f32 output|");
    println!("{:14} {:>21}  {:>21}", "", "Gaussian keys", "outlier channels");
    println!("{:14} {:>10} {:>10}  {:>10} {:>10}", "", "max", "mean", "max", "mean");
    for format in formats {
        print!("{:14}", format.name());
        for kind in kinds {
            let (q, k, v) = study_inputs(kind, heads, 512, 16, 13)?; // RoPE'd, seed 13
            let e = quantized_attention_error(format, &q, &k, &v, heads)?;
            print!(" {:10.5} {:10.5}", e.max, e.mean);
        }
        println!();
    }
    print_output_size(heads, kinds)?;
    print_what_outliers_do(heads) // int8's row maxima, fp8's error per channel
}
// ANCHOR_END: example

use attention::grouped_attention;
use attention::serving::quant::{OutputError, QuantizedKvCache};

/// The size of what the errors are measured against: the mean |f32 attention output|.
fn print_output_size(
    heads: HeadLayout,
    kinds: [StudyData; 2],
) -> Result<(), attention::AttnError> {
    print!("{:14}", "mean |output|");
    for kind in kinds {
        let (q, k, v) = study_inputs(kind, heads, 512, 16, 13)?;
        let out = attention::grouped_attention(&q, k.as_view(), v.as_view(), heads, 496)?;
        print!(" {:>10} {:10.5}", "", out.abs().mean());
    }
    println!();
    Ok(())
}

/// What the outlier channels change, on the same inputs: the largest |key| of a row (what
/// sets int8's per-token scale, `amax / 127`), averaged over the rows of every KV head;
/// fp8's largest |stored − key| in the outlier channels and in the others; and fp8's mean
/// output error once the outlier channels are put back exact (every other number as fp8
/// stored it, with the scale calibrated on the outliers).
fn print_what_outliers_do(heads: HeadLayout) -> Result<(), attention::AttnError> {
    let (d, n_kv) = (heads.head_dim(), heads.n_kv_heads());
    // StudyData::OutlierChannels: the two most slowly rotating RoPE pairs of each head
    let outlier = |c: usize| [d / 2 - 2, d / 2 - 1, d - 2, d - 1].contains(&(c % d));
    let mut row_max = vec![];
    for kind in [StudyData::Gaussian, StudyData::OutlierChannels] {
        let (_, k, _) = study_inputs(kind, heads, 512, 16, 13)?;
        let rows = (0..k.nrows()).flat_map(|t| (0..n_kv).map(move |h| (t, h)));
        let sum: f32 = rows.map(|(t, h)| k.view((t, h * d), (1, d)).abs().max()).sum();
        row_max.push(sum / (k.nrows() * n_kv) as f32);
    }
    let (g, o) = (row_max[0], row_max[1]);
    println!("each row's largest |key|, averaged: {g:.2} (Gaussian), {o:.2} (outliers)");
    let (q, k, v) = study_inputs(StudyData::OutlierChannels, heads, 512, 16, 13)?;
    let mut cache = QuantizedKvCache::for_heads(KvFormat::Fp8E4M3, 1, 512, heads)?;
    cache.append(0, std::slice::from_ref(&k), std::slice::from_ref(&v))?;
    let (mut stored, values) = (cache.keys(0)?, cache.values(0)?);
    let (mut in_outliers, mut in_others) = (0.0f32, 0.0f32);
    for t in 0..k.nrows() {
        for c in 0..k.ncols() {
            let error = (stored[(t, c)] - k[(t, c)]).abs();
            if outlier(c) {
                in_outliers = in_outliers.max(error);
                stored[(t, c)] = k[(t, c)]; // put back exact
            } else {
                in_others = in_others.max(error);
            }
        }
    }
    println!("fp8 on the outlier keys: max |stored - key|");
    println!("  in the 4 outlier channels of a head {in_outliers:8.3}");
    println!("  in the other {:<23}{in_others:8.3}", d - 4);
    let exact = grouped_attention(&q, k.as_view(), v.as_view(), heads, 496)?;
    let fixed = grouped_attention(&q, stored.as_view(), values.as_view(), heads, 496)?;
    let mean = OutputError::between(&fixed, &exact)?.mean;
    println!("  mean output error, the outlier channels put back exact: {mean:.5}");
    Ok(())
}
