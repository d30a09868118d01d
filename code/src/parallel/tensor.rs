//! Tensor parallelism over heads (Megatron-LM's split of attention), on simulated
//! devices: threads joined by channels ([`comm`](crate::parallel::comm)).
//!
//! Each device holds whole KV heads and the query heads that read them: its rows of the
//! q, k and v projections (PyTorch's `(out, in)` layout: its heads' output features) and
//! its columns of the output projection (its heads' input features; Megatron's
//! "row-parallel" linear, whose `Y = X·A` splits `A` by rows). It runs chapter 4-6's
//! layer on its heads alone and gets a `(seq, d_out)` share of the output; one
//! all-reduce (sum) gives every device the whole output.

use nalgebra::{DMatrix, DVector};

use crate::mechanisms::config::AttentionConfig;
use crate::mechanisms::gqa::{GroupedQueryAttention, QkvoWeights};
use crate::mechanisms::kv_cache::LayerKvCache;
use crate::mechanisms::linear::Linear;
use crate::mechanisms::memory::DType;
use crate::parallel::comm::{
    RingLink, Traffic, all_reduce_bytes_per_device, all_reduce_sum, ring,
};
use crate::parallel::split_k::join;
use crate::support::batch::Batch;
use crate::support::error::{AttnError, Result, divisible};

/// A [`GroupedQueryAttention`] layer split over `devices` simulated devices by heads.
///
/// `devices` must divide `n_kv_heads`: every device holds whole KV heads
/// ([`kv_share`] counts what a fraction of a KV head would cost). The output equals the
/// layer's within f32 rounding (the output projection's sum is split into `devices`
/// partial sums and added in another order); every device ends with the same bits.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorParallel {
    /// Device `r`'s layer: its heads, its shards of the four projections.
    shards: Vec<GroupedQueryAttention>,
    /// The output projection's bias, added once, after the all-reduce (`None` for
    /// Llama).
    out_bias: Option<DVector<f32>>,
}

impl TensorParallel {
    /// `layer` split over `devices` devices: [`AttnError::NotDivisible`] unless `devices`
    /// divides `n_kv_heads`.
    pub fn new(layer: &GroupedQueryAttention, devices: usize) -> Result<Self> {
        divisible("n_kv_heads", layer.n_kv_heads(), "devices", devices)?;
        let shards = (0..devices)
            .map(|r| shard_layer(layer, r, devices))
            .collect::<Result<_>>()?;
        Ok(Self { shards, out_bias: layer.weights().out_proj.bias().cloned() })
    }

    /// Devices.
    pub fn devices(&self) -> usize {
        self.shards.len()
    }

    /// Device `r`'s layer (its heads only); `None` past the last device.
    pub fn shard(&self, r: usize) -> Option<&GroupedQueryAttention> {
        self.shards.get(r)
    }

    /// One empty KV cache per device, each holding only that device's KV heads.
    pub fn new_caches(&self, batch: usize, capacity: usize) -> Result<Vec<LayerKvCache>> {
        self.shards.iter().map(|s| s.new_cache(batch, capacity)).collect()
    }

    // ANCHOR: tp_forward
    /// The layer on `x` `(batch, seq, d_in) -> (batch, seq, d_out)`, as
    /// [`GroupedQueryAttention::forward`], each device on its own thread; with `caches`
    /// (one per device, from [`TensorParallel::new_caches`]) each device caches its own
    /// KV heads. Returns the output and the bytes each device sent.
    pub fn forward(
        &self,
        x: &Batch,
        start_pos: usize,
        caches: Option<&mut [LayerKvCache]>,
    ) -> Result<(Batch, Traffic)> {
        let mut caches: Vec<Option<&mut LayerKvCache>> = match caches {
            None => self.shards.iter().map(|_| None).collect(),
            Some(c) if c.len() == self.devices() => c.iter_mut().map(Some).collect(),
            Some(c) => return Err(self.wrong_cache_count(c.len())),
        };
        let links = ring::<Vec<f32>>(self.devices())?;
        let results: Vec<Result<(Batch, u64)>> = std::thread::scope(|scope| {
            let handles: Vec<_> = (self.shards.iter().zip(caches.iter_mut()).zip(links))
                .map(|((shard, cache), mut link)| {
                    let cache = cache.as_deref_mut();
                    scope.spawn(move || {
                        let y = device_forward(shard, x, start_pos, cache, &mut link)?;
                        Ok((y, link.bytes_sent()))
                    })
                })
                .collect();
            handles.into_iter().map(join).collect()
        });
        let mut outputs = first_error_first(results)?;
        let bytes_sent = outputs.iter().map(|(_, b)| *b).collect();
        let (y, _) = outputs.swap_remove(0); // every device holds the same bits
        Ok((self.add_out_bias(y)?, Traffic { bytes_sent }))
    }
    // ANCHOR_END: tp_forward

