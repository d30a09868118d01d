//! Chapter 12: multi-head latent attention (MLA), DeepSeek-V2's and V3's attention.
//!
//! Keys and values are not projected from the token directly: the token is first
//! compressed to a small **latent** vector (`kv_lora_rank` wide), and every head's key
//! and value are expanded from that latent. The cache stores only the latent and one
//! small RoPE key shared by all heads, so it is a fraction of even a GQA cache. RoPE
//! cannot act on the latent (a rotation between the compression and the expansion would
//! not commute with them), so each key is split: a part expanded from the latent with no
//! position, and a part `qk_rope_head_dim` wide that carries RoPE, shared by all heads.

use nalgebra::DMatrix;
use rand::Rng;

use crate::mechanisms::linear::Linear;
use crate::mechanisms::rope::Rope;
use crate::support::batch::Batch;
use crate::support::error::{
    AttnError, Result, check_range, checked_len, nonzero, shape_err, try_zero_matrix,
};
use crate::variants::qk_norm::{RmsNormStyle, rms_norm_rows};
use crate::variants::scores::{ScoreOptions, attention_weights_with};

/// The RMSNorm epsilon of MLA's two norms: DeepSeek-V3's `q_a_layernorm` and
/// `kv_a_layernorm` use the default 1e-6 whatever `rms_norm_eps` says.
pub const MLA_NORM_EPS: f32 = 1e-6;

// ANCHOR: mla_shape
/// The sizes of a multi-head latent attention layer, under DeepSeek's config names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MlaShape {
    /// Width of the layer's input and output (`hidden_size`).
    pub d_model: usize,
    /// Query heads; every head also gets its own key and value (`num_attention_heads`).
    pub n_heads: usize,
    /// Width of the compressed query, or `None` for a plain query projection.
    pub q_lora_rank: Option<usize>,
    /// Width of the compressed key/value latent: what the cache stores per token.
    pub kv_lora_rank: usize,
    /// The part of each query and key head without position (expanded from latents).
    pub qk_nope_head_dim: usize,
    /// The part of each query and key head that RoPE rotates; the key part is one head
    /// shared by all query heads, cached beside the latent.
    pub qk_rope_head_dim: usize,
    /// Width of each value head (need not equal the query/key head width).
    pub v_head_dim: usize,
}
// ANCHOR_END: mla_shape

impl MlaShape {
    /// DeepSeek-V3's attention (671B): 7168 wide, 128 heads, query rank 1536, latent
    /// 512, heads of 128 + 64 (RoPE) for queries and keys, 128 for values.
    pub const DEEPSEEK_V3: Self = Self {
        d_model: 7168,
        n_heads: 128,
        q_lora_rank: Some(1536),
        kv_lora_rank: 512,
        qk_nope_head_dim: 128,
        qk_rope_head_dim: 64,
        v_head_dim: 128,
    };

    /// A query/key head: `qk_nope_head_dim + qk_rope_head_dim`.
    pub fn qk_head_dim(&self) -> usize {
        self.qk_nope_head_dim + self.qk_rope_head_dim
    }

    /// Numbers cached per token and layer: the latent and the shared RoPE key,
    /// `kv_lora_rank + qk_rope_head_dim` (576 for DeepSeek-V3).
    pub fn cache_width(&self) -> usize {
        self.kv_lora_rank + self.qk_rope_head_dim
    }

