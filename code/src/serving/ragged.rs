//! Chapter 15: one batch of sequences of different lengths, each at its own position.
//!
//! [Chapter 6](crate::LayerKvCache)'s batch advances in lockstep: every sequence has the
//! same length and the same `start_pos`. A server's batch does not. This module runs such
//! a batch through the production layer ([`GroupedQueryAttention`]) in the two layouts
//! libraries use:
//!
//! - the **padded** form, as Hugging Face transformers runs it ([`PaddedBatch`],
//!   [`GroupedQueryAttention::forward_padded`]): every sequence padded on the left to a
//!   common length, an `attention_mask` (1 real, 0 pad) that hides the pad keys on top of
//!   the causal mask ([`padding_causal_mask`]), and one RoPE position per token
//!   (`position_ids`, [`apply_rope_at`]). Its cache is chapter 6's, pads included;
//! - the **packed** variable-length form of FlashAttention's varlen API ([`PackedBatch`],
//!   [`GroupedQueryAttention::forward_packed`]): every real token once, `cu_seqlens` for
//!   where each sequence starts, attention block-diagonal and causal, and a cache per
//!   sequence ([`RaggedKvCache`]) so that each one advances on its own. No work and no
//!   memory goes to padding.
//!
//! Both give, on the real tokens, what each sequence gives run alone
//! (`code/tests/ragged.rs`), and what transformers 5.24's `LlamaAttention` gives with a
//! left-padded batch (`scripts/gen_ragged_fixtures.py`).

use std::ops::Range;

use nalgebra::{DMatrix, DMatrixView};

use crate::fast::AttentionInputs;
use crate::fast::decode::DecodeAttention;
use crate::fast::flash::FlashAttention;
use crate::mechanisms::gqa::{GroupedQueryAttention, KernelChoice};
use crate::mechanisms::kv_cache::LayerKvCache;
use crate::mechanisms::mask::causal_mask;
use crate::mechanisms::rope::Rope;
use crate::mechanisms::sdpa::{HeadLayout, grouped_attention};
use crate::mechanisms::softmax::softmax_rows_in_place;
use crate::support::batch::Batch;
use crate::support::error::{
    AttnError, Result, check_range, checked_len, divisible, nonzero, shape_err,
    try_zero_matrix,
};
use crate::support::io::Tensor;

/// Which end of a sequence the padding goes to (Hugging Face's tokenizer
/// `padding_side`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PaddingSide {
    /// Pads first, real tokens last: every sequence's newest token sits in the last
    /// column, where generation reads it and appends after it.
    Left,
    /// Real tokens first, pads last: a short sequence's last column is a pad.
    Right,
}

// ANCHOR: padded_batch
/// A batch in Hugging Face's padded form: the new tokens of every sequence padded to one
/// length, which columns hold real tokens, and the RoPE position of every token.
#[derive(Clone, Debug, PartialEq)]
pub struct PaddedBatch {
    /// `(batch, seq, d_in)`: the new tokens, pad rows included.
    x: Batch,
    /// `(batch, n_cols)`, 1 for a real token, 0 for a pad: every column of the cache
    /// after this step, the `n_cols − seq` cached before and then the `seq` new ones.
    attention_mask: Vec<Vec<u8>>,
    /// `(batch, seq)`: the position RoPE rotates each new token by.
    position_ids: Vec<Vec<usize>>,
}
// ANCHOR_END: padded_batch

impl PaddedBatch {
    /// A padded batch from its parts, checked: one mask row and one position row per
    /// sequence, every mask row `n_cols ≥ seq` long and made of 0 and 1, `seq` positions
    /// per sequence.
    pub fn new(
        x: Batch,
        attention_mask: Vec<Vec<u8>>,
        position_ids: Vec<Vec<usize>>,
    ) -> Result<Self> {
        let [batch, seq, d_in] = x.shape();
        nonzero("d_in", d_in)?;
        let n_cols = attention_mask.first().map_or(0, Vec::len);
        if let Some(got) = odd_rows(&attention_mask, batch, n_cols)
            .or((n_cols < seq).then_some([batch, n_cols]))
        {
            let what =
                format!("PaddedBatch attention_mask (rows of n_cols >= seq = {seq})");
            return Err(shape_err(what, &[Some(batch), None], &got));
        }
        if let Some(got) = odd_rows(&position_ids, batch, seq) {
            let what = "PaddedBatch position_ids (one per new token)";
            return Err(shape_err(what, &[Some(batch), Some(seq)], &got));
        }
        check_mask_values(&attention_mask)?;
        Ok(Self { x, attention_mask, position_ids })
    }

