//! `attn-bench`: times the crate's attention paths and prints one JSON object per line.
//!
//! ```text
//! attn-bench                 the goal's cases (prefill seq 256..4096, MHA 12/12 and GQA 12/4;
//!                            decode from f32, int8, int4 and paged caches at 4096 and 32768,
//!                            and split-K decode in 2 splits)
//! attn-bench --quick         tiny shapes, a few repetitions: a smoke test that finishes in a second
//! attn-bench --memory N      runs only the flash path once at seq N (GQA 12/4) and prints its peak RSS
//! attn-bench --threads T     also time the flash, decode and split-K paths on T threads
//!                            (default: 1 and 2)
//! attn-bench --seq N         only the cases of sequence (or context) length N
//! attn-bench --case NAME     only prefill_naive, prefill_flash, decode, decode_unaligned,
//!                            decode_split_k, decode_int8, decode_int4, decode_paged, or one of chapter 8's
//!                            optimization steps: prefill_naive_fast_exp,
//!                            prefill_flash_block_skip, prefill_flash_no_skip,
//!                            prefill_flash_unfused_exp
//! attn-bench --reps N        exactly N timed calls per case (default: as many as fit in 3 s, at least 5)
//! attn-bench --peak          only the core's FMA peak (one thread): {"case": "fma_peak", "gflops": X, ...}
//! attn-bench --bandwidth     only one core's read bandwidth on buffers of 8 MiB, 64 MiB and 1 GiB
//!                            (with --quick: 1 MiB)
//! ```
//!
//! Each line: `{"case": NAME, "seq": N, "n_heads": H, "n_kv_heads": K, "head_dim": D,
//! "threads": T, "median_ms": X, "simd": "avx512" | "avx2" | "baseline"}`, the last the
//! level the kernels ran with. The steps (one thread): `prefill_naive_fast_exp` is the
//! straightforward path with the fast `exp`, `prefill_flash_block_skip` the flash kernel
//! skipping only whole future tiles (`CausalSkip::Blocks`), `prefill_flash_no_skip`
//! computing every tile (`CausalSkip::None`), `prefill_flash_unfused_exp` without fused
//! multiply-adds in its `exp`. A `prefill_flash*` line also has `"gflops"`, the rate its
//! matrix products achieved (`4 · n_heads · head_dim · seq·(seq+1)/2` flops: the visible
//! query-key pairs, two products of two flops per multiply-add). The decode cases (one new
//! token against a cache of `seq` positions, GQA 12/4) also have `"bytes_per_token"`,
//! the bytes of cache the step reads, and `"gb_per_s"`, those bytes over the median time:
//! `decode` reads chapter 6's contiguous f32 cache (`LayerKvCache`, its columns on cache
//! lines, the buffer on a page) with `DecodeAttention`, `decode_unaligned` the same keys and values with every
//! column starting 16 bytes into a cache line, where a `DMatrix` this large from glibc's
//! allocator starts (one thread),
//! `decode_split_k` the same cache with chapter 16's `SplitKDecodeAttention` in 2 splits
//! (the number of splits fixed, so that its bits do not depend on the threads; its lines
//! say `"splits": 2`), `decode_int8`
//! and `decode_int4` (KIVI: groups of 32, 128 f32 rows) a `QuantizedKvCache` with
//! `QuantizedDecodeAttention`, `decode_paged` a `PagedKvCache` (blocks of 16, the
//! sequence's blocks interleaved with another sequence's) with `PagedDecodeAttention`.
//! On one thread, `decode_unaligned` and `decode_paged` lines also have
//! `"paired_decode_ms"`: the median of `decode`, timed in alternation with the case's own
//! calls (call for call, in the same process), the baseline their ratios divide by.
//! A `--bandwidth` line: `{"case": "bandwidth", "bytes": N, "threads": 1, "gb_per_s": X,
//! "simd": ...}`.
//! `scripts/bench_compare.py` runs this and the same shapes in PyTorch, and writes
//! `src/data/bench-results.json` (chapter 8's cases) or, with `--suite serving`,
//! `src/data/bench-serving-results.json` (the decode cases against PyTorch SDPA on the f32
//! cache). This binary only measures: the book's tables are rendered from those files by
//! the `book-tests` package (`book_tests::bench`, run by its binaries `figures` and
//! `bench-table`).
//!
//! Arguments are parsed with `lexopt`, as in `llama-attn`. Each flag may be given once;
//! numbers are positive integers. Exit codes: 0 success, 1 a failed measurement, 2 bad
//! usage (an unknown or repeated flag, a missing or bad value); every error is one line
//! on stderr.

