//! Appendix A: how a result is compared with PyTorch's, and what a failure looks like.
extern crate attention;
// ANCHOR: example
use attention::{Attention, Fixture, SelfAttention, Tolerance, compare, max_abs_diff};

fn main() -> Result<(), attention::AttnError> {
    // PyTorch: torch.manual_seed(123); CausalAttention(3, 2, ...) on the batch (2, 6, 3)
    let fx = Fixture::load("toy_causal")?;
    let w = |name| fx.linear(name);
    let attn = SelfAttention::new(w("W_query")?, w("W_key")?, w("W_value")?, true)?;
    let got = attn.forward(&fx.batch("x")?)?.to_row_major();
    let (want, tol) = (fx.tensor("out")?, Tolerance::F32);
    let torch = fx.config()["torch_version"].as_str().unwrap_or("?").to_owned();
    println!("torch version of the fixture: {torch}");
    assert!(compare(&got, &want.data, &want.shape, tol).is_ok());
    // the last bits depend on the CPU's summation order: print a bound, not the value
    assert!(max_abs_diff(&got, &want.data) < 1e-6);
    println!("output shape {:?}: max |ours - PyTorch| < 1e-6", want.shape);
    println!("close under rtol {:.1e}, atol {:.1e}: yes", tol.rtol, tol.atol);

    // A wrong number is reported with its index, both values and the allowed difference.
    // (Built from PyTorch's own numbers, so the report reads the same on every machine.)
    let mut broken = want.data.clone();
    broken[13] += 1e-3; // batch 1, token 0, feature 1
    let m = compare(&broken, &want.data, &want.shape, tol).unwrap_err();
    assert_eq!(m.index, vec![1, 0, 1]);
    println!("after changing one value: {} of {} elements differ", m.n_bad, m.n_total);
    println!("  worst at index {:?}: got {:e}, want {:e}", m.index, m.got, m.want);
    println!("  |diff| {:e} > allowed {:e} = atol + rtol·|want|", m.diff, m.allowed);
    sizes_all_differ()
}
// ANCHOR_END: example

/// The multi-head fixtures give every axis its own size: a transposed matrix cannot pass
/// by accident.
fn sizes_all_differ() -> Result<(), attention::AttnError> {
    let small = Fixture::load("small_mha")?;
    let (x, w) = (small.tensor("x")?.shape, small.tensor("W_query.weight")?.shape);
    println!("small_mha: x (batch, seq, d_in) {x:?}, W_query (d_out, d_in) {w:?}");
    let mut sizes = vec![x[0], x[1], x[2], w[0]];
    sizes.sort_unstable();
    sizes.dedup();
    assert_eq!(sizes.len(), 4, "batch, seq, d_in and d_out all differ");
    Ok(())
}
