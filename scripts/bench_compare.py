#!/usr/bin/env python3
"""Times the crate's attention paths and PyTorch's on the same shapes, in one run, and prints the ratios.

Run from the repository root with a Python that has torch (scripts/requirements.txt):

    venv/bin/python scripts/bench_compare.py            # the full comparison, a few minutes
    venv/bin/python scripts/bench_compare.py --quick    # tiny shapes, a smoke test; writes nothing
    venv/bin/python scripts/bench_compare.py --suite serving   # decode from compressed and paged caches

For every case of `attn-bench` (built in release mode; one JSON object per line) it times the same
shape in PyTorch right after ours, on the same number of threads:

    prefill_naive  ours: grouped_attention          PyTorch: softmax(QKᵀ/√d + mask)·V ("manual")
    prefill_flash  ours: FlashAttention              PyTorch: F.scaled_dot_product_attention(is_causal=True)
    decode         ours: DecodeAttention (1 token)   PyTorch: F.scaled_dot_product_attention, 1 query
    decode_split_k ours: SplitKDecodeAttention, 2 splits (chapter 16)   PyTorch: the same as decode

Chapter 8's steps (fast suite, one thread, seq 1024 and 4096): the flash kernel with one
optimization undone (prefill_flash_block_skip: tiles skipped per block only; prefill_flash_no_skip:
every tile computed; prefill_flash_unfused_exp: no fused multiply-adds in exp), the straightforward
path with the fast exp (prefill_naive_fast_exp), and with --before REV the flash kernel of an earlier
commit (built in a worktree under target/, row prefill_flash_before), each against PyTorch in the
same interleaved way.

The fast suite's decode cases run at contexts 4096 and 32768 (the split-K goal's context), on 1 and
2 threads. For every case timed on both, ours 1-thread ms / ours 2-thread ms is printed and written
as "speedups" (issue #13's goal: at least 1.8 for decode at 32768 and prefill at 4096), with
PyTorch's own ratio beside it; one core's read bandwidth (`attn-bench --bandwidth`) is recorded to
read the decode speedups against. Each SDPA row records the backend PyTorch's dispatcher picks for
its shape, "torch_backend": torch._fused_sdp_choice(q, k, v, None, 0.0, is_causal, enable_gqa=...)
mapped through torch.nn.attention.SDPBackend (FLASH_ATTENTION is the CPU flash kernel, MATH the
composite fallback).

--suite serving (chapters 13 and 14) times the decode kernels that read compressed and paged caches,
one thread, contexts 4096 and 32768, GQA 12/4, each against PyTorch SDPA on the f32 cache of the
same shape, interleaved the same way:

    decode         ours: DecodeAttention on the contiguous f32 cache (the baseline of the paged goal)
    decode_unaligned  ours: the same, with every column 16 bytes into a cache line (where a DMatrix
                   of this size starts): what the cache's alignment is worth

decode_unaligned and decode_paged also time `decode` call for call in alternation with their own
calls (attn-bench's "paired_decode_ms", kept from the round whose time is kept), so that the
alignment table and the paged goal compare two kernels under the same machine state.
    decode_int8    ours: QuantizedDecodeAttention on an int8 cache
    decode_int4    ours: QuantizedDecodeAttention on an int4 KIVI cache (groups of 32, 128 rows in f32)
    decode_paged   ours: PagedDecodeAttention on an f32 paged cache (blocks of 16)

and one core's read bandwidth (`attn-bench --bandwidth`). It writes src/data/bench-serving-results.json
and src/generated/bench-serving-table.md, and leaves chapter 8's files alone.

Both sides take the median of as many calls as fit in a few seconds (at least 5), after a warm-up
call, in --rounds interleaved rounds (ours, then PyTorch, again); each side's time is its fastest
round's median, and the spread between rounds is recorded. A two-thread row where PyTorch is slower
than on one thread is flagged as contention. Then it runs `attn-bench --memory 32768` (the flash path once, its peak resident memory).

With --simd avx2 both sides are capped at AVX2, to emulate a CPU without AVX-512: our kernels with
ATTENTION_SIMD=avx2, PyTorch with ATEN_CPU_CAPABILITY=avx2 (ATen's kernels, the CPU flash SDPA among
them), MKL_ENABLE_INSTRUCTIONS=AVX2 (the BLAS under the manual path) and ONEDNN_MAX_CPU_ISA=AVX2.
Those libraries read the variables when they load, so the script starts itself again with them set
before `import torch`, and refuses to run unless torch.backends.cpu.get_cpu_capability() then says
AVX2 (recorded in the machine block as "torch_cpu_capability"). The files are
src/data/bench-results-avx2.json and src/generated/bench-table-avx2.md.

With --tag NAME the files of a second machine are written beside the first's, NAME before the
extension (the Zen 4 runs: --tag zen4, src/data/bench-results-zen4.json,
src/data/bench-results-avx2-zen4.json and, with --suite serving, src/data/bench-serving-results-zen4.json);
book-tests' RUNS lists the committed ones.

It writes src/data/bench-results.json (the measurements) and src/generated/bench-table.md (rendered
from that file by the book-tests binary `bench-table`; the book includes it, and a test checks that
it is exactly the rendering of the JSON), and prints the table; `cargo run -p book-tests --bin figures`
then redraws the speed figure from the new measurements. The machine is shared: it waits (up to
--wait seconds) for the load average to fall below --max-load before starting, and records the load.
"""

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend

