//! Chapter 13: why KIVI quantizes keys per channel and values per token: int4 with the
//! axes swapped, on Gaussian inputs, keys with outlier channels, and values with a few
//! large tokens.
extern crate attention;
extern crate nalgebra;
// ANCHOR: example
use attention::HeadLayout;
use attention::serving::quant::{Int4Grouping::*, StudyData::*};
use attention::serving::quant::{int4_round_trip, study_inputs};

fn main() -> Result<(), attention::AttnError> {
    let heads = HeadLayout::new(8, 2, 64)?;
    let (token, channel) = (PerToken, PerChannel { group: 32 }); // channel: 32 tokens
    #[rustfmt::skip]
    let arrangements =
        [(channel, token), (token, token), (channel, channel), (token, channel)];
    print_header();
    for (keys_by, values_by) in arrangements {
        let (k_name, v_name) = (name(keys_by), name(values_by));
        print!("{:36}", format!("keys per {k_name}, values per {v_name}"));
        for kind in [Gaussian, OutlierChannels, LargeValueTokens] {
            let (q, k, v) = study_inputs(kind, heads, 512, 16, 13)?; // queries 496..512
            let k4 = int4_round_trip(&k, 64, keys_by)?; // quantized and back
            let v4 = int4_round_trip(&v, 64, values_by)?;
            let error = attend(&q, &k4, &v4, heads)? - attend(&q, &k, &v, heads)?;
            print!(" {:10.5}", error.abs().mean());
        }
        println!();
    }
    Ok(())
}
// ANCHOR_END: example

/// The table's title and column labels.
fn print_header() {
    println!("int4, no residual: mean |output - f32 output|");
    println!("{:36} {:>10} {:>10} {:>10}", "", "Gaussian", "key outl.", "large v");
}

/// `token` or `channel`: what shares a scale and a min.
fn name(grouping: attention::serving::quant::Int4Grouping) -> &'static str {
    match grouping {
        PerToken => "token",
        PerChannel { .. } => "channel",
    }
}

/// The 16 queries at positions 496..512 over all 512 keys and values.
fn attend(
    q: &nalgebra::DMatrix<f32>,
    k: &nalgebra::DMatrix<f32>,
    v: &nalgebra::DMatrix<f32>,
    heads: HeadLayout,
) -> attention::Result<nalgebra::DMatrix<f32>> {
    attention::grouped_attention(q, k.as_view(), v.as_view(), heads, 496)
}
