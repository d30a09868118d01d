//! Chapter 14: a paged KV cache with prefix sharing, as vLLM's PagedAttention (Kwon et
//! al. 2023, "Efficient Memory Management for Large Language Model Serving with
//! PagedAttention", arXiv 2309.06180).
//!
//! Chapter 6's cache reserves `capacity` rows for every sequence up front; a server that
//! cannot know how long an answer will be must reserve the longest, and most of it stays
//! empty. Here one pool of fixed-size blocks serves every sequence of a layer: a sequence
//! owns a *block table* (the blocks of its positions, in order), takes a block only when
//! its last one is full, and gives its blocks back when it ends. Sequences that start
//! with the same tokens (a system prompt, the samples of one prompt) share those blocks
//! by reference count, and a shared block is copied before anyone writes into it
//! (copy-on-write).
//!
//! Attention gathers a sequence's rows in position order and calls chapter 4's
//! [`grouped_attention`] on them: the same function on the same numbers as with chapter
//! 6's contiguous cache, so the output is the same bit for bit. The gather copies the
//! sequence's rows at every step; reading the blocks in place is the next step.
//!
//! ```
//! use attention::serving::paged::PagedKvCache;
//! use attention::{HeadLayout, LayerKvCache, grouped_attention, splitmix_matrix};
//! let heads = HeadLayout::new(4, 2, 8)?; // 4 query heads over 2 KV heads of 8
//! let mut pool = PagedKvCache::for_heads(8, 16, heads)?; // 8 blocks of 16 positions
//! let (k, v) = (splitmix_matrix(1, 21, 16, 1.0), splitmix_matrix(2, 21, 16, 1.0));
//! let prompt = pool.add_sequence();
//! pool.append(prompt, 0, &k, &v)?; // 21 positions: blocks 0 and 1
//! let answer = pool.fork(prompt)?; // shares both blocks
//! let (k1, v1) = (splitmix_matrix(3, 1, 16, 1.0), splitmix_matrix(4, 1, 16, 1.0));
//! pool.append(answer, 21, &k1, &v1)?; // block 1 is shared and has room: copied
//! assert_eq!(pool.block_table(answer)?, &[0, 2]);
//! // the same rows in chapter 6's contiguous cache, the same attention: the same bits
//! let mut contiguous = LayerKvCache::for_heads(1, 32, heads)?;
//! contiguous.append(0, &[k], &[v])?;
//! contiguous.append(21, &[k1], &[v1])?;
//! let q = splitmix_matrix(5, 1, 32, 1.0); // the newest token's query
//! let want = grouped_attention(&q, contiguous.keys(0)?, contiguous.values(0)?, heads, 21)?;
//! assert_eq!(pool.attend(answer, &q, heads)?, want);
//! # Ok::<(), attention::AttnError>(())
//! ```

use std::fmt;

use nalgebra::{DMatrix, DMatrixView};

use crate::mechanisms::gqa::GroupedQueryAttention;
use crate::mechanisms::sdpa::{HeadLayout, grouped_attention};
use crate::support::aligned::AlignedBuf;
use crate::support::error::{
    AttnError, Result, check_range, checked_len, nonzero, shape_err, try_zero_matrix,
};
use crate::support::init::splitmix64;
use crate::variants::grouped_attention_with;

/// Token positions per block unless chosen otherwise: vLLM's default.
pub const DEFAULT_BLOCK_SIZE: usize = 16;

/// A sequence of a [`PagedKvCache`], as [`PagedKvCache::add_sequence`] and
/// [`PagedKvCache::fork`] issue it: the index of the sequence among all those the cache
/// has issued. Ids are never reused, so a freed id stays an error.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SeqId(pub usize);

impl fmt::Display for SeqId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

// ANCHOR: paged_kv_cache
/// One layer's paged KV cache: a pool of blocks, and a block table per sequence.
#[derive(Clone, Debug, PartialEq)]
pub struct PagedKvCache {
    pool: BlockPool,
    /// Per sequence id, in the order issued; `None` once freed.
    sequences: Vec<Option<Sequence>>,
    /// Whether an append into a shared, partly filled last block copies it first.
    /// Always on, but for chapter 14's trap.
    copy_on_write: bool,
}

