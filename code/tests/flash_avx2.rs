//! The fast paths compiled for AVX2 (8 lanes), as on a CPU without AVX-512:
//! `ATTENTION_SIMD=avx2` caps the runtime dispatch, so on an AVX-512 machine this file's
//! one test still runs the AVX2 loops that most laptops and servers run. (One test per
//! file: the level is read once per process.)

mod common;

use attention::fast::simd::{SimdLevel, simd_level};
use attention::support::init::splitmix_matrix;
use attention::{
    AttentionInputs, DecodeAttention, FlashAttention, HeadLayout, Tolerance,
    assert_matrix_close, grouped_attention,
};

#[test]
fn avx2_code_paths_match_the_straightforward_path() {
    // SAFETY: set before any other thread of this test binary reads the environment (this
    // file has a single test, and nothing has read the level yet).
    unsafe { std::env::set_var("ATTENTION_SIMD", "avx2") };
    if simd_level() != SimdLevel::Avx2 {
        // a CPU without AVX2 and FMA runs the baseline paths, which flash_baseline.rs tests
        eprintln!("this CPU has no AVX2 + FMA: the AVX2 paths cannot run here");
        assert_eq!(simd_level(), SimdLevel::Baseline);
        return;
    }
    // the softmax's AVX2 form of `exp` (16-row panels) gives the portable loop's bits
    common::tile_softmax_has_the_scalar_bits::<16>();
    // shapes that leave partial tiles and blocks, a long decode, and MHA
    for (n, query_offset, n_heads, n_kv_heads, head_dim) in
        [(150, 0, 6, 2, 16), (1, 700, 12, 4, 64), (70, 33, 4, 4, 8), (37, 5, 8, 1, 128)]
    {
        let q = splitmix_matrix(11, n, n_heads * head_dim, 1.0);
        let k = splitmix_matrix(12, query_offset + n, n_kv_heads * head_dim, 1.0);
        let v = splitmix_matrix(13, query_offset + n, n_kv_heads * head_dim, 1.0);
        let heads = HeadLayout::from_q_dim(q.ncols(), n_heads, n_kv_heads).unwrap();
        let want =
            grouped_attention(&q, k.as_view(), v.as_view(), heads, query_offset).unwrap();
        let x = AttentionInputs {
            q: &q,
            k: k.as_view(),
            v: v.as_view(),
            heads,
            query_offset,
        };
        let flash = FlashAttention::new().forward(x).unwrap();
        let decode = DecodeAttention::new().forward(x).unwrap();
        assert_matrix_close(&flash, &want, Tolerance::F32);
        assert_matrix_close(&decode, &want, Tolerance::F32);
    }
}
