//! Checkpoint files: one layer's attention weights out of a `.safetensors` file or a
//! sharded checkpoint, checked against the config.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use nalgebra::{DMatrix, DVector};
use serde_json::Value;

use crate::hf::config::HfLlamaConfig;
use crate::hf::variants::{LayerKind, ModelType};
use crate::mechanisms::gqa::{GroupedQueryAttention, QkvoWeights};
use crate::mechanisms::linear::Linear;
use crate::support::error::{AttnError, Dims, Result};
use crate::support::io::{TensorFile, read_small_file};
use crate::variants::{MlaQuery, MlaWeights, MultiHeadLatentAttention, QkNorm};

impl HfLlamaConfig {
    /// Loads the attention layer stored under `prefix` (e.g.
    /// `"model.layers.0.self_attn."`) with RoPE tables for all `max_position_embeddings`
    /// positions.
    ///
    /// Reads `{prefix}q_proj.weight` `(n_heads·head_dim, hidden)`, `k_proj.weight` and
    /// `v_proj.weight` `(n_kv_heads·head_dim, hidden)`, `o_proj.weight` `(hidden,
    /// n_heads·head_dim)` and, if `attention_bias`, the four `.bias` vectors; Qwen3's and
    /// Gemma 3's `q_norm.weight` and `k_norm.weight` `(head_dim)`; gpt-oss's `sinks`
    /// `(n_heads)`. Stored as f32, bf16 or f16, all become f32. A QK-norm or sink tensor
    /// the model does not have is an error (a wrong `model_type`), not ignored. A
    /// DeepSeek config (multi-head latent attention) is refused: load it with
    /// [`HfLlamaConfig::load_mla`].
    pub fn load_attention(
        &self,
        weights: &TensorFile,
        prefix: &str,
    ) -> Result<GroupedQueryAttention> {
        self.load_attention_for_positions(weights, prefix, self.max_position_embeddings)
    }

    // ANCHOR: hf_load_attention
    /// As [`HfLlamaConfig::load_attention`], with RoPE tables for positions `0 ..
    /// n_positions` only (what a run up to position `n_positions - 1` needs).
    ///
    /// The layer's kind ([`Self::layer_kind`]) decides its window and, for Gemma 3, its
    /// RoPE base; the model type adds its scale, cap, sinks and QK-norm (chapters 9-11).
    pub fn load_attention_for_positions(
        &self,
        weights: &TensorFile,
        prefix: &str,
        n_positions: usize,
    ) -> Result<GroupedQueryAttention> {
        let kind = self.layer_kind(prefix)?; // full or sliding, from layer_types
        let qkvo = self.load_projections(weights, prefix)?;
        let (n_heads, n_kv_heads) = (self.num_attention_heads, self.num_key_value_heads);
        let rope = Some(self.rope_for(kind, n_positions)?);
        let mut scores = self.model.score_options(kind); // window, scale, soft-cap
        scores.sinks = self.load_sinks(weights, prefix)?; // gpt-oss's learned sinks
        GroupedQueryAttention::new(qkvo, n_heads, n_kv_heads, rope)?
            .with_scores(scores)?
            .with_qk_norm(self.load_qk_norm(weights, prefix)?)
    }
    // ANCHOR_END: hf_load_attention

    /// Loads the multi-head latent attention layer (chapter 12) of a DeepSeek-V2 or V3
    /// config stored under `prefix`, with RoPE tables for all `max_position_embeddings`
    /// positions. Any other model type is refused, naming `load_attention`.
    ///
    /// Reads, with the shapes config.json implies (see [`Self::load_mla_for_positions`]):
    /// the query path, `q_a_proj.weight` `(q_lora_rank, hidden)`, `q_a_layernorm.weight`
    /// `(q_lora_rank)` and `q_b_proj.weight` `(n_heads·(qk_nope_head_dim +
    /// qk_rope_head_dim), q_lora_rank)`, or, when `q_lora_rank` is `null`,
    /// `q_proj.weight` `(n_heads·(qk_nope_head_dim + qk_rope_head_dim), hidden)`;
    /// `kv_a_proj_with_mqa.weight` `(kv_lora_rank + qk_rope_head_dim, hidden)`,
    /// `kv_a_layernorm.weight` `(kv_lora_rank)`, `kv_b_proj.weight`
    /// `(n_heads·(qk_nope_head_dim + v_head_dim), kv_lora_rank)`, `o_proj.weight`
    /// `(hidden, n_heads·v_head_dim)`; with `attention_bias`, the biases of `q_a_proj`,
    /// `kv_a_proj_with_mqa` and `o_proj` (transformers gives the other three none).
    pub fn load_mla(
        &self,
        weights: &TensorFile,
        prefix: &str,
    ) -> Result<MultiHeadLatentAttention> {
        self.load_mla_for_positions(weights, prefix, self.max_position_embeddings)
    }