ROOT = Path(__file__).resolve().parent.parent
BIN = ROOT / "target" / "release" / "attn-bench"
# Renders a results file as the book's markdown tables: bench-table [--input RESULTS] [--output TABLE]
RENDER = ["cargo", "run", "--quiet", "-p", "book-tests", "--bin", "bench-table", "--"]
# --simd native (the CPU's widest level) or avx2 (our kernels and PyTorch capped at AVX2): each has
# its results file and rendered table, which chapter 8 includes.
OUTPUTS = {
    ("fast", "native"): (ROOT / "src" / "data" / "bench-results.json", ROOT / "src" / "generated" / "bench-table.md"),
    ("fast", "avx2"): (ROOT / "src" / "data" / "bench-results-avx2.json", ROOT / "src" / "generated" / "bench-table-avx2.md"),
    ("serving", "native"): (
        ROOT / "src" / "data" / "bench-serving-results.json",
        ROOT / "src" / "generated" / "bench-serving-table.md",
    ),
    ("serving", "avx2"): (
        ROOT / "src" / "data" / "bench-serving-results-avx2.json",
        ROOT / "src" / "generated" / "bench-serving-table-avx2.md",
    ),
}

# What each suite times: attn-bench's cases, the sequence lengths (contexts) of the full run, and the
# thread counts (None: attn-bench's own, 1 and 2).
SUITES = {
    "fast": {
        "cases": ["prefill_naive", "prefill_flash", "decode", "decode_split_k"],
        "seqs": [256, 512, 1024, 2048, 4096, 32768],  # attn-bench has no prefill at 32768, no decode below 4096
        "threads": None,
        # chapter 8's table of optimization steps: each a form of a path with one step changed, one
        # thread, at these lengths (and --before REV adds the flash kernel of an earlier commit)
        "steps": ["prefill_naive_fast_exp", "prefill_flash_block_skip", "prefill_flash_no_skip", "prefill_flash_unfused_exp"],
        "step_seqs": [1024, 4096],
    },
    "serving": {
        "cases": ["decode", "decode_unaligned", "decode_int8", "decode_int4", "decode_paged"],
        "seqs": [4096, 32768],
        "threads": 1,
    },
}
DECODE_CASES = {"decode", "decode_unaligned", "decode_split_k", "decode_int8", "decode_int4", "decode_paged"}
# What --simd avx2 sets for PyTorch, read when its libraries load: ATen's kernel dispatch (the CPU
# flash SDPA included), MKL's sgemm, oneDNN.
TORCH_AVX2_ENV = {"ATEN_CPU_CAPABILITY": "avx2", "MKL_ENABLE_INSTRUCTIONS": "AVX2", "ONEDNN_MAX_CPU_ISA": "AVX2"}

TIME_BUDGET_S = 3.0  # the same budget attn-bench uses per case
MIN_REPS, MAX_REPS = 5, 200


def median_ms(fn, budget_s, min_reps, max_reps):
    fn()  # warm-up
    times = []
    start = time.perf_counter()
    while len(times) < min_reps or (time.perf_counter() - start < budget_s and len(times) < max_reps):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1e3)
    return statistics.median(times)


