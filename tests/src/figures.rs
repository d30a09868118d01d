//! The book's figures, drawn from the crate's own numbers with plotters.
//!
//! Each figure is a function that writes one SVG file. `cargo run -p book-tests --bin
//! figures` writes them all to `src/img/`; the test `tests/figures.rs` renders them again
//! into a temporary folder and fails when a committed figure differs, so a figure can
//! never drift from the code it illustrates. Text is laid out with plotters' built-in
//! size estimate (no system fonts), so the output is the same byte for byte on every
//! machine.

use std::error::Error;
use std::path::Path;

use attention::{
    Fixture, LayerKvCache, Llama3Scaling, MlaShape, Rope, ScoreOptions, SelfAttention,
    causal_mask, rope_inv_freq, softmax_rows,
};
use nalgebra::DMatrix;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::bench::{BenchResults, Case};

/// What a figure function returns.
pub type FigResult = Result<(), Box<dyn Error>>;

/// A figure: its file name under `src/img/` and the function that draws it.
pub struct Figure {
    /// File name, e.g. `causal-mask.svg`.
    pub file: &'static str,
    /// Writes the SVG to the given path.
    pub render: fn(&Path) -> FigResult,
}

/// Every figure of the book.
pub const ALL: &[Figure] = &[
    Figure { file: "toy-attention-weights.svg", render: toy_attention_weights },
    Figure { file: "causal-mask.svg", render: causal_masks },
    Figure { file: "mha-heads.svg", render: mha_heads },
    Figure { file: "gqa-sharing.svg", render: gqa_sharing },
    Figure { file: "rope-rotation.svg", render: rope_rotation },
    Figure { file: "kv-cache-filling.svg", render: kv_cache_filling },
    Figure { file: "rope-scaling-bands.svg", render: rope_scaling_bands },
    Figure { file: "attention-speed.svg", render: attention_speed },
    Figure { file: "flash-peak.svg", render: flash_peak },
    Figure { file: "sliding-window.svg", render: sliding_window_masks },
    Figure { file: "sliding-cache-rows.svg", render: sliding_cache_rows },
    Figure { file: "softcap.svg", render: softcap_curve },
    Figure { file: "mla-cache.svg", render: mla_cache },
    Figure { file: "yarn-llama3-family.svg", render: yarn_llama3_family },
    Figure { file: "paged-memory.svg", render: paged_memory },
    Figure { file: "ragged-masks.svg", render: ragged_masks },
    Figure { file: "quantized-kv-error.svg", render: quantized_kv_error },
    Figure { file: "ring-schedule.svg", render: ring_schedule },
];

const TOKENS: [&str; 6] = ["Your", "journey", "starts", "with", "one", "step"];
const FONT: &str = "sans-serif";
const HEAD_COLORS: [RGBColor; 4] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
];

type Area<'a> = DrawingArea<SVGBackend<'a>, Shift>;

/// `c` blended with white: `t = 1` is `c`, `t = 0` is white.
fn light(c: RGBColor, t: f32) -> RGBColor {
    let mix = |v: u8| (255.0 + (v as f32 - 255.0) * t).round() as u8;
    RGBColor(mix(c.0), mix(c.1), mix(c.2))
}

/// White (0) to dark blue (1).
fn blue(v: f32) -> RGBColor {
    let v = v.clamp(0.0, 1.0);
    let lerp = |a: f32, b: f32| (a + (b - a) * v).round() as u8;
    RGBColor(lerp(247.0, 8.0), lerp(251.0, 48.0), lerp(255.0, 107.0))
}

fn text(area: &Area, s: &str, (x, y): (i32, i32), size: u32, pos: Pos) -> FigResult {
    area.draw(&Text::new(
        s.to_string(),
        (x, y),
        (FONT, size).into_font().color(&BLACK).pos(pos),
    ))?;
    Ok(())
}

fn centered() -> Pos {
    Pos::new(HPos::Center, VPos::Center)
}

fn boxed(
    area: &Area,
    (x0, y0): (i32, i32),
    (x1, y1): (i32, i32),
    fill: RGBColor,
) -> FigResult {
    area.draw(&Rectangle::new([(x0, y0), (x1, y1)], fill.filled()))?;
    area.draw(&Rectangle::new(
        [(x0, y0), (x1, y1)],
        RGBColor(90, 90, 90).stroke_width(1),
    ))?;
    Ok(())
}

/// A labelled heatmap of a square matrix of weights in [0, 1], top-left at `origin`.
fn heatmap(
    area: &Area,
    m: &DMatrix<f32>,
    origin: (i32, i32),
    cell: i32,
    title: &str,
) -> FigResult {
    let (ox, oy) = origin;
    text(area, title, (ox + cell * m.ncols() as i32 / 2, oy - 40), 16, centered())?;
    for (j, tok) in TOKENS.iter().enumerate().take(m.ncols()) {
        text(area, tok, (ox + cell * j as i32 + cell / 2, oy - 14), 12, centered())?;
    }
    for i in 0..m.nrows() {
        let y = oy + cell * i as i32;
        text(
            area,
            TOKENS[i],
            (ox - 8, y + cell / 2),
            12,
            Pos::new(HPos::Right, VPos::Center),
        )?;
        for j in 0..m.ncols() {
            let x = ox + cell * j as i32;
            let v = m[(i, j)];
            boxed(area, (x, y), (x + cell, y + cell), blue(v / 0.5))?;
            let color = if v > 0.3 { WHITE } else { BLACK };
            area.draw(&Text::new(
                format!("{v:.2}"),
                (x + cell / 2, y + cell / 2),
                (FONT, 12).into_font().color(&color).pos(centered()),
            ))?;
        }
    }
    Ok(())
}

/// Chapter 1: the toy sentence's attention weights, without and with trained projections.
pub fn toy_attention_weights(path: &Path) -> FigResult {
    let root = SVGBackend::new(path, (900, 420)).into_drawing_area();
    root.fill(&WHITE)?;
    let x = Fixture::load("toy_simplified")?.matrix("x")?;
    let simplified = softmax_rows(&(&x * x.transpose()));
    let fx = Fixture::load("toy_self_attention")?;
    let trained = SelfAttention::new(
        fx.linear("W_query")?,
        fx.linear("W_key")?,
        fx.linear("W_value")?,
        false,
    )?
    .forward_with_weights(&x)?
    .weights;
    heatmap(&root, &simplified, (90, 80), 52, "softmax(x·xᵀ): no trainable weights")?;
    heatmap(
        &root,
        &trained,
        (540, 80),
        52,
        "softmax(q·kᵀ/√2): random, untrained W_q, W_k",
    )?;
    text(
        &root,
        "row = query token, column = key token; each row sums to 1",
        (450, 400),
        13,
        centered(),
    )?;
    root.present()?;
    Ok(())
}

