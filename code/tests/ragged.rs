//! Ragged batches (chapter 15): sequences of different lengths, each at its own
//! position, in Hugging Face's padded form and in the packed variable-length form.
//!
//! Three references:
//!
//! - **transformers 5.24**, `scripts/gen_ragged_fixtures.py` (fixture
//!   `tests/fixtures/ragged/llama_left_padded/`): `LlamaAttention` (eager, f32) inside
//!   `LlamaModel`, which builds its own 4-D mask from the 2-D `attention_mask`:
//!
//!   ```text
//!   model(inputs_embeds=x, attention_mask=mask, position_ids=pos)   # attn_output
//!   cache = DynamicCache(config=config); the same prefill into it, then per step:
//!   mask = cat([mask, ones]); model(inputs_embeds=x_new[:, t:t+1], attention_mask=mask,
//!                                   position_ids=next_pos[:, t:t+1], cache=cache)
//!   model(inputs_embeds=packed, position_ids=packed_position_ids, use_cache=False)
//!   ```
//!
//! - **each sequence alone**, through chapter 6's `forward` with a cache of its own
//!   (proptest over random lengths, start positions, chunks and decode steps);
//! - **the other form**: padded ≡ packed on the real tokens.
//!
//! **Tolerance.** [`Tolerance::F32`] (rtol 1.3e-6, atol 1e-5), PyTorch's `assert_close`
//! default for f32, against transformers and between the forms. What differs is the
//! order of f32 sums: projections of one row against many (the crate's `Linear` sums a
//! few rows in blocks, many rows through the matrix product), pad columns that add
//! exact zeros to a softmax sum, and PyTorch's kernels. Measured on outputs up to 3.4:
//! at most 7e-7 against transformers, 3e-7 between the forms and each sequence alone.

use attention::serving::ragged::*;
use attention::*;
use nalgebra::DMatrix;
use proptest::prelude::*;
use rand::{RngExt, SeedableRng, rngs::StdRng};

const TOL: Tolerance = Tolerance::F32;

/// The transformers fixture: the layer, the left-padded prefill, the decode inputs and
/// every output transformers computed.
struct Hf {
    layer: GroupedQueryAttention,
    padded: PaddedBatch,
    lengths: Vec<usize>,
    starts: Vec<usize>,
    inputs: TensorFile,
    expected: TensorFile,
}

fn hf() -> Hf {
    let fx = HfFixture::load("ragged/llama_left_padded").unwrap();
    let inputs = TensorFile::open(fx.dir.join("input.safetensors")).unwrap();
    let expected = TensorFile::open(fx.dir.join("expected.safetensors")).unwrap();
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fx.dir.join("meta.json")).unwrap())
            .unwrap();
    let list = |key: &str| -> Vec<usize> {
        meta[key]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as usize)
            .collect()
    };
    let padded = PaddedBatch::from_tensors(
        fx.input().unwrap(),
        &inputs.tensor("attention_mask").unwrap(),
        &inputs.tensor("position_ids").unwrap(),
    )
    .unwrap();
    Hf {
        layer: fx.layer().unwrap(),
        padded,
        lengths: list("lengths"),
        starts: list("start_positions"),
        inputs,
        expected,
    }
}

impl Hf {
    /// The real rows of each sequence's prefill input.
    fn real_inputs(&self) -> Vec<DMatrix<f32>> {
        let x = self.padded.x();
        self.lengths
            .iter()
            .zip(x.items())
            .map(|(&n, m)| m.rows(x.seq_len() - n, n).into_owned())
            .collect()
    }

    /// Decode step `t`'s new token of every sequence: `(batch, 1, d_model)`.
    fn step(&self, t: usize) -> Batch {
        self.inputs.batch("decode_hidden_states").unwrap().narrow_seq(t, 1).unwrap()
    }

    fn steps(&self) -> usize {
        self.inputs.batch("decode_hidden_states").unwrap().seq_len()
    }
}

/// Every sequence's rows stacked, for one comparison.
fn stack(parts: &[DMatrix<f32>]) -> DMatrix<f32> {
    let rows: usize = parts.iter().map(|m| m.nrows()).sum();
    let mut out = DMatrix::zeros(rows, parts[0].ncols());
    let mut first = 0;
    for m in parts {
        out.rows_mut(first, m.nrows()).copy_from(m);
        first += m.nrows();
    }
    out
}

fn close(got: &[DMatrix<f32>], want: &[DMatrix<f32>]) {
    assert_eq!(got.len(), want.len());
    assert_matrix_close(&stack(got), &stack(want), TOL);
}

