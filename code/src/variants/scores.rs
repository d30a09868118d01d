//! What happens between the scores and the softmax in models after Llama 3: a sliding
//! window (with StreamingLLM's sink tokens), Gemma 2's soft-capping and softmax scale,
//! and gpt-oss's learned sinks. [`ScoreOptions`] holds them; [`attention_weights_with`]
//! and [`grouped_attention_with`] are chapter 1's and chapter 4's functions with them
//! applied, and the flash kernel applies the same options per tile.

use nalgebra::{DMatrix, DMatrixView};

use crate::mechanisms::mask::check_causal;
use crate::mechanisms::sdpa::{HeadLayout, check_grouped_args};
use crate::support::error::{AttnError, Result, shape_err, try_zero_matrix};

// ANCHOR: score_options
/// What a layer does to its attention scores beyond Llama 3's causal
/// `softmax(q·kᵀ / √head_dim)`. The default changes nothing.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ScoreOptions {
    /// The softmax scale; `None` is `1 / √head_dim`. Gemma 2 uses
    /// `query_pre_attn_scalar^-1/2`.
    pub scale: Option<f32>,
    /// Gemma 2's logit soft-capping: each scaled score `s` becomes `cap · tanh(s / cap)`,
    /// so no score leaves `(-cap, cap)`.
    pub softcap: Option<f32>,
    /// A sliding window of `W` keys: query `i` sees keys `i - W < j <= i` (itself and
    /// the `W - 1` before it). `None` is plain causal attention.
    pub window: Option<usize>,
    /// StreamingLLM's attention sinks: the first `sink_tokens` keys stay visible to
    /// every query, however far the window has moved. 0 in every model of chapter 9.
    pub sink_tokens: usize,
    /// gpt-oss's learned sinks: one logit per query head that joins each row's softmax
    /// denominator and takes probability mass without bringing a value.
    pub sinks: Option<Vec<f32>>,
}
// ANCHOR_END: score_options

impl ScoreOptions {
    /// Whether these options are Llama 3's plain causal attention.
    pub fn is_plain(&self) -> bool {
        *self == Self::default()
    }

    /// Checks the values for a layer of `n_heads` query heads: a finite positive scale
    /// and cap, a window of at least one key (a query always sees itself, so no row is
    /// ever fully masked), one sink logit per query head.
    pub fn validate(&self, n_heads: usize) -> Result<()> {
        let positive = |name: &str, v: Option<f32>| match v {
            Some(x) if !(x.is_finite() && x > 0.0) => Err(AttnError::Config(format!(
                "{name} must be a finite number > 0, got {x}"
            ))),
            _ => Ok(()),
        };
        positive("scale", self.scale)?;
        positive("softcap", self.softcap)?;
        if self.window == Some(0) {
            let msg = "window must be at least 1 (a query always sees itself)";
            return Err(AttnError::Config(msg.into()));
        }
        if let Some(sinks) = &self.sinks
            && sinks.len() != n_heads
        {
            let what = "ScoreOptions::sinks: one logit per query head";
            return Err(shape_err(what, &[Some(n_heads)], &[sinks.len()]));
        }
        Ok(())
    }

    /// The softmax scale for heads of width `head_dim`: `head_dim^-1/2` rounded once to
    /// f32, as transformers' `head_dim ** -0.5` (a Python double) is when it multiplies
    /// f32 scores. `1.0 / (head_dim as f32).sqrt()` rounds twice and is 1 ulp off for
    /// some widths (6, 7, 96, 112, ...).
    pub fn scale_for(&self, head_dim: usize) -> f32 {
        self.scale.unwrap_or((head_dim as f64).powf(-0.5) as f32)
    }

    // ANCHOR: sees
    /// Whether the query in cache row `query` may see the key in cache row `key`: in its
    /// past (causal), and inside the window or one of the sink tokens.
    pub fn sees(&self, query: usize, key: usize) -> bool {
        if key > query {
            return false; // its future: the causal mask
        }
        self.window.is_none_or(|w| query - key < w) || key < self.sink_tokens
    }
    // ANCHOR_END: sees

    /// The first key the query in row `query` may see outside the sink tokens.
    pub(crate) fn window_start(&self, query: usize) -> usize {
        self.window.map_or(0, |w| (query + 1).saturating_sub(w))
    }