use std::io::Write;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use attention::fast::decode::DecodeAttention;
use attention::fast::fast_exp::exp_in_place;
use attention::parallel::split_k::SplitKDecodeAttention;
use attention::serving::decode_kernels::{
    PagedDecodeAttention, QuantizedDecodeAttention, read_bandwidth_gb_per_s,
};
use attention::support::aligned::AlignedBuf;
use attention::support::init::splitmix_matrix;
use attention::{
    AttentionInputs, AttnError, CausalSkip, FlashAttention, HeadLayout, KvFormat,
    LayerKvCache, PagedKvCache, QuantizedKvCache, Result, apply_causal_mask,
    grouped_attention,
};
use nalgebra::{DMatrix, DMatrixView};

const HEAD_DIM: usize = 64;
const N_HEADS: usize = 12;

const HELP: &str = "\
attn-bench: time the attention crate's paths; one JSON object per line on stdout

Usage:
  attn-bench [--quick] [--threads T] [--seq N] [--case NAME] [--reps N]
  attn-bench --memory N
  attn-bench --peak
  attn-bench --bandwidth [--quick]

Options:
  --quick         tiny shapes and a few repetitions: a smoke test that finishes in a second
  --memory N      only run the flash path once at seq N (GQA 12/4) and print its peak resident memory
  --threads T     also time the flash, decode and split-K paths on T threads [default: 1 and 2]
  --seq N         only the cases of sequence (or context) length N
  --case NAME     only prefill_naive, prefill_flash, decode, decode_unaligned, decode_split_k, decode_int8,
                  decode_int4, decode_paged, or a step of chapter 8's table:
                  prefill_naive_fast_exp, prefill_flash_block_skip, prefill_flash_no_skip,
                  prefill_flash_unfused_exp
  --reps N        exactly N timed calls per case [default: as many as fit in 3 s, at least 5]
  --peak          only measure the core's FMA peak (one thread, f32, no memory traffic) in GFLOP/s
  --bandwidth     only measure one core's read bandwidth (8 MiB, 64 MiB and 1 GiB buffers; with
                  --quick 1 MiB) in GB/s
  -h, --help      print this help

Each flag may be given once; N and T are positive integers.
Exit status: 0 on success, 1 when a measurement fails, 2 on bad usage.";

/// Which path a measurement is of.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Case {
    PrefillNaive,
    PrefillFlash,
    /// The straightforward path with chapter 8's fast `exp` in its softmax.
    PrefillNaiveFastExp,
    /// The flash kernel skipping only whole key tiles (`CausalSkip::Blocks`).
    PrefillFlashBlockSkip,
    /// The flash kernel computing every key tile (`CausalSkip::None`).
    PrefillFlashNoSkip,
    /// The flash kernel with the exponentials' multiply-adds not fused (and, at AVX-512,
    /// without `vscalefps`).
    PrefillFlashUnfusedExp,
    Decode,
    /// [`Case::Decode`] with every column of the keys and values 16 bytes into a line.
    DecodeUnaligned,
    /// Chapter 16's split-K decode on the contiguous f32 cache, in [`SPLITS`] splits.
    DecodeSplitK,
    DecodeInt8,
    DecodeInt4,
    DecodePaged,
}

/// Splits of the `decode_split_k` case: fixed, so that its result is the same bits on 1
/// and on 2 threads.
const SPLITS: usize = 2;

impl Case {
    const ALL: [Case; 12] = [
        Case::PrefillNaive,
        Case::PrefillFlash,
        Case::PrefillNaiveFastExp,
        Case::PrefillFlashBlockSkip,
        Case::PrefillFlashNoSkip,
        Case::PrefillFlashUnfusedExp,
        Case::Decode,
        Case::DecodeUnaligned,
        Case::DecodeSplitK,
        Case::DecodeInt8,
        Case::DecodeInt4,
        Case::DecodePaged,
    ];

