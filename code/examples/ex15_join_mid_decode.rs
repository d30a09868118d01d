//! Exercise 15.2: continuous batching. Two requests are running when a third arrives;
//! from then on each packed step carries what each sequence brings (its prompt, one
//! decoded token, or nothing), and each sequence's outputs equal its run alone.
extern crate attention;
extern crate nalgebra;
// ANCHOR: example
use attention::serving::ragged::PackedBatch;
use attention::{HfFixture, splitmix_matrix};

fn main() -> Result<(), attention::AttnError> {
    let layer = HfFixture::load("ragged/llama_left_padded")?.layer()?; // d_model 36
    let seqs = [8, 5, 6].map(|n| splitmix_matrix(n as u64, n, 36, 1.0)); // 3 requests
    let steps = [[6, 3, 0], [1, 1, 4], [1, 1, 1], [0, 0, 1]]; // tokens each brings
    let mut cache = layer.new_ragged_cache(&[8, 5])?; // two requests, capacities 8 and 5
    let mut outputs = vec![vec![]; 3];
    for (t, lens) in steps.iter().enumerate() {
        if t == 1 {
            cache.push(6)?; // the third request arrives: its own cache, up to 6 positions
        }
        let chunks = next_tokens(&seqs, &cache.lens(), lens); // after those already run
        let x = PackedBatch::pack(&chunks, &cache.next_positions())?;
        let out = x.unpack(&layer.forward_packed(&x, Some(&mut cache))?)?;
        println!(
            "step {t}: cu_seqlens {:?}, start_pos {:?}",
            x.cu_seqlens(),
            x.start_pos()
        );
        outputs.iter_mut().zip(out).for_each(|(o, part)| o.push(part));
    }
    check_each_alone(&layer, &seqs, &outputs)
}
// ANCHOR_END: example

use attention::{AttnError, Batch, GroupedQueryAttention};
use nalgebra::DMatrix;

/// The tokens each sequence brings to the next step: `lens[b]` rows of sequence `b`
/// after the `done[b]` it has already run (for the sequences in the cache).
fn next_tokens(
    seqs: &[DMatrix<f32>],
    done: &[usize],
    lens: &[usize],
) -> Vec<DMatrix<f32>> {
    done.iter().enumerate().map(|(b, &d)| seqs[b].rows(d, lens[b]).into_owned()).collect()
}

/// Each sequence's outputs, step after step, against the sequence run alone in one
/// forward from position 0: equal within 1e-5 (printed as that bound).
fn check_each_alone(
    layer: &GroupedQueryAttention,
    seqs: &[DMatrix<f32>],
    outputs: &[Vec<DMatrix<f32>>],
) -> Result<(), AttnError> {
    for (b, (x, parts)) in seqs.iter().zip(outputs).enumerate() {
        let rows: Vec<_> = parts.iter().flat_map(|m| m.row_iter()).collect();
        let stepped = DMatrix::from_rows(&rows);
        let alone = layer.forward(&Batch::single(x.clone()), 0, None)?;
        let diff =
            attention::max_abs_diff(stepped.as_slice(), alone.items()[0].as_slice());
        assert!(diff < 1e-5, "sequence {b}: {diff}");
        println!("sequence {b}: {} tokens, equal to its run alone (< 1e-5)", x.nrows());
    }
    Ok(())
}