    // ANCHOR: cap
    /// Gemma 2's soft-cap of one scaled score: `cap · tanh(s / cap)`, or `s` without a
    /// cap. Near 0 it is `s` itself (tanh(u) ≈ u); it bends as `s` nears the cap and
    /// never reaches it.
    #[inline(always)]
    pub fn cap(&self, s: f32) -> f32 {
        match self.softcap {
            Some(cap) => cap * (s / cap).tanh(),
            None => s,
        }
    }
    // ANCHOR_END: cap
}

// ANCHOR: attention_weights_with
/// Chapter 1's [`attention_weights`](crate::attention_weights) for query head `head`,
/// with `options`: scale, soft-cap, mask (causal, window, sink tokens), then a softmax
/// whose denominator also holds the head's learned sink. Query `i` sits in cache row
/// `query_offset + i`. `q (n_queries, head_dim)`, `k (n_keys, head_dim)` ->
/// `(n_queries, n_keys)`; with a learned sink a row sums to less than 1.
pub fn attention_weights_with(
    q: DMatrixView<f32>,
    k: DMatrixView<f32>,
    query_offset: usize,
    options: &ScoreOptions,
    head: usize,
) -> Result<DMatrix<f32>> {
    check_args(&q, &k, query_offset, options, head)?;
    let mut s = try_zero_matrix("attention scores", q.nrows(), k.nrows())?;
    s.gemm(options.scale_for(q.ncols()), &q, &k.transpose(), 0.0); // scaled q·kᵀ
    // The cap comes before the mask: capping a masked -inf would give -cap, a weight.
    s.apply(|x| *x = options.cap(*x));
    let sink = options.sinks.as_ref().map_or(f32::NEG_INFINITY, |s| s[head]);
    for (i, mut row) in s.row_iter_mut().enumerate() {
        let query = query_offset + i;
        // the row's maximum over the keys it sees, and the sink logit
        let mut max = sink;
        for (j, x) in row.iter_mut().enumerate() {
            *x = if options.sees(query, j) { *x } else { f32::NEG_INFINITY };
            max = if *x > max { *x } else { max };
        }
        // exp(sink - max) joins the denominator and takes no value: mass "nowhere"
        let mut sum = (sink - max).exp();
        row.apply(|x| *x = (*x - max).exp());
        sum += row.sum();
        row /= sum;
    }
    Ok(s)
}
// ANCHOR_END: attention_weights_with

/// [`attention_weights_with`]'s argument checks.
fn check_args(
    q: &DMatrixView<f32>,
    k: &DMatrixView<f32>,
    query_offset: usize,
    options: &ScoreOptions,
    head: usize,
) -> Result<()> {
    if q.ncols() != k.ncols() {
        let what = "attention_weights_with: keys need the queries' head_dim";
        return Err(shape_err(what, &[None, Some(q.ncols())], &[k.nrows(), k.ncols()]));
    }
    if let Some(sinks) = &options.sinks
        && head >= sinks.len()
    {
        let (what, index, len) = ("learned sink of query head", head, sinks.len());
        return Err(AttnError::IndexOutOfRange { what, index, len });
    }
    options.validate(options.sinks.as_ref().map_or(1, Vec::len))?;
    check_causal(q.nrows(), k.nrows(), query_offset)
}

/// Chapter 4's [`grouped_attention`](crate::grouped_attention) with `options`: the same
/// shapes, `q (n_queries, n_heads·head_dim)`, `k`, `v (n_keys, n_kv_heads·head_dim)` ->
/// `(n_queries, n_heads·head_dim)`, each head's weights from [`attention_weights_with`].
pub fn grouped_attention_with(
    q: &DMatrix<f32>,
    k: DMatrixView<f32>,
    v: DMatrixView<f32>,
    heads: HeadLayout,
    query_offset: usize,
    options: &ScoreOptions,
) -> Result<DMatrix<f32>> {
    check_grouped_args("grouped_attention_with", q.shape(), &k, &v, heads, query_offset)?;
    options.validate(heads.n_heads())?;
    let d = heads.head_dim();
    let mut context = DMatrix::zeros(q.nrows(), q.ncols());
    for h in 0..heads.n_heads() {
        let kv = heads.kv_head(h);
        let (k_h, v_h) = (k.columns(kv * d, d), v.columns(kv * d, d));
        let weights =
            attention_weights_with(q.columns(h * d, d), k_h, query_offset, options, h)?;
        // (n_queries, n_keys) · (n_keys, head_dim) -> (n_queries, head_dim)
        context.columns_mut(h * d, d).copy_from(&(weights * v_h));
    }
    Ok(context)
}
