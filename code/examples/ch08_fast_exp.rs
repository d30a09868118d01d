//! Chapter 8: the polynomial exp against the exact one.
extern crate attention;
// ANCHOR: example
use attention::fast::fast_exp::{EXP_MAX_REL_ERROR, exp_approx};

fn main() {
    let bound = EXP_MAX_REL_ERROR as f64; // f32::EPSILON
    print_header();
    for x in [0.0_f32, -0.5, -1.0, -10.0, -87.0, 10.0] {
        let (ours, exact) = (exp_approx(x), (x as f64).exp()); // exact: computed in f64
        let rel = ((ours as f64 - exact) / exact).abs();
        assert!(rel <= bound);
        println!("{x:>8} {ours:>16.9e} {exact:>16.9e} {rel:>10.1e}");
    }
    // every 997th f32 from -87.34 to 88.38 (where e^x is a normal f32): 2.2 million
    let inputs: Vec<f32> = every_997th_f32(-87.336_55, 88.376_26).collect();
    let errors = inputs.iter().map(|&x| (rel_error(x), x));
    let (worst, at) = errors.fold((0.0, 0.0), |w, e| if e.0 > w.0 { e } else { w });
    assert!(worst <= bound);
    let n = inputs.len();
    println!("largest relative error over {n} inputs: {worst:.2e} (at x = {at:.4})");
    println!("bound: f32::EPSILON = {bound:.2e}");
    // a masked score, -inf, and anything far below the row's maximum give exactly 0
    let (masked, far) = (exp_approx(f32::NEG_INFINITY), exp_approx(-100.0));
    println!("masked scores: exp_approx(-inf) = {masked}, exp_approx(-100) = {far}");
}
// ANCHOR_END: example

/// The table's header.
fn print_header() {
    println!(
        "{:>8} {:>16} {:>16} {:>10}",
        "x", "exp_approx(x)", "exact exp(x)", "rel. error"
    );
}

/// The relative error of `exp_approx(x)` against the exact exponential computed in f64,
/// as in the table.
fn rel_error(x: f32) -> f64 {
    let exact = (x as f64).exp();
    ((exp_approx(x) as f64 - exact) / exact).abs()
}

/// Every 997th f32 from 0 up to `hi` and from -0 down to `lo`, stepping through the bit
/// patterns, so that the inputs are spread evenly over the floats, not over the reals.
fn every_997th_f32(lo: f32, hi: f32) -> impl Iterator<Item = f32> {
    [(0_u32, hi.to_bits()), (0x8000_0000, (-lo).to_bits())].into_iter().flat_map(
        |(sign, last)| (0..=last).step_by(997).map(move |b| f32::from_bits(sign | b)),
    )
}
