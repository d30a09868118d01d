"""Generate the reference numbers of chapter 13's quantized KV cache (int8, int4 the KIVI way, fp8 e4m3).

For every case NAME this writes code/tests/fixtures/quant/NAME.safetensors and NAME.json (or --out DIR).
Keys and values are stored as Hugging Face's cache holds them, (batch, n_kv_heads, seq, head_dim), row-major;
the Rust test turns sequence b into the crate's (seq, n_kv_heads * head_dim) matrix. Codes are stored in their
own dtype (int8; uint8 for packed int4 pairs and for fp8 e4m3 bytes), scales and mins as float32.

Three references, each run on the CPU in float32, one thread, fixed seeds (two runs give byte-identical files):

  int8   our own, written with torch ops below (`quantize_int8`): symmetric, one scale per token and KV head,
         scale = amax / 127 clamped to at least float32's smallest normal (an all-zero row gets that scale and
         codes 0), codes = round-half-to-even(x / scale) clamped to [-127, 127]. A NaN anywhere in a row makes
         the row's amax and scale NaN (torch.amax propagates NaN), x / scale NaN, and the code 0 (nan_to_num
         before the cast, which is otherwise undefined for NaN): the row dequantizes to 0 * NaN = NaN. An inf
         makes the scale inf: finite / inf = 0, inf / inf = NaN -> 0, so that row also dequantizes to NaN.
  int4   our own, the KIVI scheme (Liu et al. 2024, and their code github.com/jy-yuan/KIVI quant/new_pack.py:
         mn, mx, scale = (mx - mn) / 15, codes = ((x - mn) / scale).clamp(0, 15).round(), x ~ code * scale + mn,
         low bits first when packing): keys per channel over groups of G tokens, values per token over the whole
         head, asymmetric, two codes per byte (low nibble = even column). The newest tokens stay in float32: once
         the unquantized tokens number R + G, the oldest G of them are quantized (`Int4Reference.update`), so the
         newest R are always exact. The scale is clamped to float32's smallest normal like int8's (a constant
         group gets codes 0 and dequantizes to its min exactly; KIVI divides by 0 there). NaN or inf in a group:
         its min/max/scale turn NaN or inf, codes 0, and the group dequantizes to NaN, like int8.
  fp8    transformers' own `Fp8QuantizedLayer` (cache_utils.py, transformers 5.24), run here: one float32 scale
         per tensor (keys, values) = amax / 448 over the whole first update (every sequence of the batch, every
         head), clamped like ours, frozen afterwards; codes = (x / scale).to(torch.float8_e4m3fn), which rounds
         to nearest even (subnormals included) and SATURATES at +-448 (inf too; NaN stays NaN, sign kept). We
         store the layer's own codes, scales and the dequantized states its `update` returns.

fp8_cast also records torch's float32 -> float8_e4m3fn cast exhaustively: all 2^32 float32 bit patterns were cast
(in chunks) and the table keeps, in bit-pattern order, each pattern where the code changes (`starts`, int64) and
the code from there on (`codes`, uint8): 256 runs. The Rust test checks its own conversion on every run's edges
and on a stride through all patterns. `decoded` is every one of the 256 codes cast back to float32 by torch.

Regenerate (from the repository root; about one minute, most of it the exhaustive cast):

    venv/bin/python scripts/gen_quant_fixtures.py
"""

import argparse
import json
import re
from pathlib import Path

import torch
import transformers
from safetensors.torch import save_file
from transformers.cache_utils import Fp8QuantizedLayer

torch.set_num_threads(1)
torch.set_default_dtype(torch.float32)

TINY = torch.finfo(torch.float32).tiny  # 2^-126, float32's smallest normal number
E4M3 = torch.float8_e4m3fn


# ---------------------------------------------------------------------------------------------
# int8: our reference
# ---------------------------------------------------------------------------------------------

def quantize_int8(x):
    """x (..., head_dim) -> codes int8 (..., head_dim), scale (...): one symmetric scale per row."""
    amax = x.abs().amax(dim=-1, keepdim=True)               # NaN if the row holds a NaN
    scale = (amax / 127).clamp(min=TINY)                    # an all-zero row: scale TINY, codes 0
    q = (x / scale).round().clamp(-127, 127)                # torch.round: half to even
    return torch.nan_to_num(q, nan=0.0).to(torch.int8), scale.squeeze(-1)


def dequantize_int8(codes, scale):
    return codes.float() * scale.unsqueeze(-1)


