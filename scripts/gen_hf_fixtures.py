"""Generate the Hugging Face transformers reference fixtures: one Llama attention layer per case.

For every case NAME this writes a folder code/tests/fixtures/hf/NAME/ (or --out DIR/NAME/) laid out like
a (tiny) Hugging Face checkpoint plus the layer's input and expected output:

  config.json              a Llama config.json, written by hand in one of the forms found on the Hub
                           (top-level rope_theta with or without `rope_scaling`, or the newer
                           `rope_parameters`); transformers itself reads it back (LlamaConfig.from_pretrained)
  model.safetensors        the layer's weights under `{prefix}q_proj.weight` ... `{prefix}o_proj.weight`
                           (+ biases when attention_bias), stored as f32, bf16 or f16, plus an unrelated
                           tensor (`...input_layernorm.weight`) as a real checkpoint has
  input.safetensors        `hidden_states` (batch, seq, hidden_size), f32 (bf16 in the long-span case)
  expected.safetensors     `attn_output` (batch, seq - expected_from, hidden_size), f32: LlamaAttention's output
                           for positions start_pos + expected_from .. start_pos + seq (expected_from is 0 except
                           in the long-span case, which keeps only its last 8 rows small);
                           `inv_freq` (head_dim/2,) and `cos`, `sin` (seq - expected_from, head_dim):
                           LlamaRotaryEmbedding's (possibly llama3-scaled) frequencies and tables there
  meta.json                prefix, start_pos, expected_from, shapes, seed, versions, dtypes, a description
  meta_layout.safetensors  (case `gqa` only) the same layer in Meta's original layout (q/k rows un-permuted,
                           Meta's names `attention.wq.weight` ...), and in expected.safetensors
                           `meta_attn_output`: Meta-style attention with complex-number (interleaved) RoPE

The reference computation:

    config = LlamaConfig.from_pretrained(case_dir); config._attn_implementation = "eager"
    attn = LlamaAttention(config, layer_idx=0)          # weights: nn.Linear init under torch.manual_seed(seed),
                                                        # rounded to the stored dtype, then used in f32
    rotary = LlamaRotaryEmbedding(config)
    position_ids = torch.arange(start_pos, start_pos + seq).expand(batch, seq)
    cos, sin = rotary(hidden_states, position_ids)
    mask = (0 on and below the diagonal, -inf above), shape (batch, 1, seq, seq)
    attn_output, _ = attn(hidden_states, position_embeddings=(cos, sin), attention_mask=mask)

Everything runs in float32 on one CPU thread with fixed seeds: two runs give byte-identical files.
Regenerate (from the repository root):

    python3 -m venv venv && venv/bin/pip install -r scripts/requirements.txt \
        && venv/bin/python scripts/gen_hf_fixtures.py
"""

import argparse
import json
import os
import re
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")             # everything is local: never reach for the Hub
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import safetensors
import torch
import transformers
from safetensors.torch import save_file
from transformers import LlamaConfig
from transformers.models.llama.modeling_llama import LlamaAttention, LlamaRotaryEmbedding

torch.set_num_threads(1)
torch.set_default_dtype(torch.float32)

DTYPES = {"f32": torch.float32, "bf16": torch.bfloat16, "f16": torch.float16}
PREFIX = "model.layers.0.self_attn."

LLAMA3_1 = {"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
            "original_max_position_embeddings": 8192}
LLAMA3_2 = {**LLAMA3_1, "factor": 32.0}