    /// Checks that no size is 0, that the RoPE part is even, and that every weight
    /// matrix can be counted in a `usize`.
    pub fn validate(&self) -> Result<()> {
        nonzero("hidden_size", self.d_model)?;
        nonzero("num_attention_heads", self.n_heads)?;
        nonzero("kv_lora_rank", self.kv_lora_rank)?;
        nonzero("qk_nope_head_dim", self.qk_nope_head_dim)?;
        nonzero("qk_rope_head_dim", self.qk_rope_head_dim)?;
        nonzero("v_head_dim", self.v_head_dim)?;
        if let Some(r) = self.q_lora_rank {
            nonzero("q_lora_rank", r)?;
        }
        if !self.qk_rope_head_dim.is_multiple_of(2) {
            return Err(AttnError::OddHeadDim { head_dim: self.qk_rope_head_dim });
        }
        let qk = self.qk_nope_head_dim.checked_add(self.qk_rope_head_dim);
        let kv = self.qk_nope_head_dim.checked_add(self.v_head_dim);
        let (Some(qk), Some(kv)) = (qk, kv) else {
            return Err(AttnError::Config("MLA head widths do not fit in usize".into()));
        };
        let what = "MLA weights";
        checked_len(what, &[self.n_heads, qk, self.d_model])?;
        checked_len(what, &[self.n_heads, kv, self.kv_lora_rank])?;
        checked_len(what, &[self.n_heads, self.v_head_dim, self.d_model])?;
        checked_len(what, &[self.kv_lora_rank + self.qk_rope_head_dim, self.d_model])?;
        Ok(())
    }
}

/// The query path of an MLA layer.
#[derive(Clone, Debug, PartialEq)]
pub enum MlaQuery {
    /// `q_proj`: `d_model -> n_heads · qk_head_dim` (DeepSeek-V2-Lite).
    Direct(Linear),
    /// `q_a_proj` to `q_lora_rank`, an RMSNorm (`q_a_layernorm`), `q_b_proj` up to `n_heads
    /// · qk_head_dim` (DeepSeek-V2, V3).
    LowRank {
        /// `q_a_proj`: `d_model -> q_lora_rank`.
        down: Linear,
        /// `q_a_layernorm.weight`, `q_lora_rank` gains.
        norm: Vec<f32>,
        /// `q_b_proj`: `q_lora_rank -> n_heads · qk_head_dim`.
        up: Linear,
    },
}

// ANCHOR: mla_weights
/// The projections of an MLA layer (DeepSeek's names in brackets).
#[derive(Clone, Debug, PartialEq)]
pub struct MlaWeights {
    /// Queries, `(seq, n_heads · qk_head_dim)`, each head `[nope | rope]`.
    pub query: MlaQuery,
    /// `kv_a_proj_with_mqa`: `d_model -> kv_lora_rank + qk_rope_head_dim`, the latent
    /// and the shared RoPE key side by side.
    pub kv_down: Linear,
    /// `kv_a_layernorm.weight`: the latent's RMSNorm gains.
    pub kv_norm: Vec<f32>,
    /// `kv_b_proj`: `kv_lora_rank -> n_heads · (qk_nope_head_dim + v_head_dim)`, each
    /// head's key part `W_uk` and value `W_uv` from the latent.
    pub kv_up: Linear,
    /// `o_proj`: `n_heads · v_head_dim -> d_model`.
    pub out_proj: Linear,
}
// ANCHOR_END: mla_weights

/// How [`MultiHeadLatentAttention::forward`] attends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum MlaPath {
    /// [`MlaPath::Absorbed`] for a few queries (decode), [`MlaPath::Expanded`] otherwise.
    #[default]
    Auto,
    /// Expand every cached latent to per-head keys and values, then attend: the
    /// definition, and what transformers does.
    Expanded,
    /// Fold `W_uk` into the queries and `W_uv` into the output, and attend over the
    /// latents themselves: reads only the cache, expands nothing.
    Absorbed,
}

/// Multi-head latent attention, DeepSeek-V2/V3: `(batch, seq, d_model) -> (batch, seq,
/// d_model)`, causal, with RoPE on the `qk_rope_head_dim` part of queries and keys.
#[derive(Clone, Debug, PartialEq)]
pub struct MultiHeadLatentAttention {
    weights: MlaWeights,
    shape: MlaShape,
    /// Tables for `qk_rope_head_dim`-wide heads (DeepSeek rotates interleaved pairs).
    rope: Rope,
    /// The softmax scale: `qk_head_dim^-1/2`, times YaRN's `mscale²` in DeepSeek-V3.
    scale: f32,
    path: MlaPath,
}