#[test]
fn padded_prefill_and_decode_match_transformers() {
    let hf = hf();
    let (batch, seq) = (hf.padded.batch_size(), hf.padded.seq_len());
    let mut cache = hf.layer.new_cache(batch, seq + hf.steps()).unwrap();
    let out = hf.layer.forward_padded(&hf.padded, Some(&mut cache)).unwrap();
    let want = hf.expected.batch("attn_output").unwrap();
    close(&hf.padded.unpad(&out).unwrap(), &hf.padded.unpad(&want).unwrap());
    // a pad's row is 0 here, as transformers' SDPA gives it
    let sdpa = hf.expected.batch("sdpa_attn_output").unwrap();
    for (b, &n) in hf.lengths.iter().enumerate() {
        assert!(out.items()[b].rows(0, seq - n).iter().all(|&v| v == 0.0));
        assert!(sdpa.items()[b].rows(0, seq - n).iter().all(|&v| v == 0.0));
    }
    // decode: generation's next positions, each sequence at its own
    let positions = hf.inputs.matrix("decode_position_ids").unwrap();
    let (mut step, mut outputs) = (hf.padded.clone(), vec![]);
    for t in 0..hf.steps() {
        step = step.next_tokens(hf.step(t)).unwrap();
        for (b, p) in step.position_ids().iter().enumerate() {
            assert_eq!(p[0] as f32, positions[(b, t)], "sequence {b}, step {t}");
        }
        outputs.push(hf.layer.forward_padded(&step, Some(&mut cache)).unwrap());
    }
    assert_eq!(cache.len(), seq + hf.steps()); // the pads' columns stay in the cache
    let decode = Batch::concat_seq(&outputs).unwrap();
    assert_batch_close(&decode, &hf.expected.batch("decode_output").unwrap(), TOL);
}

#[test]
fn padded_without_cache_matches_transformers() {
    let hf = hf();
    let out = hf.layer.forward_padded(&hf.padded, None).unwrap();
    let want = hf.expected.batch("attn_output").unwrap();
    close(&hf.padded.unpad(&out).unwrap(), &hf.padded.unpad(&want).unwrap());
}

#[test]
fn padding_mask_matches_the_mask_transformers_built() {
    let hf = hf();
    let mask = hf.expected.tensor("prefill_mask").unwrap(); // (batch, 1, seq, seq)
    let (batch, seq) = (hf.padded.batch_size(), hf.padded.seq_len());
    assert_eq!(mask.shape, [batch, 1, seq, seq]);
    for b in 0..batch {
        let ours = padding_causal_mask(&hf.padded.attention_mask()[b], seq).unwrap();
        for i in 0..seq {
            for j in 0..seq {
                let theirs = mask.data[(b * seq + i) * seq + j];
                let hidden = ours[(i, j)] == f32::NEG_INFINITY;
                assert!(hidden || ours[(i, j)] == 0.0);
                // transformers hides with finfo(f32).min, not −∞
                let want = if hidden { f32::MIN } else { 0.0 };
                assert_eq!(theirs, want, "sequence {b}, query {i}, key {j}");
            }
        }
    }
}

/// What transformers' eager attention gives a pad row: every score of a left pad is
/// `finfo.min` after the mask (its own key and all before it are pads, the rest is
/// future), so its softmax is uniform over all `seq` keys: `o_proj` of the mean of the
/// sequence's value rows, pads included.
#[test]
fn eager_pad_rows_are_o_proj_of_the_mean_value() {
    let hf = hf();
    let (heads, w) = (hf.layer.heads(), hf.layer.weights());
    let eager = hf.expected.batch("attn_output").unwrap();
    for (b, x) in hf.padded.x().items().iter().enumerate() {
        let values = w.w_value.forward(x).unwrap(); // (seq, n_kv_heads·head_dim)
        let mean = values.row_mean(); // (1, kv_dim)
        let d = heads.head_dim();
        let context = DMatrix::from_fn(1, heads.q_dim(), |_, c| {
            mean[heads.kv_head(c / d) * d + c % d] // head h reads KV head h / group_size
        });
        let uniform = w.out_proj.forward(&context).unwrap();
        for t in 0..x.nrows() - hf.lengths[b] {
            let row = eager.items()[b].rows(t, 1).into_owned();
            assert_matrix_close(&uniform, &row, TOL);
        }
    }
}

#[test]
fn packed_matches_transformers_packed_form_and_decode() {
    let hf = hf();
    let packed = PackedBatch::pack(&hf.real_inputs(), &hf.starts).unwrap();
    assert_eq!(packed.cu_seqlens(), [0, 6, 7, 16]);
    let positions = hf.inputs.matrix("packed_position_ids").unwrap(); // (1, total)
    let ours: Vec<f32> = packed.positions().iter().map(|&p| p as f32).collect();
    assert_eq!(ours, positions.iter().copied().collect::<Vec<_>>());

    let capacities: Vec<usize> = hf.lengths.iter().map(|n| n + hf.steps()).collect();
    let mut cache = hf.layer.new_ragged_cache(&capacities).unwrap();
    let out = hf.layer.forward_packed(&packed, Some(&mut cache)).unwrap();
    let want = hf.expected.batch("packed_output").unwrap(); // (1, total, d_model)
    assert_matrix_close(&out, &want.items()[0], TOL);
    assert_eq!(cache.lens(), hf.lengths); // no pad rows

    let mut outputs = vec![];
    for t in 0..hf.steps() {
        let x = hf.step(t);
        let step = PackedBatch::pack(x.items(), &cache.next_positions()).unwrap();
        outputs.push(hf.layer.forward_packed(&step, Some(&mut cache)).unwrap());
    }
    let decode = hf.expected.batch("decode_output").unwrap(); // (batch, steps, d_model)
    for (b, want) in decode.items().iter().enumerate() {
        let got = DMatrix::from_fn(hf.steps(), want.ncols(), |t, c| outputs[t][(b, c)]);
        assert_matrix_close(&got, want, TOL);
    }
}

