//! `attn-bench`: times the crate's attention paths and prints one JSON object per line.
//!
//! ```text
//! attn-bench                 the goal's cases (prefill seq 256..4096, MHA 12/12 and GQA 12/4; decode)
//! attn-bench --quick         tiny shapes, a few repetitions: a smoke test that finishes in a second
//! attn-bench --memory N      runs only the flash path once at seq N (GQA 12/4) and prints its peak RSS
//! attn-bench --threads T     also time the flash and decode paths on T threads (default: 1 and 2)
//! attn-bench --seq N         only the cases of sequence (or context) length N
//! attn-bench --case NAME     only prefill_naive, prefill_flash or decode
//! attn-bench --reps N        exactly N timed calls per case (default: as many as fit in 3 s, at least 5)
//! attn-bench --table FILE    renders the results file written by scripts/bench_compare.py
//!                            (src/data/bench-results.json) as the book's markdown tables
//! ```
//!
//! Each line: `{"case": "prefill_naive" | "prefill_flash" | "decode", "seq": N, "n_heads": H,
//! "n_kv_heads": K, "head_dim": D, "threads": T, "median_ms": X}`. `scripts/bench_compare.py` runs
//! this and the same shapes in PyTorch, and prints the ratios.

use std::time::{Duration, Instant};

use attention::fast::decode::DecodeAttention;
use attention::support::init::splitmix_matrix;
use attention::{AttentionInputs, FlashAttention, HeadLayout, Result, grouped_attention};
use nalgebra::DMatrix;
use serde_json::Value;

const HEAD_DIM: usize = 64;
const N_HEADS: usize = 12;

/// Which path a measurement is of.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Case {
    PrefillNaive,
    PrefillFlash,
    Decode,
}

impl Case {
    fn name(self) -> &'static str {
        match self {
            Case::PrefillNaive => "prefill_naive",
            Case::PrefillFlash => "prefill_flash",
            Case::Decode => "decode",
        }
    }
}

/// One benchmark: a path, a shape, a thread count.
struct Shape {
    case: Case,
    seq: usize,
    n_kv_heads: usize,
    threads: usize,
}

/// How long to keep timing one case, and the bounds on repetitions.
struct Budget {
    time: Duration,
    min_reps: usize,
    max_reps: usize,
}

fn main() {
    if let Err(e) = run() {
        eprintln!("attn-bench: {e}");
        std::process::exit(2);
    }
}

fn run() -> std::result::Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut quick = false;
    let mut memory = None;
    let mut thread_counts = vec![1, 2];
    let mut only_seq = None;
    let mut only_case = None;
    let mut table = None;
    let mut reps = None;
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--quick" => quick = true,
            "--memory" => memory = Some(parse(it.next(), "--memory")?),
            "--threads" => thread_counts = vec![1, parse(it.next(), "--threads")?],
            "--seq" => only_seq = Some(parse(it.next(), "--seq")?),
            "--case" => only_case = Some(it.next().ok_or("--case needs a name")?.clone()),
            "--table" => table = Some(it.next().ok_or("--table needs a file")?.clone()),
            "--reps" => reps = Some(parse(it.next(), "--reps")?),
            "--help" | "-h" => {
                println!(
                    "usage: attn-bench [--quick] [--memory SEQ] [--threads T] [--seq N] [--case NAME] [--reps N] [--table FILE]"
                );
                return Ok(());
            }
            other => return Err(format!("unknown argument {other:?} (try --help)")),
        }
    }
    thread_counts.dedup();
    if let Some(c) =
        only_case.as_deref().filter(|c| !["prefill_naive", "prefill_flash", "decode"].contains(c))
    {
        return Err(format!("unknown case {c:?}: prefill_naive, prefill_flash or decode"));
    }
    if let Some(path) = table {
        let text = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
        let json: Value = serde_json::from_str(&text).map_err(|e| format!("{path}: {e}"))?;
        print!("{}", render_tables(&json).map_err(|e| format!("{path}: {e}"))?);
        return Ok(());
    }
    if let Some(seq) = memory {
        return memory_run(seq).map_err(|e| e.to_string());
    }
    let (prefill_seqs, decode_ctx, budget) = if quick {
        (vec![16, 70], vec![33], Budget { time: Duration::from_millis(20), min_reps: 2, max_reps: 5 })
    } else {
        (
            vec![256, 512, 1024, 2048, 4096],
            vec![4096],
            Budget { time: Duration::from_secs(3), min_reps: 5, max_reps: 200 },
        )
    };
    let mut shapes = Vec::new();
    for &seq in &prefill_seqs {
        for n_kv_heads in [N_HEADS, 4] {
            shapes.push(Shape { case: Case::PrefillNaive, seq, n_kv_heads, threads: 1 });
            for &threads in &thread_counts {
                shapes.push(Shape { case: Case::PrefillFlash, seq, n_kv_heads, threads });
            }
        }
    }
    for &seq in &decode_ctx {
        for &threads in &thread_counts {
            shapes.push(Shape { case: Case::Decode, seq, n_kv_heads: 4, threads });
        }
    }
    let budget = match reps {
        Some(n) => Budget { time: Duration::ZERO, min_reps: n.max(1), max_reps: n.max(1) },
        None => budget,
    };
    shapes.retain(|s| {
        only_seq.is_none_or(|n| s.seq == n) && only_case.as_ref().is_none_or(|c| c == s.case.name())
    });
    for shape in &shapes {
        let ms = measure(shape, &budget).map_err(|e| e.to_string())?;
        println!(
            "{{\"case\": \"{}\", \"seq\": {}, \"n_heads\": {N_HEADS}, \"n_kv_heads\": {}, \"head_dim\": {HEAD_DIM}, \"threads\": {}, \"median_ms\": {:.4}}}",
            shape.case.name(),
            shape.seq,
            shape.n_kv_heads,
            shape.threads,
            ms
        );
    }
    Ok(())
}

