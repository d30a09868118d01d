//! Grouped-query attention (GQA), Llama 3's attention: many query heads share a few
//! key/value heads.
//!
//! [`GroupedQueryAttention`] is the crate's one production layer: chapters 4-8 build it
//! up, and its single [`GroupedQueryAttention::forward`] runs a sequence with or without
//! a KV cache, choosing the kernel (straightforward, tiled "flash", or decode) by the
//! shape of the work.

use nalgebra::{DMatrix, DMatrixView};
use rand::Rng;

use crate::fast::AttentionInputs;
use crate::fast::decode::DecodeAttention;
use crate::fast::flash::FlashAttention;
use crate::mechanisms::config::AttentionConfig;
use crate::mechanisms::kv_cache::LayerKvCache;
use crate::mechanisms::linear::Linear;
// QkvoWeights is chapter 3's (multi-head attention uses the same four projections); GQA
// is its main user.
pub use crate::mechanisms::mha::QkvoWeights;
use crate::mechanisms::rope::Rope;
use crate::mechanisms::sdpa::{HeadLayout, grouped_attention};
use crate::support::batch::Batch;
use crate::support::error::{AttnError, Result, check_range, shape_err};
use crate::variants::{QkNorm, ScoreOptions, grouped_attention_with};

/// Which attention kernel [`GroupedQueryAttention::forward`] runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum KernelChoice {
    /// Pick by the shape of the work: [`KernelChoice::Decode`] for a few queries over
    /// many keys, [`KernelChoice::Flash`] for long prefills,
    /// [`KernelChoice::Straightforward`] otherwise.
    #[default]
    Auto,
    /// [`grouped_attention`]: the chapters' code, one `(n_queries, n_keys)` score matrix
    /// per head.
    Straightforward,
    /// [`crate::FlashAttention`]: tiles and an online softmax, no `(seq, seq)` matrix.
    Flash,
    /// [`crate::DecodeAttention`]: reads each cached key and value once per KV head.
    Decode,
}

impl KernelChoice {
    /// Keys above which [`KernelChoice::Auto`] leaves the straightforward kernel: its
    /// score matrix (`n_queries × n_keys` per head) stops fitting the caches, and the
    /// fast kernels win.
    pub const AUTO_MIN_KEYS: usize = 256;
    /// Queries up to which [`KernelChoice::Auto`] uses the decode kernel over a long
    /// cache.
    pub const AUTO_MAX_DECODE_QUERIES: usize = 8;

    /// The kernel this choice runs for `n_queries` queries over `n_keys` keys.
    pub fn resolve(self, n_queries: usize, n_keys: usize) -> KernelChoice {
        match self {
            KernelChoice::Auto if n_keys <= Self::AUTO_MIN_KEYS => {
                KernelChoice::Straightforward
            }
            KernelChoice::Auto if n_queries <= Self::AUTO_MAX_DECODE_QUERIES => {
                KernelChoice::Decode
            }
            KernelChoice::Auto => KernelChoice::Flash,
            other => other,
        }
    }
}

// ANCHOR: gqa
/// Grouped-query causal self-attention with optional RoPE: `(seq, d_in) -> (seq, d_out)`.
///
/// `n_heads` query heads of `head_dim` share `n_kv_heads` key/value heads in groups of
/// `group_size = n_heads / n_kv_heads` (see [`HeadLayout`]). Multi-query attention is
/// `n_kv_heads == 1`; multi-head attention is `n_kv_heads == n_heads`. Llama uses no
/// biases; a bias loaded into a [`Linear`] is applied all the same.
#[derive(Clone, Debug, PartialEq)]
pub struct GroupedQueryAttention {
    weights: QkvoWeights,
    heads: HeadLayout,
    rope: Option<Rope>,
    kernel: KernelChoice,
    threads: usize,
    scores: ScoreOptions, // chapters 9-10: window, soft-cap, sinks; default: none
    qk_norm: Option<QkNorm>, // chapter 10: Qwen3's and Gemma 3's QK-norm
}
// ANCHOR_END: gqa