impl MultiHeadLatentAttention {
    /// A layer from its projections; checks every shape against `shape` and the RoPE
    /// tables' width against `qk_rope_head_dim`, and the scale (finite, `> 0`).
    pub fn new(
        weights: MlaWeights,
        shape: MlaShape,
        rope: Rope,
        scale: f32,
    ) -> Result<Self> {
        shape.validate()?;
        let q_out = shape.n_heads * shape.qk_head_dim();
        let kv_up_out = shape.n_heads * (shape.qk_nope_head_dim + shape.v_head_dim);
        let d = shape.d_model;
        let mut checks = vec![
            ("kv_a_proj_with_mqa", &weights.kv_down, (shape.cache_width(), d)),
            ("kv_b_proj", &weights.kv_up, (kv_up_out, shape.kv_lora_rank)),
            ("o_proj", &weights.out_proj, (d, shape.n_heads * shape.v_head_dim)),
        ];
        let mut norms = vec![("kv_a_layernorm", &weights.kv_norm, shape.kv_lora_rank)];
        match (&weights.query, shape.q_lora_rank) {
            (MlaQuery::Direct(q), None) => checks.push(("q_proj", q, (q_out, d))),
            (MlaQuery::LowRank { down, norm, up }, Some(r)) => {
                checks.push(("q_a_proj", down, (r, d)));
                checks.push(("q_b_proj", up, (q_out, r)));
                norms.push(("q_a_layernorm", norm, r));
            }
            _ => {
                let msg = "the query path (q_proj, or q_a_proj + q_b_proj) must match \
                           q_lora_rank (null, or a number)";
                return Err(AttnError::Config(msg.into()));
            }
        }
        for (name, w, (rows, cols)) in checks {
            if w.weight().shape() != (rows, cols) {
                let got = [w.out_features(), w.in_features()];
                let what = format!("MultiHeadLatentAttention {name} weight");
                return Err(shape_err(what, &[Some(rows), Some(cols)], &got));
            }
        }
        for (name, w, len) in norms {
            if w.len() != len {
                let what = format!("MultiHeadLatentAttention {name} weight");
                return Err(shape_err(what, &[Some(len)], &[w.len()]));
            }
        }
        if rope.head_dim() != shape.qk_rope_head_dim {
            return Err(AttnError::Config(format!(
                "RoPE tables are for head_dim {}, but qk_rope_head_dim is {}",
                rope.head_dim(),
                shape.qk_rope_head_dim
            )));
        }
        ScoreOptions { scale: Some(scale), ..Default::default() }.validate(1)?;
        Ok(Self { weights, shape, rope, scale, path: MlaPath::Auto })
    }

    /// Random weights (`nn.Linear` init, no biases, norm gains 1) for `shape`.
    pub fn random(shape: MlaShape, rope: Rope, rng: &mut impl Rng) -> Result<Self> {
        shape.validate()?;
        let s = shape;
        let q_out = s.n_heads * s.qk_head_dim();
        let query = match s.q_lora_rank {
            None => MlaQuery::Direct(Linear::random(s.d_model, q_out, false, rng)?),
            Some(r) => MlaQuery::LowRank {
                down: Linear::random(s.d_model, r, false, rng)?,
                norm: vec![1.0; r],
                up: Linear::random(r, q_out, false, rng)?,
            },
        };
        let kv_up_out = s.n_heads * (s.qk_nope_head_dim + s.v_head_dim);
        let weights = MlaWeights {
            query,
            kv_down: Linear::random(s.d_model, s.cache_width(), false, rng)?,
            kv_norm: vec![1.0; s.kv_lora_rank],
            kv_up: Linear::random(s.kv_lora_rank, kv_up_out, false, rng)?,
            out_proj: Linear::random(s.n_heads * s.v_head_dim, s.d_model, false, rng)?,
        };
        Self::new(weights, shape, rope, (s.qk_head_dim() as f64).powf(-0.5) as f32)
    }

    /// The same layer rotating RoPE pairs in `layout` (DeepSeek's `rope_interleave`: true is
    /// [`RopeLayout::Interleaved`](crate::RopeLayout::Interleaved)).
    pub fn with_rope_layout(mut self, layout: crate::RopeLayout) -> Self {
        self.rope = self.rope.with_layout(layout);
        self
    }