#[test]
fn score_entries_of_the_fixture() {
    let hf = hf();
    let n_heads = hf.layer.n_heads(); // 4
    // padded: 3 sequences × 4 heads × 9 rows × 9 columns
    assert_eq!(hf.padded.score_entries(n_heads), 3 * 4 * 9 * 9);
    let packed = PackedBatch::pack(&hf.real_inputs(), &hf.starts).unwrap();
    assert_eq!(packed.score_entries(n_heads, None).unwrap(), 4 * (36 + 1 + 81));
    let mut cache = hf.layer.new_ragged_cache(&[8, 3, 11]).unwrap();
    hf.layer.forward_packed(&packed, Some(&mut cache)).unwrap();
    let step = PackedBatch::pack(hf.step(0).items(), &cache.next_positions()).unwrap();
    assert_eq!(step.score_entries(n_heads, Some(&cache)).unwrap(), 4 * (7 + 2 + 10));
    let padded_step = hf.padded.next_tokens(hf.step(0)).unwrap();
    assert_eq!(padded_step.score_entries(n_heads), 3 * 4 * 10);
}

/// `apply_rope_at` with consecutive positions is `Rope::apply` bit for bit, and with any
/// positions each row is rotated as `Rope::apply` rotates a one-row matrix, in both
/// layouts.
#[test]
fn rope_at_positions_is_rope_apply_per_row() {
    for layout in [RopeLayout::SplitHalves, RopeLayout::Interleaved] {
        let rope = Rope::new(6, 50, 10000.0, None).unwrap().with_layout(layout);
        let x = splitmix_matrix(7, 5, 18, 1.0);
        let (mut whole, mut rows) = (x.clone(), x.clone());
        rope.apply(&mut whole, 11).unwrap();
        apply_rope_at(&rope, &mut rows, &[11, 12, 13, 14, 15]).unwrap();
        assert_eq!(whole, rows);
        let positions = [49, 0, 3, 4, 3];
        let mut ragged = x.clone();
        apply_rope_at(&rope, &mut ragged, &positions).unwrap();
        for (t, &p) in positions.iter().enumerate() {
            let mut row = x.rows(t, 1).into_owned();
            rope.apply(&mut row, p).unwrap();
            assert_eq!(ragged.rows(t, 1), row, "{layout:?}, row {t}");
        }
    }
}

// ---------------------------------------------------------------------------------------
// Ragged ≡ each sequence alone, padded ≡ packed: random lengths, positions and steps.

/// A Llama-style layer with sizes that differ pairwise: d_in 13, 4 heads of 6 (d_out
/// 24), 2 KV heads, RoPE over 64 positions.
fn small_layer(seed: u64, kernel: KernelChoice) -> GroupedQueryAttention {
    let rope = Rope::new(6, 64, 10000.0, None).unwrap();
    let mut rng = StdRng::seed_from_u64(seed);
    GroupedQueryAttention::random(13, 24, 4, 2, Some(rope), &mut rng)
        .unwrap()
        .with_kernel(kernel)
}

fn random_matrix(rng: &mut StdRng, rows: usize, cols: usize) -> DMatrix<f32> {
    DMatrix::from_fn(rows, cols, |_, _| rng.random_range(-2.0..2.0))
}

/// Each sequence alone, through chapter 6's `forward` with its own cache: its chunks in
/// order, chunk `c` at the positions that continue chunk `c − 1`.
fn alone(
    layer: &GroupedQueryAttention,
    chunks: &[DMatrix<f32>],
    start: usize,
) -> Vec<DMatrix<f32>> {
    let total: usize = chunks.iter().map(|c| c.nrows()).sum();
    let mut cache = layer.new_cache(1, total.max(1)).unwrap();
    let mut pos = start;
    let mut outs = vec![];
    for c in chunks.iter().filter(|c| c.nrows() > 0) {
        let x = Batch::single(c.clone());
        outs.push(layer.forward(&x, pos, Some(&mut cache)).unwrap().items()[0].clone());
        pos += c.nrows();
    }
    outs
}