impl GroupedQueryAttention {
    /// A layer from its projections and head counts; checks every shape against
    /// `n_heads`, `n_kv_heads` and the RoPE tables' `head_dim` (`head_dim = w_query rows
    /// / n_heads`).
    pub fn new(
        weights: QkvoWeights,
        n_heads: usize,
        n_kv_heads: usize,
        rope: Option<Rope>,
    ) -> Result<Self> {
        let QkvoWeights { w_query, w_key, w_value, out_proj } = &weights;
        let (q_out, d_in) = w_query.weight().shape();
        let heads = HeadLayout::from_q_dim(q_out, n_heads, n_kv_heads)?;
        let kv = heads.kv_dim();
        for (name, w) in [("w_key", w_key), ("w_value", w_value)] {
            if w.weight().shape() != (kv, d_in) {
                let what = format!(
                    "GroupedQueryAttention {name} weight ({n_kv_heads} KV heads of {})",
                    heads.head_dim()
                );
                return Err(shape_err(
                    what,
                    &[Some(kv), Some(d_in)],
                    &[w.out_features(), w.in_features()],
                ));
            }
        }
        if out_proj.in_features() != q_out {
            let got = [out_proj.out_features(), out_proj.in_features()];
            return Err(shape_err(
                "GroupedQueryAttention out_proj weight",
                &[None, Some(q_out)],
                &got,
            ));
        }
        if let Some(r) = &rope
            && r.head_dim() != heads.head_dim()
        {
            return Err(AttnError::Config(format!(
                "RoPE tables are for head_dim {}, but the projections give head_dim {}",
                r.head_dim(),
                heads.head_dim()
            )));
        }
        Ok(Self {
            weights,
            heads,
            rope,
            kernel: KernelChoice::Auto,
            threads: 1,
            scores: ScoreOptions::default(),
            qk_norm: None,
        })
    }

    /// Random weights like Raschka's `GroupedQueryAttention(d_in, d_out, num_heads,
    /// num_kv_groups)`: `nn.Linear` init, no biases.
    pub fn random(
        d_in: usize,
        d_out: usize,
        n_heads: usize,
        n_kv_heads: usize,
        rope: Option<Rope>,
        rng: &mut impl Rng,
    ) -> Result<Self> {
        let heads = HeadLayout::from_q_dim(d_out, n_heads, n_kv_heads)?;
        let weights = QkvoWeights {
            w_query: Linear::random(d_in, d_out, false, rng)?,
            w_key: Linear::random(d_in, heads.kv_dim(), false, rng)?,
            w_value: Linear::random(d_in, heads.kv_dim(), false, rng)?,
            out_proj: Linear::random(d_out, d_out, false, rng)?,
        };
        Self::new(weights, n_heads, n_kv_heads, rope)
    }

    /// Random weights for a validated [`AttentionConfig`] (`d_in = d_out = d_model`),
    /// with RoPE tables for its whole context.
    pub fn from_config(cfg: &AttentionConfig, rng: &mut impl Rng) -> Result<Self> {
        cfg.validate()?;
        let rope = Rope::new(
            cfg.head_dim,
            cfg.context_length,
            cfg.rope_theta,
            cfg.rope_scaling,
        )?;
        Self::random(
            cfg.d_model,
            cfg.d_model,
            cfg.n_heads,
            cfg.n_kv_heads,
            Some(rope),
            rng,
        )
    }

    /// The same weights with other RoPE tables (or none): e.g. Meta's interleaved layout
    /// ([`Rope::with_layout`]), or unscaled tables to see what a scaling changes.
    pub fn with_rope(self, rope: Option<Rope>) -> Result<Self> {
        let Self { weights, heads, kernel, threads, scores, qk_norm, .. } = self;
        let layer = Self::new(weights, heads.n_heads(), heads.n_kv_heads(), rope)?;
        Ok(Self { kernel, threads, scores, qk_norm, ..layer })
    }

    /// The same layer with `scores` applied between its scores and its softmax (chapters
    /// 9 and 10): a sliding window, a soft-cap, another scale, learned sinks. Checked
    /// against the layer's heads ([`ScoreOptions::validate`]).
    pub fn with_scores(mut self, scores: ScoreOptions) -> Result<Self> {
        scores.validate(self.heads.n_heads())?;
        self.scores = scores;
        Ok(self)
    }

    /// The same layer normalizing each head of its queries and keys before RoPE
    /// (chapter 10's QK-norm), or not (`None`). The weights must be `head_dim` long.
    pub fn with_qk_norm(mut self, qk_norm: Option<QkNorm>) -> Result<Self> {
        if let Some(n) = &qk_norm {
            n.validate(self.heads.head_dim())?;
        }
        self.qk_norm = qk_norm;
        Ok(self)
    }

    /// What the layer does between its scores and its softmax (default: nothing more
    /// than Llama 3).
    pub fn scores(&self) -> &ScoreOptions {
        &self.scores
    }

    /// The layer's QK-norm, if it has one.
    pub fn qk_norm(&self) -> Option<&QkNorm> {
        self.qk_norm.as_ref()
    }

    /// The same layer running `kernel` (to compare kernels, or to pin one for a
    /// benchmark).
    pub fn with_kernel(mut self, kernel: KernelChoice) -> Self {
        self.kernel = kernel;
        self
    }

