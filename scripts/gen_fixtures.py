"""Generate the PyTorch reference fixtures that the Rust crate is tested against.

For every case NAME this writes two files into code/tests/fixtures/ (or --out DIR):

  NAME.safetensors  all tensors, float32 (int64 only for RoPE positions), contiguous, row-major;
                    weights under their PyTorch state_dict names (nn.Linear weight is (out, in)),
                    the input as `x`, the final output as `out`.
  NAME.json         the case's configuration (d_in, d_out, n_heads, ...), a description,
                    the seed, the torch version and the name and shape of every stored tensor.

The modules below are plain PyTorch, written for this project in the style of Sebastian Raschka's
"Build a Large Language Model (From Scratch)" (chapter 3, and his Llama 3 code for GQA and RoPE).
Everything runs in float32 on one CPU thread with fixed seeds, so two runs give byte-identical files.

Regenerate (from the repository root):

    python3 -m venv venv && venv/bin/pip install -r scripts/requirements.txt \
        && venv/bin/python scripts/gen_fixtures.py
"""

import argparse
import json
import math
import re
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
from safetensors.torch import save_file

torch.set_num_threads(1)
torch.set_default_dtype(torch.float32)

# The book's toy sentence "Your journey starts with one step", one 3-d embedding per token.
TOY_INPUTS = torch.tensor(
    [[0.43, 0.15, 0.89],   # Your
     [0.55, 0.87, 0.66],   # journey
     [0.57, 0.85, 0.64],   # starts
     [0.22, 0.58, 0.33],   # with
     [0.77, 0.25, 0.10],   # one
     [0.05, 0.80, 0.55]]   # step
)


# ---------------------------------------------------------------------------------------------
# Chapter 3 modules. Each stores its last attention weights in `self.attn_weights` for the tests.
# ---------------------------------------------------------------------------------------------

class SelfAttention_v2(nn.Module):
    def __init__(self, d_in, d_out, qkv_bias=False):
        super().__init__()
        self.W_query = nn.Linear(d_in, d_out, bias=qkv_bias)
        self.W_key = nn.Linear(d_in, d_out, bias=qkv_bias)
        self.W_value = nn.Linear(d_in, d_out, bias=qkv_bias)

    def forward(self, x):                          # x: (seq, d_in)
        self.queries = self.W_query(x)
        self.keys = self.W_key(x)
        self.values = self.W_value(x)
        self.attn_scores = self.queries @ self.keys.T
        self.attn_weights = torch.softmax(self.attn_scores / self.keys.shape[-1] ** 0.5, dim=-1)
        return self.attn_weights @ self.values


class CausalAttention(nn.Module):
    def __init__(self, d_in, d_out, context_length, dropout=0.0, qkv_bias=False):
        super().__init__()
        self.W_query = nn.Linear(d_in, d_out, bias=qkv_bias)
        self.W_key = nn.Linear(d_in, d_out, bias=qkv_bias)
        self.W_value = nn.Linear(d_in, d_out, bias=qkv_bias)
        self.dropout = nn.Dropout(dropout)
        self.register_buffer("mask", torch.triu(torch.ones(context_length, context_length), diagonal=1))

    def forward(self, x):                          # x: (batch, seq, d_in)
        b, num_tokens, d_in = x.shape
        queries, keys, values = self.W_query(x), self.W_key(x), self.W_value(x)
        attn_scores = queries @ keys.transpose(1, 2)
        attn_scores = attn_scores.masked_fill(self.mask.bool()[:num_tokens, :num_tokens], -torch.inf)
        self.attn_weights = torch.softmax(attn_scores / keys.shape[-1] ** 0.5, dim=-1)
        return self.dropout(self.attn_weights) @ values


class MultiHeadAttentionWrapper(nn.Module):
    """n_heads independent CausalAttention heads, outputs concatenated: (batch, seq, n_heads * d_out)."""

    def __init__(self, d_in, d_out, context_length, dropout, n_heads, qkv_bias=False):
        super().__init__()
        self.heads = nn.ModuleList(
            [CausalAttention(d_in, d_out, context_length, dropout, qkv_bias) for _ in range(n_heads)]
        )

    def forward(self, x):
        return torch.cat([head(x) for head in self.heads], dim=-1)