/// A mask grid: 0 cells light, −∞ cells dark; rows labelled with their absolute
/// positions.
fn mask_grid(
    area: &Area,
    m: &DMatrix<f32>,
    start_pos: usize,
    origin: (i32, i32),
    title: &str,
) -> FigResult {
    let (ox, oy) = origin;
    let cell = 44;
    text(area, title, (ox + cell * m.ncols() as i32 / 2, oy - 44), 15, centered())?;
    for j in 0..m.ncols() {
        text(
            area,
            &format!("k{j}"),
            (ox + cell * j as i32 + cell / 2, oy - 14),
            12,
            centered(),
        )?;
    }
    for i in 0..m.nrows() {
        let y = oy + cell * i as i32;
        let label = format!("q at pos {}", start_pos + i);
        text(
            area,
            &label,
            (ox - 8, y + cell / 2),
            12,
            Pos::new(HPos::Right, VPos::Center),
        )?;
        for j in 0..m.ncols() {
            let x = ox + cell * j as i32;
            let masked = m[(i, j)] == f32::NEG_INFINITY;
            boxed(
                area,
                (x, y),
                (x + cell, y + cell),
                if masked { RGBColor(60, 60, 60) } else { blue(0.15) },
            )?;
            let (s, color) = if masked { ("−∞", WHITE) } else { ("0", BLACK) };
            area.draw(&Text::new(
                s,
                (x + cell / 2, y + cell / 2),
                (FONT, 13).into_font().color(&color).pos(centered()),
            ))?;
        }
    }
    Ok(())
}

/// Chapter 2: the square causal mask, and the offset mask of a chunk of 3 queries at
/// start_pos 4.
pub fn causal_masks(path: &Path) -> FigResult {
    let root = SVGBackend::new(path, (900, 400)).into_drawing_area();
    root.fill(&WHITE)?;
    mask_grid(
        &root,
        &causal_mask(6, 6, 0)?,
        0,
        (110, 80),
        "6 tokens at once: causal_mask(6, 6, 0)",
    )?;
    mask_grid(
        &root,
        &causal_mask(3, 7, 4)?,
        4,
        (520, 80),
        "3 new tokens after 4 cached: causal_mask(3, 7, 4)",
    )?;
    text(
        &root,
        "a query sees its own key and every earlier key; −∞ becomes weight 0 after the softmax",
        (450, 380),
        13,
        centered(),
    )?;
    root.present()?;
    Ok(())
}

/// Chapter 3: the columns of (seq, d_out) read as n_heads blocks of head_dim columns
/// (small_mha's shape).
pub fn mha_heads(path: &Path) -> FigResult {
    let fx = Fixture::load("small_mha")?;
    let (seq, d_out, n_heads) =
        (fx.usize("seq")?, fx.usize("d_out")?, fx.usize("n_heads")?);
    let head_dim = d_out / n_heads;
    let root = SVGBackend::new(path, (900, 330)).into_drawing_area();
    root.fill(&WHITE)?;
    let cell = 22;
    let (ox, oy) = (30, 90);
    text(
        &root,
        &format!("queries = x·W_qᵀ: ({seq}, {d_out})"),
        (ox + cell * d_out as i32 / 2, 40),
        15,
        centered(),
    )?;
    for t in 0..seq {
        for c in 0..d_out {
            let (x, y) = (ox + cell * c as i32, oy + cell * t as i32);
            boxed(
                &root,
                (x, y),
                (x + cell, y + cell),
                light(HEAD_COLORS[c / head_dim], 0.55),
            )?;
        }
    }
    for h in 0..n_heads {
        let x = ox + cell * (h * head_dim) as i32 + cell * head_dim as i32 / 2;
        text(&root, &format!("head {h}"), (x, oy - 14), 12, centered())?;
    }
    text(
        &root,
        "one row per token",
        (ox + cell * d_out as i32 / 2, oy + cell * seq as i32 + 22),
        12,
        centered(),
    )?;
    // the heads as separate (seq, head_dim) views
    let bx = 460;
    text(
        &root,
        &format!("{n_heads} heads, each a ({seq}, {head_dim}) column view: no copy"),
        (bx + 210, 40),
        15,
        centered(),
    )?;
    for (h, &color) in HEAD_COLORS.iter().enumerate().take(n_heads) {
        let x0 = bx + h as i32 * (cell * head_dim as i32 + 20);
        for t in 0..seq {
            for c in 0..head_dim {
                let (x, y) = (x0 + cell * c as i32, oy + cell * t as i32);
                boxed(&root, (x, y), (x + cell, y + cell), light(color, 0.55))?;
            }
        }
        text(
            &root,
            &format!("q_{h}"),
            (x0 + cell * head_dim as i32 / 2, oy - 14),
            12,
            centered(),
        )?;
    }
    text(
        &root,
        "softmax(q_h·k_hᵀ/√head_dim)·v_h per head, results side by side again, then out_proj",
        (450, 310),
        13,
        centered(),
    )?;
    root.present()?;
    Ok(())
}

/// Chapter 4: which key/value head each query head reads, for MHA, GQA and MQA with 4
/// query heads.
pub fn gqa_sharing(path: &Path) -> FigResult {
    let root = SVGBackend::new(path, (900, 330)).into_drawing_area();
    root.fill(&WHITE)?;
    let n_heads = 4;
    for (panel, (n_kv_heads, name)) in [
        (4, "MHA: n_kv_heads = 4"),
        (2, "GQA: n_kv_heads = 2"),
        (1, "MQA: n_kv_heads = 1"),
    ]
    .into_iter()
    .enumerate()
    {
        let cfg = attention::AttentionConfig::new(
            n_heads * 8,
            n_heads,
            n_kv_heads,
            16,
            10_000.0,
        )?;
        let group_size = cfg.group_size();
        let x0 = 30 + panel as i32 * 290;
        text(&root, name, (x0 + 120, 30), 15, centered())?;
        let qx = |h: usize| x0 + h as i32 * 60;
        let kx = |g: usize| x0 + 120 - (n_kv_heads as i32 * 60 - 10) / 2 + g as i32 * 60;
        for h in 0..n_heads {
            let kv = h / group_size; // repeat_interleave order, as grouped_attention reads them
            root.draw(&PathElement::new(
                vec![(qx(h) + 25, 100), (kx(kv) + 25, 200)],
                HEAD_COLORS[kv].stroke_width(2),
            ))?;
        }
        for h in 0..n_heads {
            boxed(&root, (qx(h), 60), (qx(h) + 50, 100), RGBColor(230, 230, 230))?;
            text(&root, &format!("Q{h}"), (qx(h) + 25, 80), 13, centered())?;
        }
        for (g, &color) in HEAD_COLORS.iter().enumerate().take(n_kv_heads) {
            boxed(&root, (kx(g), 200), (kx(g) + 50, 240), light(color, 0.45))?;
            text(&root, &format!("K{g} V{g}"), (kx(g) + 25, 220), 12, centered())?;
        }
        text(
            &root,
            &format!(
                "group_size {group_size}; cached K/V: {n_kv_heads} {}",
                if n_kv_heads == 1 { "head" } else { "heads" }
            ),
            (x0 + 120, 270),
            12,
            centered(),
        )?;
    }
    text(
        &root,
        "query head h reads KV head h / group_size: [K0, K0, K1, K1], never [K0, K1, K0, K1]",
        (450, 310),
        13,
        centered(),
    )?;
    root.present()?;
    Ok(())
}