/// `n_blocks` blocks of `block_size` positions, allocated once.
///
/// Block `b` holds its keys as a column-major `(block_size, n_kv_heads · head_dim)`
/// matrix, chapter 6's layout, at `keys[b · block_size · kv_dim ..]`; its values
/// likewise in `values`. Both buffers start on a cache line, so with blocks of 16
/// positions (a line of `f32`s) every block's every column does too.
#[derive(Clone, Debug, PartialEq)]
struct BlockPool {
    block_size: usize,
    /// `n_kv_heads · head_dim`: the width of a cached row.
    kv_dim: usize,
    keys: AlignedBuf,
    values: AlignedBuf,
    /// The blocks no sequence holds; a block is taken from the end.
    free: Vec<usize>,
    /// Per block: how many block tables hold it (0 when free).
    ref_counts: Vec<usize>,
    /// Blocks copied by copy-on-write so far.
    copies: usize,
}

/// A sequence's block table: position `p` is row `p % block_size` of block
/// `blocks[p / block_size]`.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Sequence {
    /// The blocks of positions `0 .. len`, in order: `len.div_ceil(block_size)` of them.
    blocks: Vec<usize>,
    /// Positions held, which is also the position of the next token.
    len: usize,
}
// ANCHOR_END: paged_kv_cache

impl BlockPool {
    /// Where block `block`'s column `c` starts in `keys` and `values`.
    fn column_start(&self, block: usize, c: usize) -> usize {
        (block * self.kv_dim + c) * self.block_size
    }

    // ANCHOR: take_release
    /// A free block, now held once; `None` when the pool is exhausted. Its rows still
    /// hold whatever its last owner wrote: readers stop at a sequence's `len`.
    fn take(&mut self) -> Option<usize> {
        let block = self.free.pop()?;
        self.ref_counts[block] = 1;
        Some(block)
    }

    /// One block table less holds `block`; the last one gives it back to the pool.
    fn release(&mut self, block: usize) {
        self.ref_counts[block] -= 1;
        if self.ref_counts[block] == 0 {
            self.free.push(block);
        }
    }
    // ANCHOR_END: take_release

    /// Copies rows `0 .. rows` of block `from` into block `to`, keys and values.
    fn copy_rows(&mut self, from: usize, to: usize, rows: usize) {
        for c in 0..self.kv_dim {
            let (src, dst) = (self.column_start(from, c), self.column_start(to, c));
            self.keys.copy_within(src..src + rows, dst);
            self.values.copy_within(src..src + rows, dst);
        }
        self.copies += 1;
    }

    /// Writes row `r` of `keys` and `values` into row `row` of block `block`.
    fn write_row(
        &mut self,
        block: usize,
        row: usize,
        keys: &DMatrix<f32>,
        values: &DMatrix<f32>,
        r: usize,
    ) {
        for c in 0..self.kv_dim {
            let at = self.column_start(block, c) + row;
            self.keys[at] = keys[(r, c)];
            self.values[at] = values[(r, c)];
        }
    }

    /// Rows `0 .. len` of the blocks `blocks` of `data` (the keys or the values), in
    /// order: a `(len, kv_dim)` matrix.
    fn gather(&self, data: &[f32], blocks: &[usize], len: usize) -> Result<DMatrix<f32>> {
        let (bs, d) = (self.block_size, self.kv_dim);
        let mut out = try_zero_matrix("PagedKvCache::gather", len, d)?;
        let out_data = out.as_mut_slice(); // column-major: column c is [c·len, (c+1)·len)
        for c in 0..d {
            for (i, &block) in blocks.iter().enumerate() {
                let rows = bs.min(len - i * bs); // the last block may be partly filled
                let src = self.column_start(block, c);
                out_data[c * len + i * bs..][..rows]
                    .copy_from_slice(&data[src..][..rows]);
            }
        }
        Ok(out)
    }
}