    fn name(self) -> &'static str {
        match self {
            Case::PrefillNaive => "prefill_naive",
            Case::PrefillFlash => "prefill_flash",
            Case::PrefillNaiveFastExp => "prefill_naive_fast_exp",
            Case::PrefillFlashBlockSkip => "prefill_flash_block_skip",
            Case::PrefillFlashNoSkip => "prefill_flash_no_skip",
            Case::PrefillFlashUnfusedExp => "prefill_flash_unfused_exp",
            Case::Decode => "decode",
            Case::DecodeUnaligned => "decode_unaligned",
            Case::DecodeSplitK => "decode_split_k",
            Case::DecodeInt8 => "decode_int8",
            Case::DecodeInt4 => "decode_int4",
            Case::DecodePaged => "decode_paged",
        }
    }

    /// One new token against a cache (rather than a whole prompt).
    fn is_decode(self) -> bool {
        !self.name().starts_with("prefill")
    }

    /// A form of the flash kernel (its line reports the achieved GFLOP/s).
    fn is_flash(self) -> bool {
        self.name().starts_with("prefill_flash")
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

/// What went wrong, and so which exit code to return.
enum Failure {
    /// Bad command line: exit code 2.
    Usage(String),
    /// A measurement failed: exit code 1.
    Run(AttnError),
    /// The result could not be written (e.g. the reader closed the pipe): exit code 1.
    Write(std::io::Error),
}

impl From<lexopt::Error> for Failure {
    fn from(e: lexopt::Error) -> Self {
        Failure::Usage(e.to_string())
    }
}

impl From<AttnError> for Failure {
    fn from(e: AttnError) -> Self {
        Failure::Run(e)
    }
}

/// The parsed command line.
struct Args {
    quick: bool,
    peak: bool,
    bandwidth: bool,
    memory: Option<usize>,
    threads: Option<usize>,
    seq: Option<usize>,
    case: Option<Case>,
    reps: Option<usize>,
}

/// Stores the value of a flag, or fails if the flag was given before.
fn once<T>(
    slot: &mut Option<T>,
    flag: &str,
    value: T,
) -> std::result::Result<(), Failure> {
    match slot.replace(value) {
        Some(_) => Err(Failure::Usage(format!("{flag} is given more than once"))),
        None => Ok(()),
    }
}

/// The value of a flag as a positive integer, the flag named in the error.
fn positive(
    parser: &mut lexopt::Parser,
    flag: &str,
) -> std::result::Result<usize, Failure> {
    let value = parser.value()?;
    let text = value.to_string_lossy();
    text.parse().ok().filter(|&n| n > 0).ok_or_else(|| {
        Failure::Usage(format!("{flag} needs a positive integer, got `{text}`"))
    })
}

/// Parses the command line; `Ok(None)` when `--help` was asked for.
fn parse_args() -> std::result::Result<Option<Args>, Failure> {
    use lexopt::prelude::*;
    let (mut quick, mut memory, mut threads, mut peak) = (None, None, None, None);
    let mut bandwidth = None;
    let (mut seq, mut case, mut reps) = (None, None, None);
    let mut parser = lexopt::Parser::from_env();
    while let Some(arg) = parser.next()? {
        match arg {
            Long("quick") => once(&mut quick, "--quick", ())?,
            Long("peak") => once(&mut peak, "--peak", ())?,
            Long("bandwidth") => once(&mut bandwidth, "--bandwidth", ())?,
            Long("memory") => {
                once(&mut memory, "--memory", positive(&mut parser, "--memory")?)?
            }
            Long("threads") => {
                once(&mut threads, "--threads", positive(&mut parser, "--threads")?)?
            }
            Long("seq") => once(&mut seq, "--seq", positive(&mut parser, "--seq")?)?,
            Long("case") => {
                let value = parser.value()?;
                let name = value.to_string_lossy();
                let found = Case::ALL.into_iter().find(|c| c.name() == name).ok_or_else(
                    || {
                        let names: Vec<&str> =
                            Case::ALL.iter().map(|c| c.name()).collect();
                        Failure::Usage(format!(
                            "unknown case `{name}`: {}",
                            names.join(", ")
                        ))
                    },
                )?;
                once(&mut case, "--case", found)?;
            }
            Long("reps") => once(&mut reps, "--reps", positive(&mut parser, "--reps")?)?,
            Short('h') | Long("help") => return Ok(None),
            _ => return Err(arg.unexpected().into()),
        }
    }
    let (quick, peak, bandwidth) = (quick.is_some(), peak.is_some(), bandwidth.is_some());
    Ok(Some(Args { quick, peak, bandwidth, memory, threads, seq, case, reps }))
}

fn main() -> ExitCode {
    let result = parse_args().and_then(|args| match args {
        None => {
            // `writeln!`, not `println!`: a closed stdout (`attn-bench --help | head -1`)
            // is no reason to panic
            let _ = writeln!(std::io::stdout(), "{HELP}");
            Ok(())
        }
        Some(args) => run(&args),
    });
    // one line per error, whatever the message contained
    let one_line = |m: String| m.split_whitespace().collect::<Vec<_>>().join(" ");
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Usage(m)) => {
            eprintln!("attn-bench: error: {} (try --help)", one_line(m));
            ExitCode::from(2)
        }
        Err(Failure::Run(e)) => {
            eprintln!("attn-bench: error: {}", one_line(e.to_string()));
            ExitCode::from(1)
        }
        Err(Failure::Write(e)) => {
            // the reader is gone (`attn-bench | head -1`): say so, without a panic
            let _ =
                writeln!(std::io::stderr(), "attn-bench: cannot write the results: {e}");
            ExitCode::from(1)
        }
    }
}

