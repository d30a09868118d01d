//! Checkpoint files: one layer's attention weights out of a `.safetensors` file or a
//! sharded checkpoint, checked against the config.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use nalgebra::DMatrix;
use serde_json::Value;

use crate::hf::config::HfLlamaConfig;
use crate::mechanisms::gqa::{GroupedQueryAttention, QkvoWeights};
use crate::mechanisms::linear::Linear;
use crate::support::error::{AttnError, Dims, Result};
use crate::support::io::{TensorFile, read_small_file};

impl HfLlamaConfig {
    /// Loads the attention layer stored under `prefix` (e.g.
    /// `"model.layers.0.self_attn."`) with RoPE tables for all `max_position_embeddings`
    /// positions.
    ///
    /// Reads `{prefix}q_proj.weight` `(n_heads·head_dim, hidden)`, `k_proj.weight` and
    /// `v_proj.weight` `(n_kv_heads·head_dim, hidden)`, `o_proj.weight` `(hidden,
    /// n_heads·head_dim)` and, if `attention_bias`, the four `.bias` vectors; stored as
    /// f32, bf16 or f16, all become f32.
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
    pub fn load_attention_for_positions(
        &self,
        weights: &TensorFile,
        prefix: &str,
        n_positions: usize,
    ) -> Result<GroupedQueryAttention> {
        let (hidden, q_dim, kv_dim) = (self.hidden_size, self.q_dim(), self.kv_dim());
        // each tensor with the shape config.json implies, named in Hugging Face's terms
        let load =
            |name, shape, dims| self.load_linear(weights, prefix, name, shape, dims);
        let q_dims = "num_attention_heads·head_dim, hidden_size";
        let kv_dims = "num_key_value_heads·head_dim, hidden_size";
        let o_dims = "hidden_size, num_attention_heads·head_dim";
        let qkvo = QkvoWeights {
            w_query: load("q_proj", (q_dim, hidden), q_dims)?,
            w_key: load("k_proj", (kv_dim, hidden), kv_dims)?,
            w_value: load("v_proj", (kv_dim, hidden), kv_dims)?,
            out_proj: load("o_proj", (hidden, q_dim), o_dims)?,
        };
        let (n_heads, n_kv_heads) = (self.num_attention_heads, self.num_key_value_heads);
        let rope = Some(self.rope(n_positions)?);
        GroupedQueryAttention::new(qkvo, n_heads, n_kv_heads, rope)
    }

    // ANCHOR_END: hf_load_attention

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
        let bias = match (self.attention_bias, has_bias) {
            (true, true) => {
                let b = file.float_tensor(&bias_name)?;
                if b.shape != [want.0] {
                    return Err(AttnError::Shape {
                        what: format!("{}: tensor `{bias_name}`", file.path()),
                        expected: Dims::exact(&[want.0]),
                        got: Dims::exact(&b.shape),
                    });
                }
                Some(b.to_vector()?)
            }
            (true, false) => {
                return Err(AttnError::Format {
                    path: file.path().to_string(),
                    message: format!(
                        "missing tensor `{bias_name}` (config.json has attention_bias = true)"
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
