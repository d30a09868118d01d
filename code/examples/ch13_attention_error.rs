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
    print_output_size(heads, kinds)
}
// ANCHOR_END: example

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