/// Runs the memory run, or times every case the arguments select and prints one line per
/// case.
fn run(args: &Args) -> std::result::Result<(), Failure> {
    if let Some(seq) = args.memory {
        return memory_run(seq);
    }
    if args.peak {
        let gflops = attention::fast::simd::fma_peak_gflops(Duration::from_millis(500));
        return writeln!(
            std::io::stdout(),
            "{{\"case\": \"fma_peak\", \"threads\": 1, \"gflops\": {gflops:.1}, \"simd\": \"{}\"}}",
            simd_name()
        )
        .map_err(Failure::Write);
    }
    if args.bandwidth {
        // the f32 caches of the decode cases (8 MiB at 4096 positions, 64 MiB at 32768),
        // and a buffer larger than most processors' last cache; --quick: one small one
        let (sizes, time) = if args.quick {
            (vec![1 << 20], Duration::from_millis(20))
        } else {
            (vec![8 << 20, 64 << 20, 1 << 30], Duration::from_millis(500))
        };
        for bytes in sizes {
            let gb_per_s = read_bandwidth_gb_per_s(bytes, time)?;
            writeln!(
                std::io::stdout(),
                "{{\"case\": \"bandwidth\", \"bytes\": {bytes}, \"threads\": 1, \"gb_per_s\": {gb_per_s:.2}, \"simd\": \"{}\"}}",
                simd_name()
            )
            .map_err(Failure::Write)?;
        }
        return Ok(());
    }
    let mut thread_counts = vec![1, args.threads.unwrap_or(2)];
    thread_counts.dedup();
    let (prefill_seqs, decode_ctx, budget) = if args.quick {
        (
            vec![16, 70],
            vec![33, 300],
            Budget { time: Duration::from_millis(20), min_reps: 2, max_reps: 5 },
        )
    } else {
        (
            vec![256, 512, 1024, 2048, 4096],
            vec![4096, 32768],
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
            // the steps of chapter 8's table of optimizations, one thread
            for case in [
                Case::PrefillNaiveFastExp,
                Case::PrefillFlashBlockSkip,
                Case::PrefillFlashNoSkip,
                Case::PrefillFlashUnfusedExp,
            ] {
                shapes.push(Shape { case, seq, n_kv_heads, threads: 1 });
            }
        }
    }
    for &seq in &decode_ctx {
        for case in [
            Case::Decode,
            Case::DecodeUnaligned,
            Case::DecodeSplitK,
            Case::DecodeInt8,
            Case::DecodeInt4,
            Case::DecodePaged,
        ] {
            for &threads in &thread_counts {
                if case == Case::DecodeUnaligned && threads > 1 {
                    continue; // a one-thread comparison with `decode`
                }
                shapes.push(Shape { case, seq, n_kv_heads: 4, threads });
            }
        }
    }
    let budget = match args.reps {
        Some(n) => Budget { time: Duration::ZERO, min_reps: n, max_reps: n },
        None => budget,
    };
    shapes.retain(|s| {
        args.seq.is_none_or(|n| s.seq == n) && args.case.is_none_or(|c| c == s.case)
    });
    for shape in &shapes {
        let Measured { ms, bytes, paired_decode_ms } = measure(shape, &budget)?;
        // the flash kernel's achieved rate: 4 flops per visible query-key pair and dim
        let gflops = if shape.case.is_flash() {
            let pairs = shape.seq as f64 * (shape.seq as f64 + 1.0) / 2.0;
            let flops = 4.0 * (N_HEADS * HEAD_DIM) as f64 * pairs;
            format!(", \"gflops\": {:.1}", flops / (ms * 1e-3) / 1e9)
        } else if let Some(bytes) = bytes {
            // a decode step: the bytes of cache it reads, and the rate it read them at
            let gb_per_s = bytes as f64 / (ms * 1e-3) / 1e9;
            format!(", \"bytes_per_token\": {bytes}, \"gb_per_s\": {gb_per_s:.2}")
        } else {
            String::new()
        };
        // a split-K line says its (fixed) number of splits
        let mut splits = match shape.case {
            Case::DecodeSplitK => format!(", \"splits\": {SPLITS}"),
            _ => String::new(),
        };
        if let Some(paired) = paired_decode_ms {
            splits += &format!(", \"paired_decode_ms\": {paired:.4}");
        }
        // `writeln!`, not `println!`: a closed stdout is an error to report, not a panic
        writeln!(
            std::io::stdout(),
            "{{\"case\": \"{}\", \"seq\": {}, \"n_heads\": {N_HEADS}, \"n_kv_heads\": {}, \"head_dim\": {HEAD_DIM}, \"threads\": {}, \"median_ms\": {:.4}{splits}{gflops}, \"simd\": \"{}\"}}",
            shape.case.name(),
            shape.seq,
            shape.n_kv_heads,
            shape.threads,
            ms,
            simd_name()
        )
        .map_err(Failure::Write)?;
    }
    Ok(())
}

