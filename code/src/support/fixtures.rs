//! The PyTorch reference fixtures that `scripts/gen_fixtures.py` writes to
//! `code/tests/fixtures/`.
//!
//! Each case is `NAME.safetensors` (weights, inputs, expected outputs; row-major f32) and
//! `NAME.json` (its configuration). The book's examples and the crate's tests read them
//! through [`Fixture`].

use std::path::PathBuf;

use nalgebra::DMatrix;

use crate::mechanisms::gqa::{GroupedQueryAttention, QkvoWeights};
use crate::mechanisms::linear::Linear;
use crate::mechanisms::rope::Rope;
use crate::support::batch::Batch;
use crate::support::error::{AttnError, Result};
use crate::support::init::splitmix_matrix;
use crate::support::io::{Tensor, TensorFile};
use crate::variants::MultiHeadLatentAttention;

/// The folder holding the fixtures (an absolute path fixed at compile time, so examples
/// run from any working directory, as skeptic and `mdbook test` run them).
pub const FIXTURE_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");

/// One reference case: its tensors and its JSON configuration.
#[derive(Clone, Debug)]
pub struct Fixture {
    /// The case name, e.g. `"toy_causal"`.
    pub name: String,
    tensors: TensorFile,
    config: serde_json::Value,
}

impl Fixture {
    /// Loads the case `name` from [`FIXTURE_DIR`].
    pub fn load(name: &str) -> Result<Self> {
        let dir = PathBuf::from(FIXTURE_DIR);
        let tensors = TensorFile::open(dir.join(format!("{name}.safetensors")))?;
        let json_path = dir.join(format!("{name}.json"));
        let text = std::fs::read_to_string(&json_path)
            .map_err(|e| AttnError::io(json_path.display(), e))?;
        let config = serde_json::from_str(&text).map_err(|e| AttnError::Format {
            path: json_path.display().to_string(),
            message: format!("invalid JSON: {e}"),
        })?;
        Ok(Self { name: name.to_string(), tensors, config })
    }

    /// A tensor by name.
    pub fn tensor(&self, name: &str) -> Result<Tensor> {
        self.tensors.tensor(name)
    }

    /// A 2-D tensor as a matrix.
    pub fn matrix(&self, name: &str) -> Result<DMatrix<f32>> {
        self.tensors.matrix(name)
    }

    /// A 3-D tensor as a batch.
    pub fn batch(&self, name: &str) -> Result<Batch> {
        self.tensors.batch(name)
    }

    /// A linear layer from `{prefix}.weight` (and `{prefix}.bias` if stored).
    pub fn linear(&self, prefix: &str) -> Result<Linear> {
        self.tensors.linear(&format!("{prefix}."))
    }

    /// The four stored projections `W_query`, `W_key`, `W_value`, `out_proj` of a case.
    pub fn weights(&self) -> Result<QkvoWeights> {
        Ok(QkvoWeights {
            w_query: self.linear("W_query")?,
            w_key: self.linear("W_key")?,
            w_value: self.linear("W_value")?,
            out_proj: self.linear("out_proj")?,
        })
    }

    /// The grouped-query attention module of a GQA case (`small_gqa`, `small_mqa`,
    /// `small_gqa_norope`, `kv_cache`, `default_gqa`), as the generator built it: its
    /// four projections, `n_heads`, `n_kv_heads`, and RoPE tables for `context_length`
    /// positions when `rope` is true.
    ///
    /// The weights are the stored ones, or, where the JSON says `"weights":
    /// "splitmix64"`, regenerated with [`splitmix_matrix`] from its `weight_seeds`,
    /// `weight_bounds` and `weight_shapes`.
    pub fn gqa(&self) -> Result<GroupedQueryAttention> {
        let regenerate =
            self.config.get("weights").and_then(|w| w.as_str()) == Some("splitmix64");
        let linear = |name: &str| -> Result<Linear> {
            if !regenerate {
                return self.linear(name);
            }
            let key = format!("{name}.weight");
            let field = |table: &str| {
                self.config[table].get(&key).cloned().ok_or_else(|| AttnError::Format {
                    path: format!("{}/{}.json", FIXTURE_DIR, self.name),
                    message: format!("missing `{table}.{key}`"),
                })
            };
            let (seed, bound, shape) = (
                field("weight_seeds")?,
                field("weight_bounds")?,
                field("weight_shapes")?,
            );
            let bad = || AttnError::Format {
                path: format!("{}/{}.json", FIXTURE_DIR, self.name),
                message: format!("malformed SplitMix64 entry for `{key}`"),
            };
            let dims: Vec<usize> = shape
                .as_array()
                .ok_or_else(bad)?
                .iter()
                .map(|d| d.as_u64().map(|d| d as usize).ok_or_else(bad))
                .collect::<Result<_>>()?;
            let [rows, cols] = dims[..] else { return Err(bad()) };
            let m = splitmix_matrix(
                seed.as_u64().ok_or_else(bad)?,
                rows,
                cols,
                bound.as_f64().ok_or_else(bad)?,
            );
            Linear::new(m, None)
        };
        let rope = if self.bool("rope")? {
            Some(Rope::new(
                self.usize("head_dim")?,
                self.usize("context_length")?,
                self.f32("rope_theta")?,
                None,
            )?)
        } else {
            None
        };
        let weights = QkvoWeights {
            w_query: linear("W_query")?,
            w_key: linear("W_key")?,
            w_value: linear("W_value")?,
            out_proj: linear("out_proj")?,
        };
        GroupedQueryAttention::new(
            weights,
            self.usize("n_heads")?,
            self.usize("n_kv_heads")?,
            rope,
        )
    }

