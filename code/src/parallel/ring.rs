//! Sequence parallelism as ring attention (Liu, Zaharia and Abbeel, 2023), on simulated
//! devices: threads joined in a ring by channels ([`comm`](crate::parallel::comm)).
//!
//! The sequence is cut into `D` blocks of consecutive tokens, one per device. Device `r`
//! keeps the queries of its block for the whole layer; the keys and values travel: at
//! each of `D − 1` steps every device passes the key/value block it holds to the next
//! device and takes the one from the previous device. Each block that arrives is
//! folded into the device's partial states with the merge rule of split-K. Causal
//! attention skips blocks from the future and masks the device's own block.

use nalgebra::DMatrix;

use crate::fast::AttentionInputs;
use crate::mechanisms::config::AttentionConfig;
use crate::mechanisms::gqa::GroupedQueryAttention;
use crate::mechanisms::memory::DType;
use crate::mechanisms::sdpa::{HeadLayout, check_grouped_args};
use crate::parallel::comm::{Payload, RingLink, Traffic, ring};
use crate::parallel::partial::{PartialAttention, attend_block};
use crate::parallel::split_k::join;
use crate::parallel::tensor::first_error_first;
use crate::support::error::{AttnError, Result, check_range, nonzero, shape_err};

// ANCHOR: ring_schedule
/// What a device does with a key/value block in causal ring attention.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlockUse {
    /// Its own block: the keys of its own queries, computed with the causal mask.
    Diagonal,
    /// A block of earlier tokens: every key visible to every query, no mask.
    Past,
    /// A block of later tokens: no query of the device may see it; passed on, never
    /// computed.
    Future,
}

/// What device `device` does with the block of device `block`.
pub fn block_use(device: usize, block: usize) -> BlockUse {
    match block.cmp(&device) {
        std::cmp::Ordering::Equal => BlockUse::Diagonal,
        std::cmp::Ordering::Less => BlockUse::Past,
        std::cmp::Ordering::Greater => BlockUse::Future,
    }
}

/// The block device `device` holds at step `step` of a ring of `devices`: its own at
/// step 0, then each step the one its predecessor held, `(device − step) mod devices`.
pub fn held_block(device: usize, step: usize, devices: usize) -> usize {
    (device + devices - step % devices) % devices
}

/// The whole schedule: `schedule[step][device]` is the block `device` holds at `step`,
/// for steps `0 .. devices`.
pub fn ring_schedule(devices: usize) -> Vec<Vec<usize>> {
    (0..devices)
        .map(|s| (0..devices).map(|r| held_block(r, s, devices)).collect())
        .collect()
}
// ANCHOR_END: ring_schedule

/// A key/value block on its way around the ring: `keys` and `values` `(len,
/// n_kv_heads·head_dim)` of block `origin`.
#[derive(Clone, Debug, PartialEq)]
pub struct KvBlock {
    /// The device whose tokens these are.
    pub origin: usize,
    /// `(len, n_kv_heads·head_dim)`.
    pub keys: DMatrix<f32>,
    /// `(len, n_kv_heads·head_dim)`.
    pub values: DMatrix<f32>,
}

impl Payload for KvBlock {
    /// The keys and values, 4 bytes each; `origin` is not counted (every device knows the
    /// schedule, so a real implementation need not send it).
    fn bytes(&self) -> u64 {
        (self.keys.len() + self.values.len()) as u64 * 4
    }
}

/// Causal ring attention over `devices` simulated devices, each holding one block of
/// consecutive tokens (blocks may differ in length).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RingAttention {
    /// Tokens of each device's block, in sequence order; none is 0.
    blocks: Vec<usize>,
}

impl RingAttention {
    /// `seq_len` tokens over `devices` devices in blocks as even as possible (block `r`
    /// is tokens `seq_len·r/D .. seq_len·(r+1)/D`): every device needs at least one
    /// token.
    pub fn even(seq_len: usize, devices: usize) -> Result<Self> {
        nonzero("devices", devices)?;
        let at = |r: usize| (seq_len as u128 * r as u128 / devices as u128) as usize;
        Self::with_blocks((0..devices).map(|r| at(r + 1) - at(r)).collect())
    }