/// The SIMD level the fast kernels ran with (`ATTENTION_SIMD` may cap the CPU's): a
/// result names the code that produced it.
fn simd_name() -> &'static str {
    match attention::fast::simd::simd_level() {
        attention::fast::simd::SimdLevel::Avx512 => "avx512",
        attention::fast::simd::SimdLevel::Avx2 => "avx2",
        attention::fast::simd::SimdLevel::Baseline => "baseline",
    }
}

/// Random inputs `(q, k, v)` for `n_queries` queries over `n_keys` keys.
fn inputs(
    n_queries: usize,
    n_keys: usize,
    n_kv_heads: usize,
) -> (DMatrix<f32>, DMatrix<f32>, DMatrix<f32>) {
    (
        splitmix_matrix(1, n_queries, N_HEADS * HEAD_DIM, 1.0),
        splitmix_matrix(2, n_keys, n_kv_heads * HEAD_DIM, 1.0),
        splitmix_matrix(3, n_keys, n_kv_heads * HEAD_DIM, 1.0),
    )
}

/// The caches the decode cases read, holding the same keys and values.
enum DecodeCache {
    /// None: the prefill cases read the `k` and `v` matrices themselves.
    None,
    /// Chapter 6's contiguous f32 cache, which `decode` and `decode_split_k` read as a
    /// server would: its columns start on cache lines.
    F32(LayerKvCache),
    /// The same rows where a `DMatrix` this large from glibc's `mmap` path puts them:
    /// 16 bytes into a cache line, and so every column too (see [`unaligned_copy`]).
    Unaligned(AlignedBuf, AlignedBuf),
    Quantized(QuantizedKvCache),
    /// The pool and the measured sequence.
    Paged(PagedKvCache, attention::SeqId),
}