# Sizes are small, non-square and pairwise different; `gqa` and `llama31_end_bf16` have an explicit head_dim
# with num_attention_heads * head_dim != hidden_size (transformers still requires hidden % heads == 0).
CASES = [
    dict(name="mha", seed=101, weights="f32", batch=2, seq=7, start_pos=0,
         what="Multi-head attention (6 heads of 8, 6 KV heads), RoPE theta 10000, no scaling; "
              "Llama 2 style config (top-level rope_theta, no rope_scaling).",
         config={"hidden_size": 48, "num_attention_heads": 6, "num_key_value_heads": 6,
                 "max_position_embeddings": 64, "rope_theta": 10000.0}),
    dict(name="gqa", seed=102, weights="f32", batch=2, seq=9, start_pos=37, meta_layout=True,
         what="Grouped-query attention (4 heads, 2 KV heads), explicit head_dim 12 (4 * 12 != hidden 40), "
              "RoPE theta 500000, start_pos 37; also in Meta's interleaved layout.",
         config={"hidden_size": 40, "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 12,
                 "max_position_embeddings": 256, "rope_theta": 500000.0}),
    dict(name="mqa_bias_f16", seed=103, weights="f16", batch=1, seq=6, start_pos=5,
         prefix="model.layers.3.self_attn.",
         what="Multi-query attention (4 heads of 6, 1 KV head) with attention_bias, f16 weights, "
              "layer 3's prefix, start_pos 5.",
         config={"hidden_size": 24, "num_attention_heads": 4, "num_key_value_heads": 1,
                 "max_position_embeddings": 32, "rope_theta": 10000.0, "attention_bias": True}),
    dict(name="llama31_end_bf16", seed=104, weights="bf16", batch=1, seq=6, start_pos=131072 - 6,
         what="Llama 3.1 RoPE scaling (factor 8, rope_scaling form), head_dim 128 (2 * 128 != hidden 32), "
              "bf16 weights, positions 131066..131071 (the last 6 of the 131072-token context).",
         config={"hidden_size": 32, "num_attention_heads": 2, "num_key_value_heads": 1, "head_dim": 128,
                 "max_position_embeddings": 131072, "rope_theta": 500000.0,
                 "rope_scaling": {**LLAMA3_1, "rope_type": "llama3"}}),
    dict(name="llama31_mid", seed=105, weights="f32", batch=2, seq=7, start_pos=20000,
         what="Llama 3.1 RoPE scaling (factor 8), 4 heads of 16, 2 KV heads, positions 20000..20006.",
         config={"hidden_size": 64, "num_attention_heads": 4, "num_key_value_heads": 2,
                 "max_position_embeddings": 131072, "rope_theta": 500000.0,
                 "rope_scaling": {**LLAMA3_1, "rope_type": "llama3"}}),
    dict(name="llama32_mid_bf16", seed=106, weights="bf16", batch=1, seq=5, start_pos=40000,
         what="Llama 3.2 RoPE scaling (factor 32) in the newer rope_parameters form, 2 heads of 64, 1 KV "
              "head, bf16 weights, positions 40000..40004.",
         config={"hidden_size": 128, "num_attention_heads": 2, "num_key_value_heads": 1,
                 "max_position_embeddings": 131072,
                 "rope_parameters": {"rope_type": "llama3", "rope_theta": 500000.0, **LLAMA3_2}}),
    dict(name="llama32_long_span", seed=108, weights="bf16", batch=1, seq=4096, start_pos=131072 - 4096,
         input_dtype="bf16", expected_from=4096 - 8,
         what="Llama 3.2 RoPE scaling (factor 32) over a long span: 4096 tokens at positions 126976..131071, "
              "so queries see keys up to 4095 positions back, where the scaling changes the scores. "
              "2 heads of 16 (2 * 16 != hidden 16), 1 KV head; hidden_states stored as bf16; "
              "expected tensors hold only the last 8 positions (expected_from = 4088).",
         config={"hidden_size": 16, "num_attention_heads": 2, "num_key_value_heads": 1, "head_dim": 16,
                 "max_position_embeddings": 131072, "rope_theta": 500000.0,
                 "rope_scaling": {**LLAMA3_2, "rope_type": "llama3"}}),
    dict(name="llama32_end", seed=107, weights="f32", batch=2, seq=8, start_pos=131072 - 8,
         what="Llama 3.2 RoPE scaling (factor 32, legacy `type` key), 3 heads of 16, 1 KV head, "
              "positions 131064..131071.",
         config={"hidden_size": 48, "num_attention_heads": 3, "num_key_value_heads": 1,
                 "max_position_embeddings": 131072, "rope_theta": 500000.0,
                 "rope_scaling": {**LLAMA3_2, "type": "llama3"}}),
]


def to_json(obj):
    """json.dumps with indent 2, but lists of numbers or strings (shapes, architectures) kept on one line."""
    one_line = lambda m: "[" + ", ".join(v.strip() for v in m.group(1).split(",")) + "]"
    return re.sub(r'\[([-+\w\s,."]*)\]', one_line, json.dumps(obj, indent=2)) + "\n"


def full_config(case):
    """The config.json we write: the case's attention keys plus the usual Llama fields."""
    return {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "torch_dtype": case["weights_name"],
            **case["config"], "attention_bias": case["config"].get("attention_bias", False),
            "intermediate_size": 3 * case["config"]["hidden_size"], "num_hidden_layers": 4,
            "rms_norm_eps": 1e-5, "vocab_size": 128, "hidden_act": "silu"}


