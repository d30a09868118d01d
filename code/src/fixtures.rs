//! The PyTorch reference fixtures that `scripts/gen_fixtures.py` writes to `code/tests/fixtures/`.
//!
//! Each case is `NAME.safetensors` (weights, inputs, expected outputs; row-major f32) and `NAME.json`
//! (its configuration). The book's examples and the crate's tests read them through [`Fixture`].

use std::path::PathBuf;

use nalgebra::DMatrix;

use crate::batch::Batch;
use crate::error::{AttnError, Result};
use crate::io::{Tensor, TensorFile};
use crate::linear::Linear;

/// The folder holding the fixtures (an absolute path fixed at compile time, so examples run from any
/// working directory, as skeptic and `mdbook test` run them).
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
            .map_err(|e| AttnError::Io { path: json_path.display().to_string(), message: e.to_string() })?;
        let config = serde_json::from_str(&text).map_err(|e| AttnError::Format {
            path: json_path.display().to_string(),
            message: format!("invalid JSON: {e}"),
        })?;
        Ok(Self { name: name.to_string(), tensors, config })
    }

    /// The tensors file.
    pub fn tensors(&self) -> &TensorFile {
        &self.tensors
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