    // ANCHOR: pad
    /// Pads sequences of different lengths (each `(len_b, d_in)`, the first token of
    /// sequence `b` at position `start_pos[b]`) to the longest with zero rows, on `side`.
    /// Real tokens get positions `start_pos[b], start_pos[b] + 1, …` and mask 1; pads get
    /// mask 0 and position 0, as transformers 5.24's `generate` gives them
    /// (`cumsum(mask) − 1`, pads filled with 0).
    pub fn pad(
        seqs: &[DMatrix<f32>],
        start_pos: &[usize],
        side: PaddingSide,
    ) -> Result<Self> {
        let (d_in, seq) = check_sequences("PaddedBatch::pad", seqs, start_pos)?;
        nonzero("longest sequence", seq)?;
        let (mut items, mut attention_mask, mut position_ids) = (vec![], vec![], vec![]);
        for (x, &start) in seqs.iter().zip(start_pos) {
            let (n, pad) = (x.nrows(), seq - x.nrows());
            let first = if side == PaddingSide::Left { pad } else { 0 }; // first real row
            let mut padded = try_zero_matrix("PaddedBatch::pad", seq, d_in)?;
            padded.rows_mut(first, n).copy_from(x);
            let mut mask = vec![0; seq];
            mask[first..first + n].fill(1);
            let mut positions = vec![0; seq];
            for (t, p) in positions[first..first + n].iter_mut().enumerate() {
                *p = start + t; // checked: start + n fits (check_sequences)
            }
            items.push(padded);
            attention_mask.push(mask);
            position_ids.push(positions);
        }
        Self::new(Batch::new(items)?, attention_mask, position_ids)
    }
    // ANCHOR_END: pad

    /// [`PaddedBatch::pad`] on the left, the side generation needs.
    pub fn left_pad(seqs: &[DMatrix<f32>], start_pos: &[usize]) -> Result<Self> {
        Self::pad(seqs, start_pos, PaddingSide::Left)
    }

    /// A padded batch from tensors as transformers takes them: `x (batch, seq, d_in)`,
    /// `attention_mask (batch, n_cols)` and `position_ids (batch, seq)`, integers stored
    /// as f32 (what [`crate::TensorFile::tensor`] reads from i64).
    pub fn from_tensors(
        x: Batch,
        attention_mask: &Tensor,
        position_ids: &Tensor,
    ) -> Result<Self> {
        let mask = integer_rows("attention_mask", attention_mask)?;
        if let Some(&v) = mask.iter().flatten().find(|&&v| v > 1) {
            return Err(AttnError::Config(format!(
                "attention_mask holds {v}: it must be 1 (real token) or 0 (pad)"
            )));
        }
        let mask = mask.into_iter().map(|row| row.into_iter().map(|v| v as u8).collect());
        Self::new(x, mask.collect(), integer_rows("position_ids", position_ids)?)
    }

    /// The batch of the next `x.seq_len()` tokens of every sequence, as generation builds
    /// it: the mask gains that many real columns, and each sequence's positions go on
    /// from its last real token of this step. Errors when a sequence has no real token in
    /// this step (its next position is unknown) or `x` has another batch size or width.
    pub fn next_tokens(&self, x: Batch) -> Result<Self> {
        let [batch, n_new, _] = x.shape();
        if batch != self.batch_size() || x.dim() != self.x.dim() {
            let want = [Some(self.batch_size()), None, Some(self.x.dim())];
            return Err(shape_err("PaddedBatch::next_tokens x", &want, &x.shape()));
        }
        let mut attention_mask = self.attention_mask.clone();
        let mut position_ids = Vec::with_capacity(batch);
        for (b, mask) in attention_mask.iter_mut().enumerate() {
            let last = self
                .new_columns(b)?
                .iter()
                .zip(&self.position_ids[b])
                .filter(|(real, _)| **real == 1)
                .map(|(_, &p)| p)
                .next_back()
                .ok_or_else(|| {
                    AttnError::Config(format!(
                        "sequence {b} has no real token in this step: its next position \
                            is unknown"
                    ))
                })?;
            let next = check_range(last, 1, usize::MAX)?; // last + 1, if it exists
            check_range(next, n_new, usize::MAX)?;
            mask.extend(std::iter::repeat_n(1, n_new));
            position_ids.push((next..next + n_new).collect());
        }
        Self::new(x, attention_mask, position_ids)
    }

    /// The new tokens, pad rows included: `(batch, seq, d_in)`.
    pub fn x(&self) -> &Batch {
        &self.x
    }

    /// `(batch, n_cols)`: 1 real, 0 pad, for every cached and new column.
    pub fn attention_mask(&self) -> &[Vec<u8>] {
        &self.attention_mask
    }

    /// `(batch, seq)`: the RoPE position of every new token.
    pub fn position_ids(&self) -> &[Vec<usize>] {
        &self.position_ids
    }

    /// Sequences.
    pub fn batch_size(&self) -> usize {
        self.x.batch_size()
    }

    /// New tokens per sequence, pads included.
    pub fn seq_len(&self) -> usize {
        self.x.seq_len()
    }

    /// Columns the mask covers: cached and new.
    pub fn n_cols(&self) -> usize {
        self.attention_mask[0].len()
    }

    /// The mask of sequence `b`'s new tokens: the last `seq` entries of its row.
    pub fn new_columns(&self, b: usize) -> Result<&[u8]> {
        let row = self.attention_mask.get(b).ok_or(AttnError::IndexOutOfRange {
            what: "PaddedBatch sequence",
            index: b,
            len: self.batch_size(),
        })?;
        Ok(&row[self.n_cols() - self.seq_len()..]) // n_cols >= seq: checked by `new`
    }

