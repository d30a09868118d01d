//! Checkpoint files: one layer's attention weights out of a `.safetensors` file or a sharded
//! checkpoint, checked against the config.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use nalgebra::DMatrix;
use serde_json::{Map, Value};

use crate::hf::config::HfLlamaConfig;
use crate::mechanisms::gqa::{GroupedQueryAttention, QkvoWeights};
use crate::mechanisms::linear::Linear;
use crate::support::error::{AttnError, Dims, Result};
use crate::support::io::TensorFile;

impl HfLlamaConfig {
    /// Loads the attention layer stored under `prefix` (e.g. `"model.layers.0.self_attn."`) with RoPE
    /// tables for all `max_position_embeddings` positions.
    ///
    /// Reads `{prefix}q_proj.weight` `(n_heads·head_dim, hidden)`, `k_proj.weight` and `v_proj.weight`
    /// `(n_kv_heads·head_dim, hidden)`, `o_proj.weight` `(hidden, n_heads·head_dim)` and, if
    /// `attention_bias`, the four `.bias` vectors; stored as f32, bf16 or f16, all become f32.
    pub fn load_attention(&self, weights: &TensorFile, prefix: &str) -> Result<GroupedQueryAttention> {
        self.load_attention_for_positions(weights, prefix, self.max_position_embeddings)
    }

    // ANCHOR: hf_load_attention
    /// As [`HfLlamaConfig::load_attention`], with RoPE tables for positions `0 .. n_positions` only
    /// (what a run up to position `n_positions - 1` needs).
    pub fn load_attention_for_positions(
        &self,
        weights: &TensorFile,
        prefix: &str,
        n_positions: usize,
    ) -> Result<GroupedQueryAttention> {
        let (hidden, q_dim, kv_dim) = (self.hidden_size, self.q_dim(), self.kv_dim());
        let q = self.load_linear(
            weights,
            prefix,
            "q_proj",
            (q_dim, hidden),
            "num_attention_heads·head_dim, hidden_size",
        )?;
        let k = self.load_linear(
            weights,
            prefix,
            "k_proj",
            (kv_dim, hidden),
            "num_key_value_heads·head_dim, hidden_size",
        )?;
        let v = self.load_linear(
            weights,
            prefix,
            "v_proj",
            (kv_dim, hidden),
            "num_key_value_heads·head_dim, hidden_size",
        )?;
        let o = self.load_linear(
            weights,
            prefix,
            "o_proj",
            (hidden, q_dim),
            "hidden_size, num_attention_heads·head_dim",
        )?;
        let rope = self.rope(n_positions)?;
        let weights = QkvoWeights { w_query: q, w_key: k, w_value: v, out_proj: o };
        GroupedQueryAttention::new(weights, self.num_attention_heads, self.num_key_value_heads, Some(rope))
    }

    // ANCHOR_END: hf_load_attention

