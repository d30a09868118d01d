//! `llama-attn`: one attention layer of a Hugging Face checkpoint, run by the `attention`
//! crate: Llama 3 (chapter 7), the models of chapters 9-11 whose attention is still
//! grouped-query attention with a twist (`model_type` `mistral`, `qwen3`, `gemma2`,
//! `gemma3_text` or `gemma3`, `gpt_oss`), and DeepSeek-V2's and V3's multi-head latent
//! attention (chapter 12, `deepseek_v2`, `deepseek_v3`).
//!
//! Reads `hidden_states` (batch, seq, hidden_size) from a safetensors file, runs the
//! layer's causal self-attention (RoPE with llama3 or YaRN scaling, GQA, sliding window,
//! soft-cap, QK-norm, learned sinks, or MLA with its latent cache, as the config says) at
//! positions `start_pos .. start_pos + seq`, and writes `attn_output` (batch, seq,
//! hidden_size), f32.
//!
//! Argument parsing uses `lexopt`: a small, well-kept parser with no dependencies that
//! compiles in about a second, where `clap` with derive would add syn and proc-macro
//! builds (tens of seconds on 2 cores) for seven flags; the help text is written by hand
//! either way.
//!
//! Exit codes: 0 success; 1 bad data (a missing, unreadable or corrupt file; a missing
//! tensor or key; a wrong shape or dtype; a config that does not divide; a `model_type`
//! or setting the crate does not compute; positions past `max_position_embeddings`; a
//! failed write); 2 bad usage (an unknown, repeated or empty flag, a malformed number, an
//! `--output` that is one of the files read). Every error is one line on stderr that
//! names the problem. The output is written to a temporary file beside it and renamed
//! into place, so a failed run leaves the previous output untouched.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use attention::hf::{DEFAULT_PREFIX, open_layer_tensors};
use attention::support::io::{read_small_file, save_tensors};
use attention::{
    AttnError, Batch, GroupedQueryAttention, HfLlamaConfig, LatentCache, LayerKvCache,
    MultiHeadLatentAttention, Tensor, TensorFile,
};

const HELP: &str = "\
llama-attn: run one attention layer of a Hugging Face checkpoint on given hidden states

Usage:
  llama-attn --config CONFIG.json --weights W.safetensors [--prefix P]
             --input X.safetensors --output Y.safetensors [--start-pos N] [--decode-from K]

Reads the tensor `hidden_states` (batch, seq, hidden_size; f32, bf16 or f16) from the input file,
runs the layer's causal self-attention at positions N .. N + seq as config.json says, and writes
`attn_output` (batch, seq, hidden_size), f32, to the output file. The tokens attend to each other
only (no earlier context).