    /// The same new tokens in the packed form, without their pads (FlashAttention's
    /// `unpad_input`): each sequence's real rows in order, starting at the position of
    /// its first one. Errors when a sequence's real positions do not count up by one
    /// (the packed form keeps one start per sequence).
    pub fn to_packed(&self) -> Result<PackedBatch> {
        let (mut seqs, mut start_pos) = (vec![], vec![]);
        for (b, x) in self.x.items().iter().enumerate() {
            let mask = self.new_columns(b)?;
            let rows: Vec<usize> =
                (0..self.seq_len()).filter(|&t| mask[t] == 1).collect();
            let positions: Vec<usize> =
                rows.iter().map(|&t| self.position_ids[b][t]).collect();
            if positions.windows(2).any(|w| w[0].checked_add(1) != Some(w[1])) {
                return Err(AttnError::Config(format!(
                    "sequence {b}'s real tokens are not at consecutive positions: \
                        {positions:?}"
                )));
            }
            seqs.push(x.select_rows(&rows));
            start_pos.push(positions.first().copied().unwrap_or(0));
        }
        PackedBatch::pack(&seqs, &start_pos)
    }

    /// The real rows of `out (batch, seq, d)` (an output of this batch), one matrix per
    /// sequence: what each sequence would give unpadded.
    pub fn unpad(&self, out: &Batch) -> Result<Vec<DMatrix<f32>>> {
        if out.batch_size() != self.batch_size() || out.seq_len() != self.seq_len() {
            let want = [Some(self.batch_size()), Some(self.seq_len()), None];
            return Err(shape_err("PaddedBatch::unpad output", &want, &out.shape()));
        }
        let mut real = Vec::with_capacity(self.batch_size());
        for (b, m) in out.items().iter().enumerate() {
            let mask = self.new_columns(b)?;
            let rows: Vec<usize> =
                (0..self.seq_len()).filter(|&t| mask[t] == 1).collect();
            real.push(m.select_rows(&rows));
        }
        Ok(real)
    }

    /// Score entries the padded form computes for `n_heads` query heads: every new row
    /// against every column, pads included, `batch × n_heads × seq × n_cols` (saturating
    /// at `u128::MAX`).
    pub fn score_entries(&self, n_heads: usize) -> u128 {
        let [batch, seq, _] = self.x.shape();
        let sizes = [batch, n_heads, seq, self.n_cols()];
        sizes.iter().fold(1u128, |acc, &n| acc.saturating_mul(n as u128))
    }
}

// ANCHOR: packed_batch
/// A batch in the packed variable-length form of FlashAttention's varlen API: every
/// sequence's new tokens one after the other, no padding, and the cumulative lengths
/// `cu_seqlens` that say where each sequence starts.
#[derive(Clone, Debug, PartialEq)]
pub struct PackedBatch {
    /// `(total, d_in)`: sequence `b` is rows `cu_seqlens[b] .. cu_seqlens[b + 1]`.
    tokens: DMatrix<f32>,
    /// `batch + 1` offsets: `0 = cu_seqlens[0] ≤ … ≤ cu_seqlens[batch] = total`.
    cu_seqlens: Vec<usize>,
    /// Per sequence: the position of its first token here (with a cache, its next one).
    start_pos: Vec<usize>,
}
// ANCHOR_END: packed_batch

impl PackedBatch {
    /// A packed batch from its parts, checked: `cu_seqlens` starts at 0, never
    /// decreases and ends at `tokens.nrows()`; one `start_pos` per sequence, and every
    /// position `start_pos[b] + t` fits in a `usize`. A sequence of length 0 sits the
    /// step out.
    pub fn new(
        tokens: DMatrix<f32>,
        cu_seqlens: Vec<usize>,
        start_pos: Vec<usize>,
    ) -> Result<Self> {
        let total = tokens.nrows();
        if cu_seqlens.len() < 2 {
            return Err(AttnError::ZeroSize {
                what: "batch (cu_seqlens needs batch + 1 entries)",
            });
        }
        let ordered = cu_seqlens.windows(2).all(|w| w[0] <= w[1]);
        if cu_seqlens[0] != 0 || !ordered || cu_seqlens[cu_seqlens.len() - 1] != total {
            let shown: Vec<usize> = cu_seqlens.iter().copied().take(8).collect();
            let more = if cu_seqlens.len() > 8 { ", …" } else { "" };
            return Err(AttnError::Config(format!(
                "cu_seqlens must start at 0, never decrease and end at the {total} \
                    packed tokens, got {shown:?}{more}"
            )));
        }
        let batch = cu_seqlens.len() - 1;
        if start_pos.len() != batch {
            let what = "PackedBatch start_pos (one per sequence of cu_seqlens)";
            return Err(shape_err(what, &[Some(batch)], &[start_pos.len()]));
        }
        for (w, &start) in cu_seqlens.windows(2).zip(&start_pos) {
            check_range(start, w[1] - w[0], usize::MAX)?; // every token has a position
        }
        Ok(Self { tokens, cu_seqlens, start_pos })
    }

    /// Packs sequences of different lengths (each `(len_b, d_in)`, the first token of
    /// sequence `b` at position `start_pos[b]`) one after the other: `cu_seqlens` are the
    /// running sums of the lengths, `[0, len_0, len_0 + len_1, …]`.
    pub fn pack(seqs: &[DMatrix<f32>], start_pos: &[usize]) -> Result<Self> {
        let (d_in, _) = check_sequences("PackedBatch::pack", seqs, start_pos)?;
        let mut cu_seqlens = vec![0];
        for x in seqs {
            let total = cu_seqlens[cu_seqlens.len() - 1] + x.nrows(); // in memory: fits
            cu_seqlens.push(total);
        }
        let total = cu_seqlens[seqs.len()];
        checked_len("PackedBatch::pack", &[total, d_in])?;
        let mut tokens = try_zero_matrix("PackedBatch::pack", total, d_in)?;
        for (x, first) in seqs.iter().zip(&cu_seqlens) {
            tokens.rows_mut(*first, x.nrows()).copy_from(x);
        }
        Self::new(tokens, cu_seqlens, start_pos.to_vec())
    }