/// Chapter 5: one 2-D pair of a Llama 3 head (head_dim 64, base 500 000) rotated by RoPE
/// at positions 0..=8, for the fastest pair and a slower one.
pub fn rope_rotation(path: &Path) -> FigResult {
    let head_dim = 64;
    let rope = Rope::new(head_dim, 9, 500_000.0, None)?;
    let root = SVGBackend::new(path, (900, 470)).into_drawing_area();
    root.fill(&WHITE)?;
    let panels = root.margin(10, 30, 10, 10).split_evenly((1, 2));
    for (panel, pair) in panels.iter().zip([0usize, 8]) {
        let theta = rope.inv_freq()[pair];
        let mut chart = ChartBuilder::on(panel)
            .caption(
                format!(
                    "pair {pair} (dims {pair}, {}): θ = {theta:.4} rad per position",
                    pair + head_dim / 2
                ),
                (FONT, 15),
            )
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(40)
            .build_cartesian_2d(-1.3f32..1.3f32, -1.3f32..1.3f32)?;
        chart
            .configure_mesh()
            .disable_mesh()
            .x_desc("x_i")
            .y_desc("x_(i+d/2)")
            .label_style((FONT, 11))
            .draw()?;
        let circle = (0..=128).map(|k| {
            let a = k as f32 / 128.0 * std::f32::consts::TAU;
            (a.cos(), a.sin())
        });
        chart.draw_series(std::iter::once(PathElement::new(
            circle.collect::<Vec<_>>(),
            RGBColor(210, 210, 210),
        )))?;
        chart.draw_series(std::iter::once(Circle::new((0.0, 0.0), 2, BLACK.filled())))?;
        for pos in 0..=8usize {
            // a head vector with only this pair set to (1, 0), rotated to position `pos`
            // by the crate
            let mut v = DMatrix::zeros(1, head_dim);
            v[(0, pair)] = 1.0;
            rope.apply(&mut v, pos)?;
            let p = (v[(0, pair)], v[(0, pair + head_dim / 2)]);
            let color = blue(0.25 + 0.75 * pos as f32 / 8.0);
            chart.draw_series(std::iter::once(PathElement::new(
                vec![(0.0, 0.0), p],
                color.stroke_width(2),
            )))?;
            chart.draw_series(std::iter::once(Circle::new(p, 4, color.filled())))?;
            if pair == 0 || pos % 2 == 0 {
                chart.draw_series(std::iter::once(Text::new(
                    format!("{pos}"),
                    (p.0 * 1.13, p.1 * 1.13),
                    (FONT, 12).into_font().color(&BLACK).pos(centered()),
                )))?;
            }
        }
    }
    root.present()?;
    Ok(())
}

/// Chapter 6: the cache's rows filling up during prefill (5 tokens) and four decode
/// steps.
pub fn kv_cache_filling(path: &Path) -> FigResult {
    let (capacity, n_kv_heads, head_dim) = (12, 2, 4);
    let steps = [5usize, 1, 1, 1, 1];
    let mut cache = LayerKvCache::new(1, capacity, n_kv_heads, head_dim)?;
    let root = SVGBackend::new(path, (900, 380)).into_drawing_area();
    root.fill(&WHITE)?;
    let cell = 44;
    let (ox, oy) = (220, 60);
    for j in 0..capacity {
        text(
            &root,
            &format!("{j}"),
            (ox + cell * j as i32 + cell / 2, oy - 14),
            12,
            centered(),
        )?;
    }
    text(
        &root,
        "cache position",
        (ox + cell * capacity as i32 / 2, oy - 36),
        13,
        centered(),
    )?;
    for (s, &n) in steps.iter().enumerate() {
        let before = cache.len();
        let rows = DMatrix::zeros(n, n_kv_heads * head_dim);
        cache.append(before, std::slice::from_ref(&rows), std::slice::from_ref(&rows))?;
        let y = oy + s as i32 * (cell + 8);
        let label = if s == 0 {
            format!("prefill {n} tokens")
        } else {
            format!("decode step {s}: start_pos {before}")
        };
        text(
            &root,
            &label,
            (ox - 10, y + cell / 2),
            12,
            Pos::new(HPos::Right, VPos::Center),
        )?;
        for j in 0..capacity {
            let x = ox + cell * j as i32;
            let fill = if j < before {
                RGBColor(200, 200, 200)
            } else if j < cache.len() {
                light(HEAD_COLORS[0], 0.7)
            } else {
                WHITE
            };
            boxed(&root, (x, y), (x + cell, y + cell), fill)?;
        }
    }
    text(
        &root,
        "grey: cached earlier, blue: K/V appended this step, white: allocated, still empty",
        (450, 350),
        13,
        centered(),
    )?;
    root.present()?;
    Ok(())
}

/// Chapter 7: wavelength per pair before and after Llama 3.x scaling, with the three
/// bands.
pub fn rope_scaling_bands(path: &Path) -> FigResult {
    let root = SVGBackend::new(path, (900, 430)).into_drawing_area();
    root.fill(&WHITE)?;
    let panels = root.margin(10, 10, 10, 10).split_evenly((1, 2));
    for (panel, (head_dim, scaling, name)) in panels.iter().zip([
        (64, Llama3Scaling::LLAMA_3_2, "Llama 3.2 1B"),
        (128, Llama3Scaling::LLAMA_3_1, "Llama 3.1 8B"),
    ]) {
        let inv_freq = rope_inv_freq(head_dim, 500_000.0)?;
        let wavelen = |f: f32| (2.0 * std::f32::consts::PI / f).log10();
        let half = head_dim / 2;
        let orig = scaling.original_max_position_embeddings as f32;
        let (lo, hi) = (
            (orig / scaling.high_freq_factor).log10(),
            (orig / scaling.low_freq_factor).log10(),
        );
        let mut chart = ChartBuilder::on(panel)
            .caption(
                format!("{name}: head_dim {head_dim}, factor {}", scaling.factor),
                (FONT, 15),
            )
            .margin(10)
            .x_label_area_size(35)
            .y_label_area_size(50)
            .build_cartesian_2d(0f32..half as f32, 0f32..9f32)?;
        chart
            .configure_mesh()
            .disable_mesh()
            .x_desc("pair i")
            .y_desc("log10 wavelength (positions)")
            .label_style((FONT, 11))
            .draw()?;
        chart.draw_series(std::iter::once(Rectangle::new(
            [(0.0, lo), (half as f32, hi)],
            RGBColor(255, 235, 180).filled(),
        )))?;
        chart.draw_series(std::iter::once(Text::new(
            "blended",
            (0.5, (lo + hi) / 2.0),
            (FONT, 11).into_font(),
        )))?;
        chart.draw_series(std::iter::once(Text::new(
            "kept (λ < 2048)",
            (0.5, lo - 0.5),
            (FONT, 11).into_font(),
        )))?;
        chart.draw_series(std::iter::once(Text::new(
            "divided by factor (λ > 8192)",
            (0.5, hi + 0.6),
            (FONT, 11).into_font(),
        )))?;
        chart
            .draw_series(LineSeries::new(
                (0..half).map(|i| (i as f32, wavelen(inv_freq[i]))),
                HEAD_COLORS[0].stroke_width(2),
            ))?
            .label("original")
            .legend(|(x, y)| {
                PathElement::new(
                    vec![(x, y), (x + 20, y)],
                    HEAD_COLORS[0].stroke_width(2),
                )
            });
        chart
            .draw_series(LineSeries::new(
                (0..half).map(|i| (i as f32, wavelen(scaling.scale(inv_freq[i])))),
                HEAD_COLORS[3].stroke_width(2),
            ))?
            .label("llama3-scaled")
            .legend(|(x, y)| {
                PathElement::new(
                    vec![(x, y), (x + 20, y)],
                    HEAD_COLORS[3].stroke_width(2),
                )
            });
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .background_style(WHITE.mix(0.9))
            .border_style(BLACK)
            .label_font((FONT, 11))
            .draw()?;
    }
    root.present()?;
    Ok(())
}