impl DecodeCache {
    /// The cache of `case` holding `k` and `v` (`(seq, n_kv_heads · head_dim)`).
    fn new(
        case: Case,
        k: &DMatrix<f32>,
        v: &DMatrix<f32>,
        heads: HeadLayout,
    ) -> Result<Self> {
        let seq = k.nrows();
        let quantized = |format| -> Result<Self> {
            let mut cache = QuantizedKvCache::for_heads(format, 1, seq, heads)?;
            cache.append(0, std::slice::from_ref(k), std::slice::from_ref(v))?;
            Ok(DecodeCache::Quantized(cache))
        };
        match case {
            Case::Decode | Case::DecodeSplitK => {
                Ok(DecodeCache::F32(f32_cache(k, v, heads)?))
            }
            Case::DecodeUnaligned => {
                let (keys, values) = (unaligned_copy(k)?, unaligned_copy(v)?);
                Ok(DecodeCache::Unaligned(keys, values))
            }
            Case::DecodeInt8 => quantized(KvFormat::Int8),
            Case::DecodeInt4 => quantized(KvFormat::KIVI),
            Case::DecodePaged => {
                // blocks of 16, the measured sequence's blocks interleaved with another
                // sequence's, as a server's pool hands them out: its table is 0, 2, 4 ...
                let block = attention::DEFAULT_BLOCK_SIZE;
                let mut pool =
                    PagedKvCache::for_heads(2 * seq.div_ceil(block), block, heads)?;
                let (id, other) = (pool.add_sequence(), pool.add_sequence());
                for start in (0..seq).step_by(block) {
                    let n = block.min(seq - start);
                    let (k, v) =
                        (k.rows(start, n).clone_owned(), v.rows(start, n).clone_owned());
                    pool.append(id, start, &k, &v)?;
                    pool.append(other, start, &v, &k)?;
                }
                Ok(DecodeCache::Paged(pool, id))
            }
            _ => Ok(DecodeCache::None),
        }
    }

    /// Bytes of cache one decode step over all `seq` positions reads.
    fn bytes_read(&self, seq: usize, heads: HeadLayout) -> u128 {
        match self {
            DecodeCache::Quantized(cache) => {
                QuantizedDecodeAttention::bytes_read(cache, seq)
            }
            // every f32 key and value once
            DecodeCache::None
            | DecodeCache::F32(_)
            | DecodeCache::Unaligned(..)
            | DecodeCache::Paged(..) => PagedDecodeAttention::bytes_read(seq, heads),
        }
    }
}

/// Chapter 6's cache holding `k` and `v` (one sequence, capacity `k.nrows()`): what
/// `decode` reads, and what the paired cases time beside their own.
fn f32_cache(
    k: &DMatrix<f32>,
    v: &DMatrix<f32>,
    heads: HeadLayout,
) -> Result<LayerKvCache> {
    let mut cache = LayerKvCache::for_heads(1, k.nrows(), heads)?;
    cache.append(0, std::slice::from_ref(k), std::slice::from_ref(v))?;
    Ok(cache)
}

/// Where [`Case::DecodeUnaligned`]'s matrix starts in its buffer: 4 floats, 16 bytes,
/// into a cache line.
const UNALIGNED_START: usize = 4;

/// A copy of the column-major `m` whose first float, and so (with `m.nrows()` a multiple
/// of 16) every column's, sits 16 bytes into a cache line, as in a `DMatrix` of the size
/// from glibc's allocator; only where the floats start differs from chapter 6's cache.
fn unaligned_copy(m: &DMatrix<f32>) -> Result<AlignedBuf> {
    let n = m.len();
    let mut buffer = AlignedBuf::try_zeroed("decode_unaligned", &[UNALIGNED_START + n])?;
    buffer[UNALIGNED_START..].copy_from_slice(m.as_slice());
    Ok(buffer)
}

/// The `(seq, ncols)` matrix [`unaligned_copy`] wrote.
fn unaligned_view(buffer: &AlignedBuf, seq: usize) -> DMatrixView<'_, f32> {
    let data = &buffer[UNALIGNED_START..];
    DMatrixView::from_slice(data, seq, data.len() / seq)
}

