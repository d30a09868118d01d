//! `llama-attn`: one attention layer of a Hugging Face Llama checkpoint, run by the `attention` crate.
//!
//! Reads `hidden_states` (batch, seq, hidden_size) from a safetensors file, runs the layer's causal
//! self-attention (RoPE, llama3 scaling, GQA, as the config says) at positions
//! `start_pos .. start_pos + seq`, and writes `attn_output` (batch, seq, hidden_size), f32.
//!
//! Argument parsing uses `lexopt`: a small, well-kept parser with no dependencies that compiles in about
//! a second, where `clap` with derive would add syn and proc-macro builds (tens of seconds on 2 cores)
//! for seven flags; the help text is written by hand either way.
//!
//! Exit codes: 0 success, 1 bad data (missing file, tensor or key; wrong shape or dtype; a config that
//! does not divide; positions past `max_position_embeddings`), 2 bad usage. Every error is one line on
//! stderr that names the problem.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use attention::hf::{DEFAULT_PREFIX, open_layer_tensors};
use attention::support::io::save_tensors;
use attention::{AttnError, HfLlamaConfig, Tensor, TensorFile};

const HELP: &str = "\
llama-attn: run one attention layer of a Hugging Face Llama checkpoint on given hidden states

Usage:
  llama-attn --config CONFIG.json --weights W.safetensors [--prefix P]
             --input X.safetensors --output Y.safetensors [--start-pos N] [--decode-from K]

Reads the tensor `hidden_states` (batch, seq, hidden_size; f32, bf16 or f16) from the input file,
runs the layer's causal self-attention with RoPE at positions N .. N + seq (llama3 scaling and
grouped-query attention as config.json says), and writes `attn_output` (batch, seq, hidden_size),
f32, to the output file. The tokens attend to each other only (no earlier context).

Options:
  --config PATH       the model's config.json
  --weights PATH      a .safetensors file holding the layer, or a sharded checkpoint's
                      model.safetensors.index.json; only the layer's tensors are read
  --prefix P          the layer's tensor name prefix [default: model.layers.0.self_attn.]
  --input PATH        safetensors file with `hidden_states`
  --output PATH       safetensors file to write `attn_output` to (overwritten)
  --start-pos N       position of the first token [default: 0]
  --decode-from K     run tokens 0..K as one prefill, then the rest one at a time through
                      the KV cache (0 <= K <= seq); the result equals the full forward
  -h, --help          print this help

Exit status: 0 on success, 1 on bad data (missing file, tensor or key, wrong shape or dtype,
a config that does not divide, positions past max_position_embeddings), 2 on bad usage.";

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
    let value = parser.value()?;
    let text = value.to_string_lossy();
    text.parse().map_err(|_| Failure::Usage(format!("{flag} needs a non-negative integer, got `{text}`")))
}

/// Parses the command line; `Ok(None)` when `--help` was asked for.
fn parse_args() -> Result<Option<Args>, Failure> {
    use lexopt::prelude::*;
    let (mut config, mut weights, mut input, mut output) = (None, None, None, None);
    let (mut prefix, mut start_pos, mut decode_from) = (DEFAULT_PREFIX.to_string(), 0, None);
    let mut parser = lexopt::Parser::from_env();
    while let Some(arg) = parser.next()? {
        match arg {
            Long("config") => config = Some(PathBuf::from(parser.value()?)),
            Long("weights") => weights = Some(PathBuf::from(parser.value()?)),
            Long("input") => input = Some(PathBuf::from(parser.value()?)),
            Long("output") => output = Some(PathBuf::from(parser.value()?)),
            Long("prefix") => {
                prefix = parser
                    .value()?
                    .into_string()
                    .map_err(|_| Failure::Usage("--prefix is not UTF-8".into()))?
            }
            Long("start-pos") => start_pos = number(&mut parser, "--start-pos")?,
            Long("decode-from") => decode_from = Some(number(&mut parser, "--decode-from")?),
            Short('h') | Long("help") => return Ok(None),
            _ => return Err(arg.unexpected().into()),
        }
    }
    let need =
        |v: Option<PathBuf>, flag: &str| v.ok_or_else(|| Failure::Usage(format!("missing {flag} PATH")));
    Ok(Some(Args {
        config: need(config, "--config")?,
        weights: need(weights, "--weights")?,
        input: need(input, "--input")?,
        output: need(output, "--output")?,
        prefix,
        start_pos,
        decode_from,
    }))
}

/// Loads, checks, runs and writes; returns the summary line for stdout.
fn run(args: &Args) -> Result<String, Failure> {
    let cfg = HfLlamaConfig::from_file(&args.config)?;
    let config_name = args.config.display();

    let input = TensorFile::open(&args.input)?;
    let hidden_states = input.float_tensor("hidden_states")?;
    let [batch, seq, width] = hidden_states.shape[..] else {
        return Err(Failure::Data(format!(
            "{}: tensor `hidden_states` has shape ({}); expected (batch, seq, {})",
            input.path(),
            hidden_states.shape.iter().map(usize::to_string).collect::<Vec<_>>().join(", "),
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
    let end = args.start_pos.checked_add(seq).filter(|&end| end <= cfg.max_position_embeddings);
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
    // RoPE tables up to the last position used, not the whole context
    let attn = cfg.load_attention_for_positions(&weights, &args.prefix, end)?;
    let x = hidden_states.to_batch()?;
    let out = match args.decode_from {
        Some(k) => attn.forward_prefill_decode(&x, args.start_pos, k)?,
        None => attn.forward(&x, args.start_pos, None)?,
    };
    save_tensors(&args.output, &[("attn_output", &Tensor::from_batch(&out))])?;
    let mode = match args.decode_from {
        Some(k) => format!("prefill {k} + {} decode steps", seq - k),
        None => "one forward".to_string(),
    };
    Ok(format!(
        "attn_output ({batch}, {seq}, {width}) at positions {}..{} ({mode}) written to {}",
        args.start_pos,
        end,
        args.output.display()
    ))
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
            // `writeln!`, not `println!`: a closed stdout (`llama-attn --help | head -1`) is no reason to panic
            if let Some(s) = summary {
                let _ = writeln!(std::io::stdout(), "{s}");
            }
            ExitCode::SUCCESS
        }
        Err(Failure::Usage(m)) => {
            eprintln!("llama-attn: error: {} (try --help)", one_line(m));
            ExitCode::from(2)
        }
        Err(Failure::Data(m)) => {
            eprintln!("llama-attn: error: {}", one_line(m));
            ExitCode::from(1)
        }
    }
}