    /// The packed tokens `(total, d_in)`.
    pub fn tokens(&self) -> &DMatrix<f32> {
        &self.tokens
    }

    /// The `batch + 1` cumulative lengths.
    pub fn cu_seqlens(&self) -> &[usize] {
        &self.cu_seqlens
    }

    /// The position of each sequence's first token here.
    pub fn start_pos(&self) -> &[usize] {
        &self.start_pos
    }

    /// Sequences.
    pub fn batch_size(&self) -> usize {
        self.start_pos.len()
    }

    /// Tokens of all sequences together.
    pub fn total_tokens(&self) -> usize {
        self.tokens.nrows()
    }

    /// The rows of each sequence, in order: `cu_seqlens[b] .. cu_seqlens[b + 1]`.
    pub fn ranges(&self) -> impl Iterator<Item = Range<usize>> + '_ {
        self.cu_seqlens.windows(2).map(|w| w[0]..w[1])
    }

    /// The length of each sequence.
    pub fn lens(&self) -> Vec<usize> {
        self.ranges().map(|r| r.len()).collect()
    }

    /// The longest sequence (FlashAttention's `max_seqlen`).
    pub fn max_seqlen(&self) -> usize {
        self.ranges().map(|r| r.len()).max().unwrap_or(0)
    }

    /// The position of every packed token: `start_pos[b] + t` for token `t` of sequence
    /// `b`.
    pub fn positions(&self) -> Vec<usize> {
        // checked by `new`: start_pos[b] + len_b fits
        self.ranges().zip(&self.start_pos).flat_map(|(r, &s)| s..s + r.len()).collect()
    }

    /// Splits an output `(total, d)` of this batch back into one matrix per sequence.
    pub fn unpack(&self, out: &DMatrix<f32>) -> Result<Vec<DMatrix<f32>>> {
        if out.nrows() != self.total_tokens() {
            let what = "PackedBatch::unpack output (one row per packed token)";
            return Err(shape_err(
                what,
                &[Some(self.total_tokens()), None],
                &[out.nrows(), out.ncols()],
            ));
        }
        Ok(self.ranges().map(|r| out.rows(r.start, r.len()).into_owned()).collect())
    }

    /// Score entries the packed form computes for `n_heads` query heads: each sequence's
    /// new rows against its own keys only, `n_heads × Σ len_b × (cached_b + len_b)`, with
    /// `cached_b` the rows `cache` holds for sequence `b` (none without a cache); call it
    /// before the step appends. Saturates at `u128::MAX`.
    pub fn score_entries(
        &self,
        n_heads: usize,
        cache: Option<&RaggedKvCache>,
    ) -> Result<u128> {
        if let Some(c) = cache {
            c.check_batch_size(self.batch_size())?;
        }
        let cached = |b: usize| cache.map_or(0, |c| c.seqs[b].len()) as u128;
        let per_head = self.ranges().enumerate().fold(0u128, |sum, (b, r)| {
            let n = r.len() as u128;
            sum.saturating_add(n.saturating_mul(cached(b) + n))
        });
        Ok(per_head.saturating_mul(n_heads as u128))
    }
}

// ANCHOR: ragged_kv_cache
/// One layer's cache for sequences that advance on their own: each sequence has its own
/// chapter-6 cache (a [`LayerKvCache`] of batch 1), so its own length, first position and
/// capacity. Sequences can join ([`RaggedKvCache::push`]) and leave
/// ([`RaggedKvCache::remove`]) between steps.
#[derive(Clone, Debug, PartialEq)]
pub struct RaggedKvCache {
    /// One cache per sequence, in batch order.
    seqs: Vec<LayerKvCache>,
    /// The heads every cache is shaped for (rows of `n_kv_heads · head_dim`).
    heads: HeadLayout,
}
// ANCHOR_END: ragged_kv_cache

impl RaggedKvCache {
    /// Empty caches for `capacities.len()` sequences (none is fine: sequences can join
    /// later), sequence `b` holding up to `capacities[b]` positions. Their joint size is
    /// checked before anything is allocated ([`AttnError::TooLarge`]).
    pub fn new(capacities: &[usize], heads: HeadLayout) -> Result<Self> {
        let total = capacities.iter().try_fold(0usize, |acc, &c| acc.checked_add(c));
        let what = "RaggedKvCache (2 × Σ capacities, n_kv_heads × head_dim)";
        match total {
            Some(total) => checked_len(what, &[2, total, heads.kv_dim()])?,
            None => {
                let rows: u128 = capacities.iter().map(|&c| c as u128).sum();
                let bytes = rows.saturating_mul(8 * heads.kv_dim() as u128);
                return Err(AttnError::TooLarge {
                    what: what.into(),
                    bytes,
                    detail: "the capacities add up past usize::MAX",
                });
            }
        };
        let mut cache = Self { seqs: Vec::with_capacity(capacities.len()), heads };
        for &capacity in capacities {
            cache.push(capacity)?;
        }
        Ok(cache)
    }