/// The straightforward path with chapter 8's fast `exp` in place of `f32::exp`, and
/// nothing else changed: per head, `attention_weights`' steps (the whole score matrix by
/// nalgebra's `gemm`, the scale, the causal mask) and `softmax_rows_in_place`'s passes
/// over whole columns, the exponentials by `exp_in_place` (chapter 8's `exp_approx`,
/// dispatched to the CPU's SIMD width), then the product with the values. How much of the flash
/// kernel's gain the fast `exp` alone gives.
fn naive_fast_exp(
    q: &DMatrix<f32>,
    k: DMatrixView<f32>,
    v: DMatrixView<f32>,
    heads: HeadLayout,
    query_offset: usize,
) -> Result<DMatrix<f32>> {
    let d = heads.head_dim();
    let mut context = DMatrix::zeros(q.nrows(), q.ncols());
    let mut scores = DMatrix::zeros(q.nrows(), k.nrows());
    for h in 0..heads.n_heads() {
        let kv = heads.kv_head(h);
        let (q_h, k_h, v_h) =
            (q.columns(h * d, d), k.columns(kv * d, d), v.columns(kv * d, d));
        scores.gemm(1.0, &q_h, &k_h.transpose(), 0.0);
        scores /= (d as f32).sqrt();
        apply_causal_mask(&mut scores, query_offset)?;
        // nalgebra stores column by column: each pass walks whole columns as slices
        let mut max = vec![f32::NEG_INFINITY; q.nrows()];
        for column in scores.as_slice().chunks_exact(q.nrows()) {
            max.iter_mut().zip(column).for_each(|(m, &s)| *m = m.max(s));
        }
        for column in scores.as_mut_slice().chunks_exact_mut(q.nrows()) {
            column.iter_mut().zip(&max).for_each(|(s, &m)| *s -= m); // -inf stays -inf
            exp_in_place(column); // 0 for a masked score; at the CPU's SIMD width
        }
        let mut sum = vec![0.0_f32; q.nrows()];
        for column in scores.as_slice().chunks_exact(q.nrows()) {
            sum.iter_mut().zip(column).for_each(|(l, &w)| *l += w);
        }
        for column in scores.as_mut_slice().chunks_exact_mut(q.nrows()) {
            column.iter_mut().zip(&sum).for_each(|(w, &l)| *w /= l);
        }
        context.columns_mut(h * d, d).copy_from(&(&scores * v_h));
    }
    Ok(context)
}

/// What [`measure`] found for one shape.
struct Measured {
    /// The median time of one call, in milliseconds.
    ms: f64,
    /// For a decode case, the bytes of cache a call reads.
    bytes: Option<u128>,
    /// For `decode_unaligned` and `decode_paged` on one thread: the median of `decode`
    /// (chapter 6's aligned cache, the same keys and values), timed in alternation with
    /// the case's own calls in this process, so that a ratio of the two sees the same
    /// machine state. Two cases timed seconds apart on a shared machine can differ by
    /// 20 % or more with nothing changed.
    paired_decode_ms: Option<f64>,
}