    /// The same layer with another softmax scale (finite, `> 0`).
    pub fn with_scale(mut self, scale: f32) -> Result<Self> {
        ScoreOptions { scale: Some(scale), ..Default::default() }.validate(1)?;
        self.scale = scale;
        Ok(self)
    }

    /// The same layer attending by `path`.
    pub fn with_path(mut self, path: MlaPath) -> Self {
        self.path = path;
        self
    }

    /// The layer's sizes.
    pub fn shape(&self) -> MlaShape {
        self.shape
    }

    /// The projections.
    pub fn weights(&self) -> &MlaWeights {
        &self.weights
    }

    /// The softmax scale.
    pub fn scale(&self) -> f32 {
        self.scale
    }

    /// The RoPE tables (`qk_rope_head_dim` wide).
    pub fn rope(&self) -> &Rope {
        &self.rope
    }

    /// An empty cache for `batch` sequences of up to `capacity` tokens: the latent and
    /// the RoPE key of each, `kv_lora_rank + qk_rope_head_dim` numbers per token.
    pub fn new_cache(&self, batch: usize, capacity: usize) -> Result<LatentCache> {
        LatentCache::new(batch, capacity, self.shape)
    }

    // ANCHOR: mla_project
    /// Projects one sequence at positions `start_pos ..`: the queries `(seq, n_heads ·
    /// qk_head_dim)` with RoPE on each head's last `qk_rope_head_dim` columns, the
    /// normalized latents `(seq, kv_lora_rank)` and the rotated shared RoPE keys `(seq,
    /// qk_rope_head_dim)`: everything the cache keeps.
    pub fn project(
        &self,
        x: &DMatrix<f32>,
        start_pos: usize,
    ) -> Result<(DMatrix<f32>, DMatrix<f32>, DMatrix<f32>)> {
        let s = self.shape;
        let mut queries = match &self.weights.query {
            MlaQuery::Direct(q) => q.forward(x)?,
            MlaQuery::LowRank { down, norm, up } => {
                let mut q_low = down.forward(x)?; // (seq, q_lora_rank)
                rms_norm_rows(
                    &mut q_low,
                    norm.len(),
                    norm,
                    MLA_NORM_EPS,
                    RmsNormStyle::Weight,
                )?;
                up.forward(&q_low)?
            }
        };
        let compressed = self.weights.kv_down.forward(x)?; // (seq, kv_lora_rank + rope)
        let mut latents = compressed.columns(0, s.kv_lora_rank).into_owned();
        let mut rope_keys =
            compressed.columns(s.kv_lora_rank, s.qk_rope_head_dim).into_owned();
        let kv_norm = &self.weights.kv_norm;
        rms_norm_rows(
            &mut latents,
            s.kv_lora_rank,
            kv_norm,
            MLA_NORM_EPS,
            RmsNormStyle::Weight,
        )?;
        self.rope.apply(&mut rope_keys, start_pos)?; // one RoPE key for all heads
        let (dh, dn, dr) = (s.qk_head_dim(), s.qk_nope_head_dim, s.qk_rope_head_dim);
        for h in 0..s.n_heads {
            // head h's query is columns [h·dh, h·dh + dn) without RoPE, then dr with it
            let mut q_rot = queries.columns(h * dh + dn, dr).into_owned();
            self.rope.apply(&mut q_rot, start_pos)?;
            queries.columns_mut(h * dh + dn, dr).copy_from(&q_rot);
        }
        Ok((queries, latents, rope_keys))
    }
    // ANCHOR_END: mla_project

