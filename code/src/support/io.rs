//! Reading and writing tensors in the safetensors format (PyTorch fixtures, Hugging Face checkpoints).
//!
//! safetensors stores each tensor row-major with its dtype and shape in a JSON header. Floats stored as
//! f32, f16 or bf16 are all returned as f32 (bf16 and f16 convert exactly).

use std::collections::HashMap;
use std::path::Path;

use nalgebra::{DMatrix, DVector};
use safetensors::{Dtype, SafeTensors};

use crate::mechanisms::linear::Linear;
use crate::support::batch::{Batch, matrix_from_row_major};
use crate::support::error::{AttnError, Dims, Result, checked_len};

/// The most bytes [`read_small_file`] reads: far more than any `config.json`, index or input the
/// crate reads this way (a sharded 405B index is about 100 KB), far less than memory.
pub const MAX_SMALL_FILE_BYTES: u64 = 64 << 20;

/// Reads a whole small file (a `config.json`, a sharded checkpoint's index) of at most
/// [`MAX_SMALL_FILE_BYTES`] bytes.
///
/// Refuses what is not a regular file (a directory, a FIFO that would block forever, `/dev/zero`
/// that would never end) and a file larger than the bound, with one-line errors naming the path;
/// an empty path is named as such, not as `: No such file or directory`.
pub fn read_small_file(path: impl AsRef<Path>) -> Result<Vec<u8>> {
    use std::io::Read;
    let path = path.as_ref();
    let label =
        if path.as_os_str().is_empty() { "(empty path)".to_string() } else { path.display().to_string() };
    let format = |message: String| AttnError::Format { path: label.clone(), message };
    let meta = std::fs::metadata(path).map_err(|e| AttnError::io(&label, e))?;
    if !meta.is_file() {
        let kind = if meta.is_dir() { "a directory" } else { "a special file (FIFO, device or socket)" };
        return Err(format(format!("is {kind}, not a file")));
    }
    if meta.len() > MAX_SMALL_FILE_BYTES {
        return Err(format(format!(
            "is {} bytes, more than the {MAX_SMALL_FILE_BYTES} this reads",
            meta.len()
        )));
    }
    let file = std::fs::File::open(path).map_err(|e| AttnError::io(&label, e))?;
    let mut bytes = Vec::new();
    // `take` also bounds a file that grows while it is read
    file.take(MAX_SMALL_FILE_BYTES + 1).read_to_end(&mut bytes).map_err(|e| AttnError::io(&label, e))?;
    if bytes.len() as u64 > MAX_SMALL_FILE_BYTES {
        return Err(format(format!("grew past {MAX_SMALL_FILE_BYTES} bytes while being read")));
    }
    Ok(bytes)
}

/// A tensor read from a file: row-major `data` of shape `shape`, as f32.
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    /// The dimensions, outermost first (PyTorch order).
    pub shape: Vec<usize>,
    /// The elements, row-major.
    pub data: Vec<f32>,
}

impl Tensor {
    /// A tensor from its shape and row-major data; errors when the sizes disagree.
    pub fn new(shape: Vec<usize>, data: Vec<f32>) -> Result<Self> {
        let expected = checked_len("Tensor::new", &shape)?;
        if expected != data.len() {
            let shape = Dims::exact(&shape);
            return Err(AttnError::Length { what: "Tensor::new".into(), shape, expected, got: data.len() });
        }
        Ok(Self { shape, data })
    }

    /// Wraps a matrix (stored row-major).
    pub fn from_matrix(m: &DMatrix<f32>) -> Self {
        Self { shape: vec![m.nrows(), m.ncols()], data: crate::support::batch::matrix_to_row_major(m) }
    }

    /// Wraps a batch (stored row-major, shape `(batch, seq, dim)`).
    pub fn from_batch(b: &Batch) -> Self {
        Self { shape: b.shape().to_vec(), data: b.to_row_major() }
    }

    fn want_rank(&self, rank: usize, what: &str) -> Result<()> {
        if self.shape.len() != rank {
            return Err(AttnError::Shape {
                what: format!("{what}: a tensor of rank {rank}"),
                expected: Dims(vec![None; rank]),
                got: Dims::exact(&self.shape),
            });
        }
        Ok(())
    }

    /// A 2-D tensor as a matrix.
    pub fn to_matrix(&self) -> Result<DMatrix<f32>> {
        self.want_rank(2, "Tensor::to_matrix")?;
        matrix_from_row_major(self.shape[0], self.shape[1], &self.data)
    }

    /// A 1-D tensor as a vector.
    pub fn to_vector(&self) -> Result<DVector<f32>> {
        self.want_rank(1, "Tensor::to_vector")?;
        Ok(DVector::from_column_slice(&self.data))
    }

    /// A 3-D tensor `(batch, seq, dim)` as a batch.
    pub fn to_batch(&self) -> Result<Batch> {
        self.want_rank(3, "Tensor::to_batch")?;
        Batch::from_row_major(self.shape[0], self.shape[1], self.shape[2], &self.data)
    }
}

/// A safetensors file held in memory.
#[derive(Clone, Debug)]
pub struct TensorFile {
    path: String,
    bytes: Vec<u8>,
}

