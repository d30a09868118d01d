//! Chapter 8: the polynomial exp against the exact one.
extern crate attention;
// ANCHOR: example
use attention::fast::fast_exp::{EXP_MAX_REL_ERROR, exp_approx};

fn main() {
    println!(
        "{:>8} {:>16} {:>16} {:>10}",
        "x", "exp_approx(x)", "exact exp(x)", "rel. error"
    );
    for x in [0.0_f32, -0.5, -1.0, -10.0, -87.0, 10.0] {
        let (ours, exact) = (exp_approx(x), (x as f64).exp());
        let rel = ((ours as f64 - exact) / exact).abs();
        assert!(rel <= EXP_MAX_REL_ERROR as f64);
        println!("{x:>8} {ours:>16.9e} {exact:>16.9e} {rel:>10.1e}");
    }
    // every 997th f32 between -87.33 and 88.37: about 2.2 million inputs
    let (lo, hi) = (-87.336_55_f32, 88.376_26_f32);
    let (mut worst, mut at, mut count) = (0.0_f64, 0.0_f32, 0);
    for (sign, last) in [(0_u32, hi.to_bits()), (0x8000_0000, (-lo).to_bits())] {
        for bits in (0..=last).step_by(997) {
            let x = f32::from_bits(sign | bits);
            let exact = (x as f64).exp();
            let rel = ((exp_approx(x) as f64 - exact) / exact).abs();
            if rel > worst {
                (worst, at) = (rel, x);
            }
            count += 1;
        }
    }
    assert!(worst <= EXP_MAX_REL_ERROR as f64);
    println!("largest relative error over {count} inputs: {worst:.2e} (at x = {at:.4})");
    println!("bound: f32::EPSILON = {:.2e}", EXP_MAX_REL_ERROR);
    println!(
        "masked scores: exp_approx(-inf) = {}, exp_approx(-100) = {}",
        exp_approx(f32::NEG_INFINITY),
        exp_approx(-100.0)
    );
}
// ANCHOR_END: example