/// Chapter 8: measured time against sequence length (log-log), one thread, GQA 12/4, from
/// the measurements `scripts/bench_compare.py` committed (read by [`crate::bench`]); MHA
/// 12/12 dashed.
pub fn attention_speed(path: &Path) -> FigResult {
    let rows = BenchResults::committed()?.results;
    let root = SVGBackend::new(path, (900, 520)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut seqs: Vec<f64> = rows.iter().map(|r| r.seq as f64).collect();
    seqs.sort_by(f64::total_cmp);
    seqs.dedup();
    let (min_seq, max_seq) = (seqs[0], seqs[seqs.len() - 1]);
    let (min_ms, max_ms) = rows.iter().fold((f64::MAX, 0.0f64), |(a, b), r| {
        (a.min(r.ours_ms.min(r.torch_ms)), b.max(r.ours_ms.max(r.torch_ms)))
    });
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "causal attention, 12 query heads, head_dim 64, one thread; solid GQA 12/4, dashed MHA 12/12",
            (FONT, 16),
        )
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(
            (min_seq * 0.9..max_seq * 1.1).log_scale().with_key_points(seqs.clone()),
            (min_ms * 0.7..max_ms * 1.4).log_scale(),
        )?;
    chart
        .configure_mesh()
        .x_desc("sequence length (tokens)")
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| format!("{y}"))
        .y_desc("time per call (ms)")
        .label_style((FONT, 11))
        .light_line_style(RGBColor(235, 235, 235))
        .draw()?;
    let series = [
        ("ours, straightforward", Case::PrefillNaive, false, HEAD_COLORS[0]),
        ("ours, flash", Case::PrefillFlash, false, HEAD_COLORS[2]),
        ("PyTorch manual", Case::PrefillNaive, true, HEAD_COLORS[1]),
        ("PyTorch SDPA", Case::PrefillFlash, true, HEAD_COLORS[3]),
    ];
    for (label, case, torch, color) in series {
        for (n_kv_heads, dashed) in [(4, false), (12, true)] {
            let mut points: Vec<(f64, f64)> = rows
                .iter()
                .filter(|r| {
                    r.case == case && r.threads == 1 && r.n_kv_heads == n_kv_heads
                })
                .map(|r| (r.seq as f64, if torch { r.torch_ms } else { r.ours_ms }))
                .collect();
            points.sort_by(|a, b| a.0.total_cmp(&b.0));
            if dashed {
                chart.draw_series(DashedLineSeries::new(
                    points,
                    6,
                    4,
                    color.stroke_width(1),
                ))?;
            } else {
                chart
                    .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))?
                    .label(label)
                    .legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
                    });
                chart.draw_series(
                    points.into_iter().map(|p| Circle::new(p, 3, color.filled())),
                )?;
            }
        }
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .label_font((FONT, 12))
        .draw()?;
    root.present()?;
    Ok(())
}

/// Chapter 8's roofline-style view: the rate the flash products achieve (GFLOP/s, the
/// same flop count for ours and PyTorch's SDPA) against sequence length, GQA 12/4, one
/// thread, beside the core's FMA peak as a ceiling, for both committed runs (the CPU's
/// widest SIMD level, and both sides capped at AVX2).
pub fn flash_peak(path: &Path) -> FigResult {
    let root_dir = crate::workspace_root();
    let runs = [
        ("AVX-512", crate::bench::RESULTS_FILE, HEAD_COLORS[0]),
        ("AVX2", "src/data/bench-results-avx2.json", HEAD_COLORS[1]),
    ];
    let loaded: Vec<(&str, BenchResults, RGBColor)> = runs
        .iter()
        .map(|&(label, file, color)| {
            Ok((label, BenchResults::load(&root_dir.join(file))?, color))
        })
        .collect::<Result<_, Box<dyn Error>>>()?;
    // (label, color, peak, ours, PyTorch's): points (seq, GFLOP/s)
    let mut lines = Vec::new();
    let mut top: f64 = 1.0;
    for (label, results, color) in &loaded {
        let flash = |torch: bool| -> Vec<(f64, f64)> {
            let mut points: Vec<(f64, f64)> = results
                .results
                .iter()
                .filter(|r| {
                    r.case == Case::PrefillFlash && r.threads == 1 && r.n_kv_heads == 4
                })
                .filter_map(|r| {
                    let ours = r.gflops()?;
                    Some((
                        r.seq as f64,
                        if torch { ours * r.ours_ms / r.torch_ms } else { ours },
                    ))
                })
                .collect();
            points.sort_by(|a, b| a.0.total_cmp(&b.0));
            points
        };
        let peak = results.machine.fma_peak_gflops.unwrap_or(0.0);
        top = top.max(peak);
        lines.push((*label, *color, peak, flash(false), flash(true)));
    }
    let mut seqs: Vec<f64> = lines.iter().flat_map(|l| l.3.iter().map(|p| p.0)).collect();
    seqs.sort_by(f64::total_cmp);
    seqs.dedup();
    let (lo, hi) =
        seqs.iter().fold((f64::MAX, 0.0f64), |(a, b), &x| (a.min(x), b.max(x)));
    if seqs.is_empty() {
        return Err("no prefill_flash rows in the committed results".into());
    }
    let root = SVGBackend::new(path, (900, 480)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "flash prefill, GQA 12/4, head_dim 64, one thread: achieved rate and the FMA peak",
            (FONT, 16),
        )
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(
            (lo * 0.9..hi * 1.1).log_scale().with_key_points(seqs.clone()),
            0.0..top * 1.1,
        )?;
    chart
        .configure_mesh()
        .x_desc("sequence length (tokens)")
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_desc("GFLOP/s")
        .y_label_formatter(&|y| format!("{y:.0}"))
        .label_style((FONT, 11))
        .light_line_style(RGBColor(235, 235, 235))
        .draw()?;
    for (label, color, peak, ours, torch) in lines {
        if peak > 0.0 {
            let ceiling = vec![(lo * 0.9, peak), (hi * 1.1, peak)];
            chart
                .draw_series(DashedLineSeries::new(ceiling, 8, 5, color.stroke_width(1)))?
                .label(format!("FMA peak, {label} (dashed)"))
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 8, y)], color));
        }
        chart
            .draw_series(LineSeries::new(ours.clone(), color.stroke_width(2)))?
            .label(format!("ours, {label}"))
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
        chart.draw_series(ours.into_iter().map(|p| Circle::new(p, 3, color.filled())))?;
        let pale = light(color, 0.5);
        chart
            .draw_series(LineSeries::new(torch.clone(), pale.stroke_width(2)))?
            .label(format!("PyTorch SDPA, {label}"))
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], pale.stroke_width(2))
            });
        chart.draw_series(
            torch.into_iter().map(|p| TriangleMarker::new(p, 4, pale.filled())),
        )?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .label_font((FONT, 12))
        .draw()?;
    root.present()?;
    Ok(())
}