impl PagedKvCache {
    /// A pool of `n_blocks` blocks of `block_size` positions, with rows of `n_kv_heads ·
    /// head_dim` keys and values; every block free, no sequence.
    ///
    /// The size `2 · n_blocks · block_size · n_kv_heads · head_dim · 4` bytes is checked
    /// before anything is allocated, and the allocation is fallible: a pool that does not
    /// fit is [`AttnError::TooLarge`], not an abort.
    pub fn new(
        n_blocks: usize,
        block_size: usize,
        n_kv_heads: usize,
        head_dim: usize,
    ) -> Result<Self> {
        nonzero("n_blocks", n_blocks)?;
        nonzero("block_size", block_size)?;
        nonzero("n_kv_heads", n_kv_heads)?;
        nonzero("head_dim", head_dim)?;
        let what = format!(
            "PagedKvCache of {n_blocks} blocks (2 × n_blocks, block_size, n_kv_heads × \
                head_dim)"
        );
        checked_len(&what, &[2, n_blocks, block_size, n_kv_heads, head_dim])?;
        let kv_dim = n_kv_heads * head_dim; // fits: checked above
        let keys = AlignedBuf::try_zeroed(&what, &[n_blocks, block_size, kv_dim])?;
        let values = AlignedBuf::try_zeroed(&what, &[n_blocks, block_size, kv_dim])?;
        let mut free = Vec::new();
        let mut ref_counts = Vec::new();
        let refused = || AttnError::TooLarge {
            what: format!("{what}: free list and reference counts"),
            bytes: 16 * n_blocks as u128,
            detail: "the allocator refused it",
        };
        free.try_reserve_exact(n_blocks).map_err(|_| refused())?;
        ref_counts.try_reserve_exact(n_blocks).map_err(|_| refused())?;
        free.extend((0..n_blocks).rev()); // block 0 is taken first
        ref_counts.resize(n_blocks, 0);
        Ok(Self {
            pool: BlockPool {
                block_size,
                kv_dim,
                keys,
                values,
                free,
                ref_counts,
                copies: 0,
            },
            sequences: Vec::new(),
            copy_on_write: true,
        })
    }

    /// A pool shaped for `heads`' keys and values.
    pub fn for_heads(
        n_blocks: usize,
        block_size: usize,
        heads: HeadLayout,
    ) -> Result<Self> {
        Self::new(n_blocks, block_size, heads.n_kv_heads(), heads.head_dim())
    }

    /// Turns copy-on-write off (`false`) or on. **Off is wrong**: an append then writes
    /// into a shared last block in place, and every other sequence sharing it reads the
    /// new rows as its own. Kept only so that chapter 14 can measure that trap.
    pub fn with_copy_on_write(mut self, on: bool) -> Self {
        self.copy_on_write = on;
        self
    }

    /// Positions per block.
    pub fn block_size(&self) -> usize {
        self.pool.block_size
    }

    /// Blocks in the pool.
    pub fn n_blocks(&self) -> usize {
        self.pool.ref_counts.len()
    }

    /// Width of a cached row: `n_kv_heads · head_dim`.
    pub fn kv_dim(&self) -> usize {
        self.pool.kv_dim
    }

    /// Bytes of the pool's keys and values: `2 · n_blocks · block_size · kv_dim · 4`.
    pub fn pool_bytes(&self) -> u128 {
        2 * self.pool.keys.len() as u128 * 4
    }

    /// Blocks no sequence holds.
    pub fn free_blocks(&self) -> usize {
        self.pool.free.len()
    }

    /// Blocks some sequence holds: `n_blocks() − free_blocks()`.
    pub fn blocks_in_use(&self) -> usize {
        self.n_blocks() - self.pool.free.len()
    }

    /// The free list itself: the next block taken is the last one.
    pub fn free_list(&self) -> &[usize] {
        &self.pool.free
    }

    /// How many block tables hold `block` (0 when it is free).
    pub fn ref_count(&self, block: usize) -> Result<usize> {
        self.check_block(block)?;
        Ok(self.pool.ref_counts[block])
    }

    /// Blocks copied by copy-on-write since the pool was made.
    pub fn copies(&self) -> usize {
        self.pool.copies
    }

