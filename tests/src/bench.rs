//! Chapter 8's measurements: `src/data/bench-results.json` read into typed rows, and the
//! markdown tables the chapter shows, rendered from them.
//!
//! `scripts/bench_compare.py` times `attn-bench` (our paths) and PyTorch on the same
//! shapes and writes the results file. This module is its only reader: the speed figure
//! ([`crate::figures::attention_speed`]) and [`render_tables`] both start from
//! [`BenchResults`]. The rendering is committed as `src/generated/bench-table.md` (the
//! chapter includes it); the binaries `figures` and `bench-table` write it, and the test
//! `tests/bench_tables.rs` fails when the committed file is not exactly the rendering of
//! the committed measurements.

use std::error::Error;
use std::path::Path;

use serde::Deserialize;

/// The measurements, relative to the workspace root.
pub const RESULTS_FILE: &str = "src/data/bench-results.json";
/// The rendered tables, relative to the workspace root.
pub const TABLE_FILE: &str = "src/generated/bench-table.md";
/// Chapters 13 and 14's measurements (`scripts/bench_compare.py --suite serving`): decode
/// from int8, int4 and paged caches against PyTorch SDPA on the f32 cache.
pub const SERVING_RESULTS_FILE: &str = "src/data/bench-serving-results.json";
/// Their rendered tables.
pub const SERVING_TABLE_FILE: &str = "src/generated/bench-serving-table.md";
/// Every committed run and its rendered tables: the CPU's widest SIMD level, our kernels
/// capped at AVX2 (`scripts/bench_compare.py --simd avx2`), for the readers whose CPU has
/// no AVX-512, and the serving suite; then the same three runs on a second machine, an
/// AMD EPYC of the Zen 4 generation (`--tag zen4`).
pub const RUNS: &[(&str, &str)] = &[
    (RESULTS_FILE, TABLE_FILE),
    ("src/data/bench-results-avx2.json", "src/generated/bench-table-avx2.md"),
    (SERVING_RESULTS_FILE, SERVING_TABLE_FILE),
    ("src/data/bench-results-zen4.json", "src/generated/bench-table-zen4.md"),
    ("src/data/bench-results-avx2-zen4.json", "src/generated/bench-table-avx2-zen4.md"),
    (
        "src/data/bench-serving-results-zen4.json",
        "src/generated/bench-serving-table-zen4.md",
    ),
];

/// Whether a results file among [`RUNS`] is the serving suite's (chapters 13 and 14).
fn is_serving_run(results: &str) -> bool {
    results.starts_with("src/data/bench-serving-results")
}

/// The fast suite's runs among [`RUNS`] (chapter 8's), every machine's.
pub fn fast_runs() -> impl Iterator<Item = &'static (&'static str, &'static str)> {
    RUNS.iter().filter(|(results, _)| !is_serving_run(results))
}

/// The serving suite's runs among [`RUNS`] (chapters 13 and 14's), every machine's.
pub fn serving_runs() -> impl Iterator<Item = &'static (&'static str, &'static str)> {
    RUNS.iter().filter(|(results, _)| is_serving_run(results))
}

/// The whole results file, as `scripts/bench_compare.py` writes it.
#[derive(Debug, Deserialize)]
pub struct BenchResults {
    /// Who wrote the file (a note for people who open it).
    pub about: String,
    /// The machine the numbers were measured on.
    pub machine: Machine,
    /// PyTorch's version, e.g. `2.15.0+cu132`.
    pub torch: String,
    /// The 1-minute load average before and after the run.
    pub load_average: [f64; 2],
    /// The load average was above the script's `--max-load` when the run started.
    #[serde(default)]
    pub busy: bool,
    /// One row per timed case, in the order they were measured.
    pub results: Vec<BenchRow>,
    /// Ours on 2 threads against ours on 1, for every case timed on both; absent in files
    /// written before the script computed it.
    #[serde(default)]
    pub speedups: Option<Vec<Speedup>>,
    /// The earlier commit whose flash kernel the steps table starts from (`--before`).
    #[serde(default)]
    pub before: Option<Before>,
    /// The memory run (`attn-bench --memory`); `null` in a `--quick` run.
    #[serde(default)]
    pub memory: Option<MemoryRun>,
}

/// The machine of a run.
#[derive(Debug, Deserialize)]
pub struct Machine {
    /// The processor's model name.
    pub cpu: String,
    /// Logical cores.
    pub cores: u64,
    /// The widest SIMD level the processor has: `AVX-512`, `AVX2` or `SSE2`.
    pub simd: String,
    /// The level our kernels ran with (`avx512`, `avx2` or `baseline`; `ATTENTION_SIMD`
    /// caps it), as `attn-bench` reports it; absent in files written before it did.
    #[serde(default)]
    pub simd_used: Option<String>,
    /// The core's FMA throughput in GFLOP/s (`attn-bench --peak`, one thread, at the
    /// level our kernels ran with); absent in files written before it was measured.
    #[serde(default)]
    pub fma_peak_gflops: Option<f64>,
    /// One core's read bandwidth on buffers of a few sizes (`attn-bench --bandwidth`);
    /// measured by the serving suite only.
    #[serde(default)]
    pub read_bandwidth: Option<Vec<Bandwidth>>,
    /// The level PyTorch's ATen kernels ran at (`torch.backends.cpu.get_cpu_capability()`:
    /// `AVX512`, `AVX2`, ...; `--simd avx2` caps it); absent in files written before it
    /// was recorded.
    #[serde(default)]
    pub torch_cpu_capability: Option<String>,
}

/// How much faster a case ran on 2 threads than on 1: the 1-thread median over the
/// 2-thread one, ours and PyTorch's.
#[derive(Debug, Deserialize)]
pub struct Speedup {
    /// The case timed on both thread counts.
    pub case: Case,
    /// Its sequence length or context.
    pub seq: u64,
    /// Its KV heads (the query heads are the rows').
    pub n_kv_heads: u64,
    /// Ours: 1-thread ms / 2-thread ms.
    pub speedup: f64,
    /// PyTorch's: 1-thread ms / 2-thread ms.
    #[serde(default)]
    pub torch_speedup: Option<f64>,
}

/// The commit of the `prefill_flash_before` rows.
#[derive(Debug, Deserialize)]
pub struct Before {
    /// As given to `--before`.
    pub rev: String,
    /// Its full hash.
    pub commit: String,
}

/// One core's read rate on a buffer of `bytes`, read again and again.
#[derive(Debug, Deserialize)]
pub struct Bandwidth {
    /// The buffer's size.
    pub bytes: u64,
    /// 10⁹ bytes a second.
    pub gb_per_s: f64,
}

/// Which of our paths a row times (and so which of PyTorch's it is compared with).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Case {
    /// `grouped_attention`, against PyTorch's manual softmax(QKᵀ/√d)·V.
    PrefillNaive,
    /// `FlashAttention`, against `F.scaled_dot_product_attention`.
    PrefillFlash,
    /// The straightforward path with chapter 8's fast `exp`, against the manual path (a
    /// step of chapter 8's table).
    PrefillNaiveFastExp,
    /// `FlashAttention` skipping only whole future tiles (`CausalSkip::Blocks`).
    PrefillFlashBlockSkip,
    /// `FlashAttention` computing every tile (`CausalSkip::None`).
    PrefillFlashNoSkip,
    /// `FlashAttention` without fused multiply-adds in its `exp`.
    PrefillFlashUnfusedExp,
    /// The flash kernel of an earlier commit (`bench_compare.py --before REV`).
    PrefillFlashBefore,
    /// `DecodeAttention` (one new token), against `F.scaled_dot_product_attention`.
    Decode,
    /// `DecodeAttention` with every column of the keys and values 16 bytes into a cache
    /// line, against `F.scaled_dot_product_attention`: what chapter 6's aligned cache is
    /// worth.
    DecodeUnaligned,
    /// Chapter 16's `SplitKDecodeAttention` (one new token, a fixed number of splits),
    /// against `F.scaled_dot_product_attention`.
    DecodeSplitK,
    /// `QuantizedDecodeAttention` on an int8 cache, against PyTorch SDPA on the f32 cache.
    DecodeInt8,
    /// `QuantizedDecodeAttention` on an int4 (KIVI) cache, against PyTorch SDPA on the f32
    /// cache.
    DecodeInt4,
    /// `PagedDecodeAttention` on a paged f32 cache, against PyTorch SDPA on the f32 cache.
    DecodePaged,
}