class MultiHeadAttention(nn.Module):
    def __init__(self, d_in, d_out, context_length, dropout, n_heads, qkv_bias=False):
        super().__init__()
        assert d_out % n_heads == 0, "d_out must be divisible by n_heads"
        self.d_out, self.n_heads, self.head_dim = d_out, n_heads, d_out // n_heads
        self.W_query = nn.Linear(d_in, d_out, bias=qkv_bias)
        self.W_key = nn.Linear(d_in, d_out, bias=qkv_bias)
        self.W_value = nn.Linear(d_in, d_out, bias=qkv_bias)
        self.out_proj = nn.Linear(d_out, d_out)    # with bias, as in the book
        self.dropout = nn.Dropout(dropout)
        self.register_buffer("mask", torch.triu(torch.ones(context_length, context_length), diagonal=1))

    def forward(self, x):
        b, num_tokens, d_in = x.shape
        # (b, seq, d_out) -> (b, seq, n_heads, head_dim) -> (b, n_heads, seq, head_dim)
        split = lambda t: t.view(b, num_tokens, self.n_heads, self.head_dim).transpose(1, 2)
        queries, keys, values = split(self.W_query(x)), split(self.W_key(x)), split(self.W_value(x))
        attn_scores = queries @ keys.transpose(2, 3)
        attn_scores = attn_scores.masked_fill(self.mask.bool()[:num_tokens, :num_tokens], -torch.inf)
        self.attn_weights = torch.softmax(attn_scores / keys.shape[-1] ** 0.5, dim=-1)
        context = (self.dropout(self.attn_weights) @ values).transpose(1, 2)
        self.context = context.contiguous().view(b, num_tokens, self.d_out)   # heads concatenated
        return self.out_proj(self.context)


# ---------------------------------------------------------------------------------------------
# Llama 3 pieces: RoPE (split-halves, "rotate_half" layout), KV cache, grouped-query attention.
# ---------------------------------------------------------------------------------------------