    /// The sequences not freed, in the order they were issued.
    pub fn sequences(&self) -> impl Iterator<Item = SeqId> + '_ {
        self.sequences
            .iter()
            .enumerate()
            .filter(|(_, s)| s.is_some())
            .map(|(i, _)| SeqId(i))
    }

    /// A new, empty sequence: no block until its first append, whose position is 0.
    pub fn add_sequence(&mut self) -> SeqId {
        self.sequences.push(Some(Sequence { blocks: Vec::new(), len: 0 }));
        SeqId(self.sequences.len() - 1)
    }

    /// Positions sequence `id` holds: the position its next token must have.
    pub fn len(&self, id: SeqId) -> Result<usize> {
        Ok(self.sequence(id)?.len)
    }

    /// Sequence `id`'s block table: the blocks of its positions, in order.
    pub fn block_table(&self, id: SeqId) -> Result<&[usize]> {
        Ok(&self.sequence(id)?.blocks)
    }

    /// All `block_size` rows of block `block`'s keys, `(block_size, kv_dim)`, as they lie
    /// in the pool (no copy): rows past a sequence's length hold stale numbers.
    pub fn block_keys(&self, block: usize) -> Result<DMatrixView<'_, f32>> {
        self.check_block(block)?;
        let (bs, d) = (self.pool.block_size, self.pool.kv_dim);
        Ok(DMatrixView::from_slice(&self.pool.keys[block * bs * d..][..bs * d], bs, d))
    }

    /// All `block_size` rows of block `block`'s values; see [`PagedKvCache::block_keys`].
    pub fn block_values(&self, block: usize) -> Result<DMatrixView<'_, f32>> {
        self.check_block(block)?;
        let (bs, d) = (self.pool.block_size, self.pool.kv_dim);
        Ok(DMatrixView::from_slice(&self.pool.values[block * bs * d..][..bs * d], bs, d))
    }

    fn check_block(&self, block: usize) -> Result<()> {
        if block >= self.n_blocks() {
            let len = self.n_blocks();
            return Err(AttnError::IndexOutOfRange {
                what: "PagedKvCache block",
                index: block,
                len,
            });
        }
        Ok(())
    }

    /// The sequence `id`, or [`AttnError::UnknownSequence`].
    fn sequence(&self, id: SeqId) -> Result<&Sequence> {
        match self.sequences.get(id.0) {
            Some(Some(seq)) => Ok(seq),
            slot => Err(AttnError::UnknownSequence { id: id.0, freed: slot.is_some() }),
        }
    }

    /// Checks that `keys` and `values` are both `(n_new, kv_dim)`, and returns `n_new`.
    fn check_rows(&self, keys: &DMatrix<f32>, values: &DMatrix<f32>) -> Result<usize> {
        let kv_dim = self.pool.kv_dim;
        if keys.ncols() != kv_dim {
            let got = [keys.nrows(), keys.ncols()];
            return Err(shape_err(
                "PagedKvCache::append keys",
                &[None, Some(kv_dim)],
                &got,
            ));
        }
        if values.shape() != keys.shape() {
            let (want, got) =
                ([Some(keys.nrows()), Some(kv_dim)], [values.nrows(), values.ncols()]);
            return Err(shape_err("PagedKvCache::append values", &want, &got));
        }
        Ok(keys.nrows())
    }

    // ANCHOR: blocks_needed
    /// The blocks an append of `n_new` rows to `seq` takes from the pool: one for each
    /// block boundary it crosses, and one more to copy a shared last block that still
    /// has room (the new rows would land in it).
    fn blocks_needed(&self, seq: &Sequence, n_new: usize) -> usize {
        let bs = self.pool.block_size;
        let new_blocks = (seq.len + n_new).div_ceil(bs) - seq.blocks.len();
        new_blocks + usize::from(n_new > 0 && self.must_copy_last(seq))
    }

    /// Whether `seq`'s last block is shared and partly filled: the next row goes into it,
    /// and the other sequences holding it must not see that row.
    fn must_copy_last(&self, seq: &Sequence) -> bool {
        let shared = seq.blocks.last().is_some_and(|&b| self.pool.ref_counts[b] > 1);
        self.copy_on_write && shared && !seq.len.is_multiple_of(self.pool.block_size)
    }
    // ANCHOR_END: blocks_needed

    // ANCHOR: paged_append
    /// Appends the keys and values of sequence `id`'s new tokens at positions `start_pos
    /// ..`: `(n_new, n_kv_heads · head_dim)` each.
    ///
    /// `start_pos` must continue the sequence (`len`, 0 for a new one), else
    /// [`AttnError::CachePosition`]. A block is taken only when the last one is full; a
    /// shared last block with room is copied first. Every check comes before any write:
    /// after an error ([`AttnError::PoolExhausted`] included) the cache is unchanged.
    pub fn append(
        &mut self,
        id: SeqId,
        start_pos: usize,
        keys: &DMatrix<f32>,
        values: &DMatrix<f32>,
    ) -> Result<()> {
        let n_new = self.check_rows(keys, values)?;
        let seq = self.sequence(id)?;
        if start_pos != seq.len {
            return Err(AttnError::CachePosition { start_pos, next_pos: seq.len });
        }
        check_range(seq.len, n_new, usize::MAX)?; // every new position exists
        let (needed, copy_last) =
            (self.blocks_needed(seq, n_new), self.must_copy_last(seq));
        if needed > self.pool.free.len() {
            let (free, n_blocks) = (self.pool.free.len(), self.n_blocks());
            return Err(AttnError::PoolExhausted { needed, free, n_blocks });
        }
        // Checked: from here on nothing fails.
        let bs = self.pool.block_size;
        let (seq, pool) = (sequence_mut(&mut self.sequences, id)?, &mut self.pool);
        if n_new > 0 && copy_last {
            copy_on_write(pool, seq);
        }
        for r in 0..n_new {
            let pos = seq.len + r;
            if pos.is_multiple_of(bs) {
                seq.blocks.push(pool.take().expect("counted by blocks_needed"));
            }
            pool.write_row(seq.blocks[pos / bs], pos % bs, keys, values, r);
        }
        seq.len += n_new;
        Ok(())
    }
    // ANCHOR_END: paged_append

    // ANCHOR: paged_fork
    /// A new sequence that starts as a copy of `parent`: the same block table, each block
    /// held once more, no row copied. Both may append afterwards; a shared block is
    /// copied only when one of them writes into it.
    pub fn fork(&mut self, parent: SeqId) -> Result<SeqId> {
        let seq = self.sequence(parent)?.clone();
        for &block in &seq.blocks {
            self.pool.ref_counts[block] += 1;
        }
        self.sequences.push(Some(seq));
        Ok(SeqId(self.sequences.len() - 1))
    }
    // ANCHOR_END: paged_fork

    // ANCHOR: paged_free
    /// Ends sequence `id`: each of its blocks is held once less, and a block no table
    /// holds any more goes back to the free list. The id stays freed: using it again is
    /// [`AttnError::UnknownSequence`], so nothing is released twice.
    pub fn free(&mut self, id: SeqId) -> Result<()> {
        let slot = self.sequences.get_mut(id.0);
        let unknown = |freed| AttnError::UnknownSequence { id: id.0, freed };
        let seq = slot.ok_or(unknown(false))?.take().ok_or(unknown(true))?;
        for &block in seq.blocks.iter().rev() {
            self.pool.release(block);
        }
        Ok(())
    }
    // ANCHOR_END: paged_free

    // ANCHOR: paged_gather
    /// Sequence `id`'s keys and values in position order: two `(len, n_kv_heads ·
    /// head_dim)` matrices, the rows chapter 6's cache holds for the same tokens.
    pub fn gather(&self, id: SeqId) -> Result<(DMatrix<f32>, DMatrix<f32>)> {
        let seq = self.sequence(id)?;
        let keys = self.pool.gather(&self.pool.keys, &seq.blocks, seq.len)?;
        let values = self.pool.gather(&self.pool.values, &seq.blocks, seq.len)?;
        Ok((keys, values))
    }
    // ANCHOR_END: paged_gather

    // ANCHOR: paged_attend
    /// Causal attention of sequence `id`'s newest `n_queries` tokens (their keys and
    /// values appended) over all its positions: `q (n_queries, n_heads · head_dim)` ->
    /// `(n_queries, n_heads · head_dim)`.
    ///
    /// Gathers the rows in order and calls [`grouped_attention`], as chapter 6's cached
    /// forward does on its contiguous rows: the same function on the same numbers, so
    /// the same output, bit for bit.
    pub fn attend(
        &self,
        id: SeqId,
        q: &DMatrix<f32>,
        heads: HeadLayout,
    ) -> Result<DMatrix<f32>> {
        let (keys, values) = self.gather(id)?; // (len, n_kv_heads · head_dim) each
        let query_offset = newest_offset(q.nrows(), keys.nrows())?;
        grouped_attention(q, keys.as_view(), values.as_view(), heads, query_offset)
    }
    // ANCHOR_END: paged_attend

    /// `layer`'s forward pass for sequence `id`'s new tokens `x (n_new, d_in)`, the first
    /// at position `start_pos`: project (RoPE at `start_pos ..`), append the keys and
    /// values, attend through the block table (with the layer's [`ScoreOptions`] when it
    /// has some), project out -> `(n_new, d_out)`.
    ///
    /// Chapter 6's `forward` with a cache, for one sequence among many. It always runs
    /// the straightforward kernel on the gathered rows, whatever the layer's
    /// [`KernelChoice`](crate::KernelChoice); a sliding-window layer's rows are all kept.
    ///
    /// [`ScoreOptions`]: crate::ScoreOptions
    pub fn forward(
        &mut self,
        layer: &GroupedQueryAttention,
        id: SeqId,
        x: &DMatrix<f32>,
        start_pos: usize,
    ) -> Result<DMatrix<f32>> {
        let heads = layer.heads();
        if heads.kv_dim() != self.kv_dim() {
            return Err(AttnError::CacheMismatch(format!(
                "the paged cache holds rows of width {}, the layer needs {}",
                self.kv_dim(),
                heads.kv_dim()
            )));
        }
        self.sequence(id)?; // an unknown sequence before any work
        let (q, k, v) = layer.project(x, start_pos)?;
        self.append(id, start_pos, &k, &v)?;
        let (keys, values) = self.gather(id)?;
        let offset = newest_offset(q.nrows(), keys.nrows())?;
        let (keys, values) = (keys.as_view(), values.as_view());
        let context = if layer.scores().is_plain() {
            grouped_attention(&q, keys, values, heads, offset)?
        } else {
            grouped_attention_with(&q, keys, values, heads, offset, layer.scores())?
        };
        layer.weights().out_proj.forward(&context) // (n_new, d_out)
    }
}

