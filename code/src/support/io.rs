//! Reading and writing tensors in the safetensors format (PyTorch fixtures, Hugging Face
//! checkpoints).
//!
//! safetensors stores each tensor row-major with its dtype and shape in a JSON header.
//! Floats stored as f32, f16 or bf16 are all returned as f32 (bf16 and f16 convert
//! exactly). Files are memory-mapped and validated by the safetensors crate (the format's
//! reference implementation) when they are opened; only the tensors asked for are read.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;

use nalgebra::{DMatrix, DVector};
use safetensors::{Dtype, SafeTensors};

use crate::mechanisms::linear::Linear;
use crate::support::batch::{Batch, matrix_from_row_major};
use crate::support::error::{AttnError, Dims, Result, checked_len};

/// The most bytes [`read_small_file`] reads: far more than any `config.json`, index or
/// input the crate reads this way (a sharded 405B index is about 100 KB), far less than
/// memory.
pub const MAX_SMALL_FILE_BYTES: u64 = 64 << 20;

/// Reads a whole small file (a `config.json`, a sharded checkpoint's index) of at most
/// [`MAX_SMALL_FILE_BYTES`] bytes.
///
/// Refuses what is not a regular file (a directory, a FIFO that would block forever,
/// `/dev/zero` that would never end) and a file larger than the bound, with one-line
/// errors naming the path; an empty path is named as such, not as `: No such file or
/// directory`.
pub fn read_small_file(path: impl AsRef<Path>) -> Result<Vec<u8>> {
    use std::io::Read;
    let path = path.as_ref();
    let label = path_label(path);
    let format = |message: String| AttnError::Format { path: label.clone(), message };
    // stat before open: opening a FIFO for reading blocks until a writer comes
    want_regular_file(
        &std::fs::metadata(path).map_err(|e| AttnError::io(&label, e))?,
        &label,
    )?;
    let file = std::fs::File::open(path).map_err(|e| AttnError::io(&label, e))?;
    let meta = file.metadata().map_err(|e| AttnError::io(&label, e))?;
    want_regular_file(&meta, &label)?; // it may have been replaced in between
    if meta.len() > MAX_SMALL_FILE_BYTES {
        return Err(format(format!(
            "is {} bytes, more than the {MAX_SMALL_FILE_BYTES} this reads",
            meta.len()
        )));
    }
    let mut bytes = Vec::new();
    // `take` also bounds a file that grows while it is read
    file.take(MAX_SMALL_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| AttnError::io(&label, e))?;
    if bytes.len() as u64 > MAX_SMALL_FILE_BYTES {
        return Err(format(format!(
            "grew past {MAX_SMALL_FILE_BYTES} bytes while being read"
        )));
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
            return Err(AttnError::Length {
                what: "Tensor::new".into(),
                shape,
                expected,
                got: data.len(),
            });
        }
        Ok(Self { shape, data })
    }

    /// Wraps a matrix (stored row-major).
    pub fn from_matrix(m: &DMatrix<f32>) -> Self {
        Self {
            shape: vec![m.nrows(), m.ncols()],
            data: crate::support::batch::matrix_to_row_major(m),
        }
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

/// Where a safetensors file's bytes live: in memory, or mapped from the file.
enum Storage {
    /// Bytes handed to [`TensorFile::from_bytes`].
    Owned(Vec<u8>),
    /// A file mapped read-only: nothing is allocated, only the pages that are read are
    /// loaded.
    Mapped(memmap2::Mmap),
}

impl Storage {
    fn bytes(&self) -> &[u8] {
        match self {
            Storage::Owned(v) => v,
            Storage::Mapped(m) => m,
        }
    }
}

/// One safetensors file (a whole file, or one shard of a checkpoint) and its name for
/// messages.
struct Source {
    path: String,
    storage: Storage,
}

/// Where one tensor lies: which source, its dtype and shape, its byte range in that
/// source.
#[derive(Clone, Debug)]
struct Entry {
    source: usize,
    dtype: Dtype,
    shape: Vec<usize>,
    bytes: std::ops::Range<usize>,
}

/// A safetensors file, validated once when it is opened and then read tensor by tensor.
///
/// [`TensorFile::open`] maps the file into memory instead of reading it (as candle does),
/// so opening a 5 GB checkpoint shard allocates nothing and reading one tensor touches
/// only its bytes. The header is checked by the format's reference implementation
/// (`safetensors::SafeTensors::read_metadata`): offsets in range, contiguous, not
/// overlapping, covering the data exactly, each tensor's byte length equal to its dtype
/// size times its shape. A file that fails any of these is refused with an error naming
/// the file (and the tensor at fault where there is one).
///
/// A `TensorFile` may also hold a chosen subset of the tensors of several files (the
/// shards of a checkpoint): see [`crate::hf::open_layer_tensors`].
#[derive(Clone)]
pub struct TensorFile {
    path: String,
    sources: Vec<Arc<Source>>,
    entries: BTreeMap<String, Entry>,
}

impl std::fmt::Debug for TensorFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TensorFile")
            .field("path", &self.path)
            .field("sources", &self.sources.iter().map(|s| &s.path).collect::<Vec<_>>())
            .field("tensors", &self.entries.len())
            .finish()
    }
}