def torch_case(case, seq, n_heads, n_kv_heads, head_dim, threads, budget):
    """PyTorch's time for the counterpart of one attn-bench case, in ms, and for an SDPA case the
    backend its dispatcher picks for the shape (an SDPBackend name; None for the manual path)."""
    torch.set_num_threads(threads)
    gen = torch.Generator().manual_seed(seq * 100 + n_kv_heads)
    n_queries = 1 if case in DECODE_CASES else seq
    q = torch.randn(1, n_heads, n_queries, head_dim, generator=gen)
    k = torch.randn(1, n_kv_heads, seq, head_dim, generator=gen)
    v = torch.randn(1, n_kv_heads, seq, head_dim, generator=gen)
    group = n_heads // n_kv_heads
    gqa = n_kv_heads != n_heads
    backend = None
    if case.startswith("prefill_naive"):
        # Raschka's CausalAttention: the mask is a buffer built once, applied with masked_fill
        mask = torch.triu(torch.ones(seq, seq, dtype=torch.bool), diagonal=1)

        def fn():
            kk = k.repeat_interleave(group, dim=1) if gqa else k
            vv = v.repeat_interleave(group, dim=1) if gqa else v
            scores = q @ kk.transpose(-2, -1) / math.sqrt(head_dim)
            scores = scores.masked_fill(mask, float("-inf"))
            return torch.softmax(scores, dim=-1) @ vv

    elif case.startswith("prefill_flash"):

        def fn():
            return F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=gqa)

        backend = sdpa_backend(q, k, v, True, gqa)

    elif case in DECODE_CASES:
        # one query at the last position sees every key: no mask (is_causal=True would align
        # top-left and let it see key 0 only). Our int8, int4 and paged decodes are compared
        # with this same f32 cache: PyTorch's SDPA has no quantized or paged cache.
        def fn():
            return F.scaled_dot_product_attention(q, k, v, enable_gqa=gqa)

        backend = sdpa_backend(q, k, v, False, gqa)
    else:
        raise ValueError(f"unknown case {case!r}")
    with torch.inference_mode():
        return median_ms(fn, *budget), backend


def sdpa_backend(q, k, v, is_causal, gqa):
    """The backend F.scaled_dot_product_attention dispatches to for these inputs (no mask, no
    dropout), as PyTorch's own selection returns it: e.g. FLASH_ATTENTION or MATH."""
    choice = torch._fused_sdp_choice(q, k, v, None, 0.0, is_causal, enable_gqa=gqa)
    return SDPBackend(choice).name


def speedups(results):
    """For every case, context and head layout timed on 1 and on 2 threads: ours 1-thread ms / ours
    2-thread ms (and PyTorch's, beside it)."""
    one = {(r["case"], r["seq"], r["n_kv_heads"]): r for r in results if r["threads"] == 1}
    out = []
    for r in results:
        base = one.get((r["case"], r["seq"], r["n_kv_heads"]))
        if r["threads"] == 2 and base is not None:
            out.append(
                {
                    "case": r["case"],
                    "seq": r["seq"],
                    "n_kv_heads": r["n_kv_heads"],
                    "speedup": round(base["ours_ms"] / r["ours_ms"], 3),
                    "torch_speedup": round(base["torch_ms"] / r["torch_ms"], 3),
                }
            )
    return out


SIMD_CAP = None  # set by --simd avx2


def run_bin(*args, binary=BIN):
    env = dict(os.environ)
    if SIMD_CAP:
        env["ATTENTION_SIMD"] = SIMD_CAP
    out = subprocess.run([str(binary), *args], check=True, capture_output=True, text=True, cwd=ROOT, env=env).stdout
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def git_commit(rev):
    return subprocess.run(["git", "rev-parse", rev], check=True, capture_output=True, text=True, cwd=ROOT).stdout.strip()