// ANCHOR: copy_on_write
/// Gives `seq` a private copy of its last block: takes a free block, copies the filled
/// rows into it, and lets go of the shared one (which the other sequences keep).
fn copy_on_write(pool: &mut BlockPool, seq: &mut Sequence) {
    let Some(last) = seq.blocks.last_mut() else { return };
    let copy = pool.take().expect("counted by blocks_needed");
    pool.copy_rows(*last, copy, seq.len % pool.block_size);
    pool.release(*last);
    *last = copy;
}
// ANCHOR_END: copy_on_write

/// The sequence `id` of `sequences`, mutable, or [`AttnError::UnknownSequence`].
fn sequence_mut(sequences: &mut [Option<Sequence>], id: SeqId) -> Result<&mut Sequence> {
    match sequences.get_mut(id.0) {
        Some(Some(seq)) => Ok(seq),
        slot => Err(AttnError::UnknownSequence { id: id.0, freed: slot.is_some() }),
    }
}

/// The cache rows before the first of the `n_queries` newest tokens among `n_keys`, or
/// [`AttnError::MissingKeys`] when there are fewer keys than queries.
fn newest_offset(n_queries: usize, n_keys: usize) -> Result<usize> {
    n_keys.checked_sub(n_queries).ok_or(AttnError::MissingKeys {
        n_queries,
        query_offset: 0,
        n_keys,
    })
}