impl TensorFile {
    /// Reads and checks a safetensors file (a missing file or a corrupt header is an error here).
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path_str = path.as_ref().display().to_string();
        let bytes = std::fs::read(path.as_ref()).map_err(|e| AttnError::io(&path_str, e))?;
        let file = Self { path: path_str, bytes };
        file.parse()?;
        Ok(file)
    }

    /// A safetensors file already in memory (`path` only labels error messages), checked like
    /// [`TensorFile::open`]. Used to hold just the tensors of one layer read from a large checkpoint.
    pub fn from_bytes(path: impl Into<String>, bytes: Vec<u8>) -> Result<Self> {
        let file = Self { path: path.into(), bytes };
        file.parse()?;
        Ok(file)
    }

    fn parse(&self) -> Result<SafeTensors<'_>> {
        SafeTensors::deserialize(&self.bytes).map_err(|e| AttnError::Format {
            path: self.path.clone(),
            message: format!("not a valid safetensors file: {e}"),
        })
    }

    /// The path the file was read from.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The tensor names in the file, sorted.
    pub fn names(&self) -> Result<Vec<String>> {
        let mut names: Vec<String> = self.parse()?.names().into_iter().map(String::from).collect();
        names.sort();
        Ok(names)
    }

    /// Whether the file has a tensor called `name`.
    pub fn contains(&self, name: &str) -> Result<bool> {
        Ok(self.parse()?.names().contains(&name))
    }

    /// The tensor `name` as f32 (from f32, f16 or bf16; integer positions from i64 or i32).
    pub fn tensor(&self, name: &str) -> Result<Tensor> {
        let st = self.parse()?;
        let view = st.tensor(name).map_err(|_| AttnError::Format {
            path: self.path.clone(),
            message: format!("missing tensor `{name}`"),
        })?;
        let raw = view.data();
        let data: Vec<f32> = match view.dtype() {
            Dtype::F32 => raw.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect(),
            Dtype::BF16 => {
                raw.chunks_exact(2).map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32()).collect()
            }
            Dtype::F16 => {
                raw.chunks_exact(2).map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32()).collect()
            }
            Dtype::I64 => raw
                .chunks_exact(8)
                .map(|b| i64::from_le_bytes(b.try_into().expect("chunks of 8")) as f32)
                .collect(),
            Dtype::I32 => {
                raw.chunks_exact(4).map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f32).collect()
            }
            other => {
                return Err(AttnError::Format {
                    path: self.path.clone(),
                    message: format!(
                        "tensor `{name}` has dtype {other:?}; expected F32, F16, BF16, I64 or I32"
                    ),
                });
            }
        };
        Tensor::new(view.shape().to_vec(), data)
    }

    /// The tensor `name` as f32, which must be stored as a float (f32, f16 or bf16): for weights and
    /// activations, where an integer dtype means a wrong file rather than something to convert.
    pub fn float_tensor(&self, name: &str) -> Result<Tensor> {
        let dtype = self
            .parse()?
            .tensor(name)
            .map_err(|_| AttnError::Format {
                path: self.path.clone(),
                message: format!("missing tensor `{name}`"),
            })?
            .dtype();
        if !matches!(dtype, Dtype::F32 | Dtype::F16 | Dtype::BF16) {
            return Err(AttnError::Format {
                path: self.path.clone(),
                message: format!("tensor `{name}` has dtype {dtype:?}; expected F32, F16 or BF16"),
            });
        }
        self.tensor(name)
    }

    /// The tensor `name`, which must have exactly `shape`.
    pub fn tensor_with_shape(&self, name: &str, shape: &[usize]) -> Result<Tensor> {
        let t = self.tensor(name)?;
        if t.shape != shape {
            return Err(AttnError::Shape {
                what: format!("{}: tensor `{name}`", self.path),
                expected: Dims::exact(shape),
                got: Dims::exact(&t.shape),
            });
        }
        Ok(t)
    }

    /// A 2-D tensor as a matrix.
    pub fn matrix(&self, name: &str) -> Result<DMatrix<f32>> {
        self.tensor(name)?.to_matrix()
    }

    /// A 3-D tensor as a batch.
    pub fn batch(&self, name: &str) -> Result<Batch> {
        self.tensor(name)?.to_batch()
    }

    /// A linear layer from `{prefix}weight` and, if present, `{prefix}bias` (PyTorch's state_dict
    /// names, e.g. prefix `"W_query."` or `"model.layers.0.self_attn.q_proj."`).
    pub fn linear(&self, prefix: &str) -> Result<Linear> {
        let weight = self.matrix(&format!("{prefix}weight"))?;
        let bias_name = format!("{prefix}bias");
        let bias =
            if self.contains(&bias_name)? { Some(self.tensor(&bias_name)?.to_vector()?) } else { None };
        Linear::new(weight, bias)
    }
}

/// Writes f32 tensors to a safetensors file (row-major, as PyTorch reads them).
pub fn save_tensors(path: impl AsRef<Path>, tensors: &[(&str, &Tensor)]) -> Result<()> {
    let path_str = path.as_ref().display().to_string();
    let bytes: Vec<(String, Vec<u8>, Vec<usize>)> = tensors
        .iter()
        .map(|(name, t)| {
            (name.to_string(), t.data.iter().flat_map(|v| v.to_le_bytes()).collect(), t.shape.clone())
        })
        .collect();
    let views = bytes
        .iter()
        .map(|(name, data, shape)| {
            safetensors::tensor::TensorView::new(Dtype::F32, shape.clone(), data)
                .map(|v| (name.clone(), v))
                .map_err(|e| AttnError::Format { path: path_str.clone(), message: e.to_string() })
        })
        .collect::<Result<Vec<_>>>()?;
    let out = safetensors::serialize(views, None::<HashMap<String, String>>)
        .map_err(|e| AttnError::Format { path: path_str.clone(), message: e.to_string() })?;
    std::fs::write(path.as_ref(), out).map_err(|e| AttnError::io(path_str, e))
}