/// One random case: per sequence a start position and the lengths of its chunks, one
/// chunk per step (step 0 is the prefill; a later chunk of 0 sits that step out).
fn check_packed_case(
    layer: &GroupedQueryAttention,
    starts: &[usize],
    lens: &[Vec<usize>],
    seed: u64,
) {
    let mut rng = StdRng::seed_from_u64(seed);
    let chunks: Vec<Vec<DMatrix<f32>>> = lens
        .iter()
        .map(|ls| ls.iter().map(|&n| random_matrix(&mut rng, n, 13)).collect())
        .collect();
    let capacities: Vec<usize> =
        lens.iter().map(|ls| ls.iter().sum::<usize>().max(1)).collect();
    let mut cache = layer.new_ragged_cache(&capacities).unwrap();
    let mut got: Vec<Vec<DMatrix<f32>>> = vec![vec![]; starts.len()];
    for step in 0..lens[0].len() {
        let xs: Vec<DMatrix<f32>> = chunks.iter().map(|c| c[step].clone()).collect();
        let next: Vec<usize> = cache
            .next_positions()
            .iter()
            .zip(starts)
            .zip(cache.lens())
            .map(|((&p, &s), len)| if len == 0 { s } else { p })
            .collect();
        let x = PackedBatch::pack(&xs, &next).unwrap();
        let out = layer.forward_packed(&x, Some(&mut cache)).unwrap();
        for (b, o) in x.unpack(&out).unwrap().into_iter().enumerate() {
            if o.nrows() > 0 {
                got[b].push(o);
            }
        }
    }
    for (b, (c, &s)) in chunks.iter().zip(starts).enumerate() {
        let want = alone(layer, c, s);
        assert_eq!(got[b].len(), want.len(), "sequence {b}");
        if !want.is_empty() {
            assert_matrix_close(&stack(&got[b]), &stack(&want), TOL);
        }
    }
}

