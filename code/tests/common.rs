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

/// Checks [`online_softmax_tile`] on a panel of `ROWS` rows (at least 3), at whatever SIMD
/// level this process runs, bit for bit against the loop written out here with
/// `exp_approx_with::<true>`: two tiles, 37 and 5 columns. The rows hold what the kernel
/// can meet: masked keys (-inf), a row with nothing seen yet, a NaN, and scores 87.30 to
/// 87.38 below the maximum, on both sides of LO = -87.33655, where `exp` leaves the
/// normal f32 range and must give 0 below it.
pub fn tile_softmax_has_the_scalar_bits<const ROWS: usize>() {
    use attention::fast::fast_exp::exp_approx_with;
    use attention::fast::online_softmax::online_softmax_tile;
    let score = |r: usize, j: usize| -> f32 {
        match (r, j) {
            (0, _) => f32::NEG_INFINITY, // nothing seen, in both tiles
            (1, 3) => f32::NAN,
            (2, 0) => 1.5,
            (2, _) => -85.8 - 0.002 * j as f32, // s - m from -87.302 to -87.382
            _ if (r + j).is_multiple_of(5) => f32::NEG_INFINITY, // masked
            _ => ((r * 13 + j * 7) % 23) as f32 * 0.9 - 10.0 + r as f32 * 0.25,
        }
    };
    let (mut max, mut sum, mut rescale) =
        ([f32::NEG_INFINITY; ROWS], [0.0; ROWS], [0.0; ROWS]);
    let (mut want_max, mut want_sum) = (max, sum);
    for (j0, cols) in [(0, 37), (37, 5)] {
        let mut tile: Vec<f32> = (0..cols)
            .flat_map(|j| (0..ROWS).map(move |r| (r, j0 + j)))
            .map(|(r, j)| score(r, j))
            .collect();
        let scores = tile.clone();
        online_softmax_tile::<true, ROWS>(&mut tile, &mut max, &mut sum, &mut rescale);
        for r in 0..ROWS {
            let row = || scores.iter().skip(r).step_by(ROWS);
            let new_max = row().fold(want_max[r], |m, &s| if s > m { s } else { m });
            let seen = new_max != f32::NEG_INFINITY;
            let shift = if seen { new_max } else { 0.0 };
            let factor =
                if seen { exp_approx_with::<true>(want_max[r] - shift) } else { 1.0 };
            assert_eq!(rescale[r].to_bits(), factor.to_bits(), "row {r}");
            want_sum[r] *= factor;
            for (j, &s) in row().enumerate() {
                let w = exp_approx_with::<true>(s - shift);
                let got = tile[j * ROWS + r];
                assert_eq!(
                    got.to_bits(),
                    w.to_bits(),
                    "row {r} column {j}: {got:e} vs {w:e}"
                );
                want_sum[r] += w;
            }
            want_max[r] = new_max;
            assert_eq!(max[r].to_bits(), want_max[r].to_bits(), "row {r}");
            assert_eq!(sum[r].to_bits(), want_sum[r].to_bits(), "row {r}");
        }
    }
    // the cases above happened: weights on both sides of LO, a NaN spread to its row's
    // sum, a row that saw nothing
    let (near, far) = (-85.8 - 0.002 - 1.5, -85.8 - 0.002 * 41.0 - 1.5_f32);
    assert!(exp_approx_with::<true>(near) > 0.0 && exp_approx_with::<true>(far) == 0.0);
    assert!(sum[1].is_nan() && sum[0] == 0.0 && sum[2] == 1.0);
}
