//! Exercise 14.2: how many of the chapter's sequences fit in 16 GiB of Llama 3 8B's KV
//! cache: reserved contiguously, paged, and paged with the prompt shared.
extern crate attention;
extern crate nalgebra;
// ANCHOR: example
use attention::{AttnError, serving::paged::PagedKvCache};
use nalgebra::DMatrix;

fn main() -> Result<(), AttnError> {
    let rows = rows_per_layer(16); // 16 GiB for 32 layers, 4 KiB a row
    println!("16 GiB of Llama 3 8B's bf16 cache, {rows} rows per layer, holds");
    println!("  {:>3} sequences contiguous, 2048 rows reserved each", rows / 2048);
    for share in [false, true] {
        let mut pool = PagedKvCache::new(rows / 16, 16, 1, 1)?; // counts: rows 1 wide
        let (system, skip) = (pool.add_sequence(), if share { 300 } else { 0 });
        pool.append(system, 0, &DMatrix::zeros(skip, 1), &DMatrix::zeros(skip, 1))?;
        let mut held = 0; // sequences admitted, each at its longest
        for own in WORKLOAD.own_lengths() {
            let id = if share { pool.fork(system)? } else { pool.add_sequence() };
            let rows = DMatrix::zeros(300 + own - skip, 1); // positions skip .. 300 + own
            match pool.append(id, skip, &rows, &rows) {
                Err(AttnError::PoolExhausted { .. }) => break, // the pool is full
                other => other?,
            }
            held += 1;
        }
        let how = if share { ", the prompt shared" } else { "" };
        println!("  {held:>3} sequences paged{how}");
    }
    Ok(())
}
// ANCHOR_END: example

/// Rows per layer in `gib` GiB of Llama 3 8B's bf16 KV cache: 32 layers, each row the
/// keys and values of 8 KV heads of 128 (4 KiB).
fn rows_per_layer(gib: u128) -> usize {
    use attention::{DType, Preset, kv_cache_bytes};
    let row = kv_cache_bytes(&Preset::LLAMA_3_8B.config, 32, 1, 1, DType::BF16);
    ((gib << 30) / row) as usize
}

/// The chapter's workload (a system prompt of 300 tokens, then 1 to 1748 of each
/// sequence's own), for a thousand sequences: more than fit.
const WORKLOAD: attention::serving::paged::Workload =
    attention::serving::paged::Workload {
        n_sequences: 1000,
        prompt_len: 300,
        max_own: 1748,
        seed: 14,
    };