    /// As [`HfLlamaConfig::load_mla`], with RoPE tables for positions `0 ..
    /// n_positions` only.
    ///
    /// The norms' epsilon is [`MLA_NORM_EPS`](crate::variants::MLA_NORM_EPS), not
    /// `rms_norm_eps`; the RoPE tables are `qk_rope_head_dim` wide, YaRN-scaled if the
    /// config says so, in the pair layout of `rope_interleave`; the softmax scale is
    /// [`Self::mla_scale`]. A query tensor of the other path (`q_proj` with a
    /// `q_lora_rank`, `q_a_proj` without) is refused, not ignored.
    pub fn load_mla_for_positions(
        &self,
        weights: &TensorFile,
        prefix: &str,
        n_positions: usize,
    ) -> Result<MultiHeadLatentAttention> {
        let shape = self.mla_shape()?; // refuses a grouped-query model
        let rope = self.rope_for(LayerKind::Full, n_positions)?; // qk_rope_head_dim wide
        let mla = MlaWeights {
            query: self.load_mla_query(weights, prefix)?, // q_proj, or q_a + norm + q_b
            kv_down: self.load_mla_linear(weights, prefix, "kv_a_proj_with_mqa")?,
            kv_norm: self.load_mla_norm(weights, prefix, "kv_a_layernorm")?,
            kv_up: self.load_mla_linear(weights, prefix, "kv_b_proj")?,
            out_proj: self.load_mla_linear(weights, prefix, "o_proj")?,
        };
        MultiHeadLatentAttention::new(mla, shape, rope, self.mla_scale()?)
    }

    /// The query path of an MLA layer: `q_proj` when `q_lora_rank` is `null`, else
    /// `q_a_proj`, `q_a_layernorm` and `q_b_proj`; a tensor of the other path is refused
    /// (config.json and the checkpoint disagree).
    fn load_mla_query(&self, file: &TensorFile, prefix: &str) -> Result<MlaQuery> {
        let shape = self.mla_shape()?;
        let refuse = |name: &str, why: String| -> Result<()> {
            let tensor = format!("{prefix}{name}.weight");
            if !file.contains(&tensor)? {
                return Ok(());
            }
            Err(AttnError::Format {
                path: file.path().to_string(),
                message: format!("tensor `{tensor}` is present, but {why}"),
            })
        };
        match shape.q_lora_rank {
            None => {
                for name in ["q_a_proj", "q_a_layernorm", "q_b_proj"] {
                    let why = "config.json has q_lora_rank = null (a plain q_proj): is \
                               q_lora_rank right?";
                    refuse(name, why.into())?;
                }
                Ok(MlaQuery::Direct(self.load_mla_linear(file, prefix, "q_proj")?))
            }
            Some(r) => {
                let why = format!(
                    "config.json has q_lora_rank = {r} (q_a_proj, q_a_layernorm, q_b_proj): \
                     is q_lora_rank right?"
                );
                refuse("q_proj", why)?;
                Ok(MlaQuery::LowRank {
                    down: self.load_mla_linear(file, prefix, "q_a_proj")?,
                    norm: self.load_mla_norm(file, prefix, "q_a_layernorm")?,
                    up: self.load_mla_linear(file, prefix, "q_b_proj")?,
                })
            }
        }
    }