    /// The raw JSON configuration.
    pub fn config(&self) -> &serde_json::Value {
        &self.config
    }

    fn key(&self, key: &str) -> Result<&serde_json::Value> {
        self.config.get(key).ok_or_else(|| AttnError::Format {
            path: format!("{}/{}.json", FIXTURE_DIR, self.name),
            message: format!("missing key `{key}`"),
        })
    }

    /// An unsigned integer from the configuration.
    pub fn usize(&self, key: &str) -> Result<usize> {
        self.key(key)?.as_u64().map(|v| v as usize).ok_or_else(|| AttnError::Format {
            path: format!("{}/{}.json", FIXTURE_DIR, self.name),
            message: format!("key `{key}` is not an unsigned integer"),
        })
    }

    /// A number from the configuration, as f32.
    pub fn f32(&self, key: &str) -> Result<f32> {
        self.key(key)?.as_f64().map(|v| v as f32).ok_or_else(|| AttnError::Format {
            path: format!("{}/{}.json", FIXTURE_DIR, self.name),
            message: format!("key `{key}` is not a number"),
        })
    }

    /// A boolean from the configuration.
    pub fn bool(&self, key: &str) -> Result<bool> {
        self.key(key)?.as_bool().ok_or_else(|| AttnError::Format {
            path: format!("{}/{}.json", FIXTURE_DIR, self.name),
            message: format!("key `{key}` is not a boolean"),
        })
    }
}

/// A tiny Hugging Face checkpoint with its input and transformers' outputs, as
/// `scripts/gen_variant_fixtures.py` (folder `variants/NAME/`) and
/// `scripts/gen_hf_fixtures.py` (`hf/NAME/`) write them: `config.json`,
/// `model.safetensors`, `input.safetensors` (`hidden_states`), `expected.safetensors`,
/// `meta.json` (the layer's `prefix`, `start_pos`, and `decode_from` where decoding was
/// checked).
#[derive(Clone, Debug)]
pub struct HfFixture {
    /// The folder, e.g. `.../fixtures/variants/gemma2_sliding`.
    pub dir: PathBuf,
    /// `config.json`, read by the crate's loader.
    pub config: crate::hf::HfLlamaConfig,
    /// The layer's tensor name prefix, e.g. `model.layers.1.self_attn.`.
    pub prefix: String,
    /// The position of the first input token.
    pub start_pos: usize,
    /// Tokens run as one prefill before decoding one at a time (`decode_output`), or 0.
    pub decode_from: usize,
}

impl HfFixture {
    /// Loads the case at `FIXTURE_DIR/path`, e.g. `"variants/mistral_window"`.
    pub fn load(path: &str) -> Result<Self> {
        let dir = PathBuf::from(FIXTURE_DIR).join(path);
        let config = crate::hf::HfLlamaConfig::from_file(dir.join("config.json"))?;
        let meta_path = dir.join("meta.json");
        let text = std::fs::read_to_string(&meta_path)
            .map_err(|e| AttnError::io(meta_path.display(), e))?;
        let bad = |message: String| AttnError::Format {
            path: meta_path.display().to_string(),
            message,
        };
        let meta: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| bad(format!("invalid JSON: {e}")))?;
        let count = |key: &str| -> Result<usize> {
            match meta.get(key) {
                None => Ok(0),
                Some(v) => v
                    .as_u64()
                    .and_then(|n| usize::try_from(n).ok())
                    .ok_or_else(|| bad(format!("`{key}` is not a count"))),
            }
        };
        let prefix = meta["prefix"]
            .as_str()
            .ok_or_else(|| bad("missing `prefix`".into()))?
            .to_string();
        let (start_pos, decode_from) = (count("start_pos")?, count("decode_from")?);
        Ok(Self { dir, config, prefix, start_pos, decode_from })
    }

    /// The attention layer, loaded by the crate's loader from `model.safetensors`. A
    /// DeepSeek case (multi-head latent attention) is an error: see [`Self::mla_layer`].
    pub fn layer(&self) -> Result<GroupedQueryAttention> {
        let file = self.dir.join("model.safetensors");
        let weights = crate::hf::open_layer_tensors(file, &self.prefix)?;
        self.config.load_attention(&weights, &self.prefix)
    }

    /// The multi-head latent attention layer of a DeepSeek case (`variants/deepseek_v3_*`,
    /// chapter 12), loaded by [`HfLlamaConfig::load_mla`](crate::HfLlamaConfig::load_mla)
    /// from `model.safetensors`. Any other case is an error: see [`Self::layer`].
    pub fn mla_layer(&self) -> Result<MultiHeadLatentAttention> {
        let file = self.dir.join("model.safetensors");
        let weights = crate::hf::open_layer_tensors(file, &self.prefix)?;
        self.config.load_mla(&weights, &self.prefix)
    }

    /// The layer's input, `hidden_states` `(batch, seq, hidden_size)`.
    pub fn input(&self) -> Result<Batch> {
        TensorFile::open(self.dir.join("input.safetensors"))?.batch("hidden_states")
    }

    /// An output transformers computed, e.g. `attn_output` or `decode_output`.
    pub fn expected(&self, name: &str) -> Result<Batch> {
        TensorFile::open(self.dir.join("expected.safetensors"))?.batch(name)
    }
}