def build_before(rev):
    """attn-bench as of commit `rev`, built in a worktree under target/ (its own target dir): the
    "before" row of chapter 8's steps table. Returns the binary's path."""
    src = ROOT / "target" / "before-src"
    if src.exists():  # left by an interrupted run
        subprocess.run(["git", "worktree", "remove", "--force", str(src)], check=True, cwd=ROOT)
    subprocess.run(["git", "worktree", "add", "--detach", str(src), rev], check=True, cwd=ROOT, capture_output=True)
    target = ROOT / "target" / "before"
    cmd = ["cargo", "build", "--quiet", "--release", "-p", "attention", "--bin", "attn-bench", "--target-dir", str(target)]
    try:
        subprocess.run(cmd, check=True, cwd=src)
    finally:
        # the binary stays in target/before; the checkout is not left registered in git
        subprocess.run(["git", "worktree", "remove", "--force", str(src)], check=True, cwd=ROOT)
    return target / "release" / "attn-bench"


def render_table(results, table=None):
    """The book's markdown tables for a results file, rendered by the book-tests binary `bench-table`
    (and written to `table` when given)."""
    args = [*RENDER, "--input", str(results)] + (["--output", str(table)] if table else [])
    out = subprocess.run(args, check=True, stdout=subprocess.PIPE, text=True, cwd=ROOT).stdout
    return Path(table).read_text() if table else out


def wait_for_quiet(max_load, wait_s):
    deadline = time.time() + wait_s
    while True:
        load = os.getloadavg()[0]
        if load <= max_load or time.time() >= deadline:
            if load > max_load:
                print(f"bench_compare: load average {load:.2f} is above {max_load}; measuring anyway", file=sys.stderr)
            return load
        print(f"bench_compare: load average {load:.2f} > {max_load}, waiting", file=sys.stderr)
        time.sleep(20)