    /// The same layer splitting the fast kernels' work over `threads` threads (at least
    /// 1).
    pub fn with_threads(mut self, threads: usize) -> Result<Self> {
        crate::support::error::nonzero("threads", threads)?;
        self.threads = threads;
        Ok(self)
    }

    /// The head layout: `n_heads`, `n_kv_heads`, `head_dim`.
    pub fn heads(&self) -> HeadLayout {
        self.heads
    }

    /// Number of query heads.
    pub fn n_heads(&self) -> usize {
        self.heads.n_heads()
    }

    /// Number of key/value heads.
    pub fn n_kv_heads(&self) -> usize {
        self.heads.n_kv_heads()
    }

    /// Query heads per key/value head.
    pub fn group_size(&self) -> usize {
        self.heads.group_size()
    }

    /// Width of each head.
    pub fn head_dim(&self) -> usize {
        self.heads.head_dim()
    }

    /// The four projections.
    pub fn weights(&self) -> &QkvoWeights {
        &self.weights
    }

    /// Width of the input rows.
    pub fn d_in(&self) -> usize {
        self.weights.w_query.in_features()
    }

    /// Width of the output rows.
    pub fn d_out(&self) -> usize {
        self.weights.out_proj.out_features()
    }

    /// The RoPE tables, if this layer rotates its queries and keys.
    pub fn rope(&self) -> Option<&Rope> {
        self.rope.as_ref()
    }

    /// The kernel choice [`GroupedQueryAttention::forward`] uses.
    pub fn kernel(&self) -> KernelChoice {
        self.kernel
    }

    /// An empty KV cache for `batch` sequences of `capacity` rows, shaped for this layer.
    /// A sliding-window layer's cache drops the rows no later query can see (chapter 9),
    /// so `capacity` bounds its memory however long the sequence grows; a capacity below
    /// the window (and sink tokens) never needs to drop anything, and is a plain cache.
    pub fn new_cache(&self, batch: usize, capacity: usize) -> Result<LayerKvCache> {
        let cache = LayerKvCache::for_heads(batch, capacity, self.heads)?;
        let (sinks, window) = (self.scores.sink_tokens, self.scores.window);
        match window {
            Some(w) if w.saturating_add(sinks) <= capacity => cache.with_window(w, sinks),
            _ => Ok(cache),
        }
    }

    // ANCHOR: gqa_project
    /// Projects one sequence to queries `(seq, n_heads·head_dim)` and keys and values
    /// `(seq, n_kv_heads·head_dim)`, with RoPE applied to queries and keys at positions
    /// `start_pos .. start_pos + seq`.
    pub fn project(
        &self,
        x: &DMatrix<f32>,
        start_pos: usize,
    ) -> Result<(DMatrix<f32>, DMatrix<f32>, DMatrix<f32>)> {
        let mut queries = self.weights.w_query.forward(x)?;
        let mut keys = self.weights.w_key.forward(x)?;
        let values = self.weights.w_value.forward(x)?;
        if let Some(norm) = &self.qk_norm {
            norm.apply(&mut queries, &mut keys, self.heads)?; // before RoPE (chapter 10)
        }
        if let Some(rope) = &self.rope {
            // Rotate before caching and before sharing: keys are rotated once, per KV
            // head.
            rope.apply(&mut queries, start_pos)?;
            rope.apply(&mut keys, start_pos)?;
        }
        Ok((queries, keys, values))
    }
    // ANCHOR_END: gqa_project

    // ANCHOR: gqa_forward
    /// The layer on a batch `(batch, seq, d_in) -> (batch, seq, d_out)` whose first token
    /// sits at absolute position `start_pos` (what RoPE rotates by).
    ///
    /// Without a cache the tokens attend causally among themselves. With one, their keys
    /// and values are appended first ([`LayerKvCache::append`]) and query `i` sees cache
    /// rows `0 ..= query_offset + i`, `query_offset` being the rows cached before it:
    /// RoPE counts positions, the mask counts cache rows.
    pub fn forward(
        &self,
        x: &Batch,
        start_pos: usize,
        cache: Option<&mut LayerKvCache>,
    ) -> Result<Batch> {
        self.check_forward(x, start_pos, cache.as_deref())?; // shapes, positions, cache
        let Some(cache) = cache else {
            return x.try_map(|item| {
                let (q, k, v) = self.project(item, start_pos)?;
                self.attend(&q, k.as_view(), v.as_view(), 0)
            });
        };
        let (mut queries, mut new_keys, mut new_values) = (vec![], vec![], vec![]);
        for item in x.items() {
            let (q, k, v) = self.project(item, start_pos)?;
            queries.push(q);
            new_keys.push(k);
            new_values.push(v);
        }
        // checked before anything is written
        cache.append(start_pos, &new_keys, &new_values)?;
        let query_offset = cache.len() - x.seq_len(); // cache rows before the first query
        let outputs = queries
            .iter()
            .enumerate()
            .map(|(b, q)| self.attend(q, cache.keys(b)?, cache.values(b)?, query_offset))
            .collect::<Result<Vec<_>>>()?;
        Batch::new(outputs)
    }
    // ANCHOR_END: gqa_forward

