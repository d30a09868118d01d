//! Chapter 16: what each device holds of Llama 3 70B's attention under tensor
//! parallelism, from 1 to 64 devices. Past 8 devices (its 8 KV heads), each KV head is
//! replicated and the KV cache per device stops shrinking.
extern crate attention;
// ANCHOR: example
use attention::DType;
use attention::parallel::LLAMA_3_70B;
use attention::parallel::tensor::{KvShare, kv_share};

fn main() -> Result<(), attention::AttnError> {
    let cfg = LLAMA_3_70B.config; // 64 query heads, 8 KV heads of 128
    print_header(); // Llama 3 70B, bf16, one layer
    for devices in [1, 2, 4, 8, 16, 32, 64] {
        print_row(&kv_share(&cfg, devices, DType::BF16)?);
    }
    let err = kv_share(&cfg, 12, DType::BF16).expect_err("12 does not divide 64 heads");
    println!("12 devices: {err}");
    Ok(())
}
// ANCHOR_END: example

/// The table's header.
fn print_header() {
    println!("Llama 3 70B, bf16, one layer   KV cache per token (bytes)   k, v weights");
    println!("devices  q heads  kv heads  copies  per device  all devices  per device");
}

/// One line: the heads and copies on each device, the KV cache per token (one device,
/// all devices) and the k and v projections' weights on one device.
fn print_row(s: &KvShare) {
    let weights = format!("{:.1} MiB", s.kv_weight_bytes_per_device as f64 / 1048576.0);
    println!(
        "{:>7}  {:>7}  {:>8}  {:>6}  {:>10}  {:>11}  {weights:>10}",
        s.devices,
        s.q_heads,
        s.kv_heads,
        s.replicas,
        s.cache_bytes_per_device,
        s.cache_bytes_all_devices
    );
}