    /// One MLA projection by its transformers name, with the shape config.json implies
    /// (named in its keys in errors) and a bias where `DeepseekV3Attention` has one.
    fn load_mla_linear(
        &self,
        file: &TensorFile,
        prefix: &str,
        name: &str,
    ) -> Result<Linear> {
        let s = self.mla_shape()?;
        let hidden = s.d_model;
        // checked in `validate`; saturating, so a config built by hand cannot overflow
        let heads = |width: usize| s.n_heads.saturating_mul(width);
        let qk = s.qk_nope_head_dim.saturating_add(s.qk_rope_head_dim);
        let (shape, meaning, bias) = match name {
            "q_proj" => (
                (heads(qk), hidden),
                "num_attention_heads·(qk_nope_head_dim + qk_rope_head_dim), hidden_size",
                Bias::Never,
            ),
            "q_a_proj" => (
                (s.q_lora_rank.unwrap_or(0), hidden),
                "q_lora_rank, hidden_size",
                Bias::AttentionBias,
            ),
            "q_b_proj" => (
                (heads(qk), s.q_lora_rank.unwrap_or(0)),
                "num_attention_heads·(qk_nope_head_dim + qk_rope_head_dim), q_lora_rank",
                Bias::Never,
            ),
            "kv_a_proj_with_mqa" => (
                (s.kv_lora_rank.saturating_add(s.qk_rope_head_dim), hidden),
                "kv_lora_rank + qk_rope_head_dim, hidden_size",
                Bias::AttentionBias,
            ),
            "kv_b_proj" => (
                (heads(s.qk_nope_head_dim.saturating_add(s.v_head_dim)), s.kv_lora_rank),
                "num_attention_heads·(qk_nope_head_dim + v_head_dim), kv_lora_rank",
                Bias::Never,
            ),
            "o_proj" => (
                (hidden, heads(s.v_head_dim)),
                "hidden_size, num_attention_heads·v_head_dim",
                Bias::AttentionBias,
            ),
            other => return Err(unknown_mla_tensor(other)),
        };
        self.load_linear_with(file, prefix, name, shape, meaning, bias)
    }

    /// The gains of MLA's RMSNorm `name` (`q_a_layernorm`: `q_lora_rank` values,
    /// `kv_a_layernorm`: `kv_lora_rank`).
    fn load_mla_norm(
        &self,
        file: &TensorFile,
        prefix: &str,
        name: &str,
    ) -> Result<Vec<f32>> {
        let s = self.mla_shape()?;
        let (len, meaning) = match name {
            "q_a_layernorm" => (s.q_lora_rank.unwrap_or(0), "q_lora_rank"),
            "kv_a_layernorm" => (s.kv_lora_rank, "kv_lora_rank"),
            other => return Err(unknown_mla_tensor(other)),
        };
        load_vector(file, &format!("{prefix}{name}.weight"), len, meaning)
    }

    /// The kind of the layer stored under `prefix`. Models whose layers differ (a
    /// `layer_types` list: Qwen3, Gemma 2 and 3, gpt-oss) read it at the index in the
    /// prefix (`model.layers.L.`), and refuse a prefix without one or past the list;
    /// Llama's layers are all full, Mistral's all sliding when it has a window, whatever
    /// the prefix.
    pub fn layer_kind(&self, prefix: &str) -> Result<LayerKind> {
        let Some(kinds) = &self.model.layer_types else {
            let sliding = self.model.model_type == ModelType::Mistral
                && self.model.sliding_window.is_some();
            return Ok(if sliding { LayerKind::Sliding } else { LayerKind::Full });
        };
        let name = self.model.model_type.name();
        let Some(layer) = layer_index(prefix)? else {
            return Err(AttnError::Config(format!(
                "the prefix `{prefix}` names no layer (`layers.L.`), which model_type `{name}` \
                 needs: its layers differ (layer_types)"
            )));
        };
        kinds.get(layer).copied().ok_or_else(|| {
            AttnError::Config(format!(
                "the prefix `{prefix}` names layer {layer}, but layer_types has {} layers",
                kinds.len()
            ))
        })
    }