/// The median time of one call, in milliseconds, after one warm-up call, and for a
/// decode case the bytes of cache a call reads.
fn measure(shape: &Shape, budget: &Budget) -> Result<Measured> {
    let n_queries = if shape.case.is_decode() { 1 } else { shape.seq };
    let (q, k, v) = inputs(n_queries, shape.seq, shape.n_kv_heads);
    let query_offset = shape.seq - n_queries;
    let heads = HeadLayout::new(N_HEADS, shape.n_kv_heads, HEAD_DIM)?;
    let mut out = DMatrix::zeros(n_queries, N_HEADS * HEAD_DIM);
    let flash = FlashAttention::with_threads(shape.threads)?;
    let mut flash = match shape.case {
        Case::PrefillFlashBlockSkip => flash.with_causal_skip(CausalSkip::Blocks),
        Case::PrefillFlashNoSkip => flash.with_causal_skip(CausalSkip::None),
        Case::PrefillFlashUnfusedExp => flash.with_fused_exp(false),
        _ => flash,
    };
    let mut decode = DecodeAttention::with_threads(shape.threads)?;
    let mut quantized = QuantizedDecodeAttention::with_threads(shape.threads)?;
    let mut paged = PagedDecodeAttention::with_threads(shape.threads)?;
    let mut split_k = SplitKDecodeAttention::new(SPLITS, shape.threads)?;
    let cache = DecodeCache::new(shape.case, &k, &v, heads)?;
    let (kv, vv) = match &cache {
        DecodeCache::F32(c) => (c.keys(0)?, c.values(0)?),
        DecodeCache::Unaligned(keys, values) => {
            (unaligned_view(keys, shape.seq), unaligned_view(values, shape.seq))
        }
        _ => (k.as_view(), v.as_view()),
    };
    let mut call = || -> Result<()> {
        match shape.case {
            Case::PrefillNaive => {
                out = grouped_attention(&q, kv, vv, heads, query_offset)?;
                Ok(())
            }
            Case::PrefillNaiveFastExp => {
                out = naive_fast_exp(&q, kv, vv, heads, query_offset)?;
                Ok(())
            }
            Case::PrefillFlash
            | Case::PrefillFlashBlockSkip
            | Case::PrefillFlashNoSkip
            | Case::PrefillFlashUnfusedExp => flash.forward_into(
                AttentionInputs { q: &q, k: kv, v: vv, heads, query_offset },
                &mut out,
            ),
            Case::DecodeSplitK => {
                let x = AttentionInputs { q: &q, k: kv, v: vv, heads, query_offset };
                out = split_k.forward(x)?;
                Ok(())
            }
            // a decode case: the kernel that reads the case's cache
            Case::Decode
            | Case::DecodeUnaligned
            | Case::DecodeInt8
            | Case::DecodeInt4
            | Case::DecodePaged => match &cache {
                DecodeCache::Quantized(c) => {
                    quantized.forward_into(&q, c, 0, heads, query_offset, &mut out)
                }
                DecodeCache::Paged(pool, id) => {
                    paged.forward_into(pool, *id, &q, heads, &mut out)
                }
                // the f32 rows, aligned or not, in `kv` and `vv`
                DecodeCache::None | DecodeCache::F32(_) | DecodeCache::Unaligned(..) => {
                    decode.forward_into(
                        AttentionInputs { q: &q, k: kv, v: vv, heads, query_offset },
                        &mut out,
                    )
                }
            },
        }
    };
    // the aligned cache `decode` reads, timed call for call beside this case's
    let paired = matches!(shape.case, Case::DecodeUnaligned | Case::DecodePaged)
        && shape.threads == 1;
    let base_cache = if paired { Some(f32_cache(&k, &v, heads)?) } else { None };
    let mut base_decode = DecodeAttention::new();
    let mut base_out = DMatrix::zeros(1, N_HEADS * HEAD_DIM);
    let mut call_base = |c: &LayerKvCache| -> Result<()> {
        let (k, v) = (c.keys(0)?, c.values(0)?);
        let x = AttentionInputs { q: &q, k, v, heads, query_offset };
        base_decode.forward_into(x, &mut base_out)
    };
    call()?; // warm-up: caches, page faults, scratch buffers
    if let Some(c) = &base_cache {
        call_base(c)?;
    }
    let (mut times, mut base_times) = (Vec::new(), Vec::new());
    let started = Instant::now();
    while times.len() < budget.min_reps
        || (started.elapsed() < budget.time && times.len() < budget.max_reps)
    {
        let t = Instant::now();
        call()?;
        times.push(t.elapsed().as_secs_f64() * 1e3);
        if let Some(c) = &base_cache {
            let t = Instant::now();
            call_base(c)?;
            base_times.push(t.elapsed().as_secs_f64() * 1e3);
        }
    }
    std::hint::black_box((&out, &base_out));
    let median = |mut t: Vec<f64>| {
        t.sort_by(f64::total_cmp);
        t[t.len() / 2]
    };
    let bytes = shape.case.is_decode().then(|| cache.bytes_read(shape.seq, heads));
    let paired_decode_ms = (!base_times.is_empty()).then(|| median(base_times));
    Ok(Measured { ms: median(times), bytes, paired_decode_ms })
}

/// Runs the flash path once at `seq` (GQA 12/4) and prints the process's peak resident
/// memory beside what the straightforward path's score matrices alone would need.
fn memory_run(seq: usize) -> std::result::Result<(), Failure> {
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
    // grouped_attention holds one head's (seq, seq) score matrix at a time, plus a
    // transposed copy of the keys; a framework that batches the heads holds all n_heads
    // of them at once.
    let one_head = (seq * seq * 4) as u64;
    writeln!(
        std::io::stdout(),
        "{{\"case\": \"memory\", \"seq\": {seq}, \"n_heads\": {N_HEADS}, \"n_kv_heads\": {n_kv_heads}, \"head_dim\": {HEAD_DIM}, \"threads\": 1, \"median_ms\": {ms:.1}, \"peak_rss_bytes\": {peak}, \"rss_before_bytes\": {before}, \"inputs_output_bytes\": {}, \"naive_scores_one_head_bytes\": {one_head}, \"naive_scores_all_heads_bytes\": {}}}",
        inputs_bytes + out.len() * 4,
        one_head * N_HEADS as u64
    )
    .map_err(Failure::Write)
}

/// The peak resident set size of this process so far (Linux `getrusage`; 0 where
/// unavailable).
fn peak_rss_bytes() -> u64 {
    // VmHWM in /proc/self/status is the same figure as getrusage's ru_maxrss, without
    // libc.
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
