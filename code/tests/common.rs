//! Helpers shared by the integration tests: building modules from PyTorch fixtures.
#![allow(dead_code)] // each test file uses a different subset

use attention::{Fixture, Linear, Result};

/// PyTorch's `assert_close` default for f32 (rtol 1.3e-6, atol 1e-5): our products sum in
/// a different order than PyTorch's, so bit-exact agreement is not expected; differences
/// of ~1e-6 are.
pub const TOL: attention::Tolerance = attention::Tolerance::F32;

/// The three projections of a single-head module stored under `prefix` (e.g. "" or
/// "heads.0.").
pub fn qkv(fx: &Fixture, prefix: &str) -> Result<(Linear, Linear, Linear)> {
    Ok((
        fx.linear(&format!("{prefix}W_query"))?,
        fx.linear(&format!("{prefix}W_key"))?,
        fx.linear(&format!("{prefix}W_value"))?,
    ))
}

/// Row-major slice `[b, h]` of a `(batch, heads, rows, cols)` tensor, as a matrix.
pub fn slice4(t: &attention::Tensor, b: usize, h: usize) -> nalgebra::DMatrix<f32> {
    let [_, nh, rows, cols] = t.shape[..] else {
        panic!("expected a 4-D tensor, got {:?}", t.shape)
    };
    let start = (b * nh + h) * rows * cols;
    attention::matrix_from_row_major(rows, cols, &t.data[start..start + rows * cols])
        .unwrap()
}

/// The Hugging Face cases, one folder each under `tests/fixtures/hf/` (written by
/// `scripts/gen_hf_fixtures.py`), sorted: a new case is picked up by every test that
/// loops over them.
pub fn hf_cases() -> Vec<String> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hf");
    let mut cases: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("config.json").is_file())
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    cases.sort();
    assert!(
        cases.len() >= 8,
        "expected the 8 Hugging Face cases in {}, found {cases:?}",
        dir.display()
    );
    cases
}

/// `q (n_queries, n_heads·head_dim)`, `k`, `v (n_keys, n_kv_heads·head_dim)`, uniform in
/// [−2, 2): scores spread over a few units, so that the maxima of different key blocks
/// (or splits) differ and every merge rescales.
pub fn spread_qkv(
    seed: u64,
    heads: attention::HeadLayout,
    n_q: usize,
    n_k: usize,
) -> [nalgebra::DMatrix<f32>; 3] {
    use attention::splitmix_matrix;
    [
        splitmix_matrix(seed, n_q, heads.q_dim(), 2.0),
        splitmix_matrix(seed + 1, n_k, heads.kv_dim(), 2.0),
        splitmix_matrix(seed + 2, n_k, heads.kv_dim(), 2.0),
    ]
}
