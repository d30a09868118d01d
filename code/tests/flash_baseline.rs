//! The fast paths compiled for the baseline instruction set (no AVX), as on a CPU without
//! AVX2: `ATTENTION_SIMD=baseline` caps the runtime dispatch, so this file's one test
//! runs the same loops as plain SSE2 code. (One test per file: the level is read once per
//! process.)

use attention::fast::simd::{SimdLevel, simd_level};
use attention::support::init::splitmix_matrix;
use attention::{
    AttentionInputs, DecodeAttention, FlashAttention, Tolerance, assert_matrix_close,
    grouped_attention,
};

#[test]
fn baseline_code_paths_match_the_straightforward_path() {
    // SAFETY: set before any other thread of this test binary reads the environment (this
    // file has a single test, and nothing has read the level yet).
    unsafe { std::env::set_var("ATTENTION_SIMD", "baseline") };
    assert_eq!(simd_level(), SimdLevel::Baseline);
    for (n, start_pos, heads, kv, head_dim) in
        [(150, 0, 6, 2, 16), (1, 700, 12, 4, 64), (70, 33, 4, 4, 8)]
    {
        let q = splitmix_matrix(1, n, heads * head_dim, 1.0);
        let k = splitmix_matrix(2, start_pos + n, kv * head_dim, 1.0);
        let v = splitmix_matrix(3, start_pos + n, kv * head_dim, 1.0);
        let want =
            grouped_attention(&q, k.as_view(), v.as_view(), hl(&q, heads, kv), start_pos)
                .unwrap();
        let x = AttentionInputs {
            q: &q,
            k: k.as_view(),
            v: v.as_view(),
            heads: hl(&q, heads, kv),
            query_offset: start_pos,
        };
        let flash = FlashAttention::new().forward(x).unwrap();
        let decode = DecodeAttention::new().forward(x).unwrap();
        assert_matrix_close(&flash, &want, Tolerance::F32);
        assert_matrix_close(&decode, &want, Tolerance::F32);
    }
}

/// The head layout of `n_heads` query heads over `n_kv_heads` KV heads for queries `q`.
fn hl(
    q: &nalgebra::DMatrix<f32>,
    n_heads: usize,
    n_kv_heads: usize,
) -> attention::HeadLayout {
    attention::HeadLayout::from_q_dim(q.ncols(), n_heads, n_kv_heads)
        .expect("a valid head layout")
}