def causal_mask(batch, seq):
    """Additive mask: 0 where query i may see key j (j <= i), -inf above the diagonal."""
    mask = torch.full((seq, seq), float("-inf")).triu(1)
    return mask[None, None].expand(batch, 1, seq, seq)


# ---------------------------------------------------------------------------------------------
# Meta's original layout (case `gqa`): the inverse of the q/k permutation in transformers'
# convert_llama_weights_to_hf.py, and attention with RoPE as complex numbers on pairs (2i, 2i+1),
# written here in the style of Meta's reference model.py (precompute_freqs_cis / apply_rotary_emb).
# ---------------------------------------------------------------------------------------------

def permute(w, n_heads, dim1, dim2):
    """convert_llama_weights_to_hf.py: Meta's rows (2i, 2i+1) of each head -> rows (i, i + head_dim/2)."""
    return w.view(n_heads, dim1 // n_heads // 2, 2, dim2).transpose(1, 2).reshape(dim1, dim2)


def unpermute(w, n_heads, dim1, dim2):
    """The inverse of `permute`: a Hugging Face q/k weight back in Meta's row order."""
    return w.view(n_heads, 2, dim1 // n_heads // 2, dim2).transpose(1, 2).reshape(dim1, dim2)


def meta_attention(x, wq, wk, wv, wo, n_heads, n_kv_heads, head_dim, theta, start_pos):
    bsz, seqlen, _ = x.shape
    xq = (x @ wq.T).view(bsz, seqlen, n_heads, head_dim)
    xk = (x @ wk.T).view(bsz, seqlen, n_kv_heads, head_dim)
    xv = (x @ wv.T).view(bsz, seqlen, n_kv_heads, head_dim)
    freqs = 1.0 / (theta ** (torch.arange(0, head_dim, 2)[: (head_dim // 2)].float() / head_dim))
    t = torch.arange(start_pos, start_pos + seqlen, dtype=torch.float32)
    freqs_cis = torch.polar(torch.ones(seqlen, head_dim // 2), torch.outer(t, freqs))   # (seq, head_dim/2)
    rot = lambda y: torch.view_as_real(
        torch.view_as_complex(y.float().reshape(*y.shape[:-1], -1, 2)) * freqs_cis[None, :, None, :]).flatten(3)
    xq, xk = rot(xq), rot(xk)
    n_rep = n_heads // n_kv_heads                                  # Meta's repeat_kv: [K1, K1, K2, K2]
    rep = lambda y: y[:, :, :, None, :].expand(bsz, seqlen, n_kv_heads, n_rep, head_dim).reshape(
        bsz, seqlen, n_heads, head_dim)
    q, k, v = xq.transpose(1, 2), rep(xk).transpose(1, 2), rep(xv).transpose(1, 2)
    scores = q @ k.transpose(2, 3) / head_dim ** 0.5 + causal_mask(bsz, seqlen)
    out = torch.softmax(scores.float(), dim=-1) @ v                # (bsz, n_heads, seq, head_dim)
    return out.transpose(1, 2).reshape(bsz, seqlen, -1) @ wo.T


# ---------------------------------------------------------------------------------------------

@torch.no_grad()
def make_case(out_dir, case):
    case_dir = out_dir / case["name"]
    case_dir.mkdir(parents=True, exist_ok=True)
    prefix = case.get("prefix", PREFIX)
    dtype = DTYPES[case["weights"]]
    case["weights_name"] = {"f32": "float32", "bf16": "bfloat16", "f16": "float16"}[case["weights"]]
    (case_dir / "config.json").write_text(to_json(full_config(case)))

    config = LlamaConfig.from_pretrained(case_dir)                 # transformers reads the same file
    config._attn_implementation = "eager"
    torch.manual_seed(case["seed"])
    attn = LlamaAttention(config, layer_idx=0).eval()              # nn.Linear init
    for p in attn.parameters():                                    # as stored: rounded to bf16/f16
        p.copy_(p.to(dtype).float())
    rotary = LlamaRotaryEmbedding(config)

    batch, seq, start = case["batch"], case["seq"], case["start_pos"]
    hidden = config.hidden_size
    in_dtype = DTYPES[case.get("input_dtype", "f32")]
    hidden_states = torch.randn(batch, seq, hidden).to(in_dtype).float()   # as stored, used in f32
    position_ids = torch.arange(start, start + seq)[None].expand(batch, seq)
    cos, sin = rotary(hidden_states, position_ids)
    attn_output, _ = attn(hidden_states, position_embeddings=(cos, sin), attention_mask=causal_mask(batch, seq))

    weights = {prefix + k: v.to(dtype).contiguous() for k, v in attn.state_dict().items()}
    layer = prefix[: -len("self_attn.")]
    weights[layer + "input_layernorm.weight"] = torch.ones(hidden, dtype=dtype)   # a tensor we must skip
    save_file(weights, str(case_dir / "model.safetensors"), metadata={"format": "pt"})
    save_file({"hidden_states": hidden_states.to(in_dtype).contiguous()}, str(case_dir / "input.safetensors"))
    tail = case.get("expected_from", 0)                            # expected rows: tail .. seq
    expected = {"attn_output": attn_output[:, tail:].contiguous(), "inv_freq": rotary.inv_freq.contiguous(),
                "cos": cos[0, tail:].contiguous(), "sin": sin[0, tail:].contiguous()}

    n_heads, n_kv, head_dim = config.num_attention_heads, config.num_key_value_heads, config.head_dim
    if case.get("meta_layout"):
        sd = attn.state_dict()
        wq = unpermute(sd["q_proj.weight"], n_heads, n_heads * head_dim, hidden)
        wk = unpermute(sd["k_proj.weight"], n_kv, n_kv * head_dim, hidden)
        assert torch.equal(permute(wq, n_heads, n_heads * head_dim, hidden), sd["q_proj.weight"])
        assert torch.equal(permute(wk, n_kv, n_kv * head_dim, hidden), sd["k_proj.weight"])
        meta_out = meta_attention(hidden_states, wq, wk, sd["v_proj.weight"], sd["o_proj.weight"],
                                  n_heads, n_kv, head_dim, config.rope_parameters["rope_theta"], start)
        torch.testing.assert_close(meta_out, attn_output)          # the two layouts agree
        print(f"  meta layout: max |meta - hf| = {(meta_out - attn_output).abs().max().item():.3e}")
        save_file({"layers.0.attention.wq.weight": wq.contiguous(), "layers.0.attention.wk.weight": wk.contiguous(),
                   "layers.0.attention.wv.weight": sd["v_proj.weight"].contiguous(),
                   "layers.0.attention.wo.weight": sd["o_proj.weight"].contiguous()},
                  str(case_dir / "meta_layout.safetensors"))
        expected["meta_attn_output"] = meta_out.contiguous()
    save_file(expected, str(case_dir / "expected.safetensors"))

    rp = config.rope_parameters
    meta = {
        "case": case["name"], "description": case["what"], "seed": case["seed"],
        "transformers_version": transformers.__version__, "torch_version": torch.__version__,
        "safetensors_version": safetensors.__version__,
        "prefix": prefix, "weights_dtype": case["weights"], "input_dtype": case.get("input_dtype", "f32"),
        "batch": batch, "seq": seq, "start_pos": start, "expected_from": tail,
        "hf_parsed": {"hidden_size": hidden, "num_attention_heads": n_heads, "num_key_value_heads": n_kv,
                      "head_dim": head_dim, "max_position_embeddings": config.max_position_embeddings,
                      "attention_bias": config.attention_bias, "rope_type": rp["rope_type"],
                      "rope_theta": rp["rope_theta"], "factor": rp.get("factor"),
                      "low_freq_factor": rp.get("low_freq_factor"), "high_freq_factor": rp.get("high_freq_factor"),
                      "original_max_position_embeddings": rp.get("original_max_position_embeddings")},
        "tensors": {"model": {k: list(v.shape) for k, v in sorted(weights.items())},
                    "expected": {k: list(v.shape) for k, v in sorted(expected.items())}},
    }
    (case_dir / "meta.json").write_text(to_json(meta))
    print(f"{case['name']:18s} {case['weights']:4s} positions {start}..{start + seq - 1}, "
          f"out {tuple(attn_output.shape)}, max |out| {attn_output.abs().max().item():.3f}")


def main(out_dir):
    for case in CASES:
        make_case(out_dir, dict(case))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("code/tests/fixtures/hf"), help="output folder")
    main(parser.parse_args().out)