/// `path` for error messages; an empty path is named as such.
fn path_label(path: &Path) -> String {
    if path.as_os_str().is_empty() {
        "(empty path)".to_string()
    } else {
        path.display().to_string()
    }
}

/// Refuses what is not a regular file (a directory, a FIFO that would block, a device
/// that never ends), naming it.
fn want_regular_file(meta: &std::fs::Metadata, label: &str) -> Result<()> {
    if meta.is_file() {
        return Ok(());
    }
    let kind = if meta.is_dir() {
        "a directory"
    } else {
        "a special file (FIFO, device or socket)"
    };
    Err(AttnError::Format {
        path: label.to_string(),
        message: format!("is {kind}, not a file"),
    })
}

/// Maps the file at `path` read-only, after checking that it is a regular file.
fn map_file(path: &Path) -> Result<Source> {
    let label = path_label(path);
    // stat before open: opening a FIFO for reading blocks until a writer comes
    let meta = std::fs::metadata(path).map_err(|e| AttnError::io(&label, e))?;
    want_regular_file(&meta, &label)?;
    let file = std::fs::File::open(path).map_err(|e| AttnError::io(&label, e))?;
    let meta = file.metadata().map_err(|e| AttnError::io(&label, e))?;
    want_regular_file(&meta, &label)?; // it may have been replaced in between
    let storage = if meta.len() == 0 {
        Storage::Owned(Vec::new()) // nothing to map; the header check names the problem
    } else {
        // SAFETY: the map is read-only, and the slices handed out never outlive it (they
        // are copied into f32 tensors). Another process truncating or rewriting the file
        // while it is mapped would change what is read, or end the process with SIGBUS:
        // the caveat every memory-mapped reader of checkpoints (candle, the safetensors
        // crate's users) accepts, in exchange for not reading gigabytes that are never
        // used.
        let map =
            unsafe { memmap2::Mmap::map(&file) }.map_err(|e| AttnError::io(&label, e))?;
        Storage::Mapped(map)
    };
    Ok(Source { path: label, storage })
}

/// The tensors of `source`, validated by the safetensors reference implementation, with
/// their byte ranges in the source's bytes (as the entries of source number `index`).
fn parse_source(source: &Source, index: usize) -> Result<Vec<(String, Entry)>> {
    let bytes = source.storage.bytes();
    let (header_len, metadata) =
        SafeTensors::read_metadata(bytes).map_err(|e| AttnError::Format {
            path: source.path.clone(),
            message: format!(
                "not a valid safetensors file: {e}{}",
                explain_invalid(bytes)
            ),
        })?;
    // read_metadata checked that 8 + header_len + every end offset lies within `bytes`
    let data_start = 8 + header_len;
    Ok(metadata
        .tensors()
        .into_iter()
        .map(|(name, info)| {
            let (start, end) = info.data_offsets;
            let bytes = data_start + start..data_start + end;
            (
                name,
                Entry {
                    source: index,
                    dtype: info.dtype,
                    shape: info.shape.clone(),
                    bytes,
                },
            )
        })
        .collect())
}