fn parse(value: Option<&String>, flag: &str) -> std::result::Result<usize, String> {
    let value = value.ok_or_else(|| format!("{flag} needs a number"))?;
    value.parse().map_err(|_| format!("{flag} needs a positive number, got {value:?}"))
}

/// Random inputs `(q, k, v)` for `n_queries` queries over `n_keys` keys.
fn inputs(n_queries: usize, n_keys: usize, n_kv_heads: usize) -> (DMatrix<f32>, DMatrix<f32>, DMatrix<f32>) {
    (
        splitmix_matrix(1, n_queries, N_HEADS * HEAD_DIM, 1.0),
        splitmix_matrix(2, n_keys, n_kv_heads * HEAD_DIM, 1.0),
        splitmix_matrix(3, n_keys, n_kv_heads * HEAD_DIM, 1.0),
    )
}

/// The median time of one call, in milliseconds, after one warm-up call.
fn measure(shape: &Shape, budget: &Budget) -> Result<f64> {
    let n_queries = if shape.case == Case::Decode { 1 } else { shape.seq };
    let (q, k, v) = inputs(n_queries, shape.seq, shape.n_kv_heads);
    let query_offset = shape.seq - n_queries;
    let heads = HeadLayout::new(N_HEADS, shape.n_kv_heads, HEAD_DIM)?;
    let mut out = DMatrix::zeros(n_queries, N_HEADS * HEAD_DIM);
    let mut flash = FlashAttention::with_threads(shape.threads)?;
    let mut decode = DecodeAttention::with_threads(shape.threads)?;
    let (kv, vv) = (k.as_view(), v.as_view());
    let mut call = || -> Result<()> {
        match shape.case {
            Case::PrefillNaive => {
                out = grouped_attention(&q, kv, vv, heads, query_offset)?;
                Ok(())
            }
            Case::PrefillFlash => {
                flash.forward_into(AttentionInputs { q: &q, k: kv, v: vv, heads, query_offset }, &mut out)
            }
            Case::Decode => {
                decode.forward_into(AttentionInputs { q: &q, k: kv, v: vv, heads, query_offset }, &mut out)
            }
        }
    };
    call()?; // warm-up: caches, page faults, scratch buffers
    let mut times = Vec::new();
    let started = Instant::now();
    while times.len() < budget.min_reps || (started.elapsed() < budget.time && times.len() < budget.max_reps)
    {
        let t = Instant::now();
        call()?;
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    std::hint::black_box(&out);
    times.sort_by(f64::total_cmp);
    Ok(times[times.len() / 2])
}

/// Runs the flash path once at `seq` (GQA 12/4) and prints the process's peak resident memory
/// beside what the straightforward path's score matrices alone would need.
fn memory_run(seq: usize) -> Result<()> {
    let n_kv_heads = 4;
    let (q, k, v) = inputs(seq, seq, n_kv_heads);
    let inputs_bytes = (q.len() + k.len() + v.len()) * 4;
    let before = peak_rss_bytes();
    let t = Instant::now();
    let heads = HeadLayout::new(N_HEADS, n_kv_heads, HEAD_DIM)?;
    let out = FlashAttention::new().forward(AttentionInputs {
        q: &q,
        k: k.as_view(),
        v: v.as_view(),
        heads,
        query_offset: 0,
    })?;
    let ms = t.elapsed().as_secs_f64() * 1e3;
    std::hint::black_box(&out);
    let peak = peak_rss_bytes();
    // grouped_attention holds one head's (seq, seq) score matrix at a time, plus a transposed copy
    // of the keys; a framework that batches the heads holds all n_heads of them at once.
    let one_head = (seq * seq * 4) as u64;
    println!(
        "{{\"case\": \"memory\", \"seq\": {seq}, \"n_heads\": {N_HEADS}, \"n_kv_heads\": {n_kv_heads}, \"head_dim\": {HEAD_DIM}, \"threads\": 1, \"median_ms\": {ms:.1}, \"peak_rss_bytes\": {peak}, \"rss_before_bytes\": {before}, \"inputs_output_bytes\": {}, \"naive_scores_one_head_bytes\": {one_head}, \"naive_scores_all_heads_bytes\": {}}}",
        inputs_bytes + out.len() * 4,
        one_head * N_HEADS as u64
    );
    Ok(())
}

/// The peak resident set size of this process so far (Linux `getrusage`; 0 where unavailable).
fn peak_rss_bytes() -> u64 {
    // VmHWM in /proc/self/status is the same figure as getrusage's ru_maxrss, without libc.
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

/// The goals of the fast-attention issue: (case, sequence lengths, limit on ours / PyTorch's time).
const GOALS: [(&str, &[u64], f64); 3] = [
    ("prefill_flash", &[1024, 4096], 1.0),
    ("prefill_naive", &[256, 512, 1024, 2048, 4096], 1.0),
    ("decode", &[4096], 0.8),
];

/// A time in milliseconds with three significant digits.
fn fmt_ms(ms: f64) -> String {
    match ms {
        x if x < 1.0 => format!("{x:.3}"),
        x if x < 10.0 => format!("{x:.2}"),
        x if x < 100.0 => format!("{x:.1}"),
        x => format!("{x:.0}"),
    }
}

/// A byte count in GiB (or MiB below one GiB).
fn fmt_bytes(bytes: f64) -> String {
    let gib = bytes / (1u64 << 30) as f64;
    if gib >= 1.0 { format!("{gib:.2} GiB") } else { format!("{:.0} MiB", bytes / (1u64 << 20) as f64) }
}

/// Renders `src/data/bench-results.json` as markdown: the book includes the output verbatim, and a
/// test checks that the committed `src/generated/bench-table.md` is exactly this rendering.
fn render_tables(json: &Value) -> std::result::Result<String, String> {
    let rows = json["results"].as_array().ok_or("no \"results\" array")?;
    let num =
        |r: &Value, key: &str| r[key].as_f64().ok_or_else(|| format!("a result without a number {key:?}"));
    let find = |case: &str, seq: u64, kv: u64, threads: u64| {
        rows.iter().find(|r| {
            r["case"] == case && r["seq"] == seq && r["n_kv_heads"] == kv && r["threads"] == threads
        })
    };
    let heads = |kv: u64| if kv == 12 { "12/12 (MHA)".to_string() } else { format!("12/{kv} (GQA)") };
    let mut seqs: Vec<u64> =
        rows.iter().filter(|r| r["case"] == "prefill_flash").filter_map(|r| r["seq"].as_u64()).collect();
    seqs.sort_unstable();
    seqs.dedup();
    let mut md = String::new();
    let machine = &json["machine"];
    md += &format!(
        "Measured by `scripts/bench_compare.py` on {} ({} cores, {}), torch {}, load average {} before and {} after the run. \
         Times are medians in milliseconds; ratio = ours / PyTorch's, measured in the same run.\n\n",
        machine["cpu"].as_str().unwrap_or("?"),
        machine["cores"],
        machine["simd"].as_str().unwrap_or("?"),
        json["torch"].as_str().unwrap_or("?"),
        json["load_average"][0],
        json["load_average"][1],
    );
    md += "**Prefill**, one thread, causal, head_dim 64:\n\n";
    md += "| seq | heads (query/KV) | straightforward | PyTorch manual | ratio | flash | PyTorch SDPA | ratio |\n";
    md += "|---:|:---|---:|---:|---:|---:|---:|---:|\n";
    for &seq in &seqs {
        for kv in [12, 4] {
            let (Some(naive), Some(flash)) =
                (find("prefill_naive", seq, kv, 1), find("prefill_flash", seq, kv, 1))
            else {
                continue;
            };
            let (n, nt, f, ft) = (
                num(naive, "ours_ms")?,
                num(naive, "torch_ms")?,
                num(flash, "ours_ms")?,
                num(flash, "torch_ms")?,
            );
            md += &format!(
                "| {seq} | {} | {} | {} | {:.2} | {} | {} | {:.2} |\n",
                heads(kv),
                fmt_ms(n),
                fmt_ms(nt),
                n / nt,
                fmt_ms(f),
                fmt_ms(ft),
                f / ft
            );
        }
    }
    let two: Vec<&Value> = rows.iter().filter(|r| r["threads"] == 2).collect();
    if !two.is_empty() {
        md += "\n**Two threads** (our kernels split the heads between the threads; PyTorch with `torch.set_num_threads(2)`):\n\n";
        md += "| case | seq | heads (query/KV) | ours | PyTorch SDPA | ratio |\n|:---|---:|:---|---:|---:|---:|\n";
        for r in two {
            let (o, t) = (num(r, "ours_ms")?, num(r, "torch_ms")?);
            let kv = r["n_kv_heads"].as_u64().unwrap_or(0);
            md += &format!(
                "| {} | {} | {} | {} | {} | {:.2} |\n",
                r["case"].as_str().unwrap_or("?"),
                r["seq"],
                heads(kv),
                fmt_ms(o),
                fmt_ms(t),
                o / t
            );
        }
    }
    if let Some(d) = find("decode", 4096, 4, 1) {
        let (o, t) = (num(d, "ours_ms")?, num(d, "torch_ms")?);
        md += &format!(
            "\n**Decode**, one new token against a KV cache of 4096 positions, GQA 12/4, one thread: ours {} ms, \
             PyTorch SDPA {} ms, ratio {:.2}.\n",
            fmt_ms(o),
            fmt_ms(t),
            o / t
        );
    }
    if let Some(m) = json.get("memory").filter(|m| m.is_object()) {
        md += &format!(
            "\n**Memory** at seq {}, GQA 12/4: the flash path peaks at {} resident (inputs and output alone: {}); \
             the straightforward path would need a `(seq, seq)` f32 score matrix of {} per head, {} for all 12 heads \
             at once as a batched framework holds them.\n",
            m["seq"],
            fmt_bytes(num(m, "peak_rss_bytes")?),
            fmt_bytes(num(m, "inputs_output_bytes")?),
            fmt_bytes(num(m, "naive_scores_one_head_bytes")?),
            fmt_bytes(num(m, "naive_scores_all_heads_bytes")?),
        );
    }
    let mut goals = String::new();
    for (case, goal_seqs, limit) in GOALS {
        let picked: Vec<&Value> = rows
            .iter()
            .filter(|r| r["case"] == case && r["threads"] == 1 && goal_seqs.iter().any(|s| r["seq"] == *s))
            .collect();
        if picked.is_empty() {
            continue;
        }
        let mut worst = 0.0_f64;
        for r in &picked {
            worst = worst.max(num(r, "ours_ms")? / num(r, "torch_ms")?);
        }
        let what = match case {
            "prefill_flash" => "flash prefill ≤ 1.0 × PyTorch SDPA (stretch 0.8)",
            "prefill_naive" => "straightforward prefill ≤ 1.0 × PyTorch manual",
            _ => "decode ≤ 0.8 × PyTorch SDPA",
        };
        let shapes = if case == "decode" {
            "context 4096, 12/4".to_string()
        } else {
            let s: Vec<String> = goal_seqs.iter().map(u64::to_string).collect();
            format!("seq {}, 12/12 and 12/4", s.join(", "))
        };
        let met = if worst > limit {
            "**no**"
        } else if case == "prefill_flash" && worst <= 0.8 {
            "yes, and the stretch goal"
        } else {
            "yes"
        };
        goals += &format!("| {what} | {shapes} | {worst:.2} | {met} |\n");
    }
    if !goals.is_empty() {
        md += "\n**Goals**, one thread:\n\n| goal | shapes | worst ratio | met |\n|:---|:---|---:|:---|\n";
        md += &goals;
    }
    Ok(md)
}