def machine():
    cpu, flags, family, model = "unknown CPU", "", None, None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = (part.strip() for part in line.partition(":"))
            if key == "model name" and cpu == "unknown CPU":
                cpu = value
            elif key == "cpu family" and family is None:
                family = value
            elif key == "model" and model is None:
                model = value
            elif key == "flags" and not flags:
                flags = " " + value
    except OSError:
        pass
    # A virtual machine's model name can be as bare as "AMD EPYC": the family and model numbers
    # name the core generation (AMD family 25 is Zen 3 and Zen 4; model 17 is Zen 4, Genoa).
    if family is not None and model is not None:
        cpu = f"{cpu} (family {family}, model {model})"
    simd = "AVX-512" if " avx512f" in flags else "AVX2" if " avx2" in flags else "SSE2"
    # the level ATen's kernels run at (ATEN_CPU_CAPABILITY caps it): "AVX512", "AVX2", ...
    torch_level = torch.backends.cpu.get_cpu_capability()
    return {"cpu": cpu, "cores": os.cpu_count(), "simd": simd, "torch_cpu_capability": torch_level}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="tiny shapes, short budget; prints, writes nothing")
    ap.add_argument("--max-load", type=float, default=1.5, help="wait for a 1-minute load average below this")
    ap.add_argument("--wait", type=float, default=600, help="seconds to wait for a quiet machine at most")
    ap.add_argument("--memory-seq", type=int, default=32768, help="sequence length of the memory run (0: skip)")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds of ours-then-PyTorch per case")
    ap.add_argument(
        "--before",
        metavar="REV",
        help="also time the flash kernel of git commit REV (built in a worktree), as the row "
        "prefill_flash_before of chapter 8's steps table (fast suite only)",
    )
    ap.add_argument(
        "--suite",
        choices=sorted(SUITES),
        default="fast",
        help="fast: chapter 8's prefill and decode cases; serving: decode from int8, int4 and paged caches "
        "(chapters 13 and 14), written to the bench-serving results and table",
    )
    ap.add_argument(
        "--simd",
        choices=sorted({simd for _, simd in OUTPUTS}),
        default="native",
        help="native: both sides at the CPU's widest SIMD level; avx2: both capped at AVX2 "
        "(ATTENTION_SIMD=avx2 for ours; ATEN_CPU_CAPABILITY, MKL_ENABLE_INSTRUCTIONS and ONEDNN_MAX_CPU_ISA "
        "for PyTorch), written to the -avx2 results and table",
    )
    ap.add_argument(
        "--tag",
        metavar="NAME",
        help="a machine other than the one the chapter's main tables come from: write the results and "
        "table with -NAME before the extension (e.g. --tag zen4: src/data/bench-results-zen4.json), so "
        "the committed runs of other machines stay",
    )
    args = ap.parse_args()
    if args.tag is not None and not (args.tag.isascii() and args.tag.isalnum()):
        sys.exit(f"bench_compare: --tag must be letters and digits, not {args.tag!r}")
    if args.simd == "avx2":
        if any(os.environ.get(k) != v for k, v in TORCH_AVX2_ENV.items()):
            # PyTorch's libraries read the caps when they load: start again with them set
            os.environ.update(TORCH_AVX2_ENV)
            os.execv(sys.executable, [sys.executable, *sys.argv])
        level = torch.backends.cpu.get_cpu_capability()
        if level != "AVX2":
            sys.exit(f"bench_compare: PyTorch runs at {level} despite ATEN_CPU_CAPABILITY=avx2; not measuring")
    global SIMD_CAP
    SIMD_CAP = None if args.simd == "native" else args.simd
    results_file, table_file = OUTPUTS[(args.suite, args.simd)]
    if args.tag:
        results_file, table_file = (f.with_name(f"{f.stem}-{args.tag}{f.suffix}") for f in (results_file, table_file))
    suite = SUITES[args.suite]

    subprocess.run(["cargo", "build", "--quiet", "--release", "-p", "attention", "--bin", "attn-bench"], check=True, cwd=ROOT)
    before = build_before(args.before) if args.before and args.suite == "fast" else None
    load_before = wait_for_quiet(args.max_load, 0 if args.quick else args.wait)
    budget = (0.02, 2, 5) if args.quick else (TIME_BUDGET_S, MIN_REPS, MAX_REPS)

    # Interleaved: for each (sequence length, case), --rounds times one attn-bench invocation and then
    # PyTorch on the same shapes, so the two sides of a ratio are measured seconds apart, under the
    # same load, several times. A time is the fastest round's median (what the code can do when the
    # machine lets it); the spread between rounds says how much the machine disturbed it.
    peak = run_bin("--peak")[0]  # the core's FMA ceiling, at the level our kernels run with
    # one core's read bandwidth beside the decode kernels' GB/s (and their two-thread speedups)
    bandwidth = [{"bytes": b["bytes"], "gb_per_s": b["gb_per_s"]} for b in run_bin("--bandwidth", *(["--quick"] if args.quick else []))]
    plan = [r for r in run_bin("--quick") if r["case"] in suite["cases"]] if args.quick else None
    seqs = sorted({r["seq"] for r in plan}) if plan else suite["seqs"]
    results = []
    levels = set()  # the SIMD levels our kernels ran with (attn-bench reports it per row)
    for seq in seqs:
        steps = [c for c in suite.get("steps", []) if seq in suite["step_seqs"]] if not args.quick else []
        steps += ["prefill_flash_before"] if before and seq in suite.get("step_seqs", []) and not args.quick else []
        for case in suite["cases"] + steps:
            flags = ["--quick"] if args.quick else []
            if suite["threads"] is not None:
                flags += ["--threads", str(suite["threads"])]
            # (n_kv_heads, threads) -> (row, our medians, PyTorch's medians, paired decode medians)
            rounds = {}
            for _ in range(args.rounds):
                if case == "prefill_flash_before":
                    rows = run_bin("--threads", "1", "--seq", str(seq), "--case", "prefill_flash", binary=before)
                    rows = [{**r, "case": case} for r in rows if r["threads"] == 1]
                else:
                    rows = run_bin(*flags, "--seq", str(seq), "--case", case)
                for r in rows:
                    levels.add(r.get("simd", "unknown"))
                    t, backend = torch_case(case, r["seq"], r["n_heads"], r["n_kv_heads"], r["head_dim"], r["threads"], budget)
                    if backend is not None:
                        r["torch_backend"] = backend
                    entry = rounds.setdefault((r["n_kv_heads"], r["threads"]), (r, [], [], []))
                    entry[1].append(r["median_ms"])
                    entry[2].append(t)
                    entry[3].append(r.get("paired_decode_ms"))
            for r, ours, theirs, paired in rounds.values():
                row = {k: r[k] for k in ["case", "seq", "n_heads", "n_kv_heads", "head_dim", "threads"]}
                row["ours_ms"] = min(ours)
                row["torch_case"] = "manual" if case.startswith("prefill_naive") else "sdpa"
                if "torch_backend" in r:
                    row["torch_backend"] = r["torch_backend"]
                if "splits" in r:
                    row["splits"] = r["splits"]
                if paired[0] is not None:
                    # `decode` timed call for call beside this case, in the round kept
                    row["paired_decode_ms"] = paired[ours.index(min(ours))]
                row["torch_ms"] = round(min(theirs), 4)
                row["rounds"] = len(ours)
                row["ours_spread"] = round(max(ours) / min(ours) - 1, 4)
                row["torch_spread"] = round(max(theirs) / min(theirs) - 1, 4)
                if "bytes_per_token" in r:
                    # the bytes of cache a step reads, at the fastest round's time
                    row["bytes_per_token"] = r["bytes_per_token"]
                    row["gb_per_s"] = round(r["bytes_per_token"] / (row["ours_ms"] * 1e-3) / 1e9, 2)
                results.append(row)
                print(
                    f"{case:14} seq {seq:5} heads {r['n_heads']}/{r['n_kv_heads']:<2} threads {r['threads']}: "
                    f"ours {row['ours_ms']:9.3f} ms  torch {row['torch_ms']:9.3f} ms  "
                    f"ratio {row['ours_ms'] / row['torch_ms']:5.2f}  (spread {row['ours_spread']:.0%} / "
                    f"{row['torch_spread']:.0%} over {len(ours)} rounds)",
                    file=sys.stderr,
                )
    # A two-thread time above the same shape's one-thread time is contention on a shared machine,
    # not a result: flag the row, and the table says so instead of comparing it.
    one_thread = {(r["case"], r["seq"], r["n_kv_heads"]): r for r in results if r["threads"] == 1}
    for r in results:
        base = one_thread.get((r["case"], r["seq"], r["n_kv_heads"]))
        if r["threads"] > 1 and base is not None and r["torch_ms"] > base["torch_ms"]:
            r["flag"] = "PyTorch slower on two threads than on one: contention"
    # issue #13's goal: 2 threads at least 1.8 times faster than 1 (decode at 32768, prefill at 4096)
    speedup = speedups(results)
    for s in speedup:
        print(
            f"{s['case']:14} seq {s['seq']:5} kv heads {s['n_kv_heads']:<2}: 1 -> 2 threads, ours {s['speedup']:.2f}x, "
            f"PyTorch {s['torch_speedup']:.2f}x",
            file=sys.stderr,
        )
    memory = None
    if args.memory_seq and not args.quick and args.suite == "fast":
        memory = run_bin("--memory", str(args.memory_seq))[0]
        memory = {k: memory[k] for k in memory if k not in ("case", "threads")}
    load_after = os.getloadavg()[0]
    data = {
        "about": f"Written by scripts/bench_compare.py; rendered into {table_file.relative_to(ROOT)} by book-tests (bin bench-table or figures). Do not edit.",
        "machine": {
            **machine(),
            "simd_used": "/".join(sorted(levels)),
            "fma_peak_gflops": peak["gflops"],
            **({"read_bandwidth": bandwidth} if bandwidth else {}),
        },
        "torch": torch.__version__,
        "load_average": [round(load_before, 2), round(load_after, 2)],
        "busy": load_before > args.max_load,
        **({"before": {"rev": args.before, "commit": git_commit(args.before)}} if before else {}),
        "results": results,
        "speedups": speedup,
        "memory": memory,
    }
    if args.quick:
        tmp = ROOT / "target" / "bench-results-quick.json"
        tmp.write_text(json.dumps(data, indent=1) + "\n")
        print(render_table(tmp))
        return
    results_file.parent.mkdir(parents=True, exist_ok=True)
    results_file.write_text(json.dumps(data, indent=1) + "\n")
    table_file.parent.mkdir(parents=True, exist_ok=True)
    print(render_table(results_file, table_file))
    print(f"bench_compare: wrote {results_file.relative_to(ROOT)} and {table_file.relative_to(ROOT)}", file=sys.stderr)
    chapters = "chapter 8 quotes its flash and decode ratios" if args.suite == "fast" else "chapters 13 and 14 quote its numbers"
    print(
        f"bench_compare: {chapters} in prose; bring them up to date "
        "(cargo test -p book-tests --test bench_tables says which sentence)",
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()