    /// Adds an empty sequence of up to `capacity` positions at the end of the batch and
    /// returns its index. Its first append fixes its first position.
    pub fn push(&mut self, capacity: usize) -> Result<usize> {
        let (n_kv_heads, head_dim) = (self.heads.n_kv_heads(), self.heads.head_dim());
        self.seqs.push(LayerKvCache::new(1, capacity, n_kv_heads, head_dim)?);
        Ok(self.seqs.len() - 1)
    }

    /// Takes sequence `b` out of the batch (it finished): later sequences move down one
    /// index, as they would in the next step's batch.
    pub fn remove(&mut self, b: usize) -> Result<LayerKvCache> {
        self.check_index(b)?;
        Ok(self.seqs.remove(b))
    }

    /// Sequences.
    pub fn batch_size(&self) -> usize {
        self.seqs.len()
    }

    /// The heads the caches are shaped for.
    pub fn heads(&self) -> HeadLayout {
        self.heads
    }

    /// Sequence `b`'s cache: its keys and values are `keys(0)` and `values(0)`.
    pub fn sequence(&self, b: usize) -> Result<&LayerKvCache> {
        self.check_index(b)?;
        Ok(&self.seqs[b])
    }

    /// The rows each sequence holds.
    pub fn lens(&self) -> Vec<usize> {
        self.seqs.iter().map(LayerKvCache::len).collect()
    }

    /// The position each sequence's next token must have (0 for a sequence that holds
    /// nothing yet, which accepts any first position).
    pub fn next_positions(&self) -> Vec<usize> {
        self.seqs.iter().map(LayerKvCache::next_pos).collect()
    }

    fn check_index(&self, b: usize) -> Result<()> {
        if b >= self.seqs.len() {
            let len = self.seqs.len();
            return Err(AttnError::IndexOutOfRange {
                what: "RaggedKvCache sequence",
                index: b,
                len,
            });
        }
        Ok(())
    }

    fn check_batch_size(&self, batch: usize) -> Result<()> {
        if self.seqs.len() != batch {
            return Err(AttnError::CacheMismatch(format!(
                "the ragged cache holds {} sequences, the batch has {batch}",
                self.seqs.len()
            )));
        }
        Ok(())
    }

    /// Checks that every sequence of `x` can be appended (its positions continue its
    /// cache, its rows fit), so that a step either appends to every cache or to none.
    fn check_step(&self, x: &PackedBatch) -> Result<()> {
        self.check_batch_size(x.batch_size())?;
        for ((cache, n), &start_pos) in self.seqs.iter().zip(x.lens()).zip(x.start_pos())
        {
            if n == 0 {
                continue;
            }
            if !cache.is_empty() && start_pos != cache.next_pos() {
                let next_pos = cache.next_pos();
                return Err(AttnError::CachePosition { start_pos, next_pos });
            }
            let (capacity, len) = (cache.capacity(), cache.len());
            if n > capacity - len {
                return Err(AttnError::CacheFull { capacity, len, adding: n });
            }
        }
        Ok(())
    }

    /// Appends `keys` and `values` `(n, n_kv_heads · head_dim)` of sequence `b` at
    /// positions `start_pos ..` and returns its cache.
    fn append(
        &mut self,
        b: usize,
        start_pos: usize,
        keys: DMatrixView<f32>,
        values: DMatrixView<f32>,
    ) -> Result<&LayerKvCache> {
        self.check_index(b)?;
        let cache = &mut self.seqs[b];
        cache.append(start_pos, &[keys.into_owned()], &[values.into_owned()])?;
        Ok(cache)
    }
}

/// Checks a list of sequences for [`PaddedBatch::pad`] and [`PackedBatch::pack`]: at
/// least one, all as wide as the first, one start position each, every position in
/// range; returns the width and the longest length.
fn check_sequences(
    who: &str,
    seqs: &[DMatrix<f32>],
    start_pos: &[usize],
) -> Result<(usize, usize)> {
    nonzero("batch", seqs.len())?;
    if start_pos.len() != seqs.len() {
        let what = format!("{who} start_pos (one per sequence)");
        return Err(shape_err(what, &[Some(seqs.len())], &[start_pos.len()]));
    }
    let d_in = seqs[0].ncols();
    nonzero("d_in", d_in)?; // so every sequence's rows are in memory
    for (b, (x, &start)) in seqs.iter().zip(start_pos).enumerate() {
        if x.ncols() != d_in {
            let what = format!("{who} sequence {b}");
            return Err(shape_err(what, &[None, Some(d_in)], &[x.nrows(), x.ncols()]));
        }
        check_range(start, x.nrows(), usize::MAX)?;
    }
    let longest = seqs.iter().map(DMatrix::nrows).max().unwrap_or(0);
    checked_len(format!("{who}: the padded batch"), &[seqs.len(), longest, d_in])?;
    Ok((d_in, longest))
}

/// `[rows, width]` of the first row that is not `want` long (or of the first row), when
/// there are not `batch` rows of `want` entries.
fn odd_rows<T>(rows: &[Vec<T>], batch: usize, want: usize) -> Option<[usize; 2]> {
    let odd = rows.iter().map(Vec::len).find(|&w| w != want);
    (rows.len() != batch || odd.is_some()).then(|| [rows.len(), odd.unwrap_or(want)])
}