    /// The layer on a batch `(batch, seq, d_model)` whose first token is at `start_pos`,
    /// without a cache (the tokens attend causally among themselves) or through `cache`
    /// (their latents and RoPE keys are appended first, and they attend over everything
    /// cached).
    pub fn forward(
        &self,
        x: &Batch,
        start_pos: usize,
        cache: Option<&mut LatentCache>,
    ) -> Result<Batch> {
        if x.dim() != self.shape.d_model {
            let want = [None, None, Some(self.shape.d_model)];
            return Err(shape_err("MultiHeadLatentAttention input", &want, &x.shape()));
        }
        check_range(start_pos, x.seq_len(), usize::MAX)?;
        let Some(cache) = cache else {
            return x.try_map(|item| {
                let (q, latents, rope_keys) = self.project(item, start_pos)?;
                self.attend(&q, &latents, &rope_keys, 0)
            });
        };
        if cache.batch_size() != x.batch_size() || cache.shape != self.shape {
            return Err(AttnError::CacheMismatch(format!(
                "the latent cache holds {} sequences for {:?}, the layer needs {} for {:?}",
                cache.batch_size(),
                cache.shape,
                x.batch_size(),
                self.shape
            )));
        }
        let mut parts = Vec::with_capacity(x.batch_size());
        for item in x.items() {
            parts.push(self.project(item, start_pos)?);
        }
        let latents: Vec<_> = parts.iter().map(|p| p.1.clone()).collect();
        let rope_keys: Vec<_> = parts.iter().map(|p| p.2.clone()).collect();
        cache.append(start_pos, &latents, &rope_keys)?; // checked before anything is written
        let query_offset = cache.len() - x.seq_len();
        let outputs = parts
            .iter()
            .enumerate()
            .map(|(b, (q, _, _))| {
                let (c, k_rot) = (cache.latents(b)?, cache.rope_keys(b)?);
                self.attend(q, &c.into_owned(), &k_rot.into_owned(), query_offset)
            })
            .collect::<Result<Vec<_>>>()?;
        Batch::new(outputs)
    }

    /// Attention of `q (n, n_heads · qk_head_dim)` over the cached `latents (t,
    /// kv_lora_rank)` and `rope_keys (t, qk_rope_head_dim)`, then `o_proj`.
    fn attend(
        &self,
        q: &DMatrix<f32>,
        latents: &DMatrix<f32>,
        rope_keys: &DMatrix<f32>,
        query_offset: usize,
    ) -> Result<DMatrix<f32>> {
        let absorbed = match self.path {
            MlaPath::Auto => q.nrows() <= 8,
            other => other == MlaPath::Absorbed,
        };
        let context = if absorbed {
            self.attend_absorbed(q, latents, rope_keys, query_offset)?
        } else {
            self.attend_expanded(q, latents, rope_keys, query_offset)?
        };
        self.weights.out_proj.forward(&context) // (n, n_heads · v_head_dim) -> (n, d_model)
    }

    /// Head `h`'s rows of `kv_b_proj`: `W_uk (qk_nope_head_dim, kv_lora_rank)` and `W_uv
    /// (v_head_dim, kv_lora_rank)`.
    fn up_blocks(
        &self,
        h: usize,
    ) -> (nalgebra::DMatrixView<'_, f32>, nalgebra::DMatrixView<'_, f32>) {
        let s = self.shape;
        let w = self.weights.kv_up.weight();
        let first = h * (s.qk_nope_head_dim + s.v_head_dim);
        (
            w.rows(first, s.qk_nope_head_dim),
            w.rows(first + s.qk_nope_head_dim, s.v_head_dim),
        )
    }

    // ANCHOR: mla_expanded
    /// The definition: expand each latent to every head's key part and value
    /// (`kv_b_proj`), put the shared RoPE key beside each key part, and attend head by
    /// head.
    fn attend_expanded(
        &self,
        q: &DMatrix<f32>,
        latents: &DMatrix<f32>,
        rope_keys: &DMatrix<f32>,
        query_offset: usize,
    ) -> Result<DMatrix<f32>> {
        let s = self.shape;
        let (dh, dv, t) = (s.qk_head_dim(), s.v_head_dim, latents.nrows());
        let expanded = self.weights.kv_up.forward(latents)?; // (t, n_heads · (nope + v))
        let options = ScoreOptions { scale: Some(self.scale), ..Default::default() };
        let mut context = try_zero_matrix("MLA context", q.nrows(), s.n_heads * dv)?;
        for h in 0..s.n_heads {
            let first = h * (s.qk_nope_head_dim + dv);
            let mut k_h = DMatrix::zeros(t, dh); // [k_nope_h | shared RoPE key]
            k_h.columns_mut(0, s.qk_nope_head_dim)
                .copy_from(&expanded.columns(first, s.qk_nope_head_dim));
            k_h.columns_mut(s.qk_nope_head_dim, s.qk_rope_head_dim).copy_from(rope_keys);
            let v_h = expanded.columns(first + s.qk_nope_head_dim, dv); // (t, v_head_dim)
            let q_h = q.columns(h * dh, dh);
            let w =
                attention_weights_with(q_h, k_h.as_view(), query_offset, &options, 0)?;
            context.columns_mut(h * dv, dv).copy_from(&(w * v_h));
        }
        Ok(context)
    }
    // ANCHOR_END: mla_expanded