impl Case {
    /// The name `attn-bench` and the results file use.
    pub fn name(self) -> &'static str {
        match self {
            Case::PrefillNaive => "prefill_naive",
            Case::PrefillFlash => "prefill_flash",
            Case::PrefillNaiveFastExp => "prefill_naive_fast_exp",
            Case::PrefillFlashBlockSkip => "prefill_flash_block_skip",
            Case::PrefillFlashNoSkip => "prefill_flash_no_skip",
            Case::PrefillFlashUnfusedExp => "prefill_flash_unfused_exp",
            Case::PrefillFlashBefore => "prefill_flash_before",
            Case::Decode => "decode",
            Case::DecodeUnaligned => "decode_unaligned",
            Case::DecodeSplitK => "decode_split_k",
            Case::DecodeInt8 => "decode_int8",
            Case::DecodeInt4 => "decode_int4",
            Case::DecodePaged => "decode_paged",
        }
    }

    /// A decode case of chapters 13 and 14 (read from a compressed, paged or unaligned
    /// cache).
    pub fn is_serving(self) -> bool {
        matches!(
            self,
            Case::DecodeInt8
                | Case::DecodeInt4
                | Case::DecodePaged
                | Case::DecodeUnaligned
        )
    }
}

/// One timed case: our median and PyTorch's, measured one right after the other.
#[derive(Debug, Clone, Deserialize)]
pub struct BenchRow {
    pub case: Case,
    /// Sequence length (prefill) or cached context (decode).
    pub seq: u64,
    pub n_heads: u64,
    pub n_kv_heads: u64,
    pub head_dim: u64,
    pub threads: u64,
    /// Our median time per call, in milliseconds.
    pub ours_ms: f64,
    /// PyTorch's counterpart: `manual` or `sdpa`.
    pub torch_case: String,
    /// PyTorch's median time per call, in milliseconds.
    pub torch_ms: f64,
    /// Interleaved rounds (ours, then PyTorch) the times are the fastest of; absent in
    /// files written before rounds were run.
    #[serde(default)]
    pub rounds: Option<u64>,
    /// Our slowest round's median over our fastest, minus 1.
    #[serde(default)]
    pub ours_spread: Option<f64>,
    /// PyTorch's slowest round's median over its fastest, minus 1.
    #[serde(default)]
    pub torch_spread: Option<f64>,
    /// Why the row is not a result (e.g. PyTorch slower on two threads than on one).
    #[serde(default)]
    pub flag: Option<String>,
    /// Decode rows: the bytes of cache one step reads.
    #[serde(default)]
    pub bytes_per_token: Option<u64>,
    /// Decode rows: those bytes over our time, in 10⁹ bytes a second.
    #[serde(default)]
    pub gb_per_s: Option<f64>,
    /// SDPA rows: the backend PyTorch's dispatcher picked for the shape
    /// (`torch._fused_sdp_choice`, an `SDPBackend` name such as `FLASH_ATTENTION`).
    #[serde(default)]
    pub torch_backend: Option<String>,
    /// Split-K rows: the number of splits of the keys.
    #[serde(default)]
    pub splits: Option<u64>,
    /// For `decode_unaligned` and `decode_paged`: the median of `decode` on the aligned
    /// cache, timed call for call in alternation with this case in the same process and
    /// round; absent in files written before it was.
    #[serde(default)]
    pub paired_decode_ms: Option<f64>,
}

impl BenchRow {
    /// Ours / PyTorch's: below 1 means ours is faster.
    pub fn ratio(&self) -> f64 {
        self.ours_ms / self.torch_ms
    }

    /// A flash row's achieved rate in GFLOP/s: `4 · n_heads · head_dim · seq·(seq+1)/2`
    /// flops (the two products over the visible query-key pairs) over our time; `None`
    /// for other cases.
    pub fn gflops(&self) -> Option<f64> {
        let flash = matches!(
            self.case,
            Case::PrefillFlash
                | Case::PrefillFlashBlockSkip
                | Case::PrefillFlashNoSkip
                | Case::PrefillFlashUnfusedExp
                | Case::PrefillFlashBefore
        );
        let pairs = self.seq as f64 * (self.seq as f64 + 1.0) / 2.0;
        let flops = 4.0 * (self.n_heads * self.head_dim) as f64 * pairs;
        flash.then(|| flops / (self.ours_ms * 1e-3) / 1e9)
    }

    /// `12/12 (MHA)` or `12/4 (GQA)`.
    fn heads(&self) -> String {
        let kind = if self.n_kv_heads == self.n_heads { "MHA" } else { "GQA" };
        format!("{}/{} ({kind})", self.n_heads, self.n_kv_heads)
    }
}

/// The memory run: the flash path once at a long sequence, its peak resident memory
/// beside what the straightforward path's score matrices alone would need.
#[derive(Debug, Deserialize)]
pub struct MemoryRun {
    pub seq: u64,
    pub n_heads: u64,
    pub n_kv_heads: u64,
    pub head_dim: u64,
    pub median_ms: f64,
    pub peak_rss_bytes: u64,
    pub rss_before_bytes: u64,
    pub inputs_output_bytes: u64,
    pub naive_scores_one_head_bytes: u64,
    pub naive_scores_all_heads_bytes: u64,
}

impl BenchResults {
    /// Parses the text of a results file.
    pub fn parse(json: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(json)
    }

    /// Reads a results file; errors name the file.
    pub fn load(path: &Path) -> Result<Self, Box<dyn Error>> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(Self::parse(&text).map_err(|e| format!("{}: {e}", path.display()))?)
    }

    /// The committed measurements, `src/data/bench-results.json`.
    pub fn committed() -> Result<Self, Box<dyn Error>> {
        Self::load(&crate::workspace_root().join(RESULTS_FILE))
    }

    /// The first row of a case, shape and thread count.
    fn find(
        &self,
        case: Case,
        seq: u64,
        n_kv_heads: u64,
        threads: u64,
    ) -> Option<&BenchRow> {
        self.results.iter().find(|r| {
            r.case == case
                && r.seq == seq
                && r.n_kv_heads == n_kv_heads
                && r.threads == threads
        })
    }
}

/// The goals of the fast-attention issue: (case, sequence lengths, limit on ours /
/// PyTorch's time).
const GOALS: [(Case, &[u64], f64); 3] = [
    (Case::PrefillFlash, &[1024, 4096], 0.8),
    (Case::PrefillNaive, &[256, 512, 1024, 2048, 4096], 1.0),
    (Case::Decode, &[4096], 0.8),
];

/// A time in milliseconds with three significant digits.
pub fn fmt_ms(ms: f64) -> String {
    match ms {
        x if x < 1.0 => format!("{x:.3}"),
        x if x < 10.0 => format!("{x:.2}"),
        x if x < 100.0 => format!("{x:.1}"),
        x => format!("{x:.0}"),
    }
}

/// A byte count in GiB (or MiB below one GiB).
pub fn fmt_bytes(bytes: u64) -> String {
    let bytes = bytes as f64;
    let gib = bytes / (1u64 << 30) as f64;
    if gib >= 1.0 {
        format!("{gib:.2} GiB")
    } else {
        format!("{:.0} MiB", bytes / (1u64 << 20) as f64)
    }
}