/// Why the safetensors reference implementation refused `bytes`, where it can be said
/// more precisely than its error does (which tensor, which offsets, how many bytes): `
/// (…)`, or nothing.
///
/// This only explains: the decision to refuse is the reference implementation's.
fn explain_invalid(bytes: &[u8]) -> String {
    use safetensors::tensor::TensorInfo;
    let Some(len) = bytes.get(..8) else {
        return format!(" (the file is {} bytes)", bytes.len());
    };
    let header_len = u64::from_le_bytes(len.try_into().expect("8 bytes"));
    let file_len = bytes.len() as u64;
    let Some(header) = header_len
        .checked_add(8)
        .filter(|&end| end <= file_len)
        .map(|end| &bytes[8..end as usize])
    else {
        return format!(
            " (the first 8 bytes give a header length of {header_len}; the file is \
                {file_len} bytes)"
        );
    };
    let Ok(map) =
        serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(header)
    else {
        return String::new(); // the reference's JSON error says it
    };
    let mut infos: Vec<(String, TensorInfo)> = Vec::new();
    for (name, value) in map.into_iter().filter(|(name, _)| name != "__metadata__") {
        match serde_json::from_value::<TensorInfo>(value) {
            Ok(info) => infos.push((name, info)),
            Err(e) => return format!(" (tensor `{name}`: {e})"),
        }
    }
    let data_len = file_len - 8 - header_len;
    // each tensor on its own first: a broken entry also breaks the order of the others
    for (name, info) in &infos {
        let (start, end) = info.data_offsets;
        let offsets = format!("tensor `{name}`: data_offsets [{start}, {end}]");
        if end < start {
            return format!(" ({offsets} end before they start)");
        }
        if end as u64 > data_len {
            return format!(
                " ({offsets} pass the {data_len} bytes of data after the \
                    {header_len}-byte header)"
            );
        }
        let bits = info
            .shape
            .iter()
            .try_fold(info.dtype.bitsize() as u128, |acc, &d| acc.checked_mul(d as u128));
        if bits != Some((end - start) as u128 * 8) {
            let needs = bits.map_or("more than 2^128 bits".to_string(), |b| {
                b.div_ceil(8).to_string()
            });
            let shape = Dims::exact(&info.shape);
            return format!(
                " ({offsets} hold {} bytes; shape {shape} of {:?} needs {needs})",
                end - start,
                info.dtype
            );
        }
    }
    infos.sort_by_key(|(_, info)| info.data_offsets);
    let mut previous: Option<(&str, usize)> = None;
    for (name, info) in &infos {
        let (start, end) = info.data_offsets;
        let expected_start = previous.map_or(0, |(_, end)| end);
        if start < expected_start {
            let other = previous.map_or("", |(n, _)| n);
            return format!(
                " (tensor `{name}`: data_offsets [{start}, {end}] overlap tensor \
                    `{other}`)"
            );
        }
        if start > expected_start {
            return format!(
                " (tensor `{name}`: data_offsets [{start}, {end}] leave bytes \
                    {expected_start}..{start} unused)"
            );
        }
        previous = Some((name, end));
    }
    let end = previous.map_or(0, |(_, end)| end);
    if end as u64 != data_len {
        return format!(
            " (the tensors' data_offsets end at byte {end} of the data, but {data_len} bytes follow the \
             {header_len}-byte header)"
        );
    }
    String::new()
}

