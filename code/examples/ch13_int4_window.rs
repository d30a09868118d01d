//! Chapter 13: int4 the KIVI way, decoding one token at a time: tokens wait in f32 until
//! `residual + group` of them are waiting, then the oldest `group` are quantized.
extern crate attention;
// ANCHOR: example
use attention::serving::quant::{KvFormat, QuantizedKvCache};
use attention::splitmix_matrix;

fn main() -> Result<(), attention::AttnError> {
    let format = KvFormat::Int4 { group: 4, residual: 3 };
    let mut cache = QuantizedKvCache::new(format, 1, 16, 2, 6)?; // 2 KV heads of 6
    let (keys, values) =
        (splitmix_matrix(1, 16, 12, 1.0), splitmix_matrix(2, 16, 12, 1.0));
    println!("after token  held  as int4  in f32");
    for t in 0..16 {
        let (k, v) = (keys.rows(t, 1).clone_owned(), values.rows(t, 1).clone_owned());
        cache.append(t, &[k], &[v])?;
        let (held, int4) = (cache.len(), cache.quantized_len());
        println!("{t:11}  {held:4}  {int4:7}  {:6}", held - int4);
    }
    let (n, q) = (cache.len(), cache.quantized_len());
    let exact = cache.keys(0)?.rows(q, n - q) == keys.rows(q, n - q); // the f32 rows
    println!("newest {} rows exact: {exact}", n - q);
    Ok(())
}
// ANCHOR_END: example