def rope_inv_freq(head_dim, theta):
    # theta_i = theta^(-2i/d), computed in float32 exactly as PyTorch-based Llama code does.
    return 1.0 / (theta ** (torch.arange(0, head_dim, 2)[: head_dim // 2].float() / head_dim))


def rope_tables(head_dim, theta, positions):
    """cos and sin, shape (len(positions), head_dim); both halves of a row repeat the same angles."""
    angles = positions[:, None].float() * rope_inv_freq(head_dim, theta)[None, :]
    angles = torch.cat([angles, angles], dim=-1)
    return torch.cos(angles), torch.sin(angles)


def compute_rope_params(head_dim, theta, context_length):
    return rope_tables(head_dim, theta, torch.arange(context_length))


def apply_rope(x, cos, sin):
    """x: (..., seq, head_dim); cos, sin: (seq, head_dim), already sliced to x's positions."""
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]
    rotated = torch.cat((-x2, x1), dim=-1)
    return x * cos + rotated * sin


def causal_mask(num_queries, num_keys, start_pos=0):
    """True where query i (at absolute position start_pos + i) must NOT see key j: j > start_pos + i."""
    i = torch.arange(num_queries)[:, None]
    j = torch.arange(num_keys)[None, :]
    return j > start_pos + i


class KVCache:
    """Pre-allocated cache of post-RoPE, un-expanded keys and values: (batch, n_kv_heads, capacity, head_dim)."""

    def __init__(self, batch, n_kv_heads, capacity, head_dim):
        self.k = torch.zeros(batch, n_kv_heads, capacity, head_dim)
        self.v = torch.zeros(batch, n_kv_heads, capacity, head_dim)
        self.len = 0

    def append(self, k, v):
        n = k.shape[2]
        assert self.len + n <= self.k.shape[2], "KV cache overflow"
        self.k[:, :, self.len:self.len + n] = k
        self.v[:, :, self.len:self.len + n] = v
        self.len += n
        return self.k[:, :, :self.len], self.v[:, :, :self.len]


class GroupedQueryAttention(nn.Module):
    def __init__(self, d_in, d_out, n_heads, n_kv_heads, context_length, rope_theta=None):
        super().__init__()
        assert d_out % n_heads == 0 and n_heads % n_kv_heads == 0
        self.n_heads, self.n_kv_heads = n_heads, n_kv_heads
        self.head_dim = d_out // n_heads
        self.group_size = n_heads // n_kv_heads
        self.W_key = nn.Linear(d_in, n_kv_heads * self.head_dim, bias=False)
        self.W_value = nn.Linear(d_in, n_kv_heads * self.head_dim, bias=False)
        self.W_query = nn.Linear(d_in, d_out, bias=False)
        self.out_proj = nn.Linear(d_out, d_out, bias=False)
        self.rope = rope_theta is not None
        if self.rope:
            cos, sin = compute_rope_params(self.head_dim, rope_theta, context_length)
            self.register_buffer("cos", cos, persistent=False)
            self.register_buffer("sin", sin, persistent=False)

    def forward(self, x, start_pos=0, cache=None):
        b, n, _ = x.shape
        queries = self.W_query(x).view(b, n, self.n_heads, self.head_dim).transpose(1, 2)
        keys = self.W_key(x).view(b, n, self.n_kv_heads, self.head_dim).transpose(1, 2)
        values = self.W_value(x).view(b, n, self.n_kv_heads, self.head_dim).transpose(1, 2)
        if self.rope:                              # positions start_pos .. start_pos + n - 1
            cos, sin = self.cos[start_pos:start_pos + n], self.sin[start_pos:start_pos + n]
            queries, keys = apply_rope(queries, cos, sin), apply_rope(keys, cos, sin)
        if cache is not None:
            assert cache.len == start_pos, "start_pos must equal the number of cached tokens"
            keys, values = cache.append(keys, values)
        # Query head h uses kv head h // group_size: order [K1, K1, K2, K2], not repeat's [K1, K2, K1, K2].
        keys = keys.repeat_interleave(self.group_size, dim=1)
        values = values.repeat_interleave(self.group_size, dim=1)
        attn_scores = queries @ keys.transpose(2, 3)               # (b, n_heads, n, start_pos + n)
        attn_scores = attn_scores.masked_fill(causal_mask(n, keys.shape[2], start_pos), -torch.inf)
        self.attn_weights = torch.softmax(attn_scores / self.head_dim ** 0.5, dim=-1)
        context = (self.attn_weights @ values).transpose(1, 2).reshape(b, n, self.n_heads * self.head_dim)
        return self.out_proj(context)


# ---------------------------------------------------------------------------------------------
# Counter-based weights for the default config (too big to store; Rust re-implements this bit-exactly).
# ---------------------------------------------------------------------------------------------

M64 = 0xFFFFFFFFFFFFFFFF


def splitmix64(z):
    z = (z + 0x9E3779B97F4A7C15) & M64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
    return z ^ (z >> 31)


assert splitmix64(0) == 0xE220A8397B1DCDAF     # the published first output of SplitMix64 seeded with 0


def uniform_scalar(seed, k, bound):
    u = (splitmix64(seed * 2**32 + k) >> 40) / 2**24          # 24 random bits: exact, in [0, 1)
    return np.float32((2.0 * u - 1.0) * bound)                # float64 arithmetic, one cast to f32


def uniform_tensor(seed, shape, bound):
    """Element k (row-major) = f32((2u - 1) * bound), u = (splitmix64(seed * 2^32 + k) >> 40) / 2^24."""
    numel = math.prod(shape)
    with np.errstate(over="ignore"):                          # uint64 arithmetic wraps mod 2^64
        z = np.uint64(seed * 2**32) + np.arange(numel, dtype=np.uint64)
        z = z + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    u = (z >> np.uint64(40)).astype(np.float64) / 2.0**24
    values = ((2.0 * u - 1.0) * bound).astype(np.float32)
    for k in (0, 1, 2, numel // 2, numel - 1):                # cross-check against the scalar version
        assert values[k] == uniform_scalar(seed, k, bound), (seed, k)
    return torch.from_numpy(values.reshape(shape))


# ---------------------------------------------------------------------------------------------
# Output helpers
# ---------------------------------------------------------------------------------------------

def params(module):
    """The module's parameters under their state_dict names (buffers such as `mask` are left out)."""
    return {name: p.detach() for name, p in module.named_parameters()}


def to_json(obj):
    """json.dumps with indent 2, but lists of numbers (shapes, chunk sizes) kept on one line."""
    one_line = lambda m: "[" + ", ".join(v.strip() for v in m.group(1).split(",")) + "]"
    return re.sub(r"\[([-+\d\s,.e]*)\]", one_line, json.dumps(obj, indent=2))


def write_case(out_dir, name, description, seed, config, tensors):
    tensors = {k: v.detach().contiguous().clone() for k, v in tensors.items()}
    for k, v in tensors.items():
        assert v.dtype in (torch.float32, torch.int64), (k, v.dtype)
    save_file(tensors, str(out_dir / f"{name}.safetensors"))
    meta = {"case": name, "description": description, "torch_version": torch.__version__, "seed": seed}
    meta.update(config)
    meta["tensors"] = {k: list(v.shape) for k, v in sorted(tensors.items())}
    (out_dir / f"{name}.json").write_text(to_json(meta) + "\n")
    print(f"{name:20s} " + ", ".join(f"{k}{tuple(v.shape)}" for k, v in sorted(tensors.items())))


def gqa_config(d_in, d_out, n_heads, n_kv_heads, rope_theta, context_length, batch, seq):
    return {"d_in": d_in, "d_out": d_out, "n_heads": n_heads, "n_kv_heads": n_kv_heads,
            "head_dim": d_out // n_heads, "rope": rope_theta is not None, "rope_theta": rope_theta,
            "context_length": context_length, "batch": batch, "seq": seq}


def inv_freq_mismatches(head_dim, theta):
    """Elements where torch's f32 inv_freq differs from f64 theta^(-2i/d) rounded once to f32."""
    exact = np.array([theta ** (-(2.0 * i) / head_dim) for i in range(head_dim // 2)]).astype(np.float32)
    return int((rope_inv_freq(head_dim, theta).numpy() != exact).sum())


def inv_freq_f32_steps(head_dim, theta):
    """torch's inv_freq step by step, each step rounded to f32: e = 2i/d; p = theta^e; 1/p."""
    e = np.arange(0, head_dim, 2, dtype=np.float32) / np.float32(head_dim)
    p = np.array([float(np.float32(theta)) ** float(v) for v in e]).astype(np.float32)
    return np.float32(1.0) / p


# ---------------------------------------------------------------------------------------------
# The cases
# ---------------------------------------------------------------------------------------------

@torch.no_grad()
def main(out_dir):
    out_dir.mkdir(parents=True, exist_ok=True)
    x = TOY_INPUTS
    batch = torch.stack((x, x))                                # (2, 6, 3)

    # attn_scores = x @ x.T; attn_weights = torch.softmax(attn_scores, dim=-1); out = attn_weights @ x
    scores = x @ x.T
    weights = torch.softmax(scores, dim=-1)
    torch.testing.assert_close((weights @ x)[1], torch.tensor([0.4419, 0.6515, 0.5683]), atol=1e-4, rtol=0)
    write_case(out_dir, "toy_simplified", "Simplified self-attention (no weights, no scaling) on the toy sentence.",
               None, {"d_in": 3, "seq": 6},
               {"x": x, "attn_scores": scores, "attn_weights": weights, "out": weights @ x})

    # torch.manual_seed(789); sa = SelfAttention_v2(d_in=3, d_out=2, qkv_bias=False); out = sa(x)
    torch.manual_seed(789)
    sa = SelfAttention_v2(3, 2)
    out = sa(x)
    torch.testing.assert_close(out[0], torch.tensor([-0.0739, 0.0713]), atol=1e-4, rtol=0)  # the book's print
    write_case(out_dir, "toy_self_attention", "SelfAttention_v2 (scaled, trainable weights) on the toy sentence.",
               789, {"d_in": 3, "d_out": 2, "qkv_bias": False, "seq": 6},
               {**params(sa), "x": x, "queries": sa.queries, "keys": sa.keys, "values": sa.values,
                "attn_scores": sa.attn_scores, "attn_weights": sa.attn_weights, "out": out})

    # Raschka §3.4.1, step by step: torch.manual_seed(123); three torch.rand(d_in, d_out) matrices (not
    # nn.Linear: stored (d_in, d_out), applied as x @ W); query_2 = x_2 @ W_query; keys = x @ W_key; ...
    torch.manual_seed(123)
    w_query, w_key, w_value = (torch.rand(3, 2) for _ in range(3))
    query_2 = x[1] @ w_query
    keys, values = x @ w_key, x @ w_value
    attn_scores_2 = query_2 @ keys.T
    attn_weights_2 = torch.softmax(attn_scores_2 / keys.shape[-1] ** 0.5, dim=-1)
    context_vec_2 = attn_weights_2 @ values
    torch.testing.assert_close(query_2, torch.tensor([0.4306, 1.4551]), atol=1e-4, rtol=0)  # the book's prints
    torch.testing.assert_close(attn_scores_2[1], torch.tensor(1.8524), atol=1e-4, rtol=0)
    torch.testing.assert_close(context_vec_2, torch.tensor([0.3061, 0.8210]), atol=1e-4, rtol=0)
    write_case(out_dir, "toy_trainable_steps",
               "Raschka 3.4.1: seed 123, W = torch.rand(d_in, d_out), the steps for query 2 (journey).",
               123, {"d_in": 3, "d_out": 2, "weight_layout": "(d_in, d_out), applied as x @ W"},
               {"x": x, "W_query": w_query, "W_key": w_key, "W_value": w_value, "query_2": query_2,
                "keys": keys, "values": values, "attn_scores_2": attn_scores_2,
                "attn_weights_2": attn_weights_2, "context_vec_2": context_vec_2})

    # Raschka §3.5.1: sa_v2's scores (seed 789) masked with -inf above the diagonal, then the softmax
    torch.manual_seed(789)
    sa_v2 = SelfAttention_v2(3, 2)
    sa_v2(x)
    mask = torch.triu(torch.ones(6, 6), diagonal=1)
    masked = sa_v2.attn_scores.masked_fill(mask.bool(), -torch.inf)
    masked_weights = torch.softmax(masked / sa_v2.keys.shape[-1] ** 0.5, dim=-1)
    torch.testing.assert_close(masked_weights[1, :2], torch.tensor([0.5517, 0.4483]), atol=1e-4, rtol=0)
    write_case(out_dir, "toy_masked_sa_v2", "Raschka 3.5.1: sa_v2 (seed 789) scores, causally masked, softmax.",
               789, {"d_in": 3, "d_out": 2, "seq": 6},
               {**params(sa_v2), "x": x, "attn_scores": sa_v2.attn_scores, "masked_weights": masked_weights})

    # torch.manual_seed(123); ca = CausalAttention(d_in=3, d_out=2, context_length=6, dropout=0.0); out = ca(batch)
    torch.manual_seed(123)
    ca = CausalAttention(3, 2, context_length=6, dropout=0.0).eval()
    out = ca(batch)
    torch.testing.assert_close(out[0, 0], torch.tensor([-0.4519, 0.2216]), atol=1e-4, rtol=0)
    write_case(out_dir, "toy_causal", "CausalAttention on the toy batch (the sentence twice); attn_weights of item 0.",
               123, {"d_in": 3, "d_out": 2, "qkv_bias": False, "batch": 2, "seq": 6},
               {**params(ca), "x": batch, "attn_weights": ca.attn_weights[0], "out": out})

    # torch.manual_seed(123); mha = MultiHeadAttention(d_in=3, d_out=2, context_length=6, dropout=0.0, n_heads=2)
    torch.manual_seed(123)
    mha = MultiHeadAttention(3, 2, context_length=6, dropout=0.0, n_heads=2).eval()
    out = mha(batch)
    torch.testing.assert_close(out[0, 0], torch.tensor([0.3190, 0.4858]), atol=1e-4, rtol=0)
    write_case(out_dir, "toy_mha", "MultiHeadAttention (2 heads of size 1, out_proj with bias) on the toy batch.",
               123, {"d_in": 3, "d_out": 2, "n_heads": 2, "head_dim": 1, "qkv_bias": False, "batch": 2, "seq": 6},
               {**params(mha), "x": batch, "context": mha.context, "out": out})

    # torch.manual_seed(123); w = MultiHeadAttentionWrapper(d_in=3, d_out=2, context_length=6, dropout=0.0, n_heads=2)
    torch.manual_seed(123)
    wrapper = MultiHeadAttentionWrapper(3, 2, context_length=6, dropout=0.0, n_heads=2).eval()
    out = wrapper(batch)
    torch.testing.assert_close(out[0, 0], torch.tensor([-0.4519, 0.2216, 0.4772, 0.1063]), atol=1e-4, rtol=0)
    write_case(out_dir, "toy_wrapper", "MultiHeadAttentionWrapper: 2 independent CausalAttention heads, concatenated.",
               123, {"d_in": 3, "d_out": 2, "n_heads": 2, "qkv_bias": False, "batch": 2, "seq": 6},
               {**params(wrapper), "x": batch, "out": out})

    # torch.manual_seed(42); mha = MultiHeadAttention(12, 16, context_length=7, dropout=0.0, n_heads=4, qkv_bias=True)
    # x = torch.randn(2, 7, 12); out = mha(x)
    torch.manual_seed(42)
    mha = MultiHeadAttention(12, 16, context_length=7, dropout=0.0, n_heads=4, qkv_bias=True).eval()
    x = torch.randn(2, 7, 12)
    out = mha(x)
    write_case(out_dir, "small_mha", "MultiHeadAttention with qkv biases, 4 heads of size 4.",
               42, {"d_in": 12, "d_out": 16, "n_heads": 4, "head_dim": 4, "qkv_bias": True, "batch": 2, "seq": 7},
               {**params(mha), "x": x, "context": mha.context, "attn_weights": mha.attn_weights, "out": out})

    # torch.manual_seed(SEED); gqa = GroupedQueryAttention(12, 16, n_heads=4, n_kv_heads=KV, context_length=32,
    #                                                      rope_theta=THETA); x = torch.randn(2, 7, 12); out = gqa(x)
    for name, seed, n_kv, theta, what in [
        ("small_gqa", 43, 2, 10000.0, "GQA, 4 query heads sharing 2 kv heads, RoPE theta 10000."),
        ("small_mqa", 44, 1, 10000.0, "Multi-query attention (1 kv head), RoPE theta 10000."),
        ("small_gqa_norope", 45, 2, None, "GQA, 4 query heads sharing 2 kv heads, no RoPE."),
    ]:
        torch.manual_seed(seed)
        gqa = GroupedQueryAttention(12, 16, n_heads=4, n_kv_heads=n_kv, context_length=32, rope_theta=theta)
        x = torch.randn(2, 7, 12)
        out = gqa(x)
        write_case(out_dir, name, what, seed, gqa_config(12, 16, 4, n_kv, theta, 32, 2, 7),
                   {**params(gqa), "x": x, "attn_weights": gqa.attn_weights, "out": out})

    # gqa = GroupedQueryAttention(768, 768, n_heads=12, n_kv_heads=4, context_length=1024, rope_theta=500000.0)
    # with every weight and x from uniform_tensor (splitmix64); out = gqa(x)
    gqa = GroupedQueryAttention(768, 768, n_heads=12, n_kv_heads=4, context_length=1024, rope_theta=500000.0)
    weight_seeds = {"W_query.weight": 1, "W_key.weight": 2, "W_value.weight": 3, "out_proj.weight": 4}
    weight_bounds, weight_shapes = {}, {}
    for pname, seed in weight_seeds.items():
        p = gqa.get_parameter(pname)
        weight_bounds[pname] = 1.0 / math.sqrt(p.shape[1])    # nn.Linear's init bound, 1/sqrt(in_features)
        weight_shapes[pname] = list(p.shape)
        p.copy_(uniform_tensor(seed, tuple(p.shape), weight_bounds[pname]))
    x = uniform_tensor(5, (1, 16, 768), 1.0)
    first_values = {k: gqa.get_parameter(k).flatten()[:4].tolist() for k in weight_seeds}   # to debug a port
    first_values["x"] = x.flatten()[:4].tolist()
    out = gqa(x)
    write_case(out_dir, "default_gqa", "The default config (d_model 768, 12 heads, 4 kv heads, RoPE 500000); "
               "weights not stored: regenerate them with splitmix64 (see weight_seeds, weight_bounds).",
               None, {**gqa_config(768, 768, 12, 4, 500000.0, 1024, 1, 16), "weights": "splitmix64",
                      "weight_seeds": weight_seeds, "weight_bounds": weight_bounds,
                      "weight_shapes": weight_shapes,
                      "x_seed": 5, "x_bound": 1.0, "first_values": first_values},
               {"x": x, "out": out})

    # cos, sin = rope_tables(64, 500000.0, positions); out = apply_rope(x, cos, sin)   (row r at positions[r])
    positions = torch.tensor([0, 1, 2, 7, 100, 1023, 2048, 4095, 5000, 8191], dtype=torch.int64)
    torch.manual_seed(46)
    x = torch.randn(10, 64)
    cos, sin = rope_tables(64, 500000.0, positions)
    mismatches = {f"head_dim {d}, theta {t}": inv_freq_mismatches(d, t) for d, t in
                  [(64, 500000.0), (64, 10000.0), (4, 10000.0)]}
    print("inv_freq: f32 torch vs f64 rounded to f32, mismatching elements:", mismatches)
    for d, t in [(64, 500000.0), (64, 10000.0), (128, 500000.0), (4, 10000.0)]:
        assert np.array_equal(rope_inv_freq(d, t).numpy(), inv_freq_f32_steps(d, t)), (d, t)
    write_case(out_dir, "rope", "RoPE (split-halves layout) of 10 vectors, row r at position positions[r].",
               46, {"head_dim": 64, "rope_theta": 500000.0, "inv_freq_mismatches_vs_f64_rounded": mismatches,
                    "inv_freq_f32_steps": "e = f32(2i) / f32(d); p = f32(theta^e) (correctly rounded); "
                                          "inv_freq = f32(1 / p); angle = f32(f32(pos) * inv_freq)"},
               {"positions": positions, "positions_f32": positions.float(), "x": x,
                "inv_freq": rope_inv_freq(64, 500000.0), "cos": cos, "sin": sin, "out": apply_rope(x, cos, sin)})

    # torch.manual_seed(47); gqa = GroupedQueryAttention(12, 16, n_heads=4, n_kv_heads=2, context_length=32,
    # rope_theta=10000.0); x = torch.randn(2, 9, 12); out_full = gqa(x);
    # cached: out = gqa(x[:, a:b], start_pos=a, cache=cache) chunk by chunk
    torch.manual_seed(47)
    gqa = GroupedQueryAttention(12, 16, n_heads=4, n_kv_heads=2, context_length=32, rope_theta=10000.0)
    x = torch.randn(2, 9, 12)
    out_full = gqa(x)

    def run_cached(chunk_sizes):
        cache, outs, start = KVCache(2, 2, 32, 4), [], 0
        for size in chunk_sizes:
            outs.append(gqa(x[:, start:start + size], start_pos=start, cache=cache))
            start += size
        return torch.cat(outs, dim=1), cache

    out_decode, cache = run_cached([5, 1, 1, 1, 1])
    out_chunked, _ = run_cached([3, 4, 2])
    for label, got in [("decode", out_decode), ("chunked", out_chunked)]:
        torch.testing.assert_close(got, out_full)
        print(f"kv_cache: max |out_{label} - out_full| = {(got - out_full).abs().max().item():.3e}")
    write_case(out_dir, "kv_cache", "GQA with a KV cache: full forward vs prefill 5 + 4 decode steps vs chunks "
               "[3, 4, 2]; cache_k/cache_v are the filled cache after the decode run (post-RoPE, un-expanded).",
               47, {**gqa_config(12, 16, 4, 2, 10000.0, 32, 2, 9), "prefill": 5, "chunks": [3, 4, 2]},
               {**params(gqa), "x": x, "out_full": out_full, "out_decode": out_decode, "out_chunked": out_chunked,
                "cache_k": cache.k[:, :, :cache.len], "cache_v": cache.v[:, :, :cache.len]})

    # StreamingLLM (Xiao et al. 2023) as chapter 9 keeps it: a sliding window of W keys plus the first
    # `sink_tokens` tokens, always visible. Our own reference (no library implements this exact policy):
    # the whole sequence under the mask, then the same tokens through a cache that evicts everything
    # but the sink tokens and the last W - 1 rows, one token at a time after a prefill.
    torch.manual_seed(48)
    gqa = GroupedQueryAttention(12, 16, n_heads=4, n_kv_heads=2, context_length=64, rope_theta=10000.0)
    x = torch.randn(2, 40, 12)
    window, sink_tokens = 6, 2

    def streaming_attention(queries, keys, values, query_rows, sinks):
        """Attention of queries at cache rows `query_rows` over keys at rows 0..; key row j is visible to
        query row i iff j <= i and (i - j < window or j < sinks)."""
        i = query_rows[:, None]
        j = torch.arange(keys.shape[2])[None, :]
        hidden = (j > i) | ((i - j >= window) & (j >= sinks))
        keys = keys.repeat_interleave(gqa.group_size, dim=1)
        values = values.repeat_interleave(gqa.group_size, dim=1)
        scores = (queries @ keys.transpose(2, 3)).masked_fill(hidden, -torch.inf)
        weights = torch.softmax(scores / gqa.head_dim ** 0.5, dim=-1)
        b, _, n, _ = queries.shape
        return gqa.out_proj((weights @ values).transpose(1, 2).reshape(b, n, -1))

    def project(xs, start_pos):
        b, n, _ = xs.shape
        q = gqa.W_query(xs).view(b, n, 4, 4).transpose(1, 2)
        k = gqa.W_key(xs).view(b, n, 2, 4).transpose(1, 2)
        v = gqa.W_value(xs).view(b, n, 2, 4).transpose(1, 2)
        cos, sin = gqa.cos[start_pos:start_pos + n], gqa.sin[start_pos:start_pos + n]
        return apply_rope(q, cos, sin), apply_rope(k, cos, sin), v

    q, k, v = project(x, 0)
    out_full = streaming_attention(q, k, v, torch.arange(40), sink_tokens)
    out_window_only = streaming_attention(q, k, v, torch.arange(40), 0)
    cache_k, cache_v, outs = k[:, :, :0], v[:, :, :0], []
    for start, n in [(0, 5)] + [(t, 1) for t in range(5, 40)]:
        q, k, v = project(x[:, start:start + n], start)
        if cache_k.shape[2] > sink_tokens + window - 1:        # evict what no later query sees
            keep = lambda c: torch.cat([c[:, :, :sink_tokens], c[:, :, -(window - 1):]], dim=2)
            cache_k, cache_v = keep(cache_k), keep(cache_v)
        rows = torch.arange(cache_k.shape[2], cache_k.shape[2] + n)
        cache_k, cache_v = torch.cat([cache_k, k], dim=2), torch.cat([cache_v, v], dim=2)
        outs.append(streaming_attention(q, cache_k, cache_v, rows, sink_tokens))
    out_streamed = torch.cat(outs, dim=1)
    torch.testing.assert_close(out_streamed, out_full)
    print(f"streaming_sinks: max |out_streamed - out_full| = {(out_streamed - out_full).abs().max().item():.3e}, "
          f"cache rows at the end {cache_k.shape[2]}")
    write_case(out_dir, "streaming_sinks", "GQA with RoPE under StreamingLLM's policy: window 6 plus 2 sink "
               "tokens; out_full is the whole sequence under the mask, out_streamed the same tokens through an "
               "evicting cache (prefill 5, then one token at a time), out_window_only the window without sinks.",
               48, {**gqa_config(12, 16, 4, 2, 10000.0, 64, 2, 40), "window": window, "sink_tokens": sink_tokens,
                    "prefill": 5, "cache_rows_at_end": cache_k.shape[2]},
               {**params(gqa), "x": x, "out_full": out_full, "out_streamed": out_streamed,
                "out_window_only": out_window_only})

    # out = torch.softmax(scores, dim=-1); out_safe = torch._safe_softmax(scores_safe, dim=-1)
    inf = float("-inf")
    scores = torch.tensor([[1.0, 2.0, 0.5, -1.0, 3.0],            # ordinary
                           [1000.0, 999.0, 998.0, -1000.0, 0.0],  # needs the max subtracted
                           [0.5, inf, 1.5, inf, -0.5]])           # partly masked
    scores_safe = torch.cat([scores, torch.full((1, 5), inf)])    # plus a fully masked row
    if hasattr(torch, "_safe_softmax"):
        out_safe, safe_source = torch._safe_softmax(scores_safe, dim=-1), "torch._safe_softmax"
    else:
        out_safe = torch.cat([torch.softmax(scores, dim=-1), torch.zeros(1, 5)])
        safe_source = "torch.softmax with the fully masked row set to 0 by hand"
    assert torch.isnan(torch.softmax(scores_safe, dim=-1)[3]).all()
    write_case(out_dir, "softmax_edge", "Softmax over the last axis: ordinary, large (stability) and partly "
               "masked rows; scores_safe adds a fully masked row, which plain softmax turns into NaN and the "
               "crate (like torch._safe_softmax) into zeros.",
               None, {"rows": ["ordinary", "large", "partly_masked"], "safe_rows_extra": ["fully_masked"],
                      "out_safe_source": safe_source, "plain_softmax_fully_masked": "NaN",
                      "fully_masked_convention": "zeros"},
               {"scores": scores, "out": torch.softmax(scores, dim=-1), "scores_safe": scores_safe,
                "out_safe": out_safe, "fully_masked_safe": out_safe[3]})


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("code/tests/fixtures"), help="output folder")
    main(parser.parse_args().out)