/// Renders the measurements as the chapter's markdown: a header line, then for chapter
/// 8's run the one-thread prefill table, the two-thread table, the decode and memory lines
/// and the goals table, and for the serving suite's (chapters 13 and 14) the decode table
/// of compressed and paged caches, the read bandwidth and their goals. The book includes
/// the output verbatim (`src/generated/bench-table.md`, `bench-serving-table.md`).
pub fn render_tables(results: &BenchResults) -> String {
    // chapter 8's run, or chapters 13 and 14's (or both)
    let has = |f: fn(Case) -> bool| results.results.iter().any(|r| f(r.case));
    let fast = has(|c| matches!(c, Case::PrefillNaive | Case::PrefillFlash));
    let mut md = String::new();
    if fast {
        md += &format!("<!-- ANCHOR: {HEADLINE_ANCHOR} -->\n");
    }
    let machine = &results.machine;
    md += &format!(
        "Measured by `scripts/bench_compare.py` on {} ({} cores, {}{}{}), torch {}, load average {:.2} before and {:.2} after the run. \
         Times are medians in milliseconds; ratio = ours / PyTorch's, measured in the same run.\n\n",
        machine.cpu,
        machine.cores,
        machine.simd,
        machine
            .simd_used
            .as_ref()
            .map_or(String::new(), |s| format!("; our kernels ran at {s}")),
        machine
            .torch_cpu_capability
            .as_ref()
            .map_or(String::new(), |s| format!(", PyTorch's at {s}")),
        results.torch,
        results.load_average[0],
        results.load_average[1],
    );
    md += &method_note(results);
    if fast {
        md += &fast_tables(results);
    }
    if has(Case::is_serving) {
        md += &serving_table(results);
        md += &bandwidth_note(results);
        md += &serving_goals(results);
        md += &alignment_table(results);
    }
    md
}

/// Chapter 8's part: the one-thread prefill table, the FMA peak, the two-thread table,
/// the decode and memory lines, and the goals table.
fn fast_tables(results: &BenchResults) -> String {
    let mut md = prefill_table(results);
    md += &peak_note(results);
    md += &format!("\n<!-- ANCHOR_END: {HEADLINE_ANCHOR} -->\n");
    md += &steps_table(results);
    md += &two_thread_table(results);
    md += &speedup_table(results);
    if let Some(d) = results.find(Case::Decode, 4096, 4, 1) {
        md += &format!(
            "\n**Decode**, one new token against a KV cache of 4096 positions, GQA 12/4, one thread: ours {} ms, \
             PyTorch SDPA {} ms, ratio {:.2}.\n",
            fmt_ms(d.ours_ms),
            fmt_ms(d.torch_ms),
            d.ratio()
        );
    }
    if let Some(m) = &results.memory {
        md += &format!(
            "\n**Memory** at seq {}, GQA 12/4: the flash path peaks at {} resident (inputs and output alone: {}); \
             the straightforward path would need a `(seq, seq)` f32 score matrix of {} per head, {} for all 12 heads \
             at once as a batched framework holds them.\n",
            m.seq,
            fmt_bytes(m.peak_rss_bytes),
            fmt_bytes(m.inputs_output_bytes),
            fmt_bytes(m.naive_scores_one_head_bytes),
            fmt_bytes(m.naive_scores_all_heads_bytes),
        );
    }
    md += &format!("\n<!-- ANCHOR: {GOALS_ANCHOR} -->\n");
    md += &goals_table(results);
    md += &format!("\n<!-- ANCHOR_END: {GOALS_ANCHOR} -->\n");
    md += &backend_note(results);
    md
}

/// The mdBook anchor around a fast run's header line, one-thread prefill table and FMA
/// peak line: chapter 8 includes `generated/bench-table-zen4.md:headline` to show another
/// machine's run without its every table.
pub const HEADLINE_ANCHOR: &str = "headline";

/// The mdBook anchor around a fast run's goals table (`...:goals`).
pub const GOALS_ANCHOR: &str = "goals";

/// Issue #13's goal for two threads: at least this many times faster than one.
pub const GOAL_SPEEDUP: f64 = 1.8;

/// The (case, sequence length) pairs the two-thread goal is set at: decode at context
/// 32768 (chapter 8's kernel and chapter 16's split-K) and flash prefill at 4096.
const SPEEDUP_GOALS: [(Case, u64); 3] =
    [(Case::Decode, 32768), (Case::DecodeSplitK, 32768), (Case::PrefillFlash, 4096)];

/// The mdBook anchor around the speedup table in the rendered file: chapter 16 includes
/// `generated/bench-table.md:speedups`.
pub const SPEEDUP_ANCHOR: &str = "speedups";

/// Ours on 2 threads against ours on 1 (and PyTorch's), one row per case timed on both,
/// with the decode rows' read rates and the goal where one is set, then one core's read
/// bandwidth when the file has it; empty for files without speedups. Wrapped in mdBook
/// anchor comments (invisible in the page) so that another chapter can include it alone.
fn speedup_table(results: &BenchResults) -> String {
    let Some(speedups) = results.speedups.as_ref().filter(|s| !s.is_empty()) else {
        return String::new();
    };
    let mut md = format!(
        "\n<!-- ANCHOR: {SPEEDUP_ANCHOR} -->\n\n**Threads 2 vs 1**: speedup = the 1-thread \
         median over the 2-thread median, ours and PyTorch's (each measured in the same run); \
         the goal is ≥ {GOAL_SPEEDUP} for decode at context 32768 and flash prefill at 4096. \
         Our decode kernel splits the KV heads between the threads, split-K the cached \
         positions (2 splits, fixed, so that its bits do not depend on the threads).\n\n"
    );
    md += "| case | seq | heads (query/KV) | ours, 1 thread | ours, 2 threads | speedup | GB/s, 1 → 2 threads | PyTorch speedup | goal ≥ 1.8 |\n";
    md += "|:---|---:|:---|---:|---:|---:|---:|---:|:---|\n";
    for s in speedups {
        let (Some(one), Some(two)) = (
            results.find(s.case, s.seq, s.n_kv_heads, 1),
            results.find(s.case, s.seq, s.n_kv_heads, 2),
        ) else {
            continue;
        };
        let goal = if !SPEEDUP_GOALS.contains(&(s.case, s.seq)) {
            ""
        } else if s.speedup >= GOAL_SPEEDUP {
            "yes"
        } else {
            "**no**"
        };
        let theirs = s.torch_speedup.map_or(String::new(), |t| format!("{t:.2}"));
        // decode rows: the rate the cache was read at, to set beside one core's bandwidth
        let rates = match (one.gb_per_s, two.gb_per_s) {
            (Some(a), Some(b)) => format!("{a:.1} → {b:.1}"),
            _ => String::new(),
        };
        md += &format!(
            "| {} | {} | {} | {} | {} | {:.2} | {rates} | {theirs} | {goal} |\n",
            s.case.name(),
            s.seq,
            one.heads(),
            fmt_ms(one.ours_ms),
            fmt_ms(two.ours_ms),
            s.speedup,
        );
    }
    // one core's read bandwidth, when the run measured it
    md += &bandwidth_note(results);
    md + &format!("\n<!-- ANCHOR_END: {SPEEDUP_ANCHOR} -->\n")
}

/// Which backend PyTorch's SDPA dispatched each case to (`torch_backend` of the rows), when
/// the file says: per backend, the cases and their sequence lengths.
fn backend_note(results: &BenchResults) -> String {
    // (backend, case) -> sequence lengths, in the order first met
    let mut groups: Vec<((&str, Case), Vec<u64>)> = Vec::new();
    for r in &results.results {
        let Some(backend) = r.torch_backend.as_deref() else { continue };
        let key = (backend, r.case);
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, seqs)) if !seqs.contains(&r.seq) => seqs.push(r.seq),
            Some(_) => {}
            None => groups.push((key, vec![r.seq])),
        }
    }
    if groups.is_empty() {
        return String::new();
    }
    let parts: Vec<String> = groups
        .iter()
        .map(|((backend, case), seqs)| {
            let seqs: Vec<String> = seqs.iter().map(u64::to_string).collect();
            format!("`{backend}` for {} (seq {})", case.name(), seqs.join(", "))
        })
        .collect();
    format!(
        "\n**PyTorch's SDPA backend**, as its dispatcher picks it for each shape \
         (`torch._fused_sdp_choice`): {}.\n",
        parts.join("; ")
    )
}

