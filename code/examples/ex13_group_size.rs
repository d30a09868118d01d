//! Exercise 13.1: int4's group size trades memory for accuracy: the error on keys with
//! outlier channels and the bytes per token of Llama 3.2 1B for groups of 8, 32 and 128.
extern crate attention;
// ANCHOR: example
use attention::serving::quant::{
    KvFormat, StudyData, quantized_attention_error, quantized_kv_bytes_per_layer,
    study_inputs,
};
use attention::{DType, HeadLayout, Preset};

fn main() -> Result<(), attention::AttnError> {
    let heads = HeadLayout::new(8, 2, 64)?; // head_dim 64, as Llama 3.2 1B
    let (q, k, v) = study_inputs(StudyData::OutlierChannels, heads, 512, 16, 13)?;
    let llama = Preset::LLAMA_3_2_1B.config; // 8 KV heads of 64
    let context = 8192;
    println!("group  mean error   max error  bytes/token/layer (Llama 3.2 1B)");
    let mut means = Vec::new();
    for group in [8, 32, 128] {
        let format = KvFormat::Int4 { group, residual: 0 };
        let e = quantized_attention_error(format, &q, &k, &v, heads)?;
        let bytes = quantized_kv_bytes_per_layer(format, &llama, 1, context, DType::BF16);
        let per_token = bytes as f64 / context as f64;
        println!("{group:5} {:11.5} {:11.5} {per_token:18.1}", e.mean, e.max);
        means.push(e.mean);
    }
    assert!(means.windows(2).all(|w| w[0] < w[1]), "larger groups, larger errors");
    Ok(())
}
// ANCHOR_END: example