impl TensorFile {
    /// Opens and validates a safetensors file, mapping it into memory (nothing is read
    /// but the header until a tensor is asked for). A missing file, a directory, a FIFO
    /// or device, or an invalid header is an error here, naming the file.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let source = map_file(path.as_ref())?;
        Self::from_source(source)
    }

    /// A safetensors file already in memory (`path` only labels error messages), checked
    /// like [`TensorFile::open`].
    pub fn from_bytes(path: impl Into<String>, bytes: Vec<u8>) -> Result<Self> {
        Self::from_source(Source { path: path.into(), storage: Storage::Owned(bytes) })
    }

    fn from_source(source: Source) -> Result<Self> {
        let entries = parse_source(&source, 0)?.into_iter().collect();
        Ok(Self { path: source.path.clone(), sources: vec![Arc::new(source)], entries })
    }

    /// The tensors that `keep(file_index, name)` selects out of each of `files` (the
    /// shards of one checkpoint), each file mapped and validated whole, labelled `label`.
    /// A name found in two files is an error; no tensor selected is not (the caller says
    /// what was expected).
    pub(crate) fn open_selected(
        label: impl Into<String>,
        files: &[std::path::PathBuf],
        keep: impl Fn(usize, &str) -> bool,
    ) -> Result<Self> {
        let mut sources = Vec::with_capacity(files.len());
        let mut entries: BTreeMap<String, Entry> = BTreeMap::new();
        for (i, path) in files.iter().enumerate() {
            let source = map_file(path)?;
            for (name, entry) in parse_source(&source, i)? {
                if !keep(i, &name) {
                    continue;
                }
                if let Some(first) = entries.get(&name) {
                    let first: &str = sources
                        .get(first.source)
                        .map_or(&source.path, |s: &Arc<Source>| &s.path);
                    return Err(AttnError::Format {
                        path: source.path.clone(),
                        message: format!("tensor `{name}` is also in {first}"),
                    });
                }
                entries.insert(name, entry);
            }
            sources.push(Arc::new(source));
        }
        Ok(Self { path: label.into(), sources, entries })
    }

    /// The path the file was read from.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The tensor names in the file, sorted.
    pub fn names(&self) -> Result<Vec<String>> {
        Ok(self.entries.keys().cloned().collect())
    }

    /// Whether the file has a tensor called `name`.
    pub fn contains(&self, name: &str) -> Result<bool> {
        Ok(self.entries.contains_key(name))
    }

    fn entry(&self, name: &str) -> Result<&Entry> {
        self.entries.get(name).ok_or_else(|| AttnError::Format {
            path: self.path.clone(),
            message: format!("missing tensor `{name}`"),
        })
    }

    /// The tensor `name` as f32 (from f32, f16 or bf16; integer positions from i64 or
    /// i32).
    pub fn tensor(&self, name: &str) -> Result<Tensor> {
        let entry = self.entry(name)?;
        let source = &self.sources[entry.source];
        let raw = &source.storage.bytes()[entry.bytes.clone()];
        let convert: fn(&[u8]) -> f32 = match entry.dtype {
            Dtype::F32 => |b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]),
            Dtype::BF16 => |b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32(),
            Dtype::F16 => |b| half::f16::from_le_bytes([b[0], b[1]]).to_f32(),
            Dtype::I64 => |b| {
                i64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]])
                    as f32
            },
            Dtype::I32 => |b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f32,
            other => {
                return Err(AttnError::Format {
                    path: source.path.clone(),
                    message: format!(
                        "tensor `{name}` has dtype {other:?}; expected F32, F16, BF16, \
                            I64 or I32"
                    ),
                });
            }
        };
        // the header check made the byte length dtype size × elements; bound the f32 copy
        // all the same
        let len =
            checked_len(format_args!("{}: tensor `{name}`", source.path), &entry.shape)?;
        let mut data = Vec::new();
        data.try_reserve_exact(len).map_err(|_| AttnError::TooLarge {
            what: format!(
                "{}: tensor `{name}` {}",
                source.path,
                Dims::exact(&entry.shape)
            ),
            bytes: len as u128 * 4,
            detail: "the allocator refused it",
        })?;
        data.extend(raw.chunks_exact(entry.dtype.bitsize() / 8).map(convert));
        Tensor::new(entry.shape.clone(), data)
    }

    /// The tensor `name` as f32, which must be stored as a float (f32, f16 or bf16): for
    /// weights and activations, where an integer dtype means a wrong file rather than
    /// something to convert.
    pub fn float_tensor(&self, name: &str) -> Result<Tensor> {
        let entry = self.entry(name)?;
        if !matches!(entry.dtype, Dtype::F32 | Dtype::F16 | Dtype::BF16) {
            return Err(AttnError::Format {
                path: self.sources[entry.source].path.clone(),
                message: format!(
                    "tensor `{name}` has dtype {:?}; expected F32, F16 or BF16",
                    entry.dtype
                ),
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
        let tensor = self.tensor(name)?;
        if tensor.shape.len() == 3 && tensor.shape.contains(&0) {
            // valid in the file, but no sequence of tokens: say which tensor, not "seq
            // must be ..."
            let shape: Vec<String> = tensor.shape.iter().map(usize::to_string).collect();
            return Err(AttnError::Format {
                path: self.path().to_string(),
                message: format!(
                    "tensor `{name}` has shape ({}): a batch needs every size >= 1",
                    shape.join(", ")
                ),
            });
        }
        tensor.to_batch()
    }

    /// A linear layer from `{prefix}weight` and, if present, `{prefix}bias` (PyTorch's
    /// state_dict names, e.g. prefix `"W_query."` or
    /// `"model.layers.0.self_attn.q_proj."`).
    pub fn linear(&self, prefix: &str) -> Result<Linear> {
        let weight = self.matrix(&format!("{prefix}weight"))?;
        let bias_name = format!("{prefix}bias");
        let bias = if self.contains(&bias_name)? {
            Some(self.tensor(&bias_name)?.to_vector()?)
        } else {
            None
        };
        Linear::new(weight, bias)
    }
}

/// Writes f32 tensors to a safetensors file (row-major, as PyTorch reads them).
///
/// The file is replaced only once it is complete: the bytes go to a temporary file in the
/// same folder, which is flushed to disk and then renamed over `path`. A full disk or any
/// other write error leaves whatever was at `path` before untouched (and removes the
/// temporary file).
pub fn save_tensors(path: impl AsRef<Path>, tensors: &[(&str, &Tensor)]) -> Result<()> {
    let path_str = path_label(path.as_ref());
    let bytes: Vec<(String, Vec<u8>, Vec<usize>)> = tensors
        .iter()
        .map(|(name, t)| {
            (
                name.to_string(),
                t.data.iter().flat_map(|v| v.to_le_bytes()).collect(),
                t.shape.clone(),
            )
        })
        .collect();
    let views = bytes
        .iter()
        .map(|(name, data, shape)| {
            safetensors::tensor::TensorView::new(Dtype::F32, shape.clone(), data)
                .map(|v| (name.clone(), v))
                .map_err(|e| AttnError::Format {
                    path: path_str.clone(),
                    message: e.to_string(),
                })
        })
        .collect::<Result<Vec<_>>>()?;
    let out =
        safetensors::serialize(views, None::<HashMap<String, String>>).map_err(|e| {
            AttnError::Format { path: path_str.clone(), message: e.to_string() }
        })?;
    write_replacing(path.as_ref(), &out)
}

/// Writes `bytes` to `path` through a temporary file in the same folder renamed into
/// place, so that `path` holds either its old contents or all of `bytes`, never a part.
fn write_replacing(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let label = path_label(path);
    let Some(file_name) = path.file_name() else {
        return Err(AttnError::Format {
            path: label,
            message: "does not name a file".into(),
        });
    };
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(file_name);
    tmp_name.push(format!(".{}-{n}.tmp", std::process::id()));
    let tmp = dir.join(tmp_name);
    let written = (|| {
        let mut file =
            std::fs::OpenOptions::new().write(true).create_new(true).open(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all() // a full disk may only show here (delayed allocation)
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(AttnError::io(&label, e));
    }
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        AttnError::io(&label, e)
    })
}