    /// The four projections under `prefix`, each with the shape config.json implies. A
    /// DeepSeek config has no such four: it is refused, naming `load_mla`.
    fn load_projections(
        &self,
        weights: &TensorFile,
        prefix: &str,
    ) -> Result<QkvoWeights> {
        if self.model.mla.is_some() {
            return Err(AttnError::Unsupported(format!(
                "model_type `{}` is multi-head latent attention, not grouped-query \
                 attention: load the layer with load_mla",
                self.model.model_type.name()
            )));
        }
        let (hidden, q_dim, kv_dim) = (self.hidden_size, self.q_dim(), self.kv_dim());
        // each tensor with the shape config.json implies, named in Hugging Face's terms
        let load =
            |name, shape, dims| self.load_linear(weights, prefix, name, shape, dims);
        let q_dims = "num_attention_heads·head_dim, hidden_size";
        let kv_dims = "num_key_value_heads·head_dim, hidden_size";
        let o_dims = "hidden_size, num_attention_heads·head_dim";
        Ok(QkvoWeights {
            w_query: load("q_proj", (q_dim, hidden), q_dims)?,
            w_key: load("k_proj", (kv_dim, hidden), kv_dims)?,
            w_value: load("v_proj", (kv_dim, hidden), kv_dims)?,
            out_proj: load("o_proj", (hidden, q_dim), o_dims)?,
        })
    }

    /// gpt-oss's `{prefix}sinks`, one logit per query head; `None` for other models.
    fn load_sinks(&self, file: &TensorFile, prefix: &str) -> Result<Option<Vec<f32>>> {
        let name = format!("{prefix}sinks");
        if !self.model.learned_sinks {
            self.refuse_unused(file, &name, "learned sinks")?;
            return Ok(None);
        }
        let n_heads = self.num_attention_heads;
        Ok(Some(load_vector(file, &name, n_heads, "num_attention_heads")?))
    }

    /// Qwen3's and Gemma 3's `{prefix}q_norm.weight` and `k_norm.weight`, `head_dim`
    /// values each, with `rms_norm_eps`; `None` for other models.
    fn load_qk_norm(&self, file: &TensorFile, prefix: &str) -> Result<Option<QkNorm>> {
        let [q, k] = ["q_norm", "k_norm"].map(|n| format!("{prefix}{n}.weight"));
        let Some((style, eps)) = self.model.qk_norm else {
            self.refuse_unused(file, &q, "QK-norm")?;
            self.refuse_unused(file, &k, "QK-norm")?;
            return Ok(None);
        };
        let d = self.head_dim;
        Ok(Some(QkNorm {
            q_weight: load_vector(file, &q, d, "head_dim")?,
            k_weight: load_vector(file, &k, d, "head_dim")?,
            eps,
            style,
        }))
    }

    /// Refuses a tensor `name` that this model type has no use for: it says the
    /// checkpoint is another model's, which would run silently wrong without it.
    fn refuse_unused(&self, file: &TensorFile, name: &str, what: &str) -> Result<()> {
        if !file.contains(name)? {
            return Ok(());
        }
        Err(AttnError::Format {
            path: file.path().to_string(),
            message: format!(
                "tensor `{name}` is present, but model_type `{}` has no {what}: is \
                 config.json's model_type right?",
                self.model.model_type.name()
            ),
        })
    }

    /// One projection `{prefix}{name}.weight` of shape `want` (and its bias iff
    /// `attention_bias`).
    fn load_linear(
        &self,
        file: &TensorFile,
        prefix: &str,
        name: &str,
        want: (usize, usize),
        meaning: &str,
    ) -> Result<Linear> {
        self.load_linear_with(file, prefix, name, want, meaning, Bias::AttentionBias)
    }