    /// Blocks of the given lengths, one per device, in sequence order (each at least 1).
    pub fn with_blocks(blocks: Vec<usize>) -> Result<Self> {
        nonzero("devices", blocks.len())?;
        for &b in &blocks {
            nonzero("ring attention block length", b)?;
        }
        Ok(Self { blocks })
    }

    /// Devices.
    pub fn devices(&self) -> usize {
        self.blocks.len()
    }

    /// Tokens of each device's block.
    pub fn blocks(&self) -> &[usize] {
        &self.blocks
    }

    /// First token of each block, and the total after the last: `devices + 1` numbers.
    pub fn starts(&self) -> Vec<usize> {
        std::iter::once(0)
            .chain(self.blocks.iter().scan(0usize, |end, &b| {
                *end = end.saturating_add(b);
                Some(*end)
            }))
            .collect()
    }

    /// Causal attention of a whole sequence, `q (seq, n_heads·head_dim)`, `k` and `v
    /// (seq, n_kv_heads·head_dim)` with `seq` the sum of the blocks, as
    /// [`grouped_attention`](crate::grouped_attention) with `query_offset` 0. Device `r`
    /// starts with rows `starts[r] .. starts[r+1]` of all three; returns the output and
    /// the bytes each device sent.
    pub fn forward(
        &self,
        q: &DMatrix<f32>,
        k: &DMatrix<f32>,
        v: &DMatrix<f32>,
        heads: HeadLayout,
    ) -> Result<(DMatrix<f32>, Traffic)> {
        check_grouped_args(
            "ring_attention",
            q.shape(),
            &k.as_view(),
            &v.as_view(),
            heads,
            0,
        )?;
        let starts = self.starts();
        let n = starts[self.devices()]; // the sum of the blocks
        for (what, m) in [("queries", q), ("keys", k)] {
            if m.nrows() != n {
                let what =
                    format!("ring_attention {what} (one row per token of the blocks)");
                return Err(shape_err(
                    what,
                    &[Some(n), Some(m.ncols())],
                    &[m.nrows(), m.ncols()],
                ));
            }
        }
        let links = ring::<KvBlock>(self.devices())?;
        let results: Vec<Result<(DMatrix<f32>, u64)>> = std::thread::scope(|scope| {
            let handles: Vec<_> = (links.into_iter().enumerate())
                .map(|(r, mut link)| {
                    let (first, len) = (starts[r], self.blocks[r]);
                    // what device r holds before the first step: its rows of q, k, v
                    let my_q = q.rows(first, len).into_owned();
                    let (keys, values) = (
                        k.rows(first, len).into_owned(),
                        v.rows(first, len).into_owned(),
                    );
                    let mine = KvBlock { origin: r, keys, values };
                    let starts = &starts;
                    scope.spawn(move || {
                        let out = ring_device(&my_q, mine, heads, starts, &mut link)?;
                        Ok((out, link.bytes_sent()))
                    })
                })
                .collect();
            handles.into_iter().map(join).collect()
        });
        let outputs = first_error_first(results)?;
        let mut out = DMatrix::zeros(q.nrows(), q.ncols());
        for (r, (o, _)) in outputs.iter().enumerate() {
            out.rows_mut(starts[r], self.blocks[r]).copy_from(o);
        }
        let bytes_sent = outputs.iter().map(|(_, b)| *b).collect();
        Ok((out, Traffic { bytes_sent }))
    }

