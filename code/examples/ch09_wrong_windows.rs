//! Chapter 9: a window off by one in either direction, measured against PyTorch, and a
//! cache that slides differently from its layer, refused.
extern crate attention;
// ANCHOR: example
use attention::{Batch, Fixture, ScoreOptions, max_abs_diff};

fn main() -> Result<(), attention::AttnError> {
    let fx = Fixture::load("streaming_sinks")?; // also a plain window of 6
    let x = fx.batch("x")?; // (2, 40, 12)
    let want = fx.batch("out_window_only")?; // PyTorch: query i sees keys i-6 < j <= i
    let with_window = |w| -> Result<Batch, attention::AttnError> {
        let opts = ScoreOptions { window: Some(w), ..Default::default() };
        fx.gqa()?.with_scores(opts)?.forward(&x, 0, None)
    };
    let diff = |b: &Batch| max_abs_diff(&b.to_row_major(), &want.to_row_major());
    println!("max |ours - PyTorch (window 6)| over 40 tokens:");
    let right = diff(&with_window(6)?);
    assert!(right < 1e-5); // f32 rounding; its last digits depend on the CPU
    println!("  window 6, i - 6 < j <= i:          < 1e-5");
    println!("  window 5 (the token not counted):   {:.3}", diff(&with_window(5)?));
    println!("  window 7 (i - j <= 6):              {:.3}", diff(&with_window(7)?));
    // a cache sliding over 5 given to a layer with a window of 6
    let layer =
        fx.gqa()?.with_scores(ScoreOptions { window: Some(6), ..Default::default() })?;
    let narrow = ScoreOptions { window: Some(5), ..Default::default() };
    let mut cache = fx.gqa()?.with_scores(narrow)?.new_cache(2, 16)?;
    let err = layer.forward(&x.narrow_seq(0, 3)?, 0, Some(&mut cache)).unwrap_err();
    println!("{}", wrapped(&err.to_string()));
    Ok(())
}
// ANCHOR_END: example

/// `text` broken at spaces into lines of at most 88 characters.
fn wrapped(text: &str) -> String {
    let mut lines = vec![String::new()];
    for word in text.split(' ') {
        let last = lines.last_mut().unwrap();
        if !last.is_empty() && last.chars().count() + 1 + word.chars().count() > 88 {
            lines.push(word.to_string());
        } else {
            if !last.is_empty() {
                last.push(' ');
            }
            last.push_str(word);
        }
    }
    lines.join("\n")
}