Model types (config.json's model_type): llama (also when absent), mistral, qwen3, gemma2,
gemma3_text, gemma3 (its text_config), gpt_oss, deepseek_v2, deepseek_v3, each read as transformers
5.24 reads it: RoPE (llama3 scaling for llama, YaRN for gpt_oss, deepseek, qwen3 and mistral,
linear on Gemma 3's full layers), grouped-query
attention, sliding windows, Gemma's scale and soft-cap, QK-norm, learned sinks; DeepSeek's
multi-head latent attention (its latent cache, interleaved RoPE pairs, YaRN's softmax scale). Where
layers differ (layer_types), the layer's kind is read at the index in the prefix
(model.layers.L.). Another model_type, or a setting the crate does not compute (a dynamic or
longrope RoPE, a scaling the model type does not use, bidirectional attention, ...), is an error,
never run as something else.

Options:
  --config PATH       the model's config.json
  --weights PATH      a .safetensors file holding the layer, or a sharded checkpoint's
                      model.safetensors.index.json; only the layer's tensors are read
  --prefix P          the layer's tensor name prefix [default: model.layers.0.self_attn.]
  --input PATH        safetensors file with `hidden_states`
  --output PATH       safetensors file to write `attn_output` to; replaced only once the new file
                      is complete (written beside it, then renamed), and never one of the files read
  --start-pos N       position of the first token [default: 0]
  --decode-from K     run tokens 0..K as one prefill, then the rest one at a time through
                      the layer's KV cache (0 <= K <= seq); a sliding-window layer's cache
                      keeps at most twice its window, an MLA layer's holds latents; the
                      result equals the full forward
  -h, --help          print this help

Exit status: 0 on success; 1 on bad data (a missing, unreadable or corrupt file, a missing tensor
or key, a wrong shape or dtype, a config that does not divide, a model_type or setting that is
not supported, positions past max_position_embeddings, a failed write); 2 on bad usage (an
unknown, repeated or empty flag, a number that is not one, an --output that is one of the files
read).";

/// What went wrong, and so which exit code to return.
enum Failure {
    /// Bad command line: exit code 2.
    Usage(String),
    /// Bad files or values in them: exit code 1.
    Data(String),
}

impl From<AttnError> for Failure {
    fn from(e: AttnError) -> Self {
        Failure::Data(e.to_string())
    }
}

impl From<lexopt::Error> for Failure {
    fn from(e: lexopt::Error) -> Self {
        Failure::Usage(e.to_string())
    }
}

/// The parsed command line.
struct Args {
    config: PathBuf,
    weights: PathBuf,
    prefix: String,
    input: PathBuf,
    output: PathBuf,
    start_pos: usize,
    decode_from: Option<usize>,
}

/// The value of a flag as a non-negative integer, the flag named in the error.
fn number(parser: &mut lexopt::Parser, flag: &str) -> Result<usize, Failure> {
    use std::num::IntErrorKind;
    let value = parser.value()?;
    let text = value.to_string_lossy();
    text.parse().map_err(|e: std::num::ParseIntError| match e.kind() {
        IntErrorKind::PosOverflow => Failure::Usage(format!(
            "{flag} {text} is too large (the largest is {})",
            usize::MAX
        )),
        _ => Failure::Usage(format!("{flag} needs a non-negative integer, got `{text}`")),
    })
}

/// The value of a path flag, which must not be empty.
fn path(parser: &mut lexopt::Parser, flag: &str) -> Result<PathBuf, Failure> {
    let value = parser.value()?;
    if value.is_empty() {
        return Err(Failure::Usage(format!("{flag} needs a path, got an empty string")));
    }
    Ok(PathBuf::from(value))
}

/// Stores a flag's value, refusing a flag given twice (rather than silently keeping the
/// last).
fn once<T>(slot: &mut Option<T>, flag: &str, value: T) -> Result<(), Failure> {
    if slot.is_some() {
        return Err(Failure::Usage(format!("{flag} given more than once")));
    }
    *slot = Some(value);
    Ok(())
}

/// Parses the command line; `Ok(None)` when `--help` was asked for.
fn parse_args() -> Result<Option<Args>, Failure> {
    use lexopt::prelude::*;
    let (mut config, mut weights, mut input, mut output) = (None, None, None, None);
    let (mut prefix, mut start_pos, mut decode_from) = (None, None, None);
    let mut parser = lexopt::Parser::from_env();
    while let Some(arg) = parser.next()? {
        match arg {
            Long("config") => {
                once(&mut config, "--config", path(&mut parser, "--config")?)?
            }
            Long("weights") => {
                once(&mut weights, "--weights", path(&mut parser, "--weights")?)?
            }
            Long("input") => once(&mut input, "--input", path(&mut parser, "--input")?)?,
            Long("output") => {
                once(&mut output, "--output", path(&mut parser, "--output")?)?
            }
            Long("prefix") => {
                let value = parser
                    .value()?
                    .into_string()
                    .map_err(|_| Failure::Usage("--prefix is not UTF-8".into()))?;
                once(&mut prefix, "--prefix", value)?
            }
            Long("start-pos") => {
                once(&mut start_pos, "--start-pos", number(&mut parser, "--start-pos")?)?
            }
            Long("decode-from") => once(
                &mut decode_from,
                "--decode-from",
                number(&mut parser, "--decode-from")?,
            )?,
            Short('h') | Long("help") => return Ok(None),
            _ => return Err(arg.unexpected().into()),
        }
    }
    let need = |v: Option<PathBuf>, flag: &str| {
        v.ok_or_else(|| Failure::Usage(format!("missing {flag} PATH")))
    };
    let args = Args {
        config: need(config, "--config")?,
        weights: need(weights, "--weights")?,
        input: need(input, "--input")?,
        output: need(output, "--output")?,
        prefix: prefix.unwrap_or_else(|| DEFAULT_PREFIX.to_string()),
        start_pos: start_pos.unwrap_or(0),
        decode_from,
    };
    refuse_overwriting_an_input(&args)?;
    Ok(Some(args))
}

/// Refuses an `--output` that is one of the files read (also through a symbolic or hard
/// link: same device and inode), which the write would replace.
fn refuse_overwriting_an_input(args: &Args) -> Result<(), Failure> {
    use std::os::unix::fs::MetadataExt;
    // nothing there yet
    let Ok(out) = std::fs::metadata(&args.output) else { return Ok(()) };
    for (flag, path) in [
        ("--config", &args.config),
        ("--weights", &args.weights),
        ("--input", &args.input),
    ] {
        if let Ok(m) = std::fs::metadata(path)
            && (m.dev(), m.ino()) == (out.dev(), out.ino())
        {
            return Err(Failure::Usage(format!(
                "--output {} is the same file as {flag} {}; writing it would destroy what is read",
                args.output.display(),
                path.display()
            )));
        }
    }
    Ok(())
}

/// Loads, checks, runs and writes; returns the summary line for stdout.
fn run(args: &Args) -> Result<String, Failure> {
    // a bounded read that refuses a directory, FIFO or device (`from_file` would read
    // /dev/zero forever)
    let config_name = args.config.display();
    let text = read_small_file(&args.config)?;
    let text = String::from_utf8(text).map_err(|e| {
        Failure::Data(format!("{config_name}: invalid JSON: not UTF-8 ({e})"))
    })?;
    let cfg = HfLlamaConfig::from_json_str(&text, &config_name.to_string())?;
    for warning in cfg.warnings() {
        // what transformers would only log (a `rope_scaling` without `rope_type` runs
        // unscaled)
        let _ = writeln!(std::io::stderr(), "llama-attn: warning: {warning}");
    }

    let input = TensorFile::open(&args.input)?;
    let hidden_states = input.float_tensor("hidden_states")?;
    let [batch, seq, width] = hidden_states.shape[..] else {
        return Err(Failure::Data(format!(
            "{}: tensor `hidden_states` has shape ({}); expected (batch, seq, {})",
            input.path(),
            hidden_states
                .shape
                .iter()
                .map(usize::to_string)
                .collect::<Vec<_>>()
                .join(", "),
            cfg.hidden_size
        )));
    };
    if width != cfg.hidden_size || batch == 0 || seq == 0 {
        return Err(Failure::Data(format!(
            "{}: tensor `hidden_states` has shape ({batch}, {seq}, {width}); expected (batch >= 1, seq >= 1, \
             hidden_size = {}) as {config_name} says",
            input.path(),
            cfg.hidden_size
        )));
    }
    let end =
        args.start_pos.checked_add(seq).filter(|&end| end <= cfg.max_position_embeddings);
    let Some(end) = end else {
        return Err(Failure::Data(format!(
            "positions {}..{} (--start-pos {} and {seq} tokens) exceed max_position_embeddings = {} in {config_name}",
            args.start_pos,
            args.start_pos as u128 + seq as u128,
            args.start_pos,
            cfg.max_position_embeddings
        )));
    };
    if let Some(k) = args.decode_from
        && k > seq
    {
        return Err(Failure::Data(format!(
            "--decode-from {k} is past the {seq} tokens of `hidden_states` in {}",
            input.path()
        )));
    }

    let weights = open_layer_tensors(&args.weights, &args.prefix)?;
    let x = hidden_states.to_batch()?;
    // RoPE tables up to the last position used, not the whole context
    let (out, mode) = if cfg.model.mla.is_some() {
        let mla = cfg.load_mla_for_positions(&weights, &args.prefix, end)?;
        run_mla(&mla, &x, args.start_pos, args.decode_from)?
    } else {
        let attn = cfg.load_attention_for_positions(&weights, &args.prefix, end)?;
        run_gqa(&attn, &x, args.start_pos, args.decode_from)?
    };
    save_tensors(&args.output, &[("attn_output", &Tensor::from_batch(&out))])?;
    Ok(format!(
        "attn_output ({batch}, {seq}, {width}) at positions {}..{} ({mode}) written to {}",
        args.start_pos,
        end,
        args.output.display()
    ))
}

/// Runs a grouped-query `layer` on `x` `(batch, seq, d_in)` at positions `start_pos ..`:
/// one forward, or a prefill of `decode_from` tokens and then one token at a time; returns
/// the output and a description of the run.
fn run_gqa(
    layer: &GroupedQueryAttention,
    x: &Batch,
    start_pos: usize,
    decode_from: Option<usize>,
) -> attention::Result<(Batch, String)> {
    let Some(k) = decode_from else {
        return Ok((layer.forward(x, start_pos, None)?, "one forward".to_string()));
    };
    let (out, cache) = prefill_then_decode(layer, x, start_pos, k)?;
    let slides = if cache.window().is_some() { "sliding " } else { "" };
    let (steps, rows) = (x.seq_len() - k, cache.capacity());
    let mode =
        format!("prefill {k} + {steps} decode steps, {slides}cache of {rows} rows");
    Ok((out, mode))
}

/// As [`run_gqa`] for a multi-head latent attention layer, decoding through its
/// [`LatentCache`] (the latent and the shared RoPE key of each token).
fn run_mla(
    layer: &MultiHeadLatentAttention,
    x: &Batch,
    start_pos: usize,
    decode_from: Option<usize>,
) -> attention::Result<(Batch, String)> {
    let Some(k) = decode_from else {
        return Ok((layer.forward(x, start_pos, None)?, "one forward".to_string()));
    };
    let (batch, seq) = (x.batch_size(), x.seq_len());
    let mut cache: LatentCache = layer.new_cache(batch, seq)?;
    // chunks (first token, length): [0, k) and then single tokens
    let chunks = (k > 0).then_some((0, k)).into_iter().chain((k..seq).map(|t| (t, 1)));
    let mut outputs = Vec::new();
    for (first, len) in chunks {
        let chunk = x.narrow_seq(first, len)?;
        outputs.push(layer.forward(&chunk, start_pos + first, Some(&mut cache))?);
    }
    let width = layer.shape().cache_width();
    let mode = format!(
        "prefill {k} + {} decode steps, latent cache of {} rows of {width} numbers",
        seq - k,
        cache.capacity()
    );
    Ok((Batch::concat_seq(&outputs)?, mode))
}

/// Runs `x` `(batch, seq, d_in)` through `layer` as a prefill of its first `k` tokens,
/// then one token at a time, through the layer's own KV cache; returns the output and
/// the cache.
///
/// A sliding-window layer's cache ([`GroupedQueryAttention::new_cache`]) drops the rows
/// no later query sees, so it holds at most `2 · window` rows (room for the kept window
/// and as many new tokens before the next drop), or the prefill if longer. A sequence
/// that fits in a window never drops anything: a plain cache of `seq` rows then.
fn prefill_then_decode(
    layer: &GroupedQueryAttention,
    x: &Batch,
    start_pos: usize,
    k: usize,
) -> attention::Result<(Batch, LayerKvCache)> {
    let (batch, seq) = (x.batch_size(), x.seq_len());
    let scores = layer.scores();
    let mut cache = match scores.window {
        Some(w) if seq > w.saturating_add(scores.sink_tokens) => {
            let rows = w.saturating_mul(2).saturating_add(scores.sink_tokens).max(k);
            layer.new_cache(batch, rows.min(seq))?
        }
        _ => LayerKvCache::for_heads(batch, seq, layer.heads())?,
    };
    // chunks (first token, length): [0, k) and then single tokens
    let chunks = (k > 0).then_some((0, k)).into_iter().chain((k..seq).map(|t| (t, 1)));
    let mut outputs = Vec::new();
    for (first, len) in chunks {
        let chunk = x.narrow_seq(first, len)?;
        outputs.push(layer.forward(&chunk, start_pos + first, Some(&mut cache))?);
    }
    Ok((Batch::concat_seq(&outputs)?, cache))
}

fn main() -> ExitCode {
    let result = parse_args().and_then(|args| match args {
        None => Ok(Some(HELP.to_string())),
        Some(args) => run(&args).map(Some),
    });
    // one line per error, whatever the message contained
    let one_line = |m: String| m.split_whitespace().collect::<Vec<_>>().join(" ");
    match result {
        Ok(summary) => {
            // `writeln!`, not `println!`: a closed stdout (`llama-attn --help | head -1`)
            // is no reason to panic
            if let Some(s) = summary {
                let _ = writeln!(std::io::stdout(), "{s}");
            }
            ExitCode::SUCCESS
        }
        // `writeln!`, not `eprintln!`: a full or closed stderr must not turn an error
        // into a panic
        Err(Failure::Usage(m)) => {
            let _ = writeln!(
                std::io::stderr(),
                "llama-attn: error: {} (try --help)",
                one_line(m)
            );
            ExitCode::from(2)
        }
        Err(Failure::Data(m)) => {
            let _ = writeln!(std::io::stderr(), "llama-attn: error: {}", one_line(m));
            ExitCode::from(1)
        }
    }
}