/// A left-padded prefill and decode steps of one token, padded (chapter 6's cache, pads
/// included) and packed (a cache per sequence), each against each sequence alone.
fn check_padded_case(
    layer: &GroupedQueryAttention,
    starts: &[usize],
    lens: &[usize],
    steps: usize,
    seed: u64,
) {
    let mut rng = StdRng::seed_from_u64(seed);
    let prompts: Vec<DMatrix<f32>> =
        lens.iter().map(|&n| random_matrix(&mut rng, n, 13)).collect();
    let new: Vec<DMatrix<f32>> =
        lens.iter().map(|_| random_matrix(&mut rng, steps, 13)).collect();
    let seq = *lens.iter().max().unwrap();

    let mut x = PaddedBatch::left_pad(&prompts, starts).unwrap();
    let mut cache = layer.new_cache(lens.len(), seq + steps).unwrap();
    let mut padded =
        vec![x.unpad(&layer.forward_padded(&x, Some(&mut cache)).unwrap()).unwrap()];
    let mut ragged = layer
        .new_ragged_cache(&lens.iter().map(|n| n + steps).collect::<Vec<_>>())
        .unwrap();
    let prefill = PackedBatch::pack(&prompts, starts).unwrap();
    let mut packed = vec![
        prefill
            .unpack(&layer.forward_packed(&prefill, Some(&mut ragged)).unwrap())
            .unwrap(),
    ];
    for t in 0..steps {
        let rows: Vec<DMatrix<f32>> =
            new.iter().map(|m| m.rows(t, 1).into_owned()).collect();
        x = x.next_tokens(Batch::new(rows.clone()).unwrap()).unwrap();
        padded
            .push(x.unpad(&layer.forward_padded(&x, Some(&mut cache)).unwrap()).unwrap());
        let step = PackedBatch::pack(&rows, &ragged.next_positions()).unwrap();
        packed.push(
            step.unpack(&layer.forward_packed(&step, Some(&mut ragged)).unwrap())
                .unwrap(),
        );
    }
    for b in 0..lens.len() {
        let mut chunks = vec![prompts[b].clone()];
        chunks.extend((0..steps).map(|t| new[b].rows(t, 1).into_owned()));
        let want = stack(&alone(layer, &chunks, starts[b]));
        let per_step = |outs: &[Vec<DMatrix<f32>>]| {
            stack(&outs.iter().map(|o| o[b].clone()).collect::<Vec<_>>())
        };
        assert_matrix_close(&per_step(&padded), &want, TOL);
        assert_matrix_close(&per_step(&packed), &want, TOL);
        assert_matrix_close(&per_step(&padded), &per_step(&packed), TOL);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Left padding, a prefill and decode steps: padded ≡ packed ≡ each alone.
    #[test]
    fn padded_and_packed_equal_each_sequence_alone(
        lens in prop::collection::vec(1usize..=8, 1..=4),
        starts_seed in any::<u64>(),
        steps in 0usize..=3,
        seed in any::<u64>(),
    ) {
        let mut rng = StdRng::seed_from_u64(starts_seed);
        let starts: Vec<usize> = lens.iter().map(|_| rng.random_range(0..=40)).collect();
        let layer = small_layer(seed, KernelChoice::Auto);
        check_padded_case(&layer, &starts, &lens, steps, seed ^ 1);
    }

    /// Packed steps whose sequences advance by different chunks (0 sits a step out):
    /// each sequence as if alone, with every kernel.
    #[test]
    fn packed_chunks_equal_each_sequence_alone(
        batch in 1usize..=4,
        n_steps in 1usize..=4,
        seed in any::<u64>(),
    ) {
        let mut rng = StdRng::seed_from_u64(seed);
        let starts: Vec<usize> = (0..batch).map(|_| rng.random_range(0..=30)).collect();
        let lens: Vec<Vec<usize>> = (0..batch)
            .map(|_| (0..n_steps).map(|_| rng.random_range(0..=6)).collect())
            .collect();
        for kernel in [KernelChoice::Auto, KernelChoice::Flash, KernelChoice::Decode] {
            check_packed_case(&small_layer(seed, kernel), &starts, &lens, seed ^ 2);
        }
    }
}

#[test]
fn a_sequence_joins_and_one_leaves_between_steps() {
    let layer = small_layer(5, KernelChoice::Auto);
    let mut rng = StdRng::seed_from_u64(6);
    let a = random_matrix(&mut rng, 7, 13); // 5 tokens of prompt, then 2 decoded
    let b = random_matrix(&mut rng, 4, 13); // joins at step 1 with 3 tokens, then 1
    let mut cache = layer.new_ragged_cache(&[7]).unwrap();
    let first = PackedBatch::pack(&[a.rows(0, 5).into_owned()], &[9]).unwrap();
    let out_a0 = layer.forward_packed(&first, Some(&mut cache)).unwrap();
    assert_eq!(cache.push(4).unwrap(), 1);
    let step = PackedBatch::pack(
        &[a.rows(5, 1).into_owned(), b.rows(0, 3).into_owned()],
        &[14, 2],
    )
    .unwrap();
    let out1 =
        step.unpack(&layer.forward_packed(&step, Some(&mut cache)).unwrap()).unwrap();
    let finished = cache.remove(0).unwrap(); // a leaves with 6 rows
    assert_eq!((finished.len(), cache.batch_size()), (6, 1));
    let last =
        PackedBatch::pack(&[b.rows(3, 1).into_owned()], &cache.next_positions()).unwrap();
    let out_b1 = layer.forward_packed(&last, Some(&mut cache)).unwrap();

    let want_a =
        stack(&alone(&layer, &[a.rows(0, 5).into_owned(), a.rows(5, 1).into_owned()], 9));
    assert_matrix_close(&stack(&[out_a0, out1[0].clone()]), &want_a, TOL);
    let want_b =
        stack(&alone(&layer, &[b.rows(0, 3).into_owned(), b.rows(3, 1).into_owned()], 2));
    assert_matrix_close(&stack(&[out1[1].clone(), out_b1]), &want_b, TOL);
}

#[test]
fn right_padding_gives_the_same_real_rows() {
    let layer = small_layer(8, KernelChoice::Auto);
    let mut rng = StdRng::seed_from_u64(9);
    let seqs: Vec<DMatrix<f32>> =
        [3, 6, 1].iter().map(|&n| random_matrix(&mut rng, n, 13)).collect();
    let starts = [4, 0, 17];
    let left = PaddedBatch::pad(&seqs, &starts, PaddingSide::Left).unwrap();
    let right = PaddedBatch::pad(&seqs, &starts, PaddingSide::Right).unwrap();
    let out_left = left.unpad(&layer.forward_padded(&left, None).unwrap()).unwrap();
    let out_right = right.unpad(&layer.forward_padded(&right, None).unwrap()).unwrap();
    close(&out_left, &out_right);
    assert_eq!(right.attention_mask()[0], [1, 1, 1, 0, 0, 0]);
    assert_eq!(right.position_ids()[0], [4, 5, 6, 0, 0, 0]);
    assert_eq!(left.position_ids()[2], [0, 0, 0, 0, 0, 17]);
}

// ---------------------------------------------------------------------------------------
// Typed errors, never a panic.

fn heads() -> HeadLayout {
    HeadLayout::new(4, 2, 6).unwrap()
}

#[test]
fn padded_batch_shape_and_value_errors() {
    let x = Batch::zeros(2, 3, 13).unwrap();
    let ok_pos = vec![vec![0, 1, 2]; 2];
    let err = PaddedBatch::new(x.clone(), vec![vec![1; 3]], ok_pos.clone()).unwrap_err();
    assert!(matches!(err, AttnError::Shape { .. }), "{err}");
    let err =
        PaddedBatch::new(x.clone(), vec![vec![1; 2]; 2], ok_pos.clone()).unwrap_err();
    assert!(matches!(err, AttnError::Shape { .. }), "mask narrower than seq: {err}");
    let err = PaddedBatch::new(x.clone(), vec![vec![1; 4], vec![1; 5]], ok_pos.clone())
        .unwrap_err();
    assert!(matches!(err, AttnError::Shape { .. }), "ragged mask rows: {err}");
    let err =
        PaddedBatch::new(x.clone(), vec![vec![0, 2, 1]; 2], ok_pos.clone()).unwrap_err();
    assert!(matches!(err, AttnError::Config(_)), "{err}");
    let err = PaddedBatch::new(x.clone(), vec![vec![1; 3]; 2], vec![vec![0, 1]; 2])
        .unwrap_err();
    assert!(matches!(err, AttnError::Shape { .. }), "{err}");

    let mask = Tensor::new(vec![2, 3], vec![0.0, 1.0, 1.0, 1.0, 0.5, 1.0]).unwrap();
    let pos = Tensor::new(vec![2, 3], vec![0.0; 6]).unwrap();
    let err = PaddedBatch::from_tensors(x.clone(), &mask, &pos).unwrap_err();
    assert!(matches!(err, AttnError::Config(_)), "{err}");
    let mask = Tensor::new(vec![2, 3], vec![0.0, 1.0, 3.0, 1.0, 1.0, 1.0]).unwrap();
    let err = PaddedBatch::from_tensors(x.clone(), &mask, &pos).unwrap_err();
    assert!(matches!(err, AttnError::Config(_)), "{err}");

    // a sequence without a real token in this step has no next position
    let all_pad =
        PaddedBatch::new(x.clone(), vec![vec![0, 0, 0], vec![0, 1, 1]], ok_pos).unwrap();
    let err = all_pad.next_tokens(Batch::zeros(2, 1, 13).unwrap()).unwrap_err();
    assert!(matches!(err, AttnError::Config(_)), "{err}");
    let padded = PaddedBatch::left_pad(&[DMatrix::zeros(2, 13)], &[0]).unwrap();
    let err = padded.next_tokens(Batch::zeros(2, 1, 13).unwrap()).unwrap_err();
    assert!(matches!(err, AttnError::Shape { .. }), "{err}");
    let err = padded.new_columns(1).unwrap_err();
    assert!(matches!(err, AttnError::IndexOutOfRange { index: 1, len: 1, .. }), "{err}");
    let err = padded.unpad(&Batch::zeros(1, 3, 24).unwrap()).unwrap_err();
    assert!(matches!(err, AttnError::Shape { .. }), "{err}");
}

#[test]
fn pad_and_pack_errors() {
    let a = DMatrix::<f32>::zeros(2, 13);
    for result in [
        PaddedBatch::left_pad(&[], &[]).map(|_| ()),
        PackedBatch::pack(&[], &[]).map(|_| ()),
        PackedBatch::pack(&[DMatrix::zeros(3, 0)], &[0]).map(|_| ()),
    ] {
        assert!(matches!(result.unwrap_err(), AttnError::ZeroSize { .. }));
    }
    let err =
        PackedBatch::pack(&[a.clone(), DMatrix::zeros(2, 12)], &[0, 0]).unwrap_err();
    assert!(matches!(err, AttnError::Shape { .. }), "{err}");
    let err = PaddedBatch::left_pad(std::slice::from_ref(&a), &[0, 1]).unwrap_err();
    assert!(matches!(err, AttnError::Shape { .. }), "{err}");
    let err = PaddedBatch::left_pad(&[DMatrix::zeros(0, 13)], &[0]).unwrap_err();
    assert!(matches!(err, AttnError::ZeroSize { .. }), "{err}");
    // positions near usize::MAX
    let err = PaddedBatch::left_pad(std::slice::from_ref(&a), &[usize::MAX]).unwrap_err();
    assert!(matches!(err, AttnError::PositionOutOfRange { len: 2, .. }), "{err}");
    let err = PackedBatch::pack(std::slice::from_ref(&a), &[usize::MAX - 1]).unwrap_err();
    assert!(matches!(err, AttnError::PositionOutOfRange { .. }), "{err}");
    assert!(PackedBatch::pack(std::slice::from_ref(&a), &[usize::MAX - 2]).is_ok());
}

#[test]
fn cu_seqlens_errors() {
    let t = DMatrix::<f32>::zeros(5, 13);
    let bad = |cu: Vec<usize>, starts: Vec<usize>| {
        PackedBatch::new(t.clone(), cu, starts).unwrap_err()
    };
    assert!(matches!(bad(vec![0], vec![]), AttnError::ZeroSize { .. }));
    assert!(matches!(bad(vec![1, 5], vec![0]), AttnError::Config(_)));
    assert!(matches!(bad(vec![0, 3, 2, 5], vec![0; 3]), AttnError::Config(_)));
    assert!(matches!(bad(vec![0, 4], vec![0]), AttnError::Config(_)));
    assert!(matches!(bad(vec![0, usize::MAX], vec![0]), AttnError::Config(_)));
    assert!(matches!(bad(vec![0, 2, 5], vec![0]), AttnError::Shape { .. }));
    let err = bad(vec![0, 2, 5], vec![0, usize::MAX]);
    assert!(
        matches!(
            err,
            AttnError::PositionOutOfRange { start_pos: usize::MAX, len: 3, .. }
        ),
        "{err}"
    );
    let ok = PackedBatch::new(t.clone(), vec![0, 2, 2, 5], vec![3, 0, 8]).unwrap();
    assert_eq!((ok.lens(), ok.max_seqlen()), (vec![2, 0, 3], 3));
    assert_eq!(ok.positions(), [3, 4, 8, 9, 10]);
    let err = ok.unpack(&DMatrix::zeros(4, 24)).unwrap_err();
    assert!(matches!(err, AttnError::Shape { .. }), "{err}");
}

#[test]
fn ragged_cache_size_and_index_errors() {
    let too_large =
        |r: Result<RaggedKvCache>| matches!(r.unwrap_err(), AttnError::TooLarge { .. });
    assert!(too_large(RaggedKvCache::new(&[usize::MAX], heads())));
    assert!(too_large(RaggedKvCache::new(
        &[usize::MAX / 2 + 1, usize::MAX / 2 + 1],
        heads()
    )));
    assert!(too_large(RaggedKvCache::new(&[1 << 40, 1 << 40], heads())));
    let mut cache = RaggedKvCache::new(&[], heads()).unwrap();
    assert_eq!(cache.batch_size(), 0);
    assert!(matches!(cache.push(usize::MAX).unwrap_err(), AttnError::TooLarge { .. }));
    assert!(matches!(cache.push(0).unwrap_err(), AttnError::ZeroSize { .. }));
    assert_eq!(cache.push(3).unwrap(), 0);
    let err = cache.sequence(1).unwrap_err();
    assert!(matches!(err, AttnError::IndexOutOfRange { index: 1, len: 1, .. }), "{err}");
    assert!(matches!(cache.remove(4).unwrap_err(), AttnError::IndexOutOfRange { .. }));
    assert_eq!(cache.batch_size(), 1);
}

/// Every refused step leaves every sequence's cache as it was.
#[test]
fn forward_packed_errors_leave_the_cache_unchanged() {
    let layer = small_layer(3, KernelChoice::Auto);
    let mut cache = layer.new_ragged_cache(&[6, 4]).unwrap();
    let x = PackedBatch::pack(&[DMatrix::zeros(3, 13), DMatrix::zeros(2, 13)], &[0, 10])
        .unwrap();
    layer.forward_packed(&x, Some(&mut cache)).unwrap();
    let before = cache.clone();
    let step = |lens: [usize; 2], starts: [usize; 2]| {
        let xs = [DMatrix::zeros(lens[0], 13), DMatrix::zeros(lens[1], 13)];
        PackedBatch::pack(&xs, &starts).unwrap()
    };
    let mut run =
        |x: &PackedBatch| layer.forward_packed(x, Some(&mut cache)).unwrap_err();
    // the first sequence would fit; the second does not continue its cache
    let err = run(&step([1, 1], [3, 13]));
    assert!(
        matches!(err, AttnError::CachePosition { start_pos: 13, next_pos: 12 }),
        "{err}"
    );
    let err = run(&step([1, 3], [3, 12]));
    assert!(
        matches!(err, AttnError::CacheFull { capacity: 4, len: 2, adding: 3 }),
        "{err}"
    );
    let three = PackedBatch::pack(&vec![DMatrix::zeros(1, 13); 3], &[3, 12, 0]).unwrap();
    assert!(matches!(run(&three), AttnError::CacheMismatch(_)));
    let wide =
        PackedBatch::pack(&[DMatrix::zeros(1, 12), DMatrix::zeros(1, 12)], &[3, 12])
            .unwrap();
    assert!(matches!(run(&wide), AttnError::Shape { .. }));
    assert_eq!(cache, before);
    // positions past the RoPE tables (64 positions): refused before anything is appended
    let mut fresh = layer.new_ragged_cache(&[6, 4]).unwrap();
    let err = layer.forward_packed(&step([3, 3], [0, 62]), Some(&mut fresh)).unwrap_err();
    assert!(
        matches!(err, AttnError::PositionOutOfRange { max_positions: 64, .. }),
        "{err}"
    );
    assert_eq!(fresh.lens(), [0, 0]);
    let mut other =
        RaggedKvCache::new(&[4, 4], HeadLayout::new(4, 4, 6).unwrap()).unwrap();
    let err = layer.forward_packed(&step([1, 1], [0, 0]), Some(&mut other)).unwrap_err();
    assert!(matches!(err, AttnError::CacheMismatch(_)), "{err}");
    let err = step([1, 1], [3, 12])
        .score_entries(4, Some(&RaggedKvCache::new(&[2], heads()).unwrap()));
    assert!(matches!(err.unwrap_err(), AttnError::CacheMismatch(_)));
}

#[test]
fn forward_padded_errors_leave_the_cache_unchanged() {
    let layer = small_layer(4, KernelChoice::Auto);
    let x =
        PaddedBatch::left_pad(&[DMatrix::zeros(3, 13), DMatrix::zeros(1, 13)], &[0, 5])
            .unwrap();
    let mut cache = layer.new_cache(2, 6).unwrap();
    layer.forward_padded(&x, Some(&mut cache)).unwrap();
    let before = cache.clone();
    // the mask must cover the 3 cached columns and the new ones
    let err = layer.forward_padded(&x, Some(&mut cache)).unwrap_err();
    assert!(matches!(err, AttnError::Shape { .. }), "{err}");
    let next = x.next_tokens(Batch::zeros(2, 1, 13).unwrap()).unwrap();
    let mut three = layer.new_cache(3, 6).unwrap();
    let err = layer.forward_padded(&next, Some(&mut three)).unwrap_err();
    assert!(matches!(err, AttnError::CacheMismatch(_)), "{err}");
    let mut sliding = layer.new_cache(2, 6).unwrap().with_window(2, 0).unwrap();
    let err = layer.forward_padded(&x, Some(&mut sliding)).unwrap_err();
    assert!(matches!(err, AttnError::CacheMismatch(_)), "{err}");
    // a full cache, and positions past the RoPE tables (64)
    let four = x.next_tokens(Batch::zeros(2, 4, 13).unwrap()).unwrap();
    let err = layer.forward_padded(&four, Some(&mut cache)).unwrap_err();
    assert!(
        matches!(err, AttnError::CacheFull { capacity: 6, len: 3, adding: 4 }),
        "{err}"
    );
    let far = PaddedBatch::new(
        next.x().clone(),
        next.attention_mask().to_vec(),
        vec![vec![4], vec![64]],
    )
    .unwrap();
    let err = layer.forward_padded(&far, Some(&mut cache)).unwrap_err();
    assert!(matches!(err, AttnError::PositionOutOfRange { start_pos: 64, .. }), "{err}");
    assert_eq!(cache, before);
    // a layer with a window, and input rows of another width
    let window = ScoreOptions { window: Some(3), ..Default::default() };
    let err = small_layer(4, KernelChoice::Auto)
        .with_scores(window)
        .unwrap()
        .forward_padded(&x, None);
    assert!(matches!(err.unwrap_err(), AttnError::Unsupported(_)));
    let narrow = PaddedBatch::left_pad(&[DMatrix::zeros(2, 12)], &[0]).unwrap();
    let err = layer.forward_padded(&narrow, None).unwrap_err();
    assert!(matches!(err, AttnError::Shape { .. }), "{err}");
}

#[test]
fn mask_rope_and_attention_argument_errors() {
    let err = padding_causal_mask(&[1, 1], 3).unwrap_err();
    assert!(
        matches!(err, AttnError::MissingKeys { n_queries: 3, n_keys: 2, .. }),
        "{err}"
    );
    let err = padding_causal_mask(&[1, 7, 1], 2).unwrap_err();
    assert!(matches!(err, AttnError::Config(_)), "{err}");
    let mask = padding_causal_mask(&[0, 0, 1, 1, 0, 1], 2).unwrap();
    let seen = |i: usize| (0..6).filter(|&j| mask[(i, j)] == 0.0).collect::<Vec<_>>();
    // columns 4 and 5 are the new queries' own
    assert_eq!((seen(0), seen(1)), (vec![2, 3], vec![2, 3, 5]));

    let rope = Rope::new(6, 50, 10000.0, None).unwrap();
    let x = splitmix_matrix(3, 2, 12, 1.0);
    let mut y = x.clone();
    let err = apply_rope_at(&rope, &mut y, &[0]).unwrap_err();
    assert!(matches!(err, AttnError::Shape { .. }), "{err}");
    let err = apply_rope_at(&rope, &mut y, &[3, usize::MAX]).unwrap_err();
    assert!(
        matches!(err, AttnError::PositionOutOfRange { start_pos: usize::MAX, .. }),
        "{err}"
    );
    let err = apply_rope_at(&rope, &mut y, &[3, 50]).unwrap_err();
    assert!(
        matches!(err, AttnError::PositionOutOfRange { max_positions: 50, .. }),
        "{err}"
    );
    assert_eq!(y, x); // unchanged: no row rotated
    let mut odd = splitmix_matrix(3, 2, 13, 1.0);
    assert!(matches!(
        apply_rope_at(&rope, &mut odd, &[0, 1]).unwrap_err(),
        AttnError::NotDivisible { .. }
    ));

    let (q, k) = (DMatrix::zeros(2, 24), DMatrix::zeros(3, 12));
    let good_mask = DMatrix::zeros(2, 3);
    let err = masked_grouped_attention(
        &q,
        k.as_view(),
        k.as_view(),
        heads(),
        &DMatrix::zeros(3, 2),
    );
    assert!(matches!(err.unwrap_err(), AttnError::Shape { .. }));
    let v = DMatrix::zeros(4, 12);
    let err = masked_grouped_attention(&q, k.as_view(), v.as_view(), heads(), &good_mask);
    assert!(matches!(err.unwrap_err(), AttnError::Shape { .. }));
    let err = masked_grouped_attention(
        &DMatrix::zeros(2, 12),
        k.as_view(),
        k.as_view(),
        heads(),
        &good_mask,
    );
    assert!(matches!(err.unwrap_err(), AttnError::Shape { .. }));
    assert!(
        masked_grouped_attention(&q, k.as_view(), k.as_view(), heads(), &good_mask)
            .is_ok()
    );
}