    /// `y` with the output projection's bias added to every row, when the layer has one.
    fn add_out_bias(&self, y: Batch) -> Result<Batch> {
        let Some(b) = &self.out_bias else { return Ok(y) };
        y.try_map(|m| {
            let mut m = m.clone();
            for mut row in m.row_iter_mut() {
                row += b.transpose();
            }
            Ok(m)
        })
    }

    /// The error for a slice of caches that is not one per device.
    fn wrong_cache_count(&self, got: usize) -> AttnError {
        AttnError::CacheMismatch(format!(
            "tensor parallelism over {} devices needs one cache per device, got {got}",
            self.devices()
        ))
    }
}

// ANCHOR: shard_layer
/// Device `r`'s share of `layer` over `devices` devices (`devices` divides `n_kv_heads`):
/// KV heads `r·kv_per .. (r+1)·kv_per` whole, and the `group_size` query heads of each,
/// which are contiguous (query head `h` reads KV head `h / group_size`). The shard is a
/// layer of its own, with `n_heads / devices` query heads over `n_kv_heads / devices`
/// KV heads and the same RoPE, score options and QK-norm.
fn shard_layer(
    layer: &GroupedQueryAttention,
    r: usize,
    devices: usize,
) -> Result<GroupedQueryAttention> {
    let (d, w) = (layer.head_dim(), layer.weights());
    let kv_per = layer.n_kv_heads() / devices; // whole KV heads per device
    let q_per = kv_per * layer.group_size(); // with every query head that reads them
    let (q0, kv0) = (r * q_per * d, r * kv_per * d); // first feature of each shard
    let shard = QkvoWeights {
        // column-parallel: (out, in) rows = this device's heads' output features
        w_query: rows_of(&w.w_query, q0, q_per * d)?,
        w_key: rows_of(&w.w_key, kv0, kv_per * d)?,
        w_value: rows_of(&w.w_value, kv0, kv_per * d)?,
        // row-parallel: (out, in) columns = this device's heads' input features; the
        // bias is added once, after the all-reduce
        out_proj: Linear::new(w.out_proj.weight().columns(q0, q_per * d).into(), None)?,
    };
    let mut scores = layer.scores().clone(); // window, soft-cap, scale: per layer
    if let Some(sinks) = &mut scores.sinks {
        *sinks = sinks[r * q_per..(r + 1) * q_per].to_vec(); // learned sinks: per head
    }
    GroupedQueryAttention::new(shard, q_per, kv_per, layer.rope().cloned())?
        .with_scores(scores)?
        .with_qk_norm(layer.qk_norm().cloned())
        .map(|s| s.with_kernel(layer.kernel()))
}
// ANCHOR_END: shard_layer

/// Rows `first .. first + n` of a linear layer (output features), bias included.
fn rows_of(linear: &Linear, first: usize, n: usize) -> Result<Linear> {
    let weight: DMatrix<f32> = linear.weight().rows(first, n).into();
    let bias = linear.bias().map(|b| b.rows(first, n).into());
    Linear::new(weight, bias)
}

// ANCHOR: device_forward
/// What one device does in a layer: its heads over the whole input, giving its share of
/// the output, then the all-reduce that sums the shares on every device.
fn device_forward(
    shard: &GroupedQueryAttention,
    x: &Batch,
    start_pos: usize,
    cache: Option<&mut LayerKvCache>,
    link: &mut RingLink<Vec<f32>>,
) -> Result<Batch> {
    // (batch, seq, d_in) -> (batch, seq, d_out): Σ over this device's heads of
    // context_h · W_o[:, h]ᵀ, one term of the output projection's sum
    let share = shard.forward(x, start_pos, cache)?;
    let (rows, cols) = (share.seq_len(), share.dim());
    // the whole batch as one buffer, one all-reduce per layer
    let mut buf: Vec<f32> =
        share.items().iter().flat_map(|m| m.iter().copied()).collect();
    all_reduce_sum(link, &mut buf)?;
    Batch::new(
        buf.chunks_exact(rows * cols)
            .map(|c| DMatrix::from_column_slice(rows, cols, c))
            .collect(),
    )
}
// ANCHOR_END: device_forward

