//! Chapter 16: the bytes each of 8 devices sends per token for one attention layer of
//! Llama 3 8B and 70B, tensor parallel (the all-reduce of the output) and ring attention
//! (the keys and values): counted by the simulated devices at the models' real widths,
//! checked against the formulas, and for all layers.
extern crate attention;
// ANCHOR: example
use attention::parallel::comm::all_reduce_on_threads;
use attention::parallel::ring::{RingAttention, ring_bytes_per_token};
use attention::parallel::tensor::tp_bytes_per_token;
use attention::{DType, HeadLayout, Preset, parallel::LLAMA_3_70B, splitmix_matrix};

fn main() -> Result<(), attention::AttnError> {
    let (devices, tokens) = (8, 16); // 16 tokens: 2 per device on the ring
    print_header();
    for preset in [Preset::LLAMA_3_8B, LLAMA_3_70B] {
        let (cfg, bf16) = (preset.config, DType::BF16);
        // tensor parallel: the all-reduce of the layer's output, (tokens, d_model)
        let mut outputs = vec![vec![1.0_f32; tokens * cfg.d_model]; devices];
        let tp = all_reduce_on_threads(&mut outputs)?;
        // ring attention: the queries, keys and values of the tokens, real widths
        let heads = HeadLayout::new(cfg.n_heads, cfg.n_kv_heads, cfg.head_dim)?;
        let [q, k, v] = [(1, heads.q_dim()), (2, heads.kv_dim()), (3, heads.kv_dim())]
            .map(|(seed, width)| splitmix_matrix(seed, tokens, width, 1.0));
        let ring = RingAttention::even(tokens, devices)?.forward(&q, &k, &v, heads)?.1;
        let tp_formula = tp_bytes_per_token(&cfg, devices, bf16);
        let formulas = [tp_formula, ring_bytes_per_token(&cfg, devices, bf16)];
        check_counted([&tp, &ring], tokens, formulas);
        print_row(&preset, formulas);
    }
    Ok(())
}
// ANCHOR_END: example

use attention::parallel::comm::Traffic;

/// The bytes the busiest device sent, per token and converted from the simulation's f32
/// (4 bytes) to bf16 (2 bytes), must be the formulas' (`2·(D−1)/D · d_model · 2` and
/// `2·(D−1)/D · n_kv_heads·head_dim · 2`).
fn check_counted(traffic: [&Traffic; 2], tokens: usize, formula: [u128; 2]) {
    let counted = traffic.map(|t| t.max_per_device() as u128 / tokens as u128 / 2);
    assert_eq!(counted, formula, "counted vs formula");
}

/// The table's header.
fn print_header() {
    println!(
        "8 devices, bf16   per token and layer (bytes)   per token, all layers (KiB)"
    );
    println!("model           tensor parallel  ring attention  tensor parallel  ring");
}

/// One line: per token and layer, and per token for all the model's layers.
fn print_row(preset: &Preset, [tp, ring]: [u128; 2]) {
    let layers = preset.n_layers.expect("a whole model") as u128;
    let (tp_all, ring_all) =
        ((tp * layers) as f64 / 1024.0, (ring * layers) as f64 / 1024.0);
    println!("{:<15} {tp:>15}  {ring:>14}  {tp_all:>15.0}  {ring_all:>4.0}", preset.name);
}