    // ANCHOR: mla_absorbed
    /// Weight absorption, for decode: `q_nope · k_nopeᵀ = q_nope · (c · W_ukᵀ)ᵀ =
    /// (q_nope · W_uk) · cᵀ`, so each head's query is mapped into the latent space once
    /// and scored against the cached latents `c` directly; the weighted sum of latents
    /// is mapped to values by `W_uv` afterwards. Reads only the cache: no key or value is
    /// expanded.
    fn attend_absorbed(
        &self,
        q: &DMatrix<f32>,
        latents: &DMatrix<f32>,
        rope_keys: &DMatrix<f32>,
        query_offset: usize,
    ) -> Result<DMatrix<f32>> {
        let s = self.shape;
        let (dh, dv, r) = (s.qk_head_dim(), s.v_head_dim, s.kv_lora_rank);
        // the keys every head shares: [latent | RoPE key], (t, kv_lora_rank + rope)
        let mut keys = DMatrix::zeros(latents.nrows(), s.cache_width());
        keys.columns_mut(0, r).copy_from(latents);
        keys.columns_mut(r, s.qk_rope_head_dim).copy_from(rope_keys);
        let options = ScoreOptions { scale: Some(self.scale), ..Default::default() };
        let mut context = try_zero_matrix("MLA context", q.nrows(), s.n_heads * dv)?;
        for h in 0..s.n_heads {
            let (w_uk, w_uv) = self.up_blocks(h);
            // head h's query in latent space and its RoPE part: [q_nope·W_uk | q_rot]
            let mut q_h = DMatrix::zeros(q.nrows(), s.cache_width());
            q_h.columns_mut(0, r)
                .copy_from(&(q.columns(h * dh, s.qk_nope_head_dim) * w_uk));
            q_h.columns_mut(r, s.qk_rope_head_dim)
                .copy_from(&q.columns(h * dh + s.qk_nope_head_dim, s.qk_rope_head_dim));
            let w = attention_weights_with(
                q_h.as_view(),
                keys.as_view(),
                query_offset,
                &options,
                0,
            )?;
            let latent_context = w * latents; // (n, kv_lora_rank): weights over latents
            context
                .columns_mut(h * dv, dv)
                .copy_from(&(latent_context * w_uv.transpose()));
        }
        Ok(context)
    }
    // ANCHOR_END: mla_absorbed
}

// ANCHOR: latent_cache
/// The cache of an MLA layer: per sequence, the normalized latent and the rotated RoPE
/// key of every token so far, `kv_lora_rank + qk_rope_head_dim` numbers per token instead
/// of `2 · n_kv_heads · head_dim`. Same rules as chapter 6's cache: allocated once,
/// positions checked, a full cache is an error.
#[derive(Clone, Debug, PartialEq)]
pub struct LatentCache {
    latents: Vec<DMatrix<f32>>, // per sequence (capacity, kv_lora_rank)
    rope_keys: Vec<DMatrix<f32>>, // per sequence (capacity, qk_rope_head_dim)
    len: usize,
    capacity: usize,
    first_pos: usize,
    shape: MlaShape,
}
// ANCHOR_END: latent_cache