# ---------------------------------------------------------------------------------------------
# int4: our reference, the KIVI scheme
# ---------------------------------------------------------------------------------------------

def int4_codes(x, mn, scale):
    """KIVI's order: subtract the min, divide, clamp, round (half to even); NaN -> code 0."""
    q = ((x - mn) / scale).clamp(0, 15).round()
    return torch.nan_to_num(q, nan=0.0).to(torch.uint8)


def int4_scale(mn, mx):
    return ((mx - mn) / 15).clamp(min=TINY)


def pack_int4(codes):
    """(..., d) codes 0..15 -> (..., d/2) bytes: column 2j in the low nibble, 2j+1 in the high one."""
    return codes[..., 0::2] | (codes[..., 1::2] << 4)


def unpack_int4(packed):
    return torch.stack([packed & 15, packed >> 4], dim=-1).flatten(-2)


def quantize_keys_per_channel(k):
    """k (B, H, G, D), one group of G tokens -> packed codes (B, H, G, D/2), scale and min (B, H, D)."""
    mn = k.amin(dim=-2, keepdim=True)                       # per channel, over the group's tokens
    mx = k.amax(dim=-2, keepdim=True)
    scale = int4_scale(mn, mx)
    return pack_int4(int4_codes(k, mn, scale)), scale.squeeze(-2), mn.squeeze(-2)


def quantize_values_per_token(v):
    """v (B, H, n, D) -> packed codes (B, H, n, D/2), scale and min (B, H, n): per token, whole head."""
    mn = v.amin(dim=-1, keepdim=True)
    mx = v.amax(dim=-1, keepdim=True)
    scale = int4_scale(mn, mx)
    return pack_int4(int4_codes(v, mn, scale)), scale.squeeze(-1), mn.squeeze(-1)