// ANCHOR: workload
/// Chapter 14's serving workload: `n_sequences` sequences that start with the same
/// system prompt of `prompt_len` tokens and go on with `1 ..= max_own` tokens of their
/// own, drawn with SplitMix64 from `seed`. A contiguous cache must reserve `prompt_len +
/// max_own` rows for each, since nobody knows in advance which will be long.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Workload {
    /// Sequences served at once.
    pub n_sequences: usize,
    /// Tokens of the system prompt every sequence starts with.
    pub prompt_len: usize,
    /// The most tokens a sequence adds after the prompt.
    pub max_own: usize,
    /// Seed of the lengths.
    pub seed: u64,
}
// ANCHOR_END: workload

/// What a [`Workload`] holds once all its tokens are in a pool ([`Workload::run`]),
/// counted in token rows of one layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolUsage {
    /// Positions per block of the run.
    pub block_size: usize,
    /// Tokens the sequences hold: `Σ (prompt_len + own)`, the shared prompt counted in
    /// each.
    pub tokens: usize,
    /// Rows a contiguous cache reserves: `n_sequences · (prompt_len + max_own)`.
    pub reserved: usize,
    /// Blocks in use at the end of the run.
    pub blocks: usize,
    /// Blocks copied by copy-on-write during the run.
    pub copies: usize,
}