/// The mask of `options` over `n` tokens from a fresh sequence: 0 where the query sees
/// the key, `-inf` where it does not (the crate's own [`ScoreOptions::sees`]).
fn options_mask(options: &ScoreOptions, n: usize) -> DMatrix<f32> {
    DMatrix::from_fn(
        n,
        n,
        |i, j| if options.sees(i, j) { 0.0 } else { f32::NEG_INFINITY },
    )
}

/// Chapter 9: a sliding window of 3 keys, and the same window with one StreamingLLM
/// sink token, over 7 tokens.
pub fn sliding_window_masks(path: &Path) -> FigResult {
    let root = SVGBackend::new(path, (900, 420)).into_drawing_area();
    root.fill(&WHITE)?;
    let window = ScoreOptions { window: Some(3), ..Default::default() };
    let sink = ScoreOptions { sink_tokens: 1, ..window.clone() };
    mask_grid(&root, &options_mask(&window, 7), 0, (100, 80), "window 3: i − 3 < j ≤ i")?;
    mask_grid(
        &root,
        &options_mask(&sink, 7),
        0,
        (540, 80),
        "window 3 + 1 sink token: key 0 always seen",
    )?;
    text(
        &root,
        "each query sees its own key and the two before it; a fully hidden row cannot occur",
        (450, 405),
        13,
        centered(),
    )?;
    root.present()?;
    Ok(())
}