/// Checks that every mask entry is 0 (pad) or 1 (real).
fn check_mask_values(attention_mask: &[Vec<u8>]) -> Result<()> {
    for (b, row) in attention_mask.iter().enumerate() {
        check_mask_row(row, &format!("attention_mask[{b}]"))?;
    }
    Ok(())
}

/// Checks that every entry of one mask row (`what`) is 0 (pad) or 1 (real).
fn check_mask_row(row: &[u8], what: &str) -> Result<()> {
    match row.iter().position(|&m| m > 1) {
        Some(j) => Err(AttnError::Config(format!(
            "{what}[{j}] is {}: it must be 1 (real token) or 0 (pad)",
            row[j]
        ))),
        None => Ok(()),
    }
}

/// A 2-D tensor of non-negative integers stored as f32, as rows of `usize`.
fn integer_rows(name: &str, t: &Tensor) -> Result<Vec<Vec<usize>>> {
    let m = t.to_matrix()?;
    // f32 holds every integer up to 2^24 exactly; beyond, the i64 was already rounded
    let exact =
        |v: f32| v.is_finite() && v >= 0.0 && v.fract() == 0.0 && v <= 16_777_216.0;
    if let Some(v) = m.iter().find(|&&v| !exact(v)) {
        return Err(AttnError::Config(format!(
            "{name} holds {v}: expected integers from 0 to 2^24 (exact in f32)"
        )));
    }
    Ok(m.row_iter().map(|r| r.iter().map(|&v| v as usize).collect()).collect())
}

// ANCHOR: padding_causal_mask
/// The additive mask of one sequence of a padded batch, `(n_queries, n_cols)`: new query
/// `i` sits in column `n_cols − n_queries + i` and sees column `j` when `j` is not after
/// it (chapter 2's causal mask) **and** holds a real token (`attention_mask[j] == 1`);
/// `0` where it sees, `−∞` where it does not. transformers builds the same pattern
/// (`create_causal_mask`: `causal_mask_function` and `padding_mask_function`), filled
/// with `finfo(f32).min` instead of `−∞`.
pub fn padding_causal_mask(
    attention_mask: &[u8],
    n_queries: usize,
) -> Result<DMatrix<f32>> {
    check_mask_row(attention_mask, "attention_mask")?;
    let n_cols = attention_mask.len();
    // the new queries are the last columns (too few columns: causal_mask refuses)
    let query_offset = n_cols.saturating_sub(n_queries);
    let mut mask = causal_mask(n_queries, n_cols, query_offset)?;
    for (j, _) in attention_mask.iter().enumerate().filter(|(_, real)| **real == 0) {
        mask.column_mut(j).fill(f32::NEG_INFINITY); // a pad key: hidden from every query
    }
    Ok(mask)
}
// ANCHOR_END: padding_causal_mask

// ANCHOR: apply_rope_at
/// Rotates row `t` of `x (rows, n_heads · head_dim)` by RoPE at position `positions[t]`:
/// chapter 5's [`Rope::apply`] with one position per row instead of one per matrix. Each
/// run of consecutive positions (a sequence) is rotated by one call of `apply`, with the
/// same tables and arithmetic. On error, `x` is unchanged.
pub fn apply_rope_at(
    rope: &Rope,
    x: &mut DMatrix<f32>,
    positions: &[usize],
) -> Result<()> {
    if positions.len() != x.nrows() {
        let what = "apply_rope_at positions (one per row)";
        return Err(shape_err(what, &[Some(x.nrows())], &[positions.len()]));
    }
    divisible("columns of the RoPE input", x.ncols(), "head_dim", rope.head_dim())?;
    for &p in positions {
        check_range(p, 1, rope.max_positions())?; // every row rotates, or none
    }
    let mut first = 0;
    while first < positions.len() {
        let mut end = first + 1; // rows first..end hold positions p, p + 1, p + 2, …
        while end < positions.len()
            && positions[end - 1].checked_add(1) == Some(positions[end])
        {
            end += 1;
        }
        let mut run = x.rows(first, end - first).into_owned();
        rope.apply(&mut run, positions[first])?;
        x.rows_mut(first, end - first).copy_from(&run);
        first = end;
    }
    Ok(())
}
// ANCHOR_END: apply_rope_at

// ANCHOR: masked_grouped_attention
/// Chapter 4's grouped attention with an additive `mask (n_queries, n_keys)` of 0 and
/// `−∞` in place of the causal offset: `q (n_queries, n_heads·head_dim)`, `k`, `v
/// (n_keys, n_kv_heads·head_dim)` -> `(n_queries, n_heads·head_dim)`. A row the mask
/// hides entirely gets weights 0 from chapter 2's softmax, so a context of 0.
pub fn masked_grouped_attention(
    q: &DMatrix<f32>,
    k: DMatrixView<f32>,
    v: DMatrixView<f32>,
    heads: HeadLayout,
    mask: &DMatrix<f32>,
) -> Result<DMatrix<f32>> {
    check_masked_args(q, &k, &v, heads, mask)?;
    let d = heads.head_dim();
    let mut context = try_zero_matrix("masked attention context", q.nrows(), q.ncols())?;
    let mut scores = try_zero_matrix("masked attention scores", q.nrows(), k.nrows())?;
    for h in 0..heads.n_heads() {
        let kv = heads.kv_head(h); // repeat_interleave order, as chapter 4
        let (q_h, k_h) = (q.columns(h * d, d), k.columns(kv * d, d));
        scores.gemm(1.0, &q_h, &k_h.transpose(), 0.0); // (n_queries, n_keys)
        scores /= (d as f32).sqrt();
        scores += mask; // −∞ where the query may not look: padding or future
        softmax_rows_in_place(&mut scores);
        context.columns_mut(h * d, d).copy_from(&(&scores * v.columns(kv * d, d)));
    }
    Ok(context)
}
// ANCHOR_END: masked_grouped_attention

