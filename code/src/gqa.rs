//! Grouped-query attention (GQA), Llama 3's attention: many query heads share a few key/value heads.

use nalgebra::DMatrix;
use rand::Rng;

use crate::batch::Batch;
use crate::config::AttentionConfig;
use crate::error::{AttnError, Result, divisible, shape_err};
use crate::kv_cache::LayerKvCache;
use crate::linear::Linear;
use crate::rope::Rope;
use crate::sdpa::grouped_attention;
use crate::self_attention::Attention;

// ANCHOR: gqa
/// Grouped-query causal self-attention with optional RoPE: `(seq, d_in) -> (seq, d_out)`.
///
/// `n_heads` query heads of `head_dim = d_out / n_heads` share `n_kv_heads` key/value heads in groups
/// of `group_size = n_heads / n_kv_heads`. Multi-query attention is `n_kv_heads == 1`; multi-head
/// attention is `n_kv_heads == n_heads`. Llama uses no biases, so none of the projections has one here
/// (a bias loaded into a [`Linear`] is applied all the same).
#[derive(Clone, Debug, PartialEq)]
pub struct GroupedQueryAttention {
    /// `(n_heads · head_dim, d_in)`.
    pub w_query: Linear,
    /// `(n_kv_heads · head_dim, d_in)`: `group_size` times narrower than `w_query`.
    pub w_key: Linear,
    /// `(n_kv_heads · head_dim, d_in)`.
    pub w_value: Linear,
    /// `(d_out, n_heads · head_dim)`.
    pub out_proj: Linear,
    n_heads: usize,
    n_kv_heads: usize,
    rope: Option<Rope>,
}
// ANCHOR_END: gqa

impl GroupedQueryAttention {
    /// A module from its projections; checks every shape against `n_heads`, `n_kv_heads` and the RoPE
    /// tables' `head_dim`.
    pub fn new(
        w_query: Linear,
        w_key: Linear,
        w_value: Linear,
        out_proj: Linear,
        n_heads: usize,
        n_kv_heads: usize,
        rope: Option<Rope>,
    ) -> Result<Self> {
        divisible("n_heads", n_heads, "n_kv_heads", n_kv_heads)?;
        let (q_out, d_in) = w_query.weight.shape();
        divisible("w_query out_features", q_out, "n_heads", n_heads)?;
        let head_dim = q_out / n_heads;
        let kv_out = n_kv_heads * head_dim;
        for (name, w, want) in [("w_key", &w_key, (kv_out, d_in)), ("w_value", &w_value, (kv_out, d_in))] {
            if w.weight.shape() != want {
                return Err(shape_err(
                    format!("GroupedQueryAttention {name} weight ({n_kv_heads} KV heads of {head_dim})"),
                    format!("({}, {})", want.0, want.1),
                    &[w.out_features(), w.in_features()],
                ));
            }
        }
        if out_proj.in_features() != q_out {
            return Err(shape_err(
                "GroupedQueryAttention out_proj weight",
                format!("(_, {q_out})"),
                &[out_proj.out_features(), out_proj.in_features()],
            ));
        }
        if let Some(r) = &rope
            && r.head_dim() != head_dim
        {
            return Err(AttnError::Config(format!(
                "RoPE tables are for head_dim {}, but the projections give head_dim {head_dim}",
                r.head_dim()
            )));
        }
        Ok(Self { w_query, w_key, w_value, out_proj, n_heads, n_kv_heads, rope })
    }

    /// Random weights like Raschka's `GroupedQueryAttention(d_in, d_out, num_heads, num_kv_groups)`:
    /// `nn.Linear` init, no biases.
    pub fn random(
        d_in: usize,
        d_out: usize,
        n_heads: usize,
        n_kv_heads: usize,
        rope: Option<Rope>,
        rng: &mut impl Rng,
    ) -> Result<Self> {
        divisible("d_out", d_out, "n_heads", n_heads)?;
        divisible("n_heads", n_heads, "n_kv_heads", n_kv_heads)?;
        let kv_out = n_kv_heads * (d_out / n_heads);
        Self::new(
            Linear::random(d_in, d_out, false, rng)?,
            Linear::random(d_in, kv_out, false, rng)?,
            Linear::random(d_in, kv_out, false, rng)?,
            Linear::random(d_out, d_out, false, rng)?,
            n_heads,
            n_kv_heads,
            rope,
        )
    }

    /// Random weights for a validated [`AttentionConfig`] (`d_in = d_out = d_model`), with RoPE tables
    /// for its whole context.
    pub fn from_config(cfg: &AttentionConfig, rng: &mut impl Rng) -> Result<Self> {
        cfg.validate()?;
        let rope = Rope::new(cfg.head_dim, cfg.context_length, cfg.rope_theta, cfg.rope_scaling)?;
        Self::random(cfg.d_model, cfg.d_model, cfg.n_heads, cfg.n_kv_heads, Some(rope), rng)
    }

    /// Number of query heads.
    pub fn n_heads(&self) -> usize {
        self.n_heads
    }