/// Megabytes (2²⁰ bytes) with three significant digits.
pub fn fmt_mib(bytes: u64) -> String {
    let mib = bytes as f64 / (1u64 << 20) as f64;
    match mib {
        x if x < 10.0 => format!("{x:.2} MiB"),
        x if x < 100.0 => format!("{x:.1} MiB"),
        x => format!("{x:.0} MiB"),
    }
}

/// The caches of the serving suite, in the order of the table: chapter 8's contiguous
/// f32 cache, then the paged, int8 and int4 ones.
const SERVING_CACHES: [(Case, &str); 4] = [
    (Case::Decode, "f32, contiguous (chapter 8)"),
    (Case::DecodePaged, "f32, paged (blocks of 16)"),
    (Case::DecodeInt8, "int8"),
    (Case::DecodeInt4, "int4 KIVI (G32, R128)"),
];

/// Chapters 13 and 14: one row per context and cache, one thread, GQA 12/4.
fn serving_table(results: &BenchResults) -> String {
    let mut contexts: Vec<u64> = results
        .results
        .iter()
        .filter(|r| r.case.is_serving() && r.threads == 1)
        .map(|r| r.seq)
        .collect();
    contexts.sort_unstable();
    contexts.dedup();
    let mut md = String::from(
        "**Decode from compressed and paged caches**, one new token, GQA 12/4 (head_dim \
         64), one thread. PyTorch SDPA reads the f32 cache of the same shape, measured in \
         the same run; bytes read per token are the bytes of cache one decode step reads, \
         GB/s those bytes over our time.\n\n",
    );
    md += "| context | cache | ours | PyTorch SDPA f32 | ratio | bytes read per token | GB/s |\n";
    md += "|---:|:---|---:|---:|---:|---:|---:|\n";
    for &seq in &contexts {
        for (case, name) in SERVING_CACHES {
            let Some(r) = results.find(case, seq, 4, 1) else { continue };
            let bytes = r.bytes_per_token.map_or("".into(), fmt_mib);
            let rate = r.gb_per_s.map_or("".into(), |g| format!("{g:.1}"));
            md += &format!(
                "| {seq} | {name} | {} | {} | {:.2} | {bytes} | {rate} |\n",
                fmt_ms(r.ours_ms),
                fmt_ms(r.torch_ms),
                r.ratio()
            );
        }
    }
    md
}

/// The anchor of chapter 8's table of the decode kernel on aligned and unaligned rows.
pub const ALIGNMENT_ANCHOR: &str = "alignment";

/// Chapter 8's step 6: the decode kernel on chapter 6's cache (every column on a cache
/// line) and on the same rows 16 bytes into a line, one thread, per context; empty when
/// the run has no `decode_unaligned` rows. Anchored, so that chapter 8 can include it.
fn alignment_table(results: &BenchResults) -> String {
    let mut rows = String::new();
    let unaligned = results.results.iter().filter(|r| r.case == Case::DecodeUnaligned);
    for u in unaligned.filter(|u| u.threads == 1) {
        // the aligned time measured call for call beside it, or else the `decode` row's
        let aligned = u.paired_decode_ms.or_else(|| {
            results.find(Case::Decode, u.seq, u.n_kv_heads, 1).map(|r| r.ours_ms)
        });
        let Some(aligned) = aligned else { continue };
        rows += &format!(
            "| {} | {} | {} | {:.2} |\n",
            u.seq,
            fmt_ms(aligned),
            fmt_ms(u.ours_ms),
            u.ours_ms / aligned
        );
    }
    if rows.is_empty() {
        return rows;
    }
    let level = results.machine.simd_used.as_deref().unwrap_or("its widest level");
    format!(
        "\n<!-- ANCHOR: {ALIGNMENT_ANCHOR} -->\n**Where the cache's columns start**, \
         decode (`DecodeAttention`), one new token, GQA 12/4, one thread, on {} at {level}: \
         median ms on chapter 6's cache, whose every column starts a 64-byte cache line, \
         and on the same rows starting 16 bytes into a line, as in a `DMatrix` of this \
         size (`decode_unaligned`), the two timed call for call in alternation.\n\n\
         | context | columns on cache lines | columns 16 bytes into a line | unaligned / \
         aligned |\n|---:|---:|---:|---:|\n{rows}<!-- ANCHOR_END: {ALIGNMENT_ANCHOR} -->\n",
        results.machine.cpu
    )
}

/// One core's read bandwidth, when the file has it.
fn bandwidth_note(results: &BenchResults) -> String {
    let Some(rates) = &results.machine.read_bandwidth else { return String::new() };
    if rates.is_empty() {
        return String::new();
    }
    let parts: Vec<String> = rates
        .iter()
        .map(|b| format!("{:.1} GB/s on {}", b.gb_per_s, fmt_bytes(b.bytes)))
        .collect();
    format!(
        "\n**One core's read bandwidth** (`attn-bench --bandwidth`: a sum over a buffer \
         read again and again): {}.\n",
        parts.join(", ")
    )
}

/// The contexts the serving goals are set at.
const SERVING_GOAL_CONTEXTS: [u64; 2] = [4096, 32768];

/// The goals of the serving issue, one thread, at the contexts of
/// [`SERVING_GOAL_CONTEXTS`] that were measured: int8 decode within 0.4 × PyTorch SDPA on
/// the f32 cache, paged f32 decode within 1.1 × our contiguous decode.
fn serving_goals(results: &BenchResults) -> String {
    let contexts = SERVING_GOAL_CONTEXTS;
    let worst = |ratio: &dyn Fn(u64) -> Option<f64>| {
        let ratios: Vec<(u64, f64)> =
            contexts.iter().filter_map(|&c| ratio(c).map(|r| (c, r))).collect();
        let worst = ratios.iter().map(|&(_, r)| r).reduce(f64::max)?;
        let seqs: Vec<String> = ratios.iter().map(|(c, _)| c.to_string()).collect();
        Some((worst, seqs.join(", ")))
    };
    let int8 = worst(&|c| results.find(Case::DecodeInt8, c, 4, 1).map(BenchRow::ratio));
    let paged = worst(&|c| {
        let p = results.find(Case::DecodePaged, c, 4, 1)?;
        // the contiguous time measured call for call beside it, or else the `decode` row's
        let d = p
            .paired_decode_ms
            .or_else(|| results.find(Case::Decode, c, 4, 1).map(|d| d.ours_ms))?;
        Some(p.ours_ms / d)
    });
    let mut goals = String::new();
    for (what, found, limit) in [
        ("int8 decode ≤ 0.4 × PyTorch SDPA on the f32 cache", int8, 0.4),
        ("paged f32 decode ≤ 1.1 × our contiguous f32 decode", paged, 1.1),
    ] {
        let Some((worst, seqs)) = found else { continue };
        let met = if worst > limit { "**no**" } else { "yes" };
        goals += &format!("| {what} | context {seqs}, 12/4 | {worst:.2} | {met} |\n");
    }
    if goals.is_empty() {
        return goals;
    }
    format!(
        "\n**Goals**, one thread:\n\n| goal | shapes | worst | met |\n|:---|:---|---:|:---|\n{goals}"
    )
}