/// Chapter 9: the rows a cache holds while 200 tokens are decoded one at a time: a
/// plain cache grows with the sequence, a sliding-window layer's cache (window 8,
/// capacity 12) stays between 8 and 12 rows. Drawn from real appends.
pub fn sliding_cache_rows(path: &Path) -> FigResult {
    let root = SVGBackend::new(path, (900, 380)).into_drawing_area();
    root.fill(&WHITE)?;
    let n = 200;
    let rows_held = |mut cache: LayerKvCache| -> Result<Vec<(f32, f32)>, Box<dyn Error>> {
        let row = DMatrix::zeros(1, 2);
        let mut held = Vec::new();
        for t in 0..n {
            cache.append(t, std::slice::from_ref(&row), std::slice::from_ref(&row))?;
            held.push((t as f32 + 1.0, cache.len() as f32));
        }
        Ok(held)
    };
    let plain = rows_held(LayerKvCache::new(1, n, 1, 2)?)?;
    let sliding = rows_held(LayerKvCache::new(1, 12, 1, 2)?.with_window(8, 0)?)?;
    let mut chart = ChartBuilder::on(&root.margin(10, 10, 10, 10))
        .caption("rows in the cache while decoding, one token at a time", (FONT, 16))
        .margin(10)
        .x_label_area_size(35)
        .y_label_area_size(50)
        .build_cartesian_2d(0f32..n as f32, 0f32..n as f32)?;
    chart
        .configure_mesh()
        .disable_mesh()
        .x_desc("tokens decoded")
        .y_desc("rows held")
        .label_style((FONT, 11))
        .draw()?;
    for (series, color, label) in [
        (plain, HEAD_COLORS[0], "no window: one row per token (chapter 6)"),
        (sliding, HEAD_COLORS[3], "window 8, capacity 12: drops what no query sees"),
    ] {
        chart
            .draw_series(LineSeries::new(series, color.stroke_width(2)))?
            .label(label)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .label_font((FONT, 12))
        .draw()?;
    root.present()?;
    Ok(())
}

/// Chapter 10: Gemma 2's soft-cap `cap · tanh(s / cap)` for caps 5 and 20 against the
/// raw score, computed by the crate's [`ScoreOptions::cap`].
pub fn softcap_curve(path: &Path) -> FigResult {
    let root = SVGBackend::new(path, (900, 380)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root.margin(10, 10, 10, 10))
        .caption("soft-capped score against the raw score", (FONT, 16))
        .margin(10)
        .x_label_area_size(35)
        .y_label_area_size(50)
        .build_cartesian_2d(-40f32..40f32, -30f32..30f32)?;
    chart
        .configure_mesh()
        .disable_mesh()
        .x_desc("scaled score s")
        .y_desc("cap · tanh(s / cap)")
        .label_style((FONT, 11))
        .draw()?;
    let xs = (0..=400).map(|i| -40.0 + 0.2 * i as f32);
    let none = ScoreOptions::default();
    for (options, color, label) in [
        (none, RGBColor(150, 150, 150), "no cap (Llama)".to_string()),
        (
            ScoreOptions { softcap: Some(20.0), ..Default::default() },
            HEAD_COLORS[0],
            "cap 20".into(),
        ),
        (
            ScoreOptions { softcap: Some(5.0), ..Default::default() },
            HEAD_COLORS[3],
            "cap 5".into(),
        ),
    ] {
        let points: Vec<(f32, f32)> = xs
            .clone()
            .map(|s| (s, options.cap(s)))
            .filter(|p| p.1.abs() <= 30.0)
            .collect();
        chart
            .draw_series(LineSeries::new(points, color.stroke_width(2)))?
            .label(label)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .label_font((FONT, 12))
        .draw()?;
    root.present()?;
    Ok(())
}

/// Chapter 11: wavelength per pair for Llama 3's scaling and YaRN on the same heads, each
/// with the other's band edges: gpt-oss's head with YaRN and Llama 3's rule at `low = 1`,
/// `high = 32`; Llama 3.2's head with its scaling and YaRN at `beta_slow = 1`, `beta_fast
/// = 4`. The blended band is YaRN's correction range.
pub fn yarn_llama3_family(path: &Path) -> FigResult {
    use attention::YarnScaling;
    let root = SVGBackend::new(path, (900, 430)).into_drawing_area();
    root.fill(&WHITE)?;
    let panels = root.margin(10, 10, 10, 10).split_evenly((1, 2));
    let gpt_oss = YarnScaling::GPT_OSS;
    let gpt_oss_as_llama3 = Llama3Scaling {
        factor: gpt_oss.factor,
        low_freq_factor: gpt_oss.beta_slow,
        high_freq_factor: gpt_oss.beta_fast,
        original_max_position_embeddings: gpt_oss.original_max_position_embeddings,
    };
    let llama = Llama3Scaling::LLAMA_3_2;
    let llama_as_yarn = YarnScaling {
        factor: llama.factor,
        original_max_position_embeddings: llama.original_max_position_embeddings,
        beta_fast: llama.high_freq_factor,
        beta_slow: llama.low_freq_factor,
        truncate: false,
        mscale: None,
        mscale_all_dim: None,
        attention_factor: Some(1.0),
    };
    for (panel, (name, base, yarn, llama3)) in panels.iter().zip([
        ("gpt-oss", 150_000.0, gpt_oss, gpt_oss_as_llama3),
        ("Llama 3.2 1B", 500_000.0, llama_as_yarn, llama),
    ]) {
        let head_dim = 64;
        let half = head_dim / 2;
        let plain = rope_inv_freq(head_dim, base)?;
        let by_yarn = yarn.inv_freq(head_dim, base)?;
        let (low, high) = yarn.correction_range(head_dim, base)?;
        let wavelen = |f: f32| (2.0 * std::f32::consts::PI / f).log10();
        let caption = format!(
            "{name}: base {base}, factor {}, original {}",
            yarn.factor, yarn.original_max_position_embeddings
        );
        let mut chart = ChartBuilder::on(panel)
            .caption(caption, (FONT, 15))
            .margin(10)
            .x_label_area_size(35)
            .y_label_area_size(50)
            .build_cartesian_2d(0f32..(half - 1) as f32, 0f32..9f32)?;
        chart
            .configure_mesh()
            .disable_mesh()
            .x_desc("pair i (head_dim 64)")
            .y_desc("log10 wavelength (positions)")
            .label_style((FONT, 11))
            .draw()?;
        chart.draw_series(std::iter::once(Rectangle::new(
            [(low as f32, 0.0), (high as f32, 9.0)],
            RGBColor(255, 235, 180).filled(),
        )))?;
        let (kept_x, right_x) = (0.5, high as f32 + 0.5);
        let labels = [
            ("kept".to_string(), (kept_x, 8.5)),
            (format!("> {} turns", yarn.beta_fast), (kept_x, 7.9)),
            ("blended".to_string(), (low as f32 + 0.3, 8.5)),
            ("divided".to_string(), (right_x, 8.5)),
            (format!("< {} turn", yarn.beta_slow), (right_x, 7.9)),
        ];
        for (label, at) in labels {
            chart.draw_series(std::iter::once(Text::new(
                label,
                at,
                (FONT, 11).into_font(),
            )))?;
        }
        let by_llama3: Vec<f32> = plain.iter().map(|&f| llama3.scale(f)).collect();
        for (label, freqs, color, dashed) in [
            ("original", &plain, HEAD_COLORS[0], false),
            ("YaRN", &by_yarn, HEAD_COLORS[3], false),
            ("Llama 3's rule", &by_llama3, HEAD_COLORS[2], true),
        ] {
            let points: Vec<(f32, f32)> =
                freqs.iter().enumerate().map(|(i, &f)| (i as f32, wavelen(f))).collect();
            let style = color.stroke_width(2);
            let series = if dashed {
                chart.draw_series(DashedLineSeries::new(points, 6, 4, style))?
            } else {
                chart.draw_series(LineSeries::new(points, style))?
            };
            series
                .label(label)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .background_style(WHITE.mix(0.9))
            .border_style(BLACK)
            .label_font((FONT, 11))
            .draw()?;
    }
    root.present()?;
    Ok(())
}

/// Chapter 12: numbers cached per token and layer for DeepSeek-V3's attention shape
/// ([`MlaShape::DEEPSEEK_V3`]) stored as MHA, GQA, MQA and MLA, on a log scale.
pub fn mla_cache(path: &Path) -> FigResult {
    let root = SVGBackend::new(path, (900, 330)).into_drawing_area();
    root.fill(&WHITE)?;
    let s = MlaShape::DEEPSEEK_V3;
    let per_head = (s.qk_head_dim() + s.v_head_dim) as f32; // a key and a value
    let bars = [
        ("MHA, 128 KV heads", s.n_heads as f32 * per_head),
        ("GQA, 8 KV heads", 8.0 * per_head),
        ("MLA: latent + RoPE key", s.cache_width() as f32),
        ("MQA, 1 KV head", per_head),
    ];
    let mut chart = ChartBuilder::on(&root.margin(10, 10, 10, 10))
        .caption(
            "DeepSeek-V3's 128 heads: numbers cached per token and layer",
            (FONT, 16),
        )
        .margin(10)
        .x_label_area_size(35)
        .y_label_area_size(170)
        .build_cartesian_2d((100f32..100_000f32).log_scale(), 0f32..bars.len() as f32)?;
    chart
        .configure_mesh()
        .disable_mesh()
        .disable_y_axis()
        .x_desc("numbers per token and layer (log scale)")
        .label_style((FONT, 11))
        .draw()?;
    for (i, (name, n)) in bars.iter().enumerate() {
        let y = bars.len() as f32 - i as f32 - 0.5;
        let color = if name.starts_with("MLA") { HEAD_COLORS[3] } else { HEAD_COLORS[0] };
        chart.draw_series(std::iter::once(Rectangle::new(
            [(100.0, y - 0.3), (*n, y + 0.3)],
            color.filled(),
        )))?;
        chart.draw_series(std::iter::once(Text::new(
            format!("{n:.0}"),
            (*n * 1.1, y + 0.1),
            (FONT, 12).into_font(),
        )))?;
        let label_pos = chart.backend_coord(&(100.0, y));
        text(
            &root,
            name,
            (label_pos.0 - 8, label_pos.1),
            12,
            Pos::new(HPos::Right, VPos::Center),
        )?;
    }
    root.present()?;
    Ok(())
}

/// Chapter 14: the workload of `ch14_memory` (32 sequences, a system prompt of 300
/// tokens, then 1 to 1748 of their own, seed 14). Left, each sequence: the 2048 rows a
/// contiguous cache reserves, and the rows it holds. Right, the totals of one layer:
/// reserved contiguously, in the blocks of a paged pool ([`Workload::run`], blocks of
/// 16), with the prompt's blocks shared, and the tokens held.
///
/// [`Workload::run`]: attention::serving::paged::Workload::run
pub fn paged_memory(path: &Path) -> FigResult {
    use attention::serving::paged::Workload;
    let workload = Workload { n_sequences: 32, prompt_len: 300, max_own: 1748, seed: 14 };
    let (p, max_context) = (workload.prompt_len, workload.prompt_len + workload.max_own);
    let own = workload.own_lengths();
    let (paged, shared) = (workload.run(16, false)?, workload.run(16, true)?);
    let root = SVGBackend::new(path, (900, 400)).into_drawing_area();
    root.fill(&WHITE)?;
    let (left, right) = root.margin(10, 10, 10, 10).split_horizontally(470);
    let mut chart = ChartBuilder::on(&left)
        .caption("per sequence: reserved vs held", (FONT, 15))
        .margin(10)
        .x_label_area_size(35)
        .y_label_area_size(50)
        .build_cartesian_2d(0f32..own.len() as f32, 0f32..max_context as f32 * 1.18)?;
    chart
        .configure_mesh()
        .disable_mesh()
        .x_desc("sequence")
        .y_desc("rows of one layer")
        .x_label_formatter(&|v| format!("{v:.0}"))
        .y_label_formatter(&|v| format!("{v:.0}"))
        .label_style((FONT, 11))
        .draw()?;
    let (grey, prompt_color, own_color) =
        (RGBColor(225, 225, 225), HEAD_COLORS[1], HEAD_COLORS[0]);
    for (i, &o) in own.iter().enumerate() {
        let (x0, x1) = (i as f32 + 0.1, i as f32 + 0.9);
        for (y0, y1, color) in
            [(0, max_context, grey), (0, p, prompt_color), (p, p + o, own_color)]
        {
            chart.draw_series(std::iter::once(Rectangle::new(
                [(x0, y0 as f32), (x1, y1 as f32)],
                color.filled(),
            )))?;
        }
    }
    // the legend, in a row above the 2048 rows
    for (label, color, x) in [
        ("reserved, empty", grey, 0.2),
        ("system prompt", prompt_color, 10.7),
        ("own tokens", own_color, 21.2),
    ] {
        let y = max_context as f32 * 1.13;
        chart.draw_series(std::iter::once(Rectangle::new(
            [(x, y), (x + 1.2, y - 90.0)],
            color.filled(),
        )))?;
        chart.draw_series(std::iter::once(Text::new(
            label,
            (x + 1.6, y + 10.0),
            (FONT, 11).into_font(),
        )))?;
    }
    let bars = [
        ("contiguous: 2048 per sequence", paged.reserved, grey),
        ("paged, blocks of 16", paged.rows(), own_color),
        ("paged, prompt blocks shared", shared.rows(), HEAD_COLORS[2]),
        ("tokens held", paged.tokens, RGBColor(150, 150, 150)),
    ];
    let top = paged.reserved as f32 * 1.05;
    let mut totals = ChartBuilder::on(&right)
        .caption("all 32 sequences: rows of one layer", (FONT, 15))
        .margin(10)
        .x_label_area_size(35)
        .y_label_area_size(10)
        .build_cartesian_2d(0f32..top, 0f32..bars.len() as f32)?;
    totals
        .configure_mesh()
        .disable_mesh()
        .disable_y_axis()
        .x_desc("rows (×1000)")
        .x_label_formatter(&|v| format!("{:.0}", v / 1000.0))
        .label_style((FONT, 11))
        .draw()?;
    for (i, (name, rows, color)) in bars.iter().enumerate() {
        let y = bars.len() as f32 - i as f32 - 0.5;
        totals.draw_series(std::iter::once(Rectangle::new(
            [(0.0, y - 0.3), (*rows as f32, y + 0.3)],
            color.filled(),
        )))?;
        let share = 100.0 * *rows as f32 / paged.reserved as f32;
        totals.draw_series(std::iter::once(Text::new(
            format!("{name}: {rows} ({share:.0} %)"),
            (top * 0.02, y + 0.45),
            (FONT, 12).into_font(),
        )))?;
    }
    root.present()?;
    Ok(())
}

/// A grid of query (rows) × key (columns) cells labelled with `labels`, top-left at
/// `origin`: `fill(i, j)` is `Some(true)` for a key the query sees (blue), `Some(false)`
/// for one computed and hidden (dark), `None` for one never computed (white).
fn token_grid(
    area: &Area,
    (ox, oy): (i32, i32),
    cell: i32,
    labels: &[String],
    fill: &dyn Fn(usize, usize) -> Option<bool>,
) -> FigResult {
    for (j, label) in labels.iter().enumerate() {
        text(area, label, (ox + cell * j as i32 + cell / 2, oy - 12), 11, centered())?;
    }
    for (i, label) in labels.iter().enumerate() {
        let y = oy + cell * i as i32;
        let right = Pos::new(HPos::Right, VPos::Center);
        text(area, label, (ox - 6, y + cell / 2), 11, right)?;
        for j in 0..labels.len() {
            let (x0, x1) = (ox + cell * j as i32, ox + cell * (j as i32 + 1));
            match fill(i, j) {
                Some(seen) => {
                    let color = if seen { blue(0.45) } else { RGBColor(60, 60, 60) };
                    boxed(area, (x0, y), (x1, y + cell), color)?;
                }
                None => {
                    let grey = RGBColor(225, 225, 225).stroke_width(1);
                    area.draw(&Rectangle::new([(x0, y), (x1, y + cell)], grey))?;
                }
            }
        }
    }
    Ok(())
}

/// Chapter 15: three sequences of 3, 1 and 4 tokens, numbered 0, 1 and 2 as in the
/// chapter; token `t` of sequence `b` is labelled `b:t`. Left, the padded batch (left
/// padding to 4): each sequence's `padding_causal_mask`, 4 × 4 entries computed whatever
/// its length. Right, the same tokens packed (`cu_seqlens` [0, 3, 4, 8]): causal blocks
/// along the diagonal, and nothing computed between sequences. Counts from
/// `score_entries` for one head.
pub fn ragged_masks(path: &Path) -> FigResult {
    use attention::serving::ragged::{PackedBatch, PaddedBatch, padding_causal_mask};
    let (lengths, names) = ([3usize, 1, 4], ['0', '1', '2']);
    let seqs: Vec<DMatrix<f32>> = lengths.iter().map(|&n| DMatrix::zeros(n, 1)).collect();
    let padded = PaddedBatch::left_pad(&seqs, &[0, 0, 0])?;
    let packed = PackedBatch::pack(&seqs, &[0, 0, 0])?;
    let root = SVGBackend::new(path, (900, 440)).into_drawing_area();
    root.fill(&WHITE)?;
    let (cell, top) = (34, 160);
    // the padded batch: one grid per sequence, every entry computed
    for (b, row) in padded.attention_mask().iter().enumerate() {
        let mask = padding_causal_mask(row, padded.seq_len())?;
        let mut t = 0; // real tokens so far
        let labels: Vec<String> = row
            .iter()
            .map(|&real| {
                t += usize::from(real);
                if real == 1 { format!("{}:{}", names[b], t - 1) } else { "pad".into() }
            })
            .collect();
        let ox = 60 + 165 * b as i32;
        let title = format!("sequence {}: {} token(s)", names[b], lengths[b]);
        text(&root, &title, (ox + 2 * cell, top - 38), 12, centered())?;
        token_grid(&root, (ox, top), cell, &labels, &|i, j| Some(mask[(i, j)] == 0.0))?;
    }
    // the packed batch: one grid over every token, causal blocks along the diagonal
    let cu = packed.cu_seqlens().to_vec();
    let owner = |t: usize| cu.windows(2).position(|w| w[0] <= t && t < w[1]).unwrap_or(0);
    let labels: Vec<String> = (0..packed.total_tokens())
        .map(|t| format!("{}:{}", names[owner(t)], t - cu[owner(t)]))
        .collect();
    let fill = |i: usize, j: usize| (owner(i) == owner(j)).then_some(j <= i);
    token_grid(&root, (585, 90), cell, &labels, &fill)?;
    let entries = padded.score_entries(1);
    let title = format!("padded (left, to 4 tokens): {entries} score entries per head");
    text(&root, &title, (295, 40), 15, centered())?;
    let title = format!("packed (cu_seqlens {cu:?}): {}", packed.score_entries(1, None)?);
    text(&root, &title, (721, 40), 15, centered())?;
    let legend = [
        (blue(0.45), "seen: 0"),
        (RGBColor(60, 60, 60), "hidden: −∞, computed"),
        (WHITE, "not computed"),
    ];
    for (k, (color, name)) in legend.iter().enumerate() {
        let x = 230 + 200 * k as i32;
        boxed(&root, (x, 400), (x + 16, 416), *color)?;
        text(&root, name, (x + 24, 408), 12, Pos::new(HPos::Left, VPos::Center))?;
    }
    root.present()?;
    Ok(())
}

/// Chapter 13: the mean error of attention outputs through each quantized format, on
/// Gaussian keys and on keys with outlier channels ([`attention::serving::quant`]'s own
/// study inputs: 16 queries over 512 tokens, 8 heads over 2 KV heads of 64), log scale.
/// The last bar quantizes int4 keys per token instead of per channel.
pub fn quantized_kv_error(path: &Path) -> FigResult {
    use attention::serving::quant::{
        Int4Grouping, KvFormat, StudyData, int4_round_trip, quantized_attention_error,
        study_inputs,
    };
    let heads = attention::HeadLayout::new(8, 2, 64)?;
    let kinds = [
        (StudyData::Gaussian, "Gaussian keys", HEAD_COLORS[0]),
        (StudyData::OutlierChannels, "keys with outlier channels", HEAD_COLORS[3]),
    ];
    let formats: [(&str, Option<KvFormat>); 5] = [
        ("int8, per token", Some(KvFormat::Int8)),
        ("fp8 e4m3, per tensor", Some(KvFormat::Fp8E4M3)),
        ("int4 KIVI, G 32, R 0", Some(KvFormat::Int4 { group: 32, residual: 0 })),
        ("int4 KIVI, G 32, R 128", Some(KvFormat::KIVI)),
        ("int4, keys per token", None),
    ];
    let mut bars = Vec::new(); // (row, kind, mean error)
    for (row, (_, format)) in formats.iter().enumerate() {
        for (kind_index, (kind, _, _)) in kinds.iter().enumerate() {
            let (q, k, v) = study_inputs(*kind, heads, 512, 16, 13)?;
            let mean = match format {
                Some(f) => quantized_attention_error(*f, &q, &k, &v, heads)?.mean,
                None => {
                    let attend = |k: &DMatrix<f32>, v: &DMatrix<f32>| {
                        attention::grouped_attention(
                            &q,
                            k.as_view(),
                            v.as_view(),
                            heads,
                            496,
                        )
                    };
                    let k4 = int4_round_trip(&k, 64, Int4Grouping::PerToken)?;
                    let v4 = int4_round_trip(&v, 64, Int4Grouping::PerToken)?;
                    (attend(&k4, &v4)? - attend(&k, &v)?).abs().mean()
                }
            };
            bars.push((row, kind_index, mean));
        }
    }
    let root = SVGBackend::new(path, (900, 360)).into_drawing_area();
    root.fill(&WHITE)?;
    let n = formats.len() as f32;
    let mut chart = ChartBuilder::on(&root.margin(10, 10, 10, 10))
        .caption(
            "attention through a quantized cache: mean |output − f32 output|",
            (FONT, 15),
        )
        .margin(10)
        .x_label_area_size(35)
        .y_label_area_size(170)
        .build_cartesian_2d((1e-4f32..0.1f32).log_scale(), 0f32..n)?;
    chart
        .configure_mesh()
        .disable_mesh()
        .disable_y_axis()
        .x_desc("mean absolute error (log scale; mean |output| is 0.054)")
        .x_label_formatter(&|x| format!("{x:e}"))
        .label_style((FONT, 11))
        .draw()?;
    for &(row, kind, mean) in &bars {
        let y = n - row as f32 - 0.5 + if kind == 0 { 0.18 } else { -0.18 };
        let color = kinds[kind].2;
        chart.draw_series(std::iter::once(Rectangle::new(
            [(1e-4, y - 0.15), (mean, y + 0.15)],
            color.filled(),
        )))?;
        chart.draw_series(std::iter::once(Text::new(
            format!("{mean:.4}"),
            (mean * 1.08, y + 0.07),
            (FONT, 11).into_font(),
        )))?;
    }
    for (row, (name, _)) in formats.iter().enumerate() {
        let pos = chart.backend_coord(&(1e-4, n - row as f32 - 0.5));
        text(&root, name, (pos.0 - 8, pos.1), 12, Pos::new(HPos::Right, VPos::Center))?;
    }
    for (i, (_, label, color)) in kinds.iter().enumerate() {
        let (x, y) = (640, 60 + 18 * i as i32);
        root.draw(&Rectangle::new([(x, y - 5), (x + 14, y + 5)], color.filled()))?;
        text(&root, label, (x + 20, y), 12, Pos::new(HPos::Left, VPos::Center))?;
    }
    root.present()?;
    Ok(())
}

/// Chapter 16: causal ring attention on 4 devices. Left, the key/value block each device
/// holds at each step ([`attention::parallel::ring::ring_schedule`]); right, the same as
/// the causal matrix of query blocks by key blocks, each cell labelled with the step at
/// which its device computes it. Colours from [`attention::parallel::ring::block_use`].
pub fn ring_schedule(path: &Path) -> FigResult {
    use attention::parallel::ring::{BlockUse, block_use, held_block, ring_schedule};
    let devices = 4;
    let schedule = ring_schedule(devices);
    let color = |u: BlockUse| match u {
        BlockUse::Diagonal => light(HEAD_COLORS[1], 0.75),
        BlockUse::Past => light(HEAD_COLORS[0], 0.55),
        BlockUse::Future => RGBColor(225, 225, 225),
    };
    let root = SVGBackend::new(path, (900, 400)).into_drawing_area();
    root.fill(&WHITE)?;
    let (cell, top, left_x, right_x) = (62, 90, 110, 560);
    let n = devices as i32;
    text(
        &root,
        "what each device holds, step by step",
        (left_x + 2 * cell, 30),
        15,
        centered(),
    )?;
    text(
        &root,
        "query blocks × key blocks: step computed",
        (right_x + 2 * cell, 30),
        15,
        centered(),
    )?;
    for i in 0..n {
        let right = Pos::new(HPos::Right, VPos::Center);
        let y = top + cell * i + cell / 2;
        text(&root, &format!("device {i}"), (left_x - 10, y), 12, right)?;
        text(&root, &format!("queries {i}"), (right_x - 10, y), 12, right)?;
        let x = |ox: i32| ox + cell * i + cell / 2;
        text(&root, &format!("step {i}"), (x(left_x), top - 14), 12, centered())?;
        text(&root, &format!("keys {i}"), (x(right_x), top - 14), 12, centered())?;
    }
    for (step, held) in schedule.iter().enumerate() {
        for (r, &block) in held.iter().enumerate() {
            let use_ = block_use(r, block);
            let (x, y) = (left_x + cell * step as i32, top + cell * r as i32);
            boxed(&root, (x, y), (x + cell, y + cell), color(use_))?;
            let label = format!("KV {block}");
            text(&root, &label, (x + cell / 2, y + cell / 2), 13, centered())?;
        }
    }
    for r in 0..devices {
        for block in 0..devices {
            let use_ = block_use(r, block);
            let (x, y) = (right_x + cell * block as i32, top + cell * r as i32);
            boxed(&root, (x, y), (x + cell, y + cell), color(use_))?;
            // the step at which device r holds this block
            let step = (0..devices).find(|&s| held_block(r, s, devices) == block);
            let label = match (use_, step) {
                (BlockUse::Future, _) => "skipped".to_string(),
                (_, Some(s)) => format!("step {s}"),
                (_, None) => String::new(),
            };
            text(&root, &label, (x + cell / 2, y + cell / 2), 12, centered())?;
        }
    }
    let legend = [
        (BlockUse::Diagonal, "own block: causal mask"),
        (BlockUse::Past, "earlier block: no mask"),
        (BlockUse::Future, "later block: passed on, skipped"),
    ];
    for (k, (u, name)) in legend.iter().enumerate() {
        let x = 120 + 250 * k as i32;
        boxed(&root, (x, 362), (x + 16, 378), color(*u))?;
        text(&root, name, (x + 24, 370), 12, Pos::new(HPos::Left, VPos::Center))?;
    }
    root.present()?;
    Ok(())
}
