//! Exercise 10.2: how large must a score be before Gemma 2's cap of 50 shrinks it by 1 %,
//! and by half?
extern crate attention;
// ANCHOR: example
fn main() {
    let cap = 50.0_f64; // Gemma 2's attn_logit_softcapping
    let kept = |s: f64| cap * (s / cap).tanh() / s; // the fraction of s that survives
    for target in [0.99, 0.5] {
        // kept(s) falls from 1 towards 0 as s grows: bisect on s in (0, 1000)
        let (mut lo, mut hi) = (1e-9, 1000.0);
        for _ in 0..100 {
            let mid = 0.5 * (lo + hi);
            if kept(mid) > target { lo = mid } else { hi = mid }
        }
        println!("cap {cap}: a score of {lo:.1} keeps {:.0} % of itself", 100.0 * target);
    }
    // scaled scores of a trained model are mostly a few units: the cap rarely binds
    assert!(kept(10.0) > 0.98);
}
// ANCHOR_END: example