class Int4Reference:
    """The streaming policy: unquantized tokens wait in float32; whenever they number R + G, the oldest G are
    quantized (keys as one group per channel, values token by token). Keys and values split at the same row."""

    def __init__(self, group, residual):
        self.group, self.residual = group, residual
        self.k_codes, self.k_scales, self.k_mins = [], [], []
        self.v_codes, self.v_scales, self.v_mins = [], [], []
        self.res_k = self.res_v = None

    def update(self, k, v):                                 # (B, H, n, D) each
        pending_k = k if self.res_k is None else torch.cat([self.res_k, k], dim=2)
        pending_v = v if self.res_v is None else torch.cat([self.res_v, v], dim=2)
        n_groups = max(pending_k.shape[2] - self.residual, 0) // self.group
        for g in range(n_groups):
            rows = slice(g * self.group, (g + 1) * self.group)
            codes, scale, mn = quantize_keys_per_channel(pending_k[:, :, rows])
            self.k_codes.append(codes), self.k_scales.append(scale), self.k_mins.append(mn)
            codes, scale, mn = quantize_values_per_token(pending_v[:, :, rows])
            self.v_codes.append(codes), self.v_scales.append(scale), self.v_mins.append(mn)
        self.res_k = pending_k[:, :, n_groups * self.group:]
        self.res_v = pending_v[:, :, n_groups * self.group:]

    def state(self, batch, heads, head_dim):
        empty = lambda *s, dtype=torch.float32: torch.zeros(batch, heads, *s, dtype=dtype)
        cat = lambda parts, dim, e: torch.cat(parts, dim=dim) if parts else e
        k_codes = cat(self.k_codes, 2, empty(0, head_dim // 2, dtype=torch.uint8))
        k_scales = cat([s.unsqueeze(2) for s in self.k_scales], 2, empty(0, head_dim))
        k_mins = cat([m.unsqueeze(2) for m in self.k_mins], 2, empty(0, head_dim))
        v_codes = cat(self.v_codes, 2, empty(0, head_dim // 2, dtype=torch.uint8))
        v_scales = cat(self.v_scales, 2, empty(0))
        v_mins = cat(self.v_mins, 2, empty(0))
        # dequantized: code * scale + min, two roundings (KIVI: `data * scale + mn`)
        g = self.group
        k_deq = unpack_int4(k_codes).float() * k_scales.repeat_interleave(g, dim=2) \
            + k_mins.repeat_interleave(g, dim=2)
        v_deq = unpack_int4(v_codes).float() * v_scales.unsqueeze(-1) + v_mins.unsqueeze(-1)
        return {
            "key_codes": k_codes, "key_scales": k_scales, "key_mins": k_mins,
            "value_codes": v_codes, "value_scales": v_scales, "value_mins": v_mins,
            "residual_keys": self.res_k, "residual_values": self.res_v,
            "dequantized_keys": torch.cat([k_deq, self.res_k], dim=2),
            "dequantized_values": torch.cat([v_deq, self.res_v], dim=2),
        }


# ---------------------------------------------------------------------------------------------
# Inputs
# ---------------------------------------------------------------------------------------------

def gaussian(seed, batch, heads, seq, head_dim, std=1.0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, heads, seq, head_dim, generator=g) * std


def with_special_rows(x, tie_row):
    """Plants the edge cases in sequence 0: an all-zero row (token 1, head 0), a row with amax 127 whose other
    elements sit exactly halfway between two integers (token 2, head 0: int8's scale is exactly 1 there, so
    x / scale lands on the .5 and round-half-to-even decides), and in the last head one huge element."""
    x = x.clone()
    x[0, 0, 1] = 0.0
    x[0, 0, 2] = tie_row[: x.shape[-1]]
    x[0, -1, 3, 0] = 60.0
    return x


INT8_TIES = torch.tensor([127.0, 2.5, -3.5, 0.5, -0.5, 1.5, 126.5, -126.5, 4.5, -5.5, 0.0, 7.5])
# int4 per token: min 0, max 15 give scale exactly 1 and (x - 0) / 1 lands on the .5
INT4_TIES = torch.tensor([0.0, 15.0, 2.5, 3.5, 0.5, 14.5, 7.5, 8.5, 1.5, 6.5, 12.5, 13.5])


def int4_key_ties(k, group):
    """Keys per channel: in sequence 0, head 0, channel 1, the first group holds 0 and 15 (scale 1) and the
    rest halfway values; channel 2 of the same group is constant (zero range: scale TINY, exact)."""
    k = k.clone()
    column = torch.tensor([0.0, 15.0, 2.5, 3.5, 0.5, 14.5, 7.5, 8.5])[:group]
    k[0, 0, :group, 1] = torch.cat([column, torch.full((max(group - 8, 0),), 4.0)])
    k[0, 0, :group, 2] = -1.25
    return k


def chunked(x, chunks):
    out, start = [], 0
    for n in chunks:
        out.append(x[:, :, start:start + n])
        start += n
    assert start == x.shape[2]
    return out


# ---------------------------------------------------------------------------------------------
# Output helpers
# ---------------------------------------------------------------------------------------------

def to_json(obj):
    """json.dumps with indent 2, lists of numbers kept on one line."""
    one_line = lambda m: "[" + ", ".join(v.strip() for v in m.group(1).split(",")) + "]"
    return re.sub(r"\[([-+\d\s,.e]*)\]", one_line, json.dumps(obj, indent=2))


def write_case(out_dir, name, description, config, tensors):
    tensors = {k: v.detach().contiguous().clone() for k, v in tensors.items()}
    for k, v in tensors.items():
        assert v.dtype in (torch.float32, torch.int64, torch.int8, torch.uint8), (k, v.dtype)
    save_file(tensors, str(out_dir / f"{name}.safetensors"))
    meta = {"case": name, "description": description, "torch_version": torch.__version__,
            "transformers_version": transformers.__version__}
    meta.update(config)
    meta["tensors"] = {k: [str(v.dtype).removeprefix("torch."), list(v.shape)] for k, v in sorted(tensors.items())}
    (out_dir / f"{name}.json").write_text(to_json(meta) + "\n")
    print(f"{name:22s} " + ", ".join(f"{k}{tuple(v.shape)}" for k, v in sorted(tensors.items())))


# ---------------------------------------------------------------------------------------------
# The cases
# ---------------------------------------------------------------------------------------------

def int8_case(out_dir, name, seed, batch, heads, head_dim, chunks, special, nan_at=None):
    seq = sum(chunks)
    keys = gaussian(seed, batch, heads, seq, head_dim)
    values = gaussian(seed + 1, batch, heads, seq, head_dim, std=0.5)
    if special:
        keys = with_special_rows(keys, INT8_TIES)
        values = with_special_rows(values, -INT8_TIES)
    if nan_at is not None:
        keys[nan_at] = float("nan")
        values[nan_at[:3] + (0,)] = float("inf")
    # the cache quantizes each token as it arrives: chunk by chunk gives the same rows as all at once
    parts = [quantize_int8(k) for k in chunked(keys, chunks)]
    k_codes, k_scales = torch.cat([p[0] for p in parts], 2), torch.cat([p[1] for p in parts], 2)
    v_codes, v_scales = quantize_int8(values)
    assert torch.equal(k_codes, quantize_int8(keys)[0])
    deq_k, deq_v = dequantize_int8(k_codes, k_scales), dequantize_int8(v_codes, v_scales)
    if special:
        assert k_scales[0, 0, 1] == TINY and (k_codes[0, 0, 1] == 0).all()      # the zero row
        assert k_scales[0, 0, 2] == 1.0                                          # the tie row
        assert k_codes[0, 0, 2, :10].tolist() == [127, 2, -4, 0, 0, 2, 126, -126, 4, -6][:head_dim]
    if nan_at is not None:
        b, h, t, _ = nan_at
        assert k_scales[b, h, t].isnan() and (k_codes[b, h, t] == 0).all() and deq_k[b, h, t].isnan().all()
        assert deq_v[b, h, t].isnan().all()                                      # inf -> NaN row
    write_case(out_dir, name, "int8 per token and KV head, symmetric (our torch reference)",
               {"format": "int8", "batch": batch, "n_kv_heads": heads, "head_dim": head_dim,
                "chunks": chunks, "seed": seed, "nan_at": list(nan_at) if nan_at else None},
               {"keys": keys, "values": values, "key_codes": k_codes, "key_scales": k_scales,
                "value_codes": v_codes, "value_scales": v_scales,
                "dequantized_keys": deq_k, "dequantized_values": deq_v})


def int4_case(out_dir, name, seed, batch, heads, head_dim, group, residual, chunks, special, nan_at=None):
    seq = sum(chunks)
    keys = gaussian(seed, batch, heads, seq, head_dim)
    values = gaussian(seed + 1, batch, heads, seq, head_dim, std=0.5)
    if special:
        keys = int4_key_ties(keys, group)
        values = with_special_rows(values, INT4_TIES)
    if nan_at is not None:
        keys[nan_at] = float("nan")
        values[nan_at[:3] + (0,)] = float("inf")
    ref = Int4Reference(group, residual)
    for k, v in zip(chunked(keys, chunks), chunked(values, chunks)):
        ref.update(k, v)
    state = ref.state(batch, heads, head_dim)
    n_quantized = state["key_codes"].shape[2]
    assert n_quantized % group == 0 and residual <= seq - n_quantized < residual + group or seq < residual + group
    if special:
        assert state["key_scales"][0, 0, 0, 1] == 1.0 and state["key_scales"][0, 0, 0, 2] == TINY
        assert torch.equal(state["dequantized_keys"][0, 0, :group, 2], keys[0, 0, :group, 2])   # exact
        codes = unpack_int4(state["key_codes"][0, 0, :group])[:, 1]
        assert codes[:8].tolist() == [0, 15, 2, 4, 0, 14, 8, 8][:group], codes
        assert state["value_scales"][0, 0, 2] == 1.0
    if nan_at is not None:
        b, h, t, c = nan_at
        g = t // group
        assert state["key_scales"][b, h, g, c].isnan()
        assert state["dequantized_keys"][b, h, g * group:(g + 1) * group, c].isnan().all()
        assert state["dequantized_values"][b, h, t].isnan().all()
    write_case(out_dir, name,
               "int4 the KIVI way: keys per channel in groups of G tokens, values per token (whole head), "
               "asymmetric, two codes per byte, the newest R..R+G-1 tokens in float32 (our torch reference)",
               {"format": "int4", "batch": batch, "n_kv_heads": heads, "head_dim": head_dim, "group": group,
                "residual": residual, "chunks": chunks, "seed": seed, "n_quantized": n_quantized,
                "nan_at": list(nan_at) if nan_at else None},
               {"keys": keys, "values": values, **state})


def fp8_case(out_dir, name, seed, batch, heads, head_dim, chunks, later_scale=1.0, nan_at=None):
    """transformers' own Fp8QuantizedLayer: its codes, scales and the dequantized states of its last update."""
    seq = sum(chunks)
    keys = gaussian(seed, batch, heads, seq, head_dim)
    values = gaussian(seed + 1, batch, heads, seq, head_dim, std=0.5)
    keys[:, :, chunks[0]:] *= later_scale                   # later tokens larger than the calibration
    values[:, :, chunks[0]:] *= later_scale
    keys[0, 0, 1] = 0.0                                     # a zero row, and a tiny one (subnormal codes)
    keys[0, -1, 2] *= 1e-4
    if nan_at is not None:
        keys[nan_at] = float("nan")
        values[nan_at[:3] + (0,)] = float("inf")
    layer = Fp8QuantizedLayer()
    returned = []
    for k, v in zip(chunked(keys, chunks), chunked(values, chunks)):
        returned.append(layer.update(k.clone(), v.clone()))
    k_codes, k_scale = layer._quantized_keys
    v_codes, v_scale = layer._quantized_values
    assert k_codes.dtype == E4M3 and k_scale.dtype == torch.float32 and k_scale.dim() == 0
    # the scale is calibrated on the first update only, over the whole batch
    expected = (keys[:, :, :chunks[0]].abs().amax() / 448).clamp(min=TINY)
    assert torch.equal(k_scale, expected) or (k_scale.isnan() and expected.isnan())
    first = keys[:, :, :chunks[0]]                          # the first update returns its input
    assert torch.equal(returned[0][0].nan_to_num(), first.nan_to_num())
    tensors = {"keys": keys, "values": values,
               "key_codes": k_codes.view(torch.uint8), "value_codes": v_codes.view(torch.uint8),
               "key_scale": k_scale.reshape(1), "value_scale": v_scale.reshape(1)}
    if len(chunks) > 1:
        tensors["dequantized_keys"], tensors["dequantized_values"] = returned[-1]
    if later_scale > 1.0:                                   # past +-448 after scaling: saturated
        over = (keys / k_scale).abs() > 448
        assert over[:, :, chunks[0]:].any() and not over[:, :, :chunks[0]].any()
        assert ((k_codes.view(torch.uint8)[over] & 0x7F) == 0x7E).all()
    if nan_at is not None and nan_at[2] >= chunks[0]:      # a later token: only that element
        b, h, t, c = nan_at
        assert k_codes.view(torch.uint8)[b, h, t, c] & 0x7F == 0x7F                   # NaN stays NaN
        assert v_codes.view(torch.uint8)[b, h, t, 0] == 0x7E                          # inf saturates
    elif nan_at is not None:                                # in the calibration: the scales are lost
        assert k_scale.isnan() and v_scale == float("inf")
        assert ((k_codes.view(torch.uint8) & 0x7F) == 0x7F).all()                    # every key NaN
        assert returned[-1][0].isnan().all() and returned[-1][1].isnan().all()   # inf scale: 0 · inf
    write_case(out_dir, name, "fp8 e4m3 with one per-tensor scale from the first update (transformers' "
               "Fp8QuantizedLayer itself)",
               {"format": "fp8", "batch": batch, "n_kv_heads": heads, "head_dim": head_dim, "chunks": chunks,
                "seed": seed, "later_scale": later_scale, "nan_at": list(nan_at) if nan_at else None},
               tensors)


def fp8_outgrown(out_dir):
    """The trap, measured with transformers' layer: calibrate on 16 Gaussian tokens, then decode tokens whose
    keys are 1, 2, 4 and 8 times larger. Stored: what the layer's last update returns for every token."""
    batch, heads, head_dim, prefill = 1, 2, 16, 16
    factors = [1.0, 2.0, 4.0, 8.0]
    keys = gaussian(91, batch, heads, prefill + len(factors), head_dim)
    values = gaussian(92, batch, heads, prefill + len(factors), head_dim)
    for i, f in enumerate(factors):
        keys[:, :, prefill + i] *= f
    layer = Fp8QuantizedLayer()
    layer.update(keys[:, :, :prefill].clone(), values[:, :, :prefill].clone())
    for i in range(len(factors)):
        t = prefill + i
        ret_k, ret_v = layer.update(keys[:, :, t:t + 1].clone(), values[:, :, t:t + 1].clone())
    errors = (ret_k - keys).abs().amax(dim=(0, 1, 3))
    print("  fp8_outgrown: max |dequantized - key| per token:", [f"{e:.3g}" for e in errors.tolist()])
    k_codes, k_scale = layer._quantized_keys
    write_case(out_dir, "fp8_outgrown",
               "transformers' Fp8QuantizedLayer calibrated on 16 tokens, then tokens 1, 2, 4, 8 times larger",
               {"format": "fp8", "batch": batch, "n_kv_heads": heads, "head_dim": head_dim,
                "chunks": [prefill] + [1] * len(factors), "factors": factors,
                "max_error_per_token": [float(e) for e in errors]},
               {"keys": keys, "values": values, "key_codes": k_codes.view(torch.uint8),
                "value_codes": layer._quantized_values[0].view(torch.uint8),
                "key_scale": k_scale.reshape(1), "value_scale": layer._quantized_values[1].reshape(1),
                "dequantized_keys": ret_k, "dequantized_values": ret_v})


def fp8_cast(out_dir):
    """torch's float32 -> float8_e4m3fn cast on all 2^32 bit patterns, as runs of equal codes."""
    starts, codes, prev = [], [], None
    chunk = 1 << 25
    for first in range(0, 1 << 32, chunk):
        bits = torch.arange(first, first + chunk, dtype=torch.int64)
        f = torch.where(bits >= 1 << 31, bits - (1 << 32), bits).to(torch.int32).view(torch.float32)
        q = f.to(E4M3).view(torch.uint8)
        change = (torch.nonzero(q[1:] != q[:-1]).flatten() + 1).tolist()
        if prev is None or q[0].item() != prev:
            change = [0] + change
        for i in change:
            starts.append(first + i)
            codes.append(q[i].item())
        prev = q[-1].item()
    assert len(starts) == 256 and sorted(codes) == list(range(256)), len(starts)
    decoded = torch.arange(256, dtype=torch.int64).to(torch.uint8).view(E4M3).float()
    write_case(out_dir, "fp8_cast", "torch's float32 -> float8_e4m3fn cast on all 2^32 float32 bit patterns, "
               "as runs (`starts`: first bit pattern of a run, `codes`: its code), and the 256 codes decoded",
               {"runs": len(starts)},
               {"starts": torch.tensor(starts, dtype=torch.int64), "codes": torch.tensor(codes, dtype=torch.uint8),
                "decoded": decoded})


@torch.no_grad()
def main(out_dir):
    out_dir.mkdir(parents=True, exist_ok=True)
    # shapes: batch, n_kv_heads, head_dim and lengths pairwise different, heads non-square
    int8_case(out_dir, "int8_mixed", 801, batch=2, heads=3, head_dim=10, chunks=[7, 1, 1, 4, 1], special=True)
    int8_case(out_dir, "int8_mqa", 802, batch=3, heads=1, head_dim=12, chunks=[5, 6], special=True)
    int8_case(out_dir, "int8_nan", 803, batch=2, heads=2, head_dim=6, chunks=[4, 1, 1], special=False,
              nan_at=(1, 1, 4, 3))
    int4_case(out_dir, "int4_mixed", 811, batch=2, heads=3, head_dim=10, group=4, residual=3,
              chunks=[9, 1, 1, 1, 5, 2, 1], special=True)
    int4_case(out_dir, "int4_no_residual", 812, batch=1, heads=2, head_dim=8, group=3, residual=0,
              chunks=[2, 1, 7, 1, 1], special=True)
    int4_case(out_dir, "int4_long_prefill", 813, batch=3, heads=1, head_dim=6, group=5, residual=4,
              chunks=[23, 1, 1, 1], special=False)
    int4_case(out_dir, "int4_nan", 814, batch=2, heads=2, head_dim=4, group=2, residual=1,
              chunks=[6, 1], special=False, nan_at=(0, 1, 2, 3))
    fp8_case(out_dir, "fp8_mixed", 821, batch=2, heads=3, head_dim=10, chunks=[5, 1, 1, 3])
    fp8_case(out_dir, "fp8_prefill_only", 822, batch=3, heads=1, head_dim=12, chunks=[7])
    fp8_case(out_dir, "fp8_saturating", 823, batch=2, heads=2, head_dim=6, chunks=[4, 1, 2], later_scale=6.0)
    fp8_case(out_dir, "fp8_nan", 824, batch=2, heads=2, head_dim=6, chunks=[4, 2], nan_at=(1, 0, 5, 2))
    fp8_case(out_dir, "fp8_nan_prefill", 825, batch=2, heads=2, head_dim=6, chunks=[4, 2], nan_at=(1, 0, 1, 2))
    fp8_outgrown(out_dir)
    fp8_cast(out_dir)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    root = Path(__file__).resolve().parent.parent
    parser.add_argument("--out", type=Path, default=root / "code" / "tests" / "fixtures" / "quant")
    main(parser.parse_args().out)