impl PoolUsage {
    /// Rows the blocks in use hold room for: `blocks · block_size`.
    pub fn rows(&self) -> usize {
        self.blocks * self.block_size
    }
}

impl Workload {
    /// The tokens each sequence adds after the prompt, in `1 ..= max_own` (a `max_own`
    /// of 0 counts as 1).
    pub fn own_lengths(&self) -> Vec<usize> {
        let max = self.max_own.max(1) as u64;
        let draw = |i: usize| splitmix64((self.seed << 32).wrapping_add(i as u64)) % max;
        (0..self.n_sequences).map(|i| 1 + draw(i) as usize).collect()
    }

    // ANCHOR: workload_run
    /// Runs the workload through a pool of `block_size`-position blocks, rows one number
    /// wide (block counts do not depend on the width): the prompt is prefilled once and
    /// forked into every sequence when `share_prompt`, else prefilled by each; then every
    /// sequence decodes its own tokens one per step, interleaved, as a server's batch
    /// does. The prompt's own sequence is freed once forked.
    pub fn run(&self, block_size: usize, share_prompt: bool) -> Result<PoolUsage> {
        let (own, p) = (self.own_lengths(), self.prompt_len);
        // enough blocks for every sequence unshared, plus the prompt's own
        let n_blocks = own.iter().fold(p.div_ceil(block_size.max(1)), |n, &o| {
            n.saturating_add(p.saturating_add(o).div_ceil(block_size.max(1)))
        });
        let mut cache = PagedKvCache::new(n_blocks, block_size, 1, 1)?;
        let prompt = try_zero_matrix("Workload prompt", p, 1)?;
        let ids = if share_prompt {
            let system = cache.add_sequence();
            cache.append(system, 0, &prompt, &prompt)?;
            let ids =
                own.iter().map(|_| cache.fork(system)).collect::<Result<Vec<_>>>()?;
            cache.free(system)?;
            ids
        } else {
            let ids: Vec<SeqId> = own.iter().map(|_| cache.add_sequence()).collect();
            ids.iter().try_for_each(|&id| cache.append(id, 0, &prompt, &prompt))?;
            ids
        };
        let token = DMatrix::zeros(1, 1);
        for step in 0..own.iter().copied().max().unwrap_or(0) {
            for (&id, _) in ids.iter().zip(&own).filter(|&(_, &o)| step < o) {
                cache.append(id, p + step, &token, &token)?;
            }
        }
        let reserved = self.n_sequences.saturating_mul(p.saturating_add(self.max_own));
        let tokens = own.iter().map(|o| p + o).sum();
        let (blocks, copies) = (cache.blocks_in_use(), cache.copies());
        Ok(PoolUsage { block_size, tokens, reserved, blocks, copies })
    }
    // ANCHOR_END: workload_run
}
