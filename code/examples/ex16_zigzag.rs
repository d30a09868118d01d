//! Exercise 16.1: the work of causal ring attention per device, 8192 tokens on 4 and 8
//! devices: contiguous blocks (device `r` holds block `r`) against the zigzag layout
//! (`2D` chunks, device `r` holds chunks `r` and `2D − 1 − r`).
extern crate attention;
// ANCHOR: example
use attention::parallel::ring::RingAttention;

fn main() -> Result<(), attention::AttnError> {
    let n = 8192;
    // the (query, key) pairs of a device's queries: query i sees keys 0 ..= i
    let pairs = |queries: &mut dyn Iterator<Item = usize>| -> u64 {
        queries.map(|i| i as u64 + 1).sum()
    };
    println!("visible (query, key) pairs per device, millions; busiest / mean");
    for devices in [4, 8] {
        let starts = RingAttention::even(n, devices)?.starts(); // contiguous blocks
        let contiguous: Vec<u64> =
            (0..devices).map(|r| pairs(&mut (starts[r]..starts[r + 1]))).collect();
        let chunks = RingAttention::even(n, 2 * devices)?.starts(); // 2D chunks
        let chunk = |c: usize| chunks[c]..chunks[c + 1];
        let zigzag: Vec<u64> = (0..devices)
            .map(|r| pairs(&mut chunk(r).chain(chunk(2 * devices - 1 - r))))
            .collect();
        print_loads(devices, "contiguous", &contiguous);
        print_loads(devices, "zigzag", &zigzag);
    }
    Ok(())
}
// ANCHOR_END: example

/// One line: the pairs of each device in millions and the busiest device's load over the
/// mean (1 is perfect balance); every layout computes the same pairs in all.
fn print_loads(devices: usize, layout: &str, loads: &[u64]) {
    let total: u64 = loads.iter().sum();
    assert_eq!(total, 8192 * 8193 / 2, "{layout}: every visible pair once");
    let mean = total as f64 / devices as f64;
    let max = *loads.iter().max().expect("devices") as f64;
    let m: Vec<String> =
        loads.iter().map(|&p| format!("{:.1}", p as f64 / 1e6)).collect();
    println!("{devices} devices, {layout:<10} {:.2}  [{}]", max / mean, m.join(", "));
}