    /// [`forward`](Self::forward)'s argument checks: `x`'s width, positions that exist,
    /// and a cache shaped for this layer and batch.
    fn check_forward(
        &self,
        x: &Batch,
        start_pos: usize,
        cache: Option<&LayerKvCache>,
    ) -> Result<()> {
        if x.dim() != self.d_in() {
            return Err(shape_err(
                "GroupedQueryAttention input",
                &[None, None, Some(self.d_in())],
                &x.shape(),
            ));
        }
        check_range(start_pos, x.seq_len(), usize::MAX)?; // every token has a position
        if let Some(cache) = cache
            && (cache.batch_size() != x.batch_size()
                || cache.kv_dim() != self.heads.kv_dim()
                || cache.window().is_some_and(|w| self.window() != Some(w)))
        {
            let slide = |w: Option<(usize, usize)>| match w {
                Some((w, 0)) => format!(", window {w}"),
                Some((w, sinks)) => format!(", window {w} + {sinks} sink tokens"),
                None => String::new(),
            };
            return Err(AttnError::CacheMismatch(format!(
                "the cache holds {} sequences of width {}{}, the layer needs {} of width \
                    {}{}",
                cache.batch_size(),
                cache.kv_dim(),
                slide(cache.window()),
                x.batch_size(),
                self.heads.kv_dim(),
                slide(self.window())
            )));
        }
        Ok(())
    }

    /// The window and sink tokens a cache of this layer keeps, if it slides.
    fn window(&self) -> Option<(usize, usize)> {
        self.scores.window.map(|w| (w, self.scores.sink_tokens))
    }

    /// Attention of `q` over `k`, `v` with the chosen kernel, then the output projection.
    fn attend(
        &self,
        q: &DMatrix<f32>,
        k: DMatrixView<f32>,
        v: DMatrixView<f32>,
        query_offset: usize,
    ) -> Result<DMatrix<f32>> {
        let x = AttentionInputs { q, k, v, heads: self.heads, query_offset };
        let plain = self.scores.is_plain(); // Llama 3's scores: every kernel has them
        let context = match self.kernel.resolve(q.nrows(), k.nrows()) {
            KernelChoice::Decode if plain => {
                DecodeAttention::with_threads(self.threads)?.forward(x)?
            }
            // the flash kernel applies the options per tile (chapter 9); it also serves
            // decode for layers that have them
            KernelChoice::Flash | KernelChoice::Decode => {
                let flash = FlashAttention::with_threads(self.threads)?;
                flash.with_scores(self.scores.clone()).forward(x)?
            }
            _ if plain => grouped_attention(q, k, v, self.heads, query_offset)?,
            _ => grouped_attention_with(q, k, v, self.heads, query_offset, &self.scores)?,
        };
        // (seq, n_heads·head_dim) -> (seq, d_out)
        self.weights.out_proj.forward(&context)
    }

    // ANCHOR: forward_prefill_decode
    /// Runs `x` `(batch, seq, d_in)`, whose first token sits at position `start_pos`,
    /// through a fresh KV cache: the first `prefill` tokens as one chunk, then the rest
    /// one token at a time. Equals [`GroupedQueryAttention::forward`] without a cache
    /// (same positions, same causal mask). `prefill` may be 0 (every token one by one).
    pub fn forward_prefill_decode(
        &self,
        x: &Batch,
        start_pos: usize,
        prefill: usize,
    ) -> Result<Batch> {
        let seq = x.seq_len();
        check_range(0, prefill, seq)?; // at most seq tokens to prefill
        check_range(start_pos, seq, usize::MAX)?;
        let mut cache = self.new_cache(x.batch_size(), seq)?;
        // chunks (first token, length): [0, prefill) and then single tokens
        let chunks = (prefill > 0)
            .then_some((0, prefill))
            .into_iter()
            .chain((prefill..seq).map(|t| (t, 1)));
        let mut outputs = Vec::new();
        for (first, len) in chunks {
            let chunk = x.narrow_seq(first, len)?;
            outputs.push(self.forward(&chunk, start_pos + first, Some(&mut cache))?);
        }
        Batch::concat_seq(&outputs)
    }
    // ANCHOR_END: forward_prefill_decode
}