    /// One projection `{prefix}{name}.weight` of shape `want`, and its bias as `bias`
    /// says.
    fn load_linear_with(
        &self,
        file: &TensorFile,
        prefix: &str,
        name: &str,
        want: (usize, usize),
        meaning: &str,
        bias: Bias,
    ) -> Result<Linear> {
        let weight_name = format!("{prefix}{name}.weight");
        let w = file.float_tensor(&weight_name)?;
        if w.shape != [want.0, want.1] {
            return Err(AttnError::Shape {
                what: format!("{}: tensor `{weight_name}` ({meaning})", file.path()),
                expected: Dims::exact(&[want.0, want.1]),
                got: Dims::exact(&w.shape),
            });
        }
        let weight: DMatrix<f32> = w.to_matrix()?;
        let bias_name = format!("{prefix}{name}.bias");
        let has_bias = file.contains(&bias_name)?;
        let wants_bias = match bias {
            Bias::AttentionBias => self.attention_bias,
            Bias::Never => {
                if has_bias {
                    return Err(AttnError::Format {
                        path: file.path().to_string(),
                        message: format!(
                            "tensor `{bias_name}` is present, but {}'s {name} has no bias",
                            self.model.model_type.attention_class()
                        ),
                    });
                }
                false
            }
        };
        let bias = match (wants_bias, has_bias) {
            (true, true) => {
                Some(DVector::from_vec(load_vector(file, &bias_name, want.0, "")?))
            }
            (true, false) => {
                return Err(AttnError::Format {
                    path: file.path().to_string(),
                    message: format!(
                        "missing tensor `{bias_name}` (config.json has attention_bias = true)"
                    ),
                });
            }
            (false, true) if self.model.model_type == ModelType::Mistral => {
                return Err(AttnError::Format {
                    path: file.path().to_string(),
                    message: format!(
                        "tensor `{bias_name}` is present but MistralAttention has no biases"
                    ),
                });
            }
            (false, true) => {
                return Err(AttnError::Format {
                    path: file.path().to_string(),
                    message: format!(
                        "tensor `{bias_name}` is present but config.json has attention_bias = false"
                    ),
                });
            }
            (false, false) => None,
        };
        Linear::new(weight, bias)
    }
}

/// A name `load_mla_linear` or `load_mla_norm` was not written for (a bug here, not bad
/// input).
fn unknown_mla_tensor(name: &str) -> AttnError {
    AttnError::Config(format!("DeepseekV3Attention has no tensor `{name}`"))
}

/// Whether a projection has a bias.
#[derive(Clone, Copy)]
enum Bias {
    /// Iff config.json's `attention_bias` (and never for Mistral).
    AttentionBias,
    /// Never, whatever `attention_bias` says (DeepSeek's `q_proj`, `q_b_proj`,
    /// `kv_b_proj`).
    Never,
}

/// The 1-D tensor `name` of `len` values (`meaning` names `len` in the error, if not
/// empty), as f32.
fn load_vector(
    file: &TensorFile,
    name: &str,
    len: usize,
    meaning: &str,
) -> Result<Vec<f32>> {
    let t = file.float_tensor(name)?;
    if t.shape != [len] {
        let meaning =
            if meaning.is_empty() { String::new() } else { format!(" ({meaning})") };
        return Err(AttnError::Shape {
            what: format!("{}: tensor `{name}`{meaning}", file.path()),
            expected: Dims::exact(&[len]),
            got: Dims::exact(&t.shape),
        });
    }
    Ok(t.data)
}

/// The layer index in a tensor-name prefix: the number after a `layers` segment
/// (`model.layers.7.self_attn.` -> 7; also `model.language_model.layers.7.`), or `None`
/// when there is none. A number too large for `usize` is an error.
pub fn layer_index(prefix: &str) -> Result<Option<usize>> {
    let segments: Vec<&str> = prefix.split('.').collect();
    let Some(i) = segments.windows(2).position(|w| {
        w[0] == "layers" && !w[1].is_empty() && w[1].bytes().all(|b| b.is_ascii_digit())
    }) else {
        return Ok(None);
    };
    let digits = segments[i + 1];
    digits.parse().map(Some).map_err(|_| {
        AttnError::Config(format!(
            "the prefix `{prefix}` names layer {digits}, too large a number"
        ))
    })
}

