//! Hostile safetensors files and checkpoint indexes (issue #9): each test builds its bad
//! input in a scratch folder and checks for a one-line error naming the file (and the
//! tensor, where there is one), never a panic, an abort, a read that blocks, or a number
//! computed from the wrong bytes.

use std::path::{Path, PathBuf};

use attention::{
    AttnError, HfLlamaConfig, Tensor, TensorFile, open_layer_tensors, save_tensors,
};
use proptest::prelude::*;
use serde_json::{Map, Value, json};

const PREFIX: &str = "model.layers.0.self_attn.";

fn fixture(file: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hf/gqa").join(file)
}

/// A fresh scratch folder for one test.
fn scratch(test: &str) -> PathBuf {
    let dir = std::env::temp_dir()
        .join(format!("attention-hostile-{}-{test}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A safetensors buffer: the 8-byte length `declared` (or the header's true length), the
/// header, the data.
fn raw(header: &Value, declared: Option<u64>, data: &[u8]) -> Vec<u8> {
    let header = header.to_string().into_bytes();
    let mut bytes = declared.unwrap_or(header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(&header);
    bytes.extend_from_slice(data);
    bytes
}

/// The header and data of a safetensors file.
fn split(bytes: &[u8]) -> (Map<String, Value>, Vec<u8>) {
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    (serde_json::from_slice(&bytes[8..8 + n]).unwrap(), bytes[8 + n..].to_vec())
}

/// The gqa fixture's weights with `edit` applied to its header (the data unchanged).
fn edited_weights(edit: impl FnOnce(&mut Map<String, Value>)) -> Vec<u8> {
    let (mut header, data) = split(&std::fs::read(fixture("model.safetensors")).unwrap());
    edit(&mut header);
    raw(&Value::Object(header), None, &data)
}

fn set_offsets(header: &mut Map<String, Value>, tensor: &str, start: u64, end: u64) {
    header[&format!("{PREFIX}{tensor}.weight")]["data_offsets"] = json!([start, end]);
}

/// `TensorFile::from_bytes` and, written to `dir`, `TensorFile::open` and
/// `open_layer_tensors` all refuse `bytes` with a format error that contains every needle
/// (and the file's name).
#[track_caller]
fn refused(dir: &Path, name: &str, bytes: &[u8], needles: &[&str]) {
    let path = dir.join(format!("{name}.safetensors"));
    std::fs::write(&path, bytes).unwrap();
    let errors = [
        TensorFile::from_bytes(path.display().to_string(), bytes.to_vec()).unwrap_err(),
        TensorFile::open(&path).unwrap_err(),
        open_layer_tensors(&path, PREFIX).unwrap_err(),
    ];
    for err in errors {
        assert!(matches!(err, AttnError::Format { .. }), "{name}: {err:?}");
        let message = err.to_string();
        assert!(!message.contains('\n'), "{name}: not one line: {message}");
        assert!(message.starts_with(&path.display().to_string()), "{name}: {message}");
        for needle in needles {
            assert!(message.contains(needle), "{name}: lacks {needle:?}: {message}");
        }
    }
}

#[test]
fn offsets_out_of_range_wrapped_or_overlapping_are_refused() {
    let dir = scratch("offsets");
    let q = "model.layers.0.self_attn.q_proj.weight";
    // [0, 2^64 - 1] used to panic with "capacity overflow"
    let bytes = edited_weights(|h| set_offsets(h, "q_proj", 0, u64::MAX));
    refused(&dir, "huge_end", &bytes, &["not a valid safetensors file", q]);
    // an end before the start (a wrapped subtraction used to ask for a 1 TiB buffer)
    let bytes = edited_weights(|h| set_offsets(h, "q_proj", 11680 + (1 << 40), 11680));
    refused(&dir, "wrapped", &bytes, &["not a valid safetensors file", q]);
    // q_proj's bytes overlapping k_proj's: used to run and print wrong numbers
    let bytes = edited_weights(|h| set_offsets(h, "q_proj", 160, 7840));
    refused(&dir, "overlap", &bytes, &["not a valid safetensors file", "overlap"]);
    // past the end of the file
    let bytes = edited_weights(|h| set_offsets(h, "v_proj", 19360, 23200 + 64));
    refused(&dir, "past_end", &bytes, &["not a valid safetensors file", "v_proj"]);
    // a byte length that does not match shape × dtype
    let bytes = edited_weights(|h| {
        h[&format!("{PREFIX}v_proj.weight")]["shape"] = json!([24, 41])
    });
    refused(
        &dir,
        "wrong_shape",
        &bytes,
        &["not a valid safetensors file", "v_proj", "needs 3936"],
    );
    let bytes =
        edited_weights(|h| h[&format!("{PREFIX}v_proj.weight")]["dtype"] = json!("BF16"));
    refused(&dir, "wrong_dtype", &bytes, &["not a valid safetensors file", "v_proj"]);
}

#[test]
fn a_header_length_one_byte_off_is_refused() {
    let dir = scratch("header_len");
    let good = std::fs::read(fixture("model.safetensors")).unwrap();
    let n = u64::from_le_bytes(good[..8].try_into().unwrap());
    for (name, declared) in
        [("short", n - 1), ("long", n + 1), ("huge", u64::MAX), ("past_end", 1 << 20)]
    {
        let mut bytes = good.clone();
        bytes[..8].copy_from_slice(&declared.to_le_bytes());
        refused(&dir, name, &bytes, &["not a valid safetensors file"]);
    }
    // a header padded with spaces, one byte short: valid JSON, every tensor one byte off
    let (header, data) = split(&good);
    let mut text = Value::Object(header).to_string();
    text.push(' ');
    let mut bytes = (text.len() as u64 - 1).to_le_bytes().to_vec();
    bytes.extend_from_slice(text.as_bytes());
    bytes.extend_from_slice(&data);
    refused(
        &dir,
        "padded_short",
        &bytes,
        &["not a valid safetensors file", "bytes follow the"],
    );
    // truncated files
    for len in [0, 5, 8, 100, good.len() - 1] {
        refused(
            &dir,
            &format!("truncated_{len}"),
            &good[..len],
            &["not a valid safetensors file"],
        );
    }
}

#[test]
fn directories_fifos_and_devices_are_not_read() {
    let dir = scratch("special");
    for err in [
        TensorFile::open(&dir).unwrap_err(),
        open_layer_tensors(&dir, PREFIX).unwrap_err(),
    ] {
        let message = err.to_string();
        assert!(message.contains("is a directory"), "{message}");
        assert!(!message.contains("8 bytes"), "{message}");
    }
    for err in [
        TensorFile::open("/dev/zero").unwrap_err(),
        open_layer_tensors("/dev/zero", PREFIX).unwrap_err(),
    ] {
        assert!(err.to_string().starts_with("/dev/zero: is a special file"), "{err}");
    }
    let fifo = dir.join("fifo.safetensors");
    let made = std::process::Command::new("mkfifo").arg(&fifo).status();
    if made.is_ok_and(|s| s.success()) {
        // opening a FIFO for reading would block until a writer comes: refused before
        // opening
        let err = TensorFile::open(&fifo).unwrap_err();
        assert!(err.to_string().contains("is a special file"), "{err}");
        let index = dir.join("fifo.index.json");
        let made = std::process::Command::new("mkfifo").arg(&index).status().unwrap();
        assert!(made.success());
        let err = open_layer_tensors(&index, PREFIX).unwrap_err();
        assert!(err.to_string().contains("is a special file"), "{err}");
    }
    let err = TensorFile::open("").unwrap_err();
    assert!(err.to_string().starts_with("(empty path): "), "{err}");
}

/// A broad prefix over a huge file maps it and reads nothing but the header: a sparse 64
/// GiB file (no disk used) opens at once, and converting its tensor is refused as too
/// large, not attempted.
#[test]
fn a_broad_prefix_on_a_huge_file_allocates_nothing() {
    let dir = scratch("huge");
    let path = dir.join("huge.safetensors");
    let elements: u64 = 1 << 34; // 64 GiB of f32
    let header = json!({"big": {"dtype": "F32", "shape": [elements], "data_offsets": [0, elements * 4]}});
    let bytes = raw(&header, None, &[]);
    std::fs::write(&path, &bytes).unwrap();
    let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    if file.set_len(bytes.len() as u64 + elements * 4).is_err() {
        return; // a file system without sparse files of this size: nothing to check here
    }
    let all = open_layer_tensors(&path, "").unwrap();
    assert_eq!(all.names().unwrap(), ["big"]);
    let err = all.tensor("big").unwrap_err();
    assert!(matches!(err, AttnError::TooLarge { .. }), "{err}");
    assert!(err.to_string().contains("big"), "{err}");
    std::fs::remove_dir_all(&dir).ok();
}

/// Writes an index whose weight_map sends layer 0's tensors to `shard`.
fn index_to(dir: &Path, shard: &str) -> PathBuf {
    let mut map = Map::new();
    for p in ["q_proj", "k_proj", "v_proj", "o_proj"] {
        map.insert(format!("{PREFIX}{p}.weight"), Value::from(shard));
    }
    let path = dir.join("model.safetensors.index.json");
    std::fs::write(&path, json!({"weight_map": map}).to_string()).unwrap();
    path
}

#[test]
fn shards_outside_the_checkpoint_folder_are_refused() {
    let root = scratch("confined");
    let dir = root.join("ckpt");
    std::fs::create_dir_all(&dir).unwrap();
    let outside = root.join("outside.safetensors");
    std::fs::copy(fixture("model.safetensors"), &outside).unwrap();
    for (shard, why) in [
        ("../../etc/passwd", "goes up with `..`"),
        ("../outside.safetensors", "goes up with `..`"),
        ("sub/../../outside.safetensors", "goes up with `..`"),
        ("/etc/passwd", "absolute path"),
        (&outside.display().to_string(), "absolute path"),
        ("", "is empty"),
    ] {
        let err = open_layer_tensors(index_to(&dir, shard), PREFIX).unwrap_err();
        let message = err.to_string();
        assert!(
            message.contains(why) && message.contains("model.safetensors.index.json"),
            "{shard}: {message}"
        );
        assert!(!message.contains("header length"), "{shard}: {message}");
    }
    // a symbolic link in the folder that leads out of it
    std::os::unix::fs::symlink(&outside, dir.join("link.safetensors")).unwrap();
    let err = open_layer_tensors(index_to(&dir, "link.safetensors"), PREFIX).unwrap_err();
    assert!(err.to_string().contains("outside the folder"), "{err}");
    // a shard inside the folder is fine, and one the index names but that lacks a tensor
    // is not
    std::fs::copy(
        fixture("model.safetensors"),
        dir.join("model-00001-of-00001.safetensors"),
    )
    .unwrap();
    let layer =
        open_layer_tensors(index_to(&dir, "model-00001-of-00001.safetensors"), PREFIX)
            .unwrap();
    assert_eq!(layer.names().unwrap().len(), 4);
    let whole = TensorFile::open(fixture("model.safetensors")).unwrap();
    let q = whole.tensor(&format!("{PREFIX}q_proj.weight")).unwrap();
    save_tensors(
        dir.join("only_q.safetensors"),
        &[(&format!("{PREFIX}q_proj.weight"), &q)],
    )
    .unwrap();
    let err =
        open_layer_tensors(index_to(&dir, "only_q.safetensors"), PREFIX).unwrap_err();
    assert!(err.to_string().contains("only_q.safetensors: missing tensor"), "{err}");
    std::fs::remove_dir_all(&root).ok();
}

/// A Hugging Face cache: `snapshots/REV/` holds symbolic links into `blobs/`, the index
/// among them.
#[test]
fn a_hugging_face_cache_layout_is_followed() {
    let root = scratch("hf_cache");
    let (blobs, snapshot) = (root.join("blobs"), root.join("snapshots/rev"));
    std::fs::create_dir_all(&blobs).unwrap();
    std::fs::create_dir_all(&snapshot).unwrap();
    std::fs::copy(fixture("model.safetensors"), blobs.join("hash-weights")).unwrap();
    std::os::unix::fs::symlink(
        "../../blobs/hash-weights",
        snapshot.join("model-00001-of-00001.safetensors"),
    )
    .unwrap();
    let index = index_to(&blobs, "model-00001-of-00001.safetensors");
    std::fs::rename(&index, blobs.join("hash-index")).unwrap();
    std::os::unix::fs::symlink(
        "../../blobs/hash-index",
        snapshot.join("model.safetensors.index.json"),
    )
    .unwrap();
    let layer = open_layer_tensors(snapshot.join("model.safetensors.index.json"), PREFIX)
        .unwrap();
    let cfg = HfLlamaConfig::from_file(fixture("config.json")).unwrap();
    let whole = TensorFile::open(fixture("model.safetensors")).unwrap();
    assert_eq!(
        cfg.load_attention(&layer, PREFIX).unwrap(),
        cfg.load_attention(&whole, PREFIX).unwrap()
    );
    std::fs::remove_dir_all(&root).ok();
}

/// A tensor stored in two shards is read from the one the weight_map names, and only that
/// one.
#[test]
fn the_weight_map_picks_the_shard() {
    let dir = scratch("twice");
    let whole = TensorFile::open(fixture("model.safetensors")).unwrap();
    let name = format!("{PREFIX}q_proj.weight");
    let q = whole.tensor(&name).unwrap();
    save_tensors(dir.join("a.safetensors"), &[(name.as_str(), &q)]).unwrap();
    save_tensors(dir.join("b.safetensors"), &[(name.as_str(), &q)]).unwrap();
    let index = dir.join("model.safetensors.index.json");
    std::fs::write(
        &index,
        json!({"weight_map": {name.clone(): "b.safetensors"}}).to_string(),
    )
    .unwrap();
    assert_eq!(open_layer_tensors(&index, PREFIX).unwrap().tensor(&name).unwrap(), q);
    // and a broken shard the weight_map does not name for the prefix is never opened
    std::fs::write(dir.join("a.safetensors"), b"junk").unwrap();
    assert_eq!(open_layer_tensors(&index, PREFIX).unwrap().tensor(&name).unwrap(), q);
    std::fs::remove_dir_all(&dir).ok();
}

/// Valid files built from `tensors` (name, dtype index, shape).
fn valid_file(tensors: &[(String, u8, Vec<usize>)]) -> Vec<u8> {
    let dtypes = [("F32", 4), ("F16", 2), ("BF16", 2), ("I64", 8), ("I32", 4), ("U8", 1)];
    let mut header = Map::new();
    let mut offset = 0usize;
    for (name, dtype, shape) in tensors {
        let (dtype, size) = dtypes[*dtype as usize % dtypes.len()];
        let len = shape.iter().product::<usize>() * size;
        header.insert(
            name.clone(),
            json!({"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + len]}),
        );
        offset += len;
    }
    let data: Vec<u8> = (0..offset).map(|i| (i * 37 % 251) as u8).collect();
    raw(&Value::Object(header), None, &data)
}

/// One way to break a valid file.
#[derive(Clone, Debug)]
enum Damage {
    /// Replace the 8-byte header length.
    HeaderLength(u64),
    /// Add `delta` (wrapping) to the header length.
    HeaderLengthDelta(i64),
    /// Set tensor `i`'s data_offsets.
    Offsets(usize, u64, u64),
    /// Keep only the first `n` bytes.
    Truncate(usize),
    /// Overwrite one byte.
    Byte(usize, u8),
    /// Append bytes.
    Append(Vec<u8>),
}

fn damage() -> impl Strategy<Value = Damage> {
    let near_max =
        prop_oneof![Just(u64::MAX), (0u64..4096).prop_map(|d| u64::MAX - d), 0u64..4096];
    prop_oneof![
        any::<u64>().prop_map(Damage::HeaderLength),
        (-16i64..16).prop_map(Damage::HeaderLengthDelta),
        (0usize..4, near_max.clone(), near_max)
            .prop_map(|(i, s, e)| Damage::Offsets(i, s, e)),
        (0usize..4, 0u64..256, 0u64..256).prop_map(|(i, s, e)| Damage::Offsets(i, s, e)),
        any::<usize>().prop_map(Damage::Truncate),
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Damage::Byte(i, b)),
        proptest::collection::vec(any::<u8>(), 1..16).prop_map(Damage::Append),
    ]
}

fn apply(bytes: &mut Vec<u8>, damage: &Damage) {
    match damage {
        Damage::HeaderLength(n) => bytes[..8].copy_from_slice(&n.to_le_bytes()),
        Damage::HeaderLengthDelta(d) => {
            let n = u64::from_le_bytes(bytes[..8].try_into().unwrap())
                .wrapping_add_signed(*d);
            bytes[..8].copy_from_slice(&n.to_le_bytes());
        }
        Damage::Offsets(i, start, end) => {
            let (mut header, data) = split(bytes);
            let names: Vec<String> = header.keys().cloned().collect();
            if let Some(name) = names.get(i % names.len().max(1)) {
                header[name]["data_offsets"] = json!([start, end]);
            }
            *bytes = raw(&Value::Object(header), None, &data);
        }
        Damage::Truncate(n) => bytes.truncate(n % (bytes.len() + 1)),
        Damage::Byte(i, b) => {
            let i = i % bytes.len();
            bytes[i] = *b;
        }
        Damage::Append(extra) => bytes.extend_from_slice(extra),
    }
}

/// An accepted file is consistent: every tensor converts (or is refused with an error) to
/// as many values as its shape says.
fn check_consistent(file: &TensorFile) {
    for name in file.names().unwrap() {
        assert!(file.contains(&name).unwrap());
        match file.tensor(&name) {
            Ok(Tensor { shape, data }) => {
                assert_eq!(shape.iter().product::<usize>(), data.len(), "{name}")
            }
            Err(e) => assert!(e.to_string().contains(&name), "{e}"),
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Damaged safetensors buffers never panic: either an error, or a file whose tensors
    /// are consistent.
    #[test]
    fn damaged_files_never_panic(
        tensors in proptest::collection::vec(
            ("[a-z]{1,6}", 0u8..6, proptest::collection::vec(0usize..5, 0..3)), 1..4),
        damages in proptest::collection::vec(damage(), 1..3),
    ) {
        let mut bytes = valid_file(&tensors);
        for d in &damages {
            let applicable = match d {
                Damage::Offsets(..) => valid_header(&bytes),
                Damage::HeaderLength(_) | Damage::HeaderLengthDelta(_) => bytes.len() >= 8,
                Damage::Byte(..) => !bytes.is_empty(),
                Damage::Truncate(_) | Damage::Append(_) => true,
            };
            if applicable {
                apply(&mut bytes, d);
            }
        }
        match TensorFile::from_bytes("damaged", bytes.clone()) {
            Ok(file) => check_consistent(&file),
            Err(e) => prop_assert!(e.to_string().starts_with("damaged: "), "{}", e),
        }
        let dir = std::env::temp_dir().join(format!("attention-hostile-{}-proptest", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("damaged.safetensors");
        std::fs::write(&path, &bytes).unwrap();
        match TensorFile::open(&path) {
            Ok(file) => check_consistent(&file),
            Err(e) => prop_assert!(matches!(e, AttnError::Format { .. }), "{}", e),
        }
        if let Ok(file) = open_layer_tensors(&path, "") { check_consistent(&file) }
    }
}

/// Whether `bytes` still has a header that parses as JSON (so that offsets can be edited
/// in it).
fn valid_header(bytes: &[u8]) -> bool {
    bytes.len() >= 8 && {
        let n = u64::from_le_bytes(bytes[..8].try_into().unwrap());
        n.checked_add(8).is_some_and(|end| end <= bytes.len() as u64)
            && serde_json::from_slice::<Map<String, Value>>(&bytes[8..8 + n as usize])
                .is_ok()
    }
}

/// A zero-size tensor is a valid safetensors entry; asking for it as a batch is an error
/// that names the tensor, never a panic (a `(1, 0, 40)` hidden_states panicked before).
#[test]
fn zero_size_tensors_are_named_errors() {
    let header = serde_json::json!({
        "hidden_states": {"dtype": "F32", "shape": [1, 0, 40], "data_offsets": [0, 0]},
        "w": {"dtype": "F32", "shape": [0, 40], "data_offsets": [0, 0]},
    });
    let file =
        TensorFile::from_bytes("zero.safetensors", raw(&header, None, &[])).unwrap();
    let message = file.batch("hidden_states").unwrap_err().to_string();
    assert!(!message.contains('\n') && message.contains("hidden_states"), "{message}");
    // a matrix with no rows is a valid nalgebra matrix: returned as it is, not a panic
    assert_eq!(file.matrix("w").unwrap().shape(), (0, 40));
}
