//! Chapter 6: how much work generating N tokens costs without and with a KV cache.
extern crate attention;
// ANCHOR: example
fn main() {
    let n: u64 = 1000; // tokens generated one at a time, from position 0

    // Without a cache, step t (t = 1..=N tokens so far) projects all t tokens to keys and
    // values again and recomputes the causal scores of all t queries: t·(t+1)/2 query-key
    // dot products per head.
    let rows_without: u64 = (1..=n).sum();
    let scores_without: u64 = (1..=n).map(|t| t * (t + 1) / 2).sum();
    // With a cache, step t projects only the new token, and its one query meets t keys.
    let rows_with: u64 = (1..=n).map(|_| 1).sum();
    let scores_with: u64 = (1..=n).sum();

    println!("generating N = {n} tokens, one at a time (per layer, per head):");
    println!("                        without cache   with cache");
    println!("K/V rows projected   {rows_without:>16} {rows_with:>12}");
    println!("q·k dot products     {scores_without:>16} {scores_with:>12}");
    println!("K/V rows at step N   {n:>16} {:>12}", 1);
    println!("q·k at step N        {:>16} {n:>12}", n * (n + 1) / 2);
    println!("K/V projection work saved: {:.1}x", rows_without as f64 / rows_with as f64);
    check_closed_forms(n, [rows_without, rows_with, scores_without, scores_with]);
}
// ANCHOR_END: example

/// The sums have closed forms: N(N+1)/2 ≈ N²/2 rows without the cache, N with it;
/// N(N+1)(N+2)/6 ≈ N³/6 dot products without it, N(N+1)/2 with it.
fn check_closed_forms(
    n: u64,
    [rows_without, rows_with, scores_without, scores_with]: [u64; 4],
) {
    assert_eq!(rows_without, n * (n + 1) / 2);
    assert_eq!(rows_with, n);
    assert_eq!(scores_without, n * (n + 1) * (n + 2) / 6);
    assert_eq!(scores_with, n * (n + 1) / 2);
}