impl LatentCache {
    /// A cache for `batch` sequences of up to `capacity` tokens of a layer of `shape`,
    /// its size checked before anything is allocated.
    pub fn new(batch: usize, capacity: usize, shape: MlaShape) -> Result<Self> {
        nonzero("batch", batch)?;
        nonzero("capacity", capacity)?;
        shape.validate()?;
        let what = format!("LatentCache for {batch} sequences of {capacity} tokens");
        checked_len(&what, &[batch, capacity, shape.cache_width()])?;
        let mut latents = Vec::with_capacity(batch);
        let mut rope_keys = Vec::with_capacity(batch);
        for _ in 0..batch {
            latents.push(try_zero_matrix(&what, capacity, shape.kv_lora_rank)?);
            rope_keys.push(try_zero_matrix(&what, capacity, shape.qk_rope_head_dim)?);
        }
        Ok(Self { latents, rope_keys, len: 0, capacity, first_pos: 0, shape })
    }

    /// Tokens cached.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Tokens the cache can hold.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Sequences in the batch.
    pub fn batch_size(&self) -> usize {
        self.latents.len()
    }

    /// The position the next token must have.
    pub fn next_pos(&self) -> usize {
        self.first_pos + self.len
    }

    /// Bytes the cache holds per token in f32: `4 · (kv_lora_rank + qk_rope_head_dim)`
    /// per sequence.
    pub fn bytes_per_token(&self) -> usize {
        4 * self.shape.cache_width() * self.batch_size()
    }

    /// Appends the latents `(n_new, kv_lora_rank)` and RoPE keys `(n_new,
    /// qk_rope_head_dim)` of new tokens at positions `start_pos ..`, one matrix each per
    /// sequence. Errors as [`crate::LayerKvCache::append`]: a position that does not
    /// continue the cache, a full cache, a wrong shape; the cache is unchanged on error.
    pub fn append(
        &mut self,
        start_pos: usize,
        latents: &[DMatrix<f32>],
        rope_keys: &[DMatrix<f32>],
    ) -> Result<()> {
        let n_new = latents.first().map_or(0, |m| m.nrows());
        let widths = [
            ("latents", latents, self.shape.kv_lora_rank),
            ("rope_keys", rope_keys, self.shape.qk_rope_head_dim),
        ];
        for (name, part, width) in widths {
            if part.len() != self.batch_size() {
                let what = format!("LatentCache::append {name}: one matrix per sequence");
                return Err(shape_err(what, &[Some(self.batch_size())], &[part.len()]));
            }
            if let Some(m) = part.iter().find(|m| m.shape() != (n_new, width)) {
                let what = format!("LatentCache::append {name}");
                return Err(shape_err(
                    what,
                    &[Some(n_new), Some(width)],
                    &[m.nrows(), m.ncols()],
                ));
            }
        }
        if !self.is_empty() && start_pos != self.next_pos() {
            let next_pos = self.next_pos();
            return Err(AttnError::CachePosition { start_pos, next_pos });
        }
        if n_new > self.capacity - self.len {
            let (capacity, len) = (self.capacity, self.len);
            return Err(AttnError::CacheFull { capacity, len, adding: n_new });
        }
        let first_pos = if self.is_empty() { start_pos } else { self.first_pos };
        check_range(first_pos, self.len + n_new, usize::MAX)?;
        for b in 0..self.batch_size() {
            self.latents[b].rows_mut(self.len, n_new).copy_from(&latents[b]);
            self.rope_keys[b].rows_mut(self.len, n_new).copy_from(&rope_keys[b]);
        }
        self.first_pos = first_pos;
        self.len += n_new;
        Ok(())
    }

    /// The cached latents of sequence `b`, `(len, kv_lora_rank)`.
    pub fn latents(&self, b: usize) -> Result<nalgebra::DMatrixView<'_, f32>> {
        self.check_batch(b)?;
        Ok(self.latents[b].rows(0, self.len))
    }

    /// The cached RoPE keys of sequence `b`, `(len, qk_rope_head_dim)`.
    pub fn rope_keys(&self, b: usize) -> Result<nalgebra::DMatrixView<'_, f32>> {
        self.check_batch(b)?;
        Ok(self.rope_keys[b].rows(0, self.len))
    }

    fn check_batch(&self, b: usize) -> Result<()> {
        if b >= self.batch_size() {
            let (what, len) = ("LatentCache sequence", self.batch_size());
            return Err(AttnError::IndexOutOfRange { what, index: b, len });
        }
        Ok(())
    }
}