    /// One projection `{prefix}{name}.weight` of shape `want` (and its bias iff `attention_bias`).
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
                    message: format!("missing tensor `{bias_name}` (config.json has attention_bias = true)"),
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

/// Opens only the tensors of a checkpoint whose names start with `prefix`, without reading the rest.
///
/// `path` is a `.safetensors` file or a sharded checkpoint's `model.safetensors.index.json` (its
/// `weight_map` says which shard holds each tensor). A Llama 3.1 8B shard is about 5 GB; one layer's
/// attention is a few tens of MB: this reads the safetensors header and then just those byte ranges.
pub fn open_layer_tensors(path: impl AsRef<Path>, prefix: &str) -> Result<TensorFile> {
    let path = path.as_ref();
    let label = path.display().to_string();
    if path.extension().is_some_and(|e| e == "json") {
        let text = std::fs::read_to_string(path).map_err(|e| AttnError::io(&label, e))?;
        let bad = |message: String| AttnError::Format { path: label.clone(), message };
        let index: Value = serde_json::from_str(&text).map_err(|e| bad(format!("invalid JSON: {e}")))?;
        let map = index.get("weight_map").and_then(Value::as_object).ok_or_else(|| {
            bad("missing key `weight_map` (a safetensors index maps tensor names to files)".into())
        })?;
        let dir = path.parent().unwrap_or(Path::new("."));
        let mut shards: Vec<PathBuf> = Vec::new();
        for (name, file) in map.iter().filter(|(name, _)| name.starts_with(prefix)) {
            let file =
                file.as_str().ok_or_else(|| bad(format!("weight_map[`{name}`] must be a file name")))?;
            let shard = dir.join(file);
            if !shards.contains(&shard) {
                shards.push(shard);
            }
        }
        if shards.is_empty() {
            return Err(bad(format!("no tensor in weight_map starts with `{prefix}`")));
        }
        read_tensor_subset(&shards, prefix, &label)
    } else {
        read_tensor_subset(&[path.to_path_buf()], prefix, &label)
    }
}

/// One tensor's entry in a safetensors header, with its bytes.
struct RawTensor {
    name: String,
    dtype: Value,
    shape: Value,
    bytes: Vec<u8>,
}

/// Reads the tensors named `prefix*` from each file (header, then only their byte ranges) and packs
/// them into one in-memory safetensors file labelled `label`.
fn read_tensor_subset(files: &[PathBuf], prefix: &str, label: &str) -> Result<TensorFile> {
    let mut tensors: Vec<RawTensor> = Vec::new();
    for path in files {
        let name = path.display().to_string();
        let io = |e: std::io::Error| AttnError::io(&name, e);
        let bad = |message: String| AttnError::Format { path: name.clone(), message };
        let mut f = File::open(path).map_err(io)?;
        let file_len = f.metadata().map_err(io)?.len();
        let mut len = [0u8; 8];
        f.read_exact(&mut len)
            .map_err(|_| bad("not a valid safetensors file: shorter than 8 bytes".into()))?;
        let header_len = u64::from_le_bytes(len);
        if header_len > 100_000_000 || 8 + header_len > file_len {
            return Err(bad(format!("not a valid safetensors file: header length {header_len}")));
        }
        let mut header = vec![0u8; header_len as usize];
        f.read_exact(&mut header).map_err(io)?;
        let header: Value = serde_json::from_slice(&header)
            .map_err(|e| bad(format!("not a valid safetensors file: header is not JSON: {e}")))?;
        let entries = header.as_object().ok_or_else(|| bad("not a valid safetensors file".into()))?;
        for (tname, info) in entries.iter().filter(|(n, _)| n.starts_with(prefix) && *n != "__metadata__") {
            let offsets = info.get("data_offsets").and_then(Value::as_array).and_then(|a| {
                let (start, end) = (a.first()?.as_u64()?, a.get(1)?.as_u64()?);
                (a.len() == 2 && start <= end).then_some((start, end))
            });
            let Some((start, end)) = offsets.filter(|&(_, end)| 8 + header_len + end <= file_len) else {
                return Err(bad(format!("tensor `{tname}` has invalid data_offsets")));
            };
            let mut bytes = vec![0u8; (end - start) as usize];
            f.seek(SeekFrom::Start(8 + header_len + start)).map_err(io)?;
            f.read_exact(&mut bytes).map_err(io)?;
            tensors.push(RawTensor {
                name: tname.clone(),
                dtype: info.get("dtype").cloned().unwrap_or(Value::Null),
                shape: info.get("shape").cloned().unwrap_or(Value::Null),
                bytes,
            });
        }
    }
    if tensors.is_empty() {
        return Err(AttnError::Format {
            path: label.to_string(),
            message: format!("no tensor name starts with `{prefix}`"),
        });
    }
    // a new header with offsets into the concatenated bytes, padded to 8 bytes as the format suggests
    let mut header = Map::new();
    let mut offset = 0usize;
    for t in &tensors {
        let info = serde_json::json!({"dtype": t.dtype, "shape": t.shape, "data_offsets": [offset, offset + t.bytes.len()]});
        header.insert(t.name.clone(), info);
        offset += t.bytes.len();
    }
    let mut header = Value::Object(header).to_string().into_bytes();
    header.resize(header.len().next_multiple_of(8), b' ');
    let mut bytes = Vec::with_capacity(8 + header.len() + offset);
    bytes.extend_from_slice(&(header.len() as u64).to_le_bytes());
    bytes.extend_from_slice(&header);
    tensors.iter().for_each(|t| bytes.extend_from_slice(&t.bytes));
    TensorFile::from_bytes(label, bytes)
}