    /// Number of key/value heads.
    pub fn n_kv_heads(&self) -> usize {
        self.n_kv_heads
    }

    /// Query heads per key/value head.
    pub fn group_size(&self) -> usize {
        self.n_heads / self.n_kv_heads
    }

    /// Width of each head.
    pub fn head_dim(&self) -> usize {
        self.w_query.out_features() / self.n_heads
    }

    /// The RoPE tables, if this module rotates its queries and keys.
    pub fn rope(&self) -> Option<&Rope> {
        self.rope.as_ref()
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
        let mut queries = self.w_query.forward(x)?;
        let mut keys = self.w_key.forward(x)?;
        let values = self.w_value.forward(x)?;
        if let Some(rope) = &self.rope {
            // Rotate before caching and before sharing: keys are rotated once, per KV head.
            rope.apply(&mut queries, start_pos)?;
            rope.apply(&mut keys, start_pos)?;
        }
        Ok((queries, keys, values))
    }
    // ANCHOR_END: gqa_project

    /// One sequence whose first token sits at position `start_pos`, without a cache: RoPE uses the
    /// absolute positions, and the tokens attend causally among themselves.
    pub fn forward_at(&self, x: &DMatrix<f32>, start_pos: usize) -> Result<DMatrix<f32>> {
        self.check_input(x)?;
        let (queries, keys, values) = self.project(x, start_pos)?;
        // (seq, n_heads·head_dim), the keys being this chunk only: mask relative to its first token
        let context =
            grouped_attention(&queries, keys.as_view(), values.as_view(), self.n_heads, self.n_kv_heads, 0)?;
        // (seq, n_heads·head_dim) -> (seq, d_out)
        self.out_proj.forward(&context)
    }

    // ANCHOR: gqa_forward_cached
    /// A batch of new tokens at positions `start_pos ..`, attending over everything in `cache`.
    ///
    /// `start_pos` must equal `cache.len()`: passing the position explicitly catches the classic bug of
    /// a RoPE offset that was not advanced (or advanced twice). The work is
    /// [`GroupedQueryAttention::forward_cached_window`] for a cache whose row `r` is position `r`.
    pub fn forward_cached(&self, x: &Batch, cache: &mut LayerKvCache, start_pos: usize) -> Result<Batch> {
        if start_pos != cache.len() {
            return Err(AttnError::CachePosition { start_pos, cache_len: cache.len() });
        }
        self.forward_cached_window(x, cache, 0)
    }
    // ANCHOR_END: gqa_forward_cached

    // ANCHOR: gqa_forward_cached_window
    /// A batch of new tokens attending over everything in `cache`, where cache row `r` holds the token
    /// at position `first_pos + r` (`first_pos = 0` for a whole sequence; larger to check a window
    /// far into a long context without running the tokens before it).
    ///
    /// The new tokens go to cache rows `cache.len() ..` and positions `first_pos + cache.len() ..`.
    /// Their keys and values (after RoPE, `n_kv_heads` wide) are appended first; then query `i`
    /// attends over cache rows `0 ..= cache.len() + i`.
    pub fn forward_cached_window(
        &self,
        x: &Batch,
        cache: &mut LayerKvCache,
        first_pos: usize,
    ) -> Result<Batch> {
        let first_row = cache.len(); // cache row of the first new token
        let mut queries = Vec::with_capacity(x.batch_size());
        let (mut new_keys, mut new_values) = (Vec::new(), Vec::new());
        for item in x.items() {
            self.check_input(item)?;
            // RoPE at the tokens' positions, which are their cache rows shifted by first_pos
            let (q, k, v) = self.project(item, first_pos + first_row)?;
            queries.push(q);
            new_keys.push(k);
            new_values.push(v);
        }
        cache.append(&new_keys, &new_values)?; // CacheFull before anything is written
        let outputs = queries
            .iter()
            .enumerate()
            .map(|(b, q)| {
                // keys/values: (first_row + seq, n_kv_heads·head_dim) views of the cache;
                // the mask counts in cache rows: query i sees rows 0 ..= first_row + i
                let context = grouped_attention(
                    q,
                    cache.keys(b)?,
                    cache.values(b)?,
                    self.n_heads,
                    self.n_kv_heads,
                    first_row,
                )?;
                self.out_proj.forward(&context)
            })
            .collect::<Result<Vec<_>>>()?;
        Batch::new(outputs)
    }
    // ANCHOR_END: gqa_forward_cached_window

    fn check_input(&self, x: &DMatrix<f32>) -> Result<()> {
        if x.ncols() != self.w_query.in_features() {
            return Err(shape_err(
                "GroupedQueryAttention input",
                format!("(_, {})", self.w_query.in_features()),
                &[x.nrows(), x.ncols()],
            ));
        }
        Ok(())
    }
}

impl Attention for GroupedQueryAttention {
    fn d_in(&self) -> usize {
        self.w_query.in_features()
    }
    fn d_out(&self) -> usize {
        self.out_proj.out_features()
    }
    fn forward_one(&self, x: &DMatrix<f32>) -> Result<DMatrix<f32>> {
        self.forward_at(x, 0)
    }
}