/// The shapes [`masked_grouped_attention`] needs: queries and keys of the layout's
/// widths, one value row per key, one mask entry per query and key.
fn check_masked_args(
    q: &DMatrix<f32>,
    k: &DMatrixView<f32>,
    v: &DMatrixView<f32>,
    heads: HeadLayout,
    mask: &DMatrix<f32>,
) -> Result<()> {
    let what = |name: &str| format!("masked_grouped_attention {name}");
    if q.ncols() != heads.q_dim() {
        return Err(shape_err(
            what("queries"),
            &[None, Some(heads.q_dim())],
            &[q.nrows(), q.ncols()],
        ));
    }
    if k.ncols() != heads.kv_dim() || v.shape() != k.shape() {
        let (bad, name) =
            if k.ncols() != heads.kv_dim() { (k, "keys") } else { (v, "values") };
        let want = [Some(k.nrows()), Some(heads.kv_dim())];
        return Err(shape_err(what(name), &want, &[bad.nrows(), bad.ncols()]));
    }
    if mask.shape() != (q.nrows(), k.nrows()) {
        let want = [Some(q.nrows()), Some(k.nrows())];
        return Err(shape_err(what("mask"), &want, &[mask.nrows(), mask.ncols()]));
    }
    Ok(())
}

impl GroupedQueryAttention {
    // ANCHOR: forward_padded
    /// The layer on a padded batch, as transformers runs one: `(batch, seq, d_in) ->
    /// (batch, seq, d_out)`. Row `t` of sequence `b` is rotated at `position_ids[b][t]`
    /// and sees the columns [`padding_causal_mask`] lets it see. With a cache (chapter
    /// 6's, advancing in lockstep like transformers' `DynamicCache`) the new rows are
    /// appended first, pads included, and `attention_mask` covers the cached columns too:
    /// the cache counts columns, RoPE counts `position_ids`.
    ///
    /// A pad's output row is 0: nobody reads it. (transformers' eager attention gives it
    /// `o_proj` of the mean of the values, its SDPA gives 0.)
    pub fn forward_padded(
        &self,
        x: &PaddedBatch,
        mut cache: Option<&mut LayerKvCache>,
    ) -> Result<Batch> {
        self.check_padded(x, cache.as_deref())?; // widths, columns, cache shape
        let (mut queries, mut keys, mut values) = (vec![], vec![], vec![]);
        for (item, positions) in x.x().items().iter().zip(x.position_ids()) {
            let (q, k, v) = self.project_at(item, positions)?; // pads too: wasted work
            queries.push(q);
            keys.push(k);
            values.push(v);
        }
        if let Some(c) = cache.as_deref_mut() {
            c.append(c.next_pos(), &keys, &values)?; // one column per row, pads included
        }
        let mut outputs = Vec::with_capacity(x.batch_size());
        for (b, q) in queries.iter().enumerate() {
            let (k, v) = match cache.as_deref() {
                Some(c) => (c.keys(b)?, c.values(b)?),
                None => (keys[b].as_view(), values[b].as_view()),
            };
            let mask = padding_causal_mask(&x.attention_mask()[b], x.seq_len())?;
            let context = masked_grouped_attention(q, k, v, self.heads(), &mask)?;
            let mut out = self.weights().out_proj.forward(&context)?;
            for (t, _) in x.new_columns(b)?.iter().enumerate().filter(|(_, r)| **r == 0) {
                out.row_mut(t).fill(0.0); // a pad's row
            }
            outputs.push(out);
        }
        Batch::new(outputs)
    }
    // ANCHOR_END: forward_padded

    // ANCHOR: forward_packed
    /// The layer on a packed batch: `(total, d_in) -> (total, d_out)`, each sequence's
    /// tokens attending causally to its own tokens only (the block-diagonal mask, never
    /// built). Sequence `b`'s tokens sit at positions `start_pos[b] ..`; with a cache,
    /// its own cache in `cache` gets them first and its queries see its cached rows too.
    /// The projections run once over all `total` rows and no row is padding.
    pub fn forward_packed(
        &self,
        x: &PackedBatch,
        mut cache: Option<&mut RaggedKvCache>,
    ) -> Result<DMatrix<f32>> {
        self.check_packed(x, cache.as_deref())?; // width, and every append fits
        // (total, d_in) -> q (total, n_heads·head_dim), k, v (total, n_kv_heads·head_dim)
        let (q, k, v) = self.project_at(x.tokens(), &x.positions())?;
        let mut context =
            try_zero_matrix("forward_packed context", q.nrows(), q.ncols())?;
        for (b, rows) in x.ranges().enumerate().filter(|(_, r)| !r.is_empty()) {
            let (first, n) = (rows.start, rows.len());
            let (q_b, k_b, v_b) =
                (q.rows(first, n).into_owned(), k.rows(first, n), v.rows(first, n));
            let out = match cache.as_deref_mut() {
                None => self.attend_one(&q_b, k_b, v_b, 0)?,
                Some(c) => {
                    let seq = c.append(b, x.start_pos()[b], k_b, v_b)?;
                    // its cached rows before its first query
                    self.attend_one(&q_b, seq.keys(0)?, seq.values(0)?, seq.len() - n)?
                }
            };
            context.rows_mut(first, n).copy_from(&out);
        }
        // (total, n_heads·head_dim) -> (total, d_out): one projection for every token
        self.weights().out_proj.forward(&context)
    }
    // ANCHOR_END: forward_packed