/// Opens only the tensors of a checkpoint whose names start with `prefix`, without
/// reading the rest.
///
/// `path` is a `.safetensors` file or a sharded checkpoint's
/// `model.safetensors.index.json` (its `weight_map` says which shard holds each tensor).
/// A Llama 3.1 8B shard is about 5 GB; one layer's attention is a few tens of MB: each
/// file is mapped into memory and its header validated, and only the bytes of the tensors
/// asked for are ever read.
///
/// The index's shard names must stay inside the index's folder: an absolute path, a `..`
/// component, or a name that resolves (through symbolic links) outside both the folder
/// and the folder the index itself resolves to (a Hugging Face cache's `blobs/`) is
/// refused.
pub fn open_layer_tensors(path: impl AsRef<Path>, prefix: &str) -> Result<TensorFile> {
    let path = path.as_ref();
    let label = path.display().to_string();
    let no_match = || AttnError::Format {
        path: label.clone(),
        message: format!("no tensor name starts with `{prefix}`"),
    };
    if path.extension().is_none_or(|e| e != "json") {
        let file =
            TensorFile::open_selected(&label, &[path.to_path_buf()], |_, name| {
                name.starts_with(prefix)
            })?;
        return if file.names()?.is_empty() { Err(no_match()) } else { Ok(file) };
    }

    let bad = |message: String| AttnError::Format { path: label.clone(), message };
    let text = read_small_file(path)?;
    let index: Value =
        serde_json::from_slice(&text).map_err(|e| bad(format!("invalid JSON: {e}")))?;
    let map = index.get("weight_map").and_then(Value::as_object).ok_or_else(|| {
        bad("missing key `weight_map` (a safetensors index maps tensor names to files)".into())
    })?;
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let folders = checkpoint_folders(path, dir)?;
    // shard file names in first-seen order, and for each wanted tensor the shard the
    // index names
    let mut shard_names: Vec<&str> = Vec::new();
    let mut wanted: BTreeMap<&str, usize> = BTreeMap::new();
    for (name, file) in map.iter().filter(|(name, _)| name.starts_with(prefix)) {
        let file = file
            .as_str()
            .ok_or_else(|| bad(format!("weight_map[`{name}`] must be a file name")))?;
        let i = shard_names.iter().position(|f| *f == file).unwrap_or_else(|| {
            shard_names.push(file);
            shard_names.len() - 1
        });
        wanted.insert(name, i);
    }
    if wanted.is_empty() {
        return Err(bad(format!("no tensor in weight_map starts with `{prefix}`")));
    }
    let shards = shard_names
        .iter()
        .map(|f| confined_shard(f, dir, &folders, &label))
        .collect::<Result<Vec<_>>>()?;
    let file = TensorFile::open_selected(&label, &shards, |i, name| {
        wanted.get(name) == Some(&i)
    })?;
    for (name, &i) in &wanted {
        if !file.contains(name)? {
            return Err(AttnError::Format {
                path: shards[i].display().to_string(),
                message: format!(
                    "missing tensor `{name}`, which {label} says is in this file"
                ),
            });
        }
    }
    Ok(file)
}

/// The folders a sharded checkpoint's shards may resolve into: the index's folder and the
/// folder the index itself resolves to (in a Hugging Face cache, `snapshots/REV/` holds
/// symbolic links into `blobs/`), both canonical.
fn checkpoint_folders(index: &Path, dir: &Path) -> Result<Vec<PathBuf>> {
    let canonical =
        |p: &Path| std::fs::canonicalize(p).map_err(|e| AttnError::io(p.display(), e));
    let mut folders = vec![canonical(dir)?];
    if let Some(real_dir) = canonical(index)?.parent()
        && !folders.iter().any(|f| f == real_dir)
    {
        folders.push(real_dir.to_path_buf());
    }
    Ok(folders)
}

/// The path of shard `file` named in the index `label`, refused unless it is a plain
/// relative name (no root, no `..`) that resolves inside one of `folders`.
fn confined_shard(
    file: &str,
    dir: &Path,
    folders: &[PathBuf],
    label: &str,
) -> Result<PathBuf> {
    let bad = |why: &str| AttnError::Format {
        path: label.to_string(),
        message: format!(
            "weight_map names shard `{file}`, which {why}; shards must be in the index's folder"
        ),
    };
    let relative = Path::new(file);
    if file.is_empty() {
        return Err(bad("is empty"));
    }
    if relative.is_absolute() || relative.has_root() {
        return Err(bad("is an absolute path"));
    }
    if !relative
        .components()
        .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
    {
        return Err(bad("goes up with `..`"));
    }
    let shard = dir.join(relative);
    // a missing shard is reported by the open that follows, naming it
    if let Ok(real) = std::fs::canonicalize(&shard)
        && !folders.iter().any(|f| real.starts_with(f))
    {
        return Err(bad(&format!("resolves to {}, outside the folder", real.display())));
    }
    Ok(shard)
}