/// How the times were taken, when the file says (rounds and spread), and a warning for a
/// run that started on a busy machine; empty for files written before rounds were run.
fn method_note(results: &BenchResults) -> String {
    let mut md = String::new();
    if results.busy {
        md += "The machine was busy when the run started (load above the script's \
               limit): read the ratios with care.\n\n";
    }
    let rounds = results.results.iter().filter_map(|r| r.rounds).max();
    if let Some(n) = rounds {
        let worst = |f: fn(&BenchRow) -> Option<f64>| {
            results.results.iter().filter_map(f).fold(0.0_f64, f64::max) * 100.0
        };
        md += &format!(
            "Each time is the fastest of {n} interleaved rounds' medians (ours, then PyTorch, \
             {n} times); the slowest round was at most {:.0} % slower for ours and {:.0} % for \
             PyTorch's.\n\n",
            worst(|r| r.ours_spread),
            worst(|r| r.torch_spread)
        );
    }
    md
}

/// The flash kernel's achieved rate beside the core's FMA peak (one thread, GQA 12/4),
/// when the file has the peak: `4 · n_heads · head_dim · seq·(seq+1)/2` flops, the two
/// products over the visible query-key pairs.
fn peak_note(results: &BenchResults) -> String {
    let Some(peak) = results.machine.fma_peak_gflops else { return String::new() };
    let mut parts = Vec::new();
    for seq in [1024, 4096] {
        if let Some(gflops) =
            results.find(Case::PrefillFlash, seq, 4, 1).and_then(BenchRow::gflops)
        {
            parts.push(format!(
                "{gflops:.0} GFLOP/s at seq {seq} ({:.0} % of peak)",
                100.0 * gflops / peak
            ));
        }
    }
    if parts.is_empty() {
        return String::new();
    }
    format!(
        "\n**Against the core's FMA peak** ({peak:.0} GFLOP/s, measured by `attn-bench --peak` \
         on one thread): the flash kernel's products ran at {}, GQA 12/4, one thread.\n",
        parts.join(" and ")
    )
}

/// The steps of chapter 8's table, in the order the chapter tells them: (case, what it
/// is). `{before}` is replaced by the earlier commit's short hash.
const STEPS: [(Case, &str); 7] = [
    (Case::PrefillNaive, "straightforward: the whole score matrix per head, `f32::exp`"),
    (Case::PrefillNaiveFastExp, "straightforward with the fast, vectorised `exp`"),
    (
        Case::PrefillFlashBefore,
        "flash as of commit {before}: 128 × 512 tiles, products through nalgebra's `gemm` \
         (`matrixmultiply`, at AVX-512 where the CPU has it, whatever `ATTENTION_SIMD` says)",
    ),
    (
        Case::PrefillFlashNoSkip,
        "this kernel with no causal skipping: every key tile computed",
    ),
    (
        Case::PrefillFlashBlockSkip,
        "this kernel skipping whole future tiles only, no panel stop",
    ),
    (
        Case::PrefillFlashUnfusedExp,
        "this kernel with `exp` not fused (multiplies, then adds; no `vscalefps`)",
    ),
    (Case::PrefillFlash, "this kernel as shipped: panel stop, fused `exp`"),
];

/// Chapter 8's steps: each form's time (and ratio to PyTorch's, same run), one thread,
/// at the sequence lengths the steps were measured at; empty when the file has none.
fn steps_table(results: &BenchResults) -> String {
    let steps_seqs = |case| -> Vec<u64> {
        let mut seqs: Vec<u64> = results
            .results
            .iter()
            .filter(|r| r.case == case && r.threads == 1)
            .map(|r| r.seq)
            .collect();
        seqs.sort_unstable();
        seqs.dedup();
        seqs
    };
    let seqs = steps_seqs(Case::PrefillFlashNoSkip);
    if seqs.is_empty() {
        return String::new();
    }
    let before =
        results.before.as_ref().map_or("?", |b| &b.commit[..b.commit.len().min(7)]);
    let mut md = String::from(
        "\n**Step by step**, one thread, causal, head_dim 64: each form's median time in ms, \
         and in brackets its ratio to PyTorch's counterpart measured beside it (SDPA for \
         the flash forms, the manual path for the straightforward ones):\n\n| form |",
    );
    let mut rule = String::from("|:---|");
    for &seq in &seqs {
        md += &format!(" seq {seq} MHA 12/12 | seq {seq} GQA 12/4 |");
        rule += "---:|---:|";
    }
    md += &format!("\n{rule}\n");
    for (case, what) in STEPS {
        if !seqs.iter().any(|&seq| results.find(case, seq, 4, 1).is_some()) {
            continue; // e.g. no --before run
        }
        md += &format!("| {} |", what.replace("{before}", &format!("`{before}`")));
        for &seq in &seqs {
            for kv in [12, 4] {
                md += &match results.find(case, seq, kv, 1) {
                    Some(r) => format!(" {} ({:.2}) |", fmt_ms(r.ours_ms), r.ratio()),
                    None => " – |".to_string(),
                };
            }
        }
        md += "\n";
    }
    md
}

/// One thread: both prefill paths side by side, per sequence length and head layout.
fn prefill_table(results: &BenchResults) -> String {
    let mut seqs: Vec<u64> = results
        .results
        .iter()
        .filter(|r| r.case == Case::PrefillFlash)
        .map(|r| r.seq)
        .collect();
    seqs.sort_unstable();
    seqs.dedup();
    let mut md = String::from("**Prefill**, one thread, causal, head_dim 64:\n\n");
    md += "| seq | heads (query/KV) | straightforward | PyTorch manual | ratio | flash | PyTorch SDPA | ratio |\n";
    md += "|---:|:---|---:|---:|---:|---:|---:|---:|\n";
    for &seq in &seqs {
        for kv in [12, 4] {
            let (Some(naive), Some(flash)) = (
                results.find(Case::PrefillNaive, seq, kv, 1),
                results.find(Case::PrefillFlash, seq, kv, 1),
            ) else {
                continue;
            };
            md += &format!(
                "| {seq} | {} | {} | {} | {:.2} | {} | {} | {:.2} |\n",
                naive.heads(),
                fmt_ms(naive.ours_ms),
                fmt_ms(naive.torch_ms),
                naive.ratio(),
                fmt_ms(flash.ours_ms),
                fmt_ms(flash.torch_ms),
                flash.ratio()
            );
        }
    }
    md
}

/// Every two-thread row, in the order measured; empty when there is none.
fn two_thread_table(results: &BenchResults) -> String {
    let two: Vec<&BenchRow> = results.results.iter().filter(|r| r.threads == 2).collect();
    if two.is_empty() {
        return String::new();
    }
    // split-K rows split the keys, not the heads: said only when there are some, so that
    // files without them render as before
    let split_k = two.iter().any(|r| r.case == Case::DecodeSplitK);
    let mut md = format!(
        "\n**Two threads** (our kernels split the heads between the threads{}; PyTorch with `torch.set_num_threads(2)`):\n\n",
        if split_k { ", split-K the cached positions" } else { "" }
    );
    md += "| case | seq | heads (query/KV) | ours | PyTorch SDPA | ratio |\n|:---|---:|:---|---:|---:|---:|\n";
    for r in two {
        // a flagged row is shown, but not as a ratio to believe
        let ratio = match &r.flag {
            Some(why) => format!("({why})"),
            None => format!("{:.2}", r.ratio()),
        };
        md += &format!(
            "| {} | {} | {} | {} | {} | {ratio} |\n",
            r.case.name(),
            r.seq,
            r.heads(),
            fmt_ms(r.ours_ms),
            fmt_ms(r.torch_ms),
        );
    }
    md
}