    /// An empty [`RaggedKvCache`] shaped for this layer, sequence `b` holding up to
    /// `capacities[b]` positions.
    pub fn new_ragged_cache(&self, capacities: &[usize]) -> Result<RaggedKvCache> {
        RaggedKvCache::new(capacities, self.heads())
    }

    /// [`project`](Self::project) with one RoPE position per row: queries `(rows,
    /// n_heads·head_dim)`, keys and values `(rows, n_kv_heads·head_dim)`.
    fn project_at(
        &self,
        x: &DMatrix<f32>,
        positions: &[usize],
    ) -> Result<(DMatrix<f32>, DMatrix<f32>, DMatrix<f32>)> {
        let w = self.weights();
        let mut queries = w.w_query.forward(x)?;
        let mut keys = w.w_key.forward(x)?;
        let values = w.w_value.forward(x)?;
        if let Some(norm) = self.qk_norm() {
            norm.apply(&mut queries, &mut keys, self.heads())?; // before RoPE (ch. 10)
        }
        if let Some(rope) = self.rope() {
            apply_rope_at(rope, &mut queries, positions)?;
            apply_rope_at(rope, &mut keys, positions)?;
        }
        Ok((queries, keys, values))
    }

    /// Causal attention of one sequence's queries over its keys with the kernel the
    /// layer's [`KernelChoice`] picks (one thread), as [`GroupedQueryAttention::forward`]
    /// does; no output projection.
    fn attend_one(
        &self,
        q: &DMatrix<f32>,
        k: DMatrixView<f32>,
        v: DMatrixView<f32>,
        query_offset: usize,
    ) -> Result<DMatrix<f32>> {
        let x = AttentionInputs { q, k, v, heads: self.heads(), query_offset };
        match self.kernel().resolve(q.nrows(), k.nrows()) {
            KernelChoice::Decode => DecodeAttention::new().forward(x),
            KernelChoice::Flash => FlashAttention::new().forward(x),
            _ => grouped_attention(q, k, v, self.heads(), query_offset),
        }
    }

    /// What both ragged forms need from the layer: Llama 3's plain scores (a window,
    /// soft-cap or sinks would need their own masks here) and input rows of `d_in`.
    fn check_ragged(&self, width: usize, shape: &[usize]) -> Result<()> {
        if !self.scores().is_plain() {
            return Err(AttnError::Unsupported(
                "ragged batches with a sliding window, soft-cap, scale or sinks: the \
                    padded and packed forms run Llama 3's causal attention"
                    .into(),
            ));
        }
        if width != self.d_in() {
            let mut want: Vec<Option<usize>> = vec![None; shape.len()];
            want[shape.len() - 1] = Some(self.d_in());
            return Err(shape_err("ragged input", &want, shape));
        }
        Ok(())
    }

    /// [`forward_padded`](Self::forward_padded)'s checks: the layer and widths, a mask
    /// covering the cached and the new columns, a plain cache shaped for this batch.
    fn check_padded(&self, x: &PaddedBatch, cache: Option<&LayerKvCache>) -> Result<()> {
        self.check_ragged(x.x().dim(), &x.x().shape())?;
        let n_past = cache.map_or(0, LayerKvCache::len);
        if let Some(c) = cache
            && (c.batch_size() != x.batch_size()
                || c.kv_dim() != self.heads().kv_dim()
                || c.window().is_some())
        {
            return Err(AttnError::CacheMismatch(format!(
                "the cache holds {} sequences of width {}{}, the padded batch needs {} \
                    of width {} and no window",
                c.batch_size(),
                c.kv_dim(),
                if c.window().is_some() { " with a sliding window" } else { "" },
                x.batch_size(),
                self.heads().kv_dim()
            )));
        }
        if n_past.checked_add(x.seq_len()) != Some(x.n_cols()) {
            let what = format!(
                "PaddedBatch attention_mask ({n_past} cached columns and {} new ones)",
                x.seq_len()
            );
            let want = n_past.checked_add(x.seq_len());
            return Err(shape_err(
                what,
                &[Some(x.batch_size()), want],
                &[x.batch_size(), x.n_cols()],
            ));
        }
        Ok(())
    }

    /// [`forward_packed`](Self::forward_packed)'s checks: the layer and width, and a
    /// cache shaped for this layer into which every sequence's tokens fit.
    fn check_packed(&self, x: &PackedBatch, cache: Option<&RaggedKvCache>) -> Result<()> {
        let t = x.tokens();
        self.check_ragged(t.ncols(), &[t.nrows(), t.ncols()])?;
        if let Some(c) = cache {
            if c.heads().kv_dim() != self.heads().kv_dim() {
                return Err(AttnError::CacheMismatch(format!(
                    "the ragged cache holds rows of width {}, the layer needs {}",
                    c.heads().kv_dim(),
                    self.heads().kv_dim()
                )));
            }
            c.check_step(x)?;
        }
        Ok(())
    }
}