/// The devices' results in device order, or an error: a device's own error before the
/// "left the ring" errors its neighbours report when it stopped.
pub(crate) fn first_error_first<T>(results: Vec<Result<T>>) -> Result<Vec<T>> {
    let hung_up =
        |e: &AttnError| matches!(e, AttnError::Config(m) if m.contains("left the ring"));
    if let Some(Err(e)) = results.iter().find(|r| r.as_ref().is_err_and(|e| !hung_up(e)))
    {
        return Err(e.clone());
    }
    results.into_iter().collect()
}

/// Bytes each device sends per token for one attention layer under tensor parallelism:
/// the all-reduce of the token's `d_model` outputs, `2·(D − 1)/D · d_model · bytes`
/// ([`all_reduce_bytes_per_device`]). Megatron's transformer block does a second
/// all-reduce of the same size after its MLP; this counts attention's only.
pub fn tp_bytes_per_token(cfg: &AttentionConfig, devices: usize, dtype: DType) -> u128 {
    all_reduce_bytes_per_device(cfg.d_model as u128, devices, dtype.size_bytes())
}

/// What one device of a tensor-parallel attention layer holds of the KV heads: see
/// [`kv_share`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KvShare {
    /// Devices.
    pub devices: usize,
    /// Query heads per device: `n_heads / devices`.
    pub q_heads: usize,
    /// KV heads per device: `n_kv_heads / devices`, or 1 when there are more devices
    /// than KV heads.
    pub kv_heads: usize,
    /// Devices holding a copy of each KV head: 1, or `devices / n_kv_heads`.
    pub replicas: usize,
    /// KV cache bytes per token and layer on one device: `2 · kv_heads · head_dim ·
    /// bytes`.
    pub cache_bytes_per_device: u128,
    /// KV cache bytes per token and layer on all devices together.
    pub cache_bytes_all_devices: u128,
    /// Bytes of the k and v projection weights on one device: `2 · kv_heads · head_dim ·
    /// d_model · bytes`.
    pub kv_weight_bytes_per_device: u128,
}

// ANCHOR: kv_share
/// What each of `devices` devices holds of `cfg`'s KV heads under tensor parallelism,
/// and what it costs per token of KV cache.
///
/// A query head needs every feature of its KV head's keys and values (its scores are
/// dot products over the whole `head_dim`), so a KV head cannot be cut between devices.
/// Up to `n_kv_heads` devices share the KV heads out (`devices` must divide them); past
/// that, each device needs one whole KV head for its query heads, and each KV head is
/// **replicated** on `devices / n_kv_heads` devices, as vLLM's `QKVParallelLinear` does:
/// every further device shrinks the query heads and the output projection per device,
/// but not the KV cache. `devices` must divide `n_heads`, and a multiple of `n_kv_heads`
/// past them.
pub fn kv_share(cfg: &AttentionConfig, devices: usize, dtype: DType) -> Result<KvShare> {
    cfg.validate()?;
    divisible("n_heads", cfg.n_heads, "devices", devices)?;
    let (kv_heads, replicas) = if devices <= cfg.n_kv_heads {
        divisible("n_kv_heads", cfg.n_kv_heads, "devices", devices)?;
        (cfg.n_kv_heads / devices, 1)
    } else {
        divisible("devices", devices, "n_kv_heads", cfg.n_kv_heads)?;
        (1, devices / cfg.n_kv_heads)
    };
    let per_head = 2 * (cfg.head_dim * dtype.size_bytes()) as u128; // a key and a value
    let cache = kv_heads as u128 * per_head;
    Ok(KvShare {
        devices,
        q_heads: cfg.n_heads / devices,
        kv_heads,
        replicas,
        cache_bytes_per_device: cache,
        cache_bytes_all_devices: cache * devices as u128,
        kv_weight_bytes_per_device: cache * cfg.d_model as u128,
    })
}
// ANCHOR_END: kv_share