    /// The whole layer, sequence-parallel: every device holds all of `layer`'s weights,
    /// projects its own tokens of `x` `(seq, d_in)` at their positions (`start_pos` + its
    /// block's start), runs [`RingAttention::forward`] and applies the output projection
    /// to its rows: `(seq, d_out)`, equal to `layer.forward` on the sequence without a
    /// cache. Llama 3's plain scores only ([`AttnError::Unsupported`] for a window,
    /// soft-cap or sinks).
    pub fn forward_layer(
        &self,
        layer: &GroupedQueryAttention,
        x: &DMatrix<f32>,
        start_pos: usize,
    ) -> Result<(DMatrix<f32>, Traffic)> {
        if !layer.scores().is_plain() {
            return Err(AttnError::Unsupported(
                "ring attention over a layer with score options (window, soft-cap, sinks)"
                    .to_string(),
            ));
        }
        let starts = self.starts();
        if x.nrows() != starts[self.devices()] {
            let want = [Some(starts[self.devices()]), Some(layer.d_in())];
            return Err(shape_err(
                "ring_attention input (sum of blocks)",
                &want,
                &[x.nrows(), x.ncols()],
            ));
        }
        // each device's projection of its own rows, at their absolute positions
        check_range(start_pos, x.nrows(), usize::MAX)?; // every token has a position
        let (mut q, mut k, mut v) = (vec![], vec![], vec![]);
        for (r, &len) in self.blocks.iter().enumerate() {
            let rows = x.rows(starts[r], len).into_owned();
            let (qr, kr, vr) = layer.project(&rows, start_pos + starts[r])?;
            q.push(qr);
            k.push(kr);
            v.push(vr);
        }
        let stack = |parts: &[DMatrix<f32>]| {
            let mut m = DMatrix::zeros(x.nrows(), parts[0].ncols());
            for (r, p) in parts.iter().enumerate() {
                m.rows_mut(starts[r], p.nrows()).copy_from(p);
            }
            m
        };
        let (context, traffic) =
            self.forward(&stack(&q), &stack(&k), &stack(&v), layer.heads())?;
        // the output projection is per token: each device applies it to its own rows
        Ok((layer.weights().out_proj.forward(&context)?, traffic))
    }
}

// ANCHOR: ring_device
/// What device `r` (its link's device) does: `D` steps; at each, fold the key/value block
/// it holds into its queries' partial states unless it is from the future, then pass
/// the block on and take the previous device's. `q (len_r, n_heads·head_dim)` are its
/// queries, at sequence positions `starts[r] ..`; returns their attention.
fn ring_device(
    q: &DMatrix<f32>,
    mine: KvBlock,
    heads: HeadLayout,
    starts: &[usize],
    link: &mut RingLink<KvBlock>,
) -> Result<DMatrix<f32>> {
    let r = link.device();
    let mut state = PartialAttention::empty(q.nrows(), heads)?;
    let mut held = mine;
    for step in 0..link.devices() {
        if step > 0 {
            link.send(held)?; // pass the block on to device r + 1 ...
            held = link.recv()?; // ... and take the one device r − 1 held
        }
        if block_use(r, held.origin) == BlockUse::Future {
            continue; // causal: none of r's queries may see these keys
        }
        // the keys' and queries' sequence positions give the mask: none for a past
        // block, the causal triangle for r's own
        let (k, v) = (held.keys.as_view(), held.values.as_view());
        let x = AttentionInputs { q, k, v, heads, query_offset: starts[r] };
        state.merge_from(&attend_block(x, starts[held.origin])?)?;
    }
    Ok(state.finish())
}
// ANCHOR_END: ring_device

// ANCHOR: ring_bytes
/// Bytes device `r` sends in one layer of ring attention with these `blocks`: every
/// block but the one of device `r + 1` (which arrives there last and goes no further),
/// keys and values, `2 · kv_dim · bytes_per_element` per token. With `D` equal blocks of
/// `n / D` tokens, `2·(D − 1)/D · n · kv_dim · bytes` for every device.
pub fn ring_bytes_per_device(
    blocks: &[usize],
    kv_dim: usize,
    bytes_per_element: usize,
) -> Vec<u128> {
    let (d, n) = (blocks.len(), blocks.iter().map(|&b| b as u128).sum::<u128>());
    let per_token = 2 * kv_dim as u128 * bytes_per_element as u128; // a key and a value
    (0..d).map(|r| (n - blocks[(r + 1) % d] as u128) * per_token).collect()
}

/// Bytes each device sends per token of the sequence for one attention layer of ring
/// attention over `devices` equal blocks: `2·(D − 1)/D · n_kv_heads·head_dim · bytes`.
pub fn ring_bytes_per_token(cfg: &AttentionConfig, devices: usize, dtype: DType) -> u128 {
    let d = devices.max(1) as u128;
    let kv_dim = cfg.n_kv_heads as u128 * cfg.head_dim as u128;
    let sent = [d - 1, kv_dim, dtype.size_bytes() as u128]
        .iter()
        .fold(2u128, |acc, &n| acc.saturating_mul(n));
    sent / d
}
// ANCHOR_END: ring_bytes