/// Each goal of [`GOALS`] with measurements: its worst one-thread ratio, and whether it
/// was met.
fn goals_table(results: &BenchResults) -> String {
    let mut goals = String::new();
    for (case, goal_seqs, limit) in GOALS {
        let worst = results
            .results
            .iter()
            .filter(|r| r.case == case && r.threads == 1 && goal_seqs.contains(&r.seq))
            .map(BenchRow::ratio)
            .reduce(f64::max);
        let Some(worst) = worst else {
            continue;
        };
        let what = match case {
            Case::PrefillFlash => "flash prefill ≤ 0.8 × PyTorch SDPA",
            Case::PrefillNaive => "straightforward prefill ≤ 1.0 × PyTorch manual",
            Case::Decode => "decode ≤ 0.8 × PyTorch SDPA",
            _ => continue, // the serving goals have their own table
        };
        let shapes = if case == Case::Decode {
            "context 4096, 12/4".to_string()
        } else {
            let s: Vec<String> = goal_seqs.iter().map(u64::to_string).collect();
            format!("seq {}, 12/12 and 12/4", s.join(", "))
        };
        let met = if worst > limit { "**no**" } else { "yes" };
        goals += &format!("| {what} | {shapes} | {worst:.2} | {met} |\n");
    }
    // the flash kernel's rate against the core's FMA peak, where the file has the peak
    let peak = results.machine.fma_peak_gflops.filter(|&p| p > 0.0);
    let worst_share = results
        .results
        .iter()
        .filter(|r| r.case == Case::PrefillFlash && r.threads == 1)
        .filter(|r| [1024, 4096].contains(&r.seq))
        .filter_map(|r| Some(r.gflops()? / peak?))
        .reduce(f64::min);
    if let Some(share) = worst_share {
        let met = if share < 0.6 { "**no**" } else { "yes" };
        goals += &format!(
            "| flash kernel ≥ 60 % of the FMA peak | seq 1024, 4096, 12/12 and 12/4 | {:.0} % | {met} |\n",
            100.0 * share
        );
    }
    if goals.is_empty() {
        return goals;
    }
    format!(
        "\n**Goals**, one thread:\n\n| goal | shapes | worst | met |\n|:---|:---|---:|:---|\n{goals}"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A results file as `bench_compare.py --quick` writes it (no memory run), with the
    /// given rows.
    fn results(rows: &str) -> BenchResults {
        BenchResults::parse(&format!(
            r#"{{"about": "test", "machine": {{"cpu": "Test CPU", "cores": 2, "simd": "AVX2"}},
                "torch": "2.15.0", "load_average": [0.5, 2.0], "results": [{rows}], "memory": null}}"#
        ))
        .unwrap()
    }

    fn row(case: &str, seq: u64, kv: u64, threads: u64, ours: f64, torch: f64) -> String {
        format!(
            r#"{{"case": "{case}", "seq": {seq}, "n_heads": 12, "n_kv_heads": {kv}, "head_dim": 64,
                 "threads": {threads}, "ours_ms": {ours}, "torch_case": "sdpa", "torch_ms": {torch}}}"#
        )
    }

    #[test]
    fn times_keep_three_significant_digits() {
        assert_eq!(fmt_ms(0.26161), "0.262");
        assert_eq!(fmt_ms(2.6918), "2.69");
        assert_eq!(fmt_ms(43.1598), "43.2");
        assert_eq!(fmt_ms(1020.5531), "1021");
    }

    #[test]
    fn bytes_are_mib_below_one_gib() {
        assert_eq!(fmt_bytes(339_546_112), "324 MiB");
        assert_eq!(fmt_bytes(1 << 30), "1.00 GiB");
        assert_eq!(fmt_bytes(48 << 30), "48.00 GiB");
    }

    #[test]
    fn steps_are_listed_in_the_chapters_order_with_their_ratios() {
        let rows = [
            row("prefill_flash", 1024, 12, 1, 15.0, 20.0),
            row("prefill_flash", 1024, 4, 1, 14.0, 20.0),
            row("prefill_flash_no_skip", 1024, 4, 1, 30.0, 20.0),
            row("prefill_naive", 1024, 4, 1, 60.0, 100.0),
            row("prefill_flash_before", 1024, 4, 1, 21.0, 20.0),
        ];
        let md = render_tables(&results(&rows.join(",")));
        let at =
            |needle: &str| md.find(needle).unwrap_or_else(|| panic!("{needle} in {md}"));
        // the chapter's order, whatever the order measured; a missing shape is a dash
        let naive = at(
            "| straightforward: the whole score matrix per head, `f32::exp` | – | 60.0 (0.60) |\n",
        );
        let before = at("| flash as of commit `?`: 128 × 512 tiles");
        let no_skip = at("every key tile computed | – | 30.0 (1.50) |\n");
        let shipped =
            at("as shipped: panel stop, fused `exp` | 15.0 (0.75) | 14.0 (0.70) |\n");
        assert!(naive < before && before < no_skip && no_skip < shipped, "{md}");
        // steps never measured are left out
        assert!(!md.contains("fast, vectorised"), "{md}");
        // no step rows: no steps table
        let plain =
            render_tables(&results(&row("prefill_flash", 1024, 4, 1, 14.0, 20.0)));
        assert!(!plain.contains("**Step by step**"), "{plain}");
    }

    #[test]
    fn a_prefill_row_needs_both_paths() {
        let r = results(
            &[
                row("prefill_naive", 1024, 4, 1, 50.0, 100.0),
                row("prefill_flash", 1024, 4, 1, 12.0, 24.0),
            ]
            .join(","),
        );
        let md = render_tables(&r);
        assert!(md.starts_with("<!-- ANCHOR: headline -->\nMeasured by `scripts/bench_compare.py` on Test CPU (2 cores, AVX2), torch 2.15.0, load average 0.50 before and 2.00 after the run."), "{md}");
        assert!(
            md.contains(
                "| 1024 | 12/4 (GQA) | 50.0 | 100 | 0.50 | 12.0 | 24.0 | 0.50 |\n"
            ),
            "{md}"
        );
        assert!(
            !md.contains("**Two threads**")
                && !md.contains("**Decode**")
                && !md.contains("**Memory**"),
            "{md}"
        );

        let only_flash = results(&row("prefill_flash", 1024, 12, 1, 12.0, 24.0));
        assert!(
            !render_tables(&only_flash).contains("| 1024 |"),
            "no row without the straightforward path"
        );
    }

    #[test]
    fn goals_say_which_were_met() {
        let r = results(
            &[
                row("prefill_flash", 1024, 12, 1, 7.0, 10.0),
                row("prefill_flash", 4096, 4, 1, 9.0, 10.0),
                row("prefill_flash", 4096, 4, 2, 99.0, 10.0), // two threads: not a goal
                row("prefill_naive", 256, 12, 1, 11.0, 10.0),
                row("decode", 4096, 4, 1, 0.5, 1.0),
            ]
            .join(","),
        );
        let md = render_tables(&r);
        assert!(
            md.contains("| flash prefill ≤ 0.8 × PyTorch SDPA | seq 1024, 4096, 12/12 and 12/4 | 0.90 | **no** |\n"),
            "{md}"
        );
        let met = render_tables(&results(&row("prefill_flash", 1024, 4, 1, 8.0, 10.0)));
        assert!(met.contains("| 0.80 | yes |\n"), "{met}");
        assert!(md.contains("| straightforward prefill ≤ 1.0 × PyTorch manual | seq 256, 512, 1024, 2048, 4096, 12/12 and 12/4 | 1.10 | **no** |\n"), "{md}");
        assert!(
            md.contains(
                "| decode ≤ 0.8 × PyTorch SDPA | context 4096, 12/4 | 0.50 | yes |\n"
            ),
            "{md}"
        );
        assert!(
            md.contains("| prefill_flash | 4096 | 12/4 (GQA) | 99.0 | 10.0 | 9.90 |\n"),
            "{md}"
        );
    }

    #[test]
    fn the_fma_peak_is_said_when_measured() {
        let rows = [row("prefill_flash", 4096, 4, 1, 9.0, 10.0)].join(",");
        let without = render_tables(&results(&rows));
        assert!(!without.contains("FMA peak"), "{without}");
        let mut r = results(&rows);
        r.machine.fma_peak_gflops = Some(200.0);
        let md = render_tables(&r);
        // 4 · 12 · 64 · 4096 · 4097 / 2 flops in 9 ms: 2864 GFLOP/s, 1432 % of 200
        assert!(md.contains("(200 GFLOP/s, measured by `attn-bench --peak`"), "{md}");
        assert!(md.contains("2864 GFLOP/s at seq 4096 (1432 % of peak)"), "{md}");
        assert!(md.contains("| flash kernel ≥ 60 % of the FMA peak | seq 1024, 4096, 12/12 and 12/4 | 1432 % | yes |\n"), "{md}");
        r.machine.fma_peak_gflops = Some(20_000.0);
        let md = render_tables(&r);
        assert!(
            md.contains(
                "of the FMA peak | seq 1024, 4096, 12/12 and 12/4 | 14 % | **no** |\n"
            ),
            "{md}"
        );
    }

    #[test]
    fn rounds_spread_flags_and_a_busy_machine_are_said() {
        let with = |extra: &str, r: String| r.replacen('}', &format!(", {extra}}}"), 1);
        let rounds = r#""rounds": 3, "ours_spread": 0.04, "torch_spread": 0.21"#;
        let rows = [
            with(rounds, row("prefill_flash", 1024, 4, 1, 7.0, 10.0)),
            with(
                &format!(
                    r#"{rounds}, "flag": "PyTorch slower on two threads than on one""#
                ),
                row("prefill_flash", 1024, 4, 2, 4.0, 12.0),
            ),
        ];
        let json = format!(
            r#"{{"about": "t", "machine": {{"cpu": "c", "cores": 2, "simd": "AVX2"}},
                "torch": "t", "load_average": [3.0, 3.0], "busy": true,
                "results": [{}]}}"#,
            rows.join(",")
        );
        let md = render_tables(&BenchResults::parse(&json).unwrap());
        assert!(md.contains("The machine was busy when the run started"), "{md}");
        assert!(md.contains("fastest of 3 interleaved rounds"), "{md}");
        assert!(
            md.contains("at most 4 % slower for ours and 21 % for PyTorch's"),
            "{md}"
        );
        // the flagged two-thread row shows its reason instead of a ratio
        assert!(
            md.contains("| 4.00 | 12.0 | (PyTorch slower on two threads than on one) |"),
            "{md}"
        );
        // a file from before rounds says none of it
        let old = render_tables(&results(&row("prefill_flash", 1024, 4, 1, 7.0, 10.0)));
        assert!(!old.contains("rounds") && !old.contains("busy"), "{old}");
    }

    /// A serving-suite row: a decode case with the bytes its step reads.
    fn serving_row(case: &str, seq: u64, ours: f64, torch: f64, bytes: u64) -> String {
        let gb_per_s = bytes as f64 / (ours * 1e-3) / 1e9;
        row(case, seq, 4, 1, ours, torch).replacen(
            '}',
            &format!(r#", "bytes_per_token": {bytes}, "gb_per_s": {gb_per_s:.2}}}"#),
            1,
        )
    }

    #[test]
    fn the_serving_table_shows_every_cache_and_the_goals() {
        let rows = [
            serving_row("decode", 4096, 0.5, 0.75, 8 << 20),
            serving_row("decode_int8", 4096, 0.25, 0.75, 2_228_224),
            serving_row("decode_int4", 4096, 0.4, 0.75, 1_658_880),
            serving_row("decode_paged", 4096, 0.52, 0.75, 8 << 20),
            serving_row("decode", 32768, 6.0, 11.0, 64 << 20),
            serving_row("decode_int8", 32768, 2.2, 11.0, 17_825_792),
            serving_row("decode_paged", 32768, 6.9, 11.0, 64 << 20),
        ];
        let mut r = results(&rows.join(","));
        let md = render_tables(&r);
        assert!(md.contains("**Decode from compressed and paged caches**"), "{md}");
        assert!(
            md.contains("| 4096 | f32, contiguous (chapter 8) | 0.500 | 0.750 | 0.67 | 8.00 MiB | 16.8 |\n"),
            "{md}"
        );
        assert!(
            md.contains("| 4096 | int8 | 0.250 | 0.750 | 0.33 | 2.12 MiB | 8.9 |\n"),
            "{md}"
        );
        assert!(md.contains("| 32768 | f32, paged (blocks of 16) | 6.90 | 11.0 | 0.63 | 64.0 MiB | 9.7 |\n"), "{md}");
        // rows in the order of the caches, 4096 before 32768; no int4 row at 32768
        let at =
            |needle: &str| md.find(needle).unwrap_or_else(|| panic!("{needle}: {md}"));
        assert!(at("| 4096 | f32, paged") < at("| 4096 | int8 |"));
        assert!(at("| 4096 | int4 KIVI") < at("| 32768 | f32, contiguous"));
        assert!(!md.contains("| 32768 | int4"), "{md}");
        // goals: int8 0.33 and 0.20 of PyTorch's; paged 1.04 and 1.15 of our contiguous
        assert!(
            md.contains("| int8 decode ≤ 0.4 × PyTorch SDPA on the f32 cache | context 4096, 32768, 12/4 | 0.33 | yes |\n"),
            "{md}"
        );
        assert!(
            md.contains("| paged f32 decode ≤ 1.1 × our contiguous f32 decode | context 4096, 32768, 12/4 | 1.15 | **no** |\n"),
            "{md}"
        );
        // chapter 8's parts are not there, and its goals table is not either
        for absent in ["**Prefill**", "**Decode**,", "flash prefill", "read bandwidth"] {
            assert!(!md.contains(absent), "{absent}: {md}");
        }
        r.machine.read_bandwidth = Some(vec![
            Bandwidth { bytes: 8 << 20, gb_per_s: 31.25 },
            Bandwidth { bytes: 1 << 30, gb_per_s: 11.04 },
        ]);
        let md = render_tables(&r);
        assert!(
            md.contains(
                "read again and again): 31.2 GB/s on 8 MiB, 11.0 GB/s on 1.00 GiB.\n"
            ),
            "{md}"
        );
        // no decode_unaligned rows: no alignment table
        assert!(!md.contains(ALIGNMENT_ANCHOR), "{md}");
    }

    #[test]
    fn the_alignment_table_pairs_each_context_aligned_and_not() {
        // at 4096 the paired time (0.45, measured beside it) is used, not decode's row
        let paired = |row: String, ms: f64| {
            row.replacen('}', &format!(r#", "paired_decode_ms": {ms}}}"#), 1)
        };
        let rows = [
            serving_row("decode", 4096, 0.4, 0.75, 8 << 20),
            paired(serving_row("decode_unaligned", 4096, 0.5, 0.8, 8 << 20), 0.45),
            serving_row("decode", 32768, 6.0, 11.0, 64 << 20),
            serving_row("decode_unaligned", 32768, 6.6, 11.0, 64 << 20),
            paired(serving_row("decode_paged", 32768, 6.9, 11.0, 64 << 20), 6.5),
        ];
        let md = render_tables(&results(&rows.join(",")));
        let table = md
            .split(&format!("<!-- ANCHOR: {ALIGNMENT_ANCHOR} -->\n"))
            .nth(1)
            .and_then(|rest| rest.split("<!-- ANCHOR_END").next())
            .unwrap_or_else(|| panic!("no alignment table: {md}"));
        assert!(table.contains("on Test CPU at its widest level:"), "{table}");
        // ours only, unaligned over aligned; the main table has no unaligned row
        assert!(table.contains("| 4096 | 0.450 | 0.500 | 1.11 |\n"), "{table}");
        assert!(table.contains("| 32768 | 6.00 | 6.60 | 1.10 |\n"), "{table}");
        assert!(!md.contains("16 bytes into a cache line |"), "{md}");
        // the paged goal divides by the paired time too: 6.9 / 6.5, not 6.9 / 6.0
        assert!(
            md.contains(
                "× our contiguous f32 decode | context 32768, 12/4 | 1.06 | yes |"
            ),
            "{md}"
        );
    }

    #[test]
    fn chapter_8s_run_has_no_serving_part() {
        let md = render_tables(&results(
            &[
                row("prefill_flash", 1024, 4, 1, 7.0, 10.0),
                row("decode", 4096, 4, 1, 0.5, 1.0),
            ]
            .join(","),
        ));
        assert!(
            md.contains("**Decode**,") && !md.contains("compressed and paged"),
            "{md}"
        );
    }

    #[test]
    fn speedups_render_as_threads_2_vs_1_with_the_goal() {
        let with = |extra: &str, r: String| r.replacen('}', &format!(", {extra}}}"), 1);
        let split = r#""splits": 2"#;
        let rows = [
            row("prefill_flash", 4096, 4, 1, 200.0, 370.0),
            row("prefill_flash", 4096, 4, 2, 125.0, 190.0),
            row("decode", 4096, 4, 1, 0.3, 0.5),
            row("decode", 4096, 4, 2, 0.28, 0.3),
            serving_row("decode", 32768, 6.0, 11.0, 64 << 20),
            serving_row("decode", 32768, 3.1, 6.0, 64 << 20)
                .replace(r#""threads": 1"#, r#""threads": 2"#),
            with(split, row("decode_split_k", 32768, 4, 1, 6.2, 11.0)),
            with(split, row("decode_split_k", 32768, 4, 2, 3.0, 6.0)),
        ];
        let speedups = r#"[
            {"case": "prefill_flash", "seq": 4096, "n_kv_heads": 4, "speedup": 1.6, "torch_speedup": 1.947},
            {"case": "decode", "seq": 4096, "n_kv_heads": 4, "speedup": 1.071, "torch_speedup": 1.667},
            {"case": "decode", "seq": 32768, "n_kv_heads": 4, "speedup": 1.935, "torch_speedup": 1.833},
            {"case": "decode_split_k", "seq": 32768, "n_kv_heads": 4, "speedup": 2.067}]"#;
        let json = format!(
            r#"{{"about": "t", "machine": {{"cpu": "c", "cores": 2, "simd": "AVX-512",
                "torch_cpu_capability": "AVX2"}}, "torch": "t", "load_average": [0.1, 0.2],
                "results": [{}], "speedups": {speedups}}}"#,
            rows.join(",")
        );
        let md = render_tables(&BenchResults::parse(&json).unwrap());
        assert!(md.contains("(2 cores, AVX-512, PyTorch's at AVX2), torch t"), "{md}");
        assert!(md.contains("\n<!-- ANCHOR: speedups -->\n\n**Threads 2 vs 1**"), "{md}");
        assert!(md.contains("\n<!-- ANCHOR_END: speedups -->\n"), "{md}");
        // the headline (header and one-thread prefill table) and the goals table, each
        // inside its own anchor, for chapter 8 to include from another machine's run
        let at =
            |needle: &str| md.find(needle).unwrap_or_else(|| panic!("{needle}: {md}"));
        assert!(md.starts_with("<!-- ANCHOR: headline -->\nMeasured by"), "{md}");
        assert!(at("**Prefill**") < at("\n\n<!-- ANCHOR_END: headline -->\n"), "{md}");
        assert!(at("ANCHOR_END: headline") < at("**Two threads**"), "{md}");
        assert!(at("**Decode**") < at("\n<!-- ANCHOR: goals -->\n\n**Goals**"), "{md}");
        assert!(at("|\n\n<!-- ANCHOR_END: goals -->\n") > at("**Goals**"), "{md}");
        // the goal where one is set (flash prefill 4096, decode 32768), blank elsewhere
        for line in [
            "| prefill_flash | 4096 | 12/4 (GQA) | 200 | 125 | 1.60 |  | 1.95 | **no** |\n",
            "| decode | 4096 | 12/4 (GQA) | 0.300 | 0.280 | 1.07 |  | 1.67 |  |\n",
            // 64 MiB in 6 and 3.1 ms
            "| decode | 32768 | 12/4 (GQA) | 6.00 | 3.10 | 1.94 | 11.2 → 21.6 | 1.83 | yes |\n",
            // no PyTorch speedup in the file: an empty cell
            "| decode_split_k | 32768 | 12/4 (GQA) | 6.20 | 3.00 | 2.07 |  |  | yes |\n",
        ] {
            assert!(md.contains(line), "{line}: {md}");
        }
        // split-K rows are among the two-thread rows, and the header says what they split
        assert!(
            md.contains("between the threads, split-K the cached positions;"),
            "{md}"
        );
        assert!(
            md.contains("| decode_split_k | 32768 | 12/4 (GQA) | 3.00 | 6.00 | 0.50 |")
        );
        assert!(!md.contains("read bandwidth"), "{md}");
        // one core's read bandwidth, inside the anchor, when the run measured it
        let mut r = BenchResults::parse(&json).unwrap();
        r.machine.read_bandwidth =
            Some(vec![Bandwidth { bytes: 64 << 20, gb_per_s: 25.0 }]);
        let md = render_tables(&r);
        let note = md.find("read again and again): 25.0 GB/s on 64 MiB.").unwrap();
        assert!(note < md.find("ANCHOR_END: speedups").unwrap(), "{md}");
    }

    #[test]
    fn files_without_speedups_or_backends_render_as_before() {
        let rows = [
            row("prefill_flash", 4096, 4, 1, 200.0, 370.0),
            row("prefill_flash", 4096, 4, 2, 125.0, 190.0),
        ];
        let md = render_tables(&results(&rows.join(",")));
        for absent in [
            "ANCHOR: speedups",
            "Threads 2 vs 1",
            "split-K",
            "SDPA backend",
            "PyTorch's at",
        ] {
            assert!(!md.contains(absent), "{absent}: {md}");
        }
        assert!(md.contains("(our kernels split the heads between the threads; PyTorch"));
        // an empty list is no table either
        let mut r = results(&rows.join(","));
        r.speedups = Some(Vec::new());
        assert!(!render_tables(&r).contains("Threads 2 vs 1"));
    }

    #[test]
    fn the_sdpa_backend_is_said_per_case() {
        let with = |extra: &str, r: String| r.replacen('}', &format!(", {extra}}}"), 1);
        let (flash, math) =
            (r#""torch_backend": "FLASH_ATTENTION""#, r#""torch_backend": "MATH""#);
        let rows = [
            with(flash, row("prefill_flash", 1024, 12, 1, 7.0, 10.0)),
            with(flash, row("prefill_flash", 4096, 12, 1, 90.0, 100.0)),
            with(flash, row("prefill_flash", 4096, 12, 2, 50.0, 60.0)),
            with(math, row("decode", 4096, 4, 1, 0.5, 1.0)),
        ];
        let md = render_tables(&results(&rows.join(",")));
        assert!(
            md.contains(
                "(`torch._fused_sdp_choice`): `FLASH_ATTENTION` for prefill_flash (seq 1024, \
                 4096); `MATH` for decode (seq 4096).\n"
            ),
            "{md}"
        );
    }

    #[test]
    fn a_row_of_an_unknown_case_is_refused_by_name() {
        let json = format!(
            r#"{{"about": "", "machine": {{"cpu": "c", "cores": 1, "simd": "SSE2"}}, "torch": "t",
                "load_average": [0, 0], "results": [{}]}}"#,
            row("prefill_fast", 16, 4, 1, 1.0, 1.0)
        );
        let err = BenchResults::parse(&json).unwrap_err().to_string();
        assert!(err.contains("prefill_fast"), "{err}");
    }
}
