"""Generate the YaRN RoPE reference fixture: transformers' own YaRN frequencies, attention factors and tables.

YaRN ("rope_type": "yarn") is the RoPE scaling of gpt-oss and DeepSeek-V3. For every case below this asks
transformers itself, never a re-implementation:

    config = GptOssConfig(...) or DeepseekV3Config(...)                 # the model's own config class
    inv_freq, attention_factor = ROPE_INIT_FUNCTIONS["yarn"](config)     # _compute_yarn_parameters
    rotary = GptOssRotaryEmbedding(config) or DeepseekV3RotaryEmbedding(config)
    cos, sin = rotary(x, position_ids)                                   # position_ids: (1, n) = POSITIONS

and writes two files into code/tests/fixtures/ (or --out DIR):

  yarn.safetensors  per case NAME, float32: `NAME.inv_freq` (head_dim/2,), `NAME.cos` and
                    `NAME.sin` (len(POSITIONS), width), row r at position POSITIONS[r]. The width is
                    the model's own: GptOssRotaryEmbedding returns head_dim/2 columns (one per pair),
                    DeepseekV3RotaryEmbedding head_dim (the angles repeated: `cat((freqs, freqs))`).
                    `NAME.attention_factor` (1,) is the factor as torch uses it: the Python float
                    rounded to float32 by `cos * factor`.
  yarn.json         the positions, versions, and per case: its YaRN parameters as given to transformers
                    (null = absent from the config), the model class, rope_theta, head_dim, the
                    correction range (find_correction_range's ends, before linear_ramp_factor's
                    +0.001), the attention factor as a Python float and as its IEEE-754 bits
                    (`attention_factor_f64_bits`, exact through any JSON reader), the pairs where
                    torch's float32 power `theta ** e` is not the correctly rounded value
                    (`pow_not_correctly_rounded`), and, for DeepSeek-V3,
                    `yarn_get_mscale(factor, mscale_all_dim)` and the attention's softmax scale
                    (`qk_head_dim ** -0.5 * m * m`) as Python floats and bits.

The float32 steps transformers takes (asserted below, so that a new torch cannot change them silently):

    e = f32(2i) / f32(d); p = f32(theta ** e) (torch's float32 power; it is not always correctly rounded)
    extrapolation = f32(1 / p); interpolation = f32(1 / f32(f32(factor) * p))
    low, high = correction range in f64 (Python's math), floored/ceiled if truncate, clamped to [0, d - 1],
                high += 0.001 if low == high
    ramp = clamp(f32(f32(i) - f32(low)) / f32(high - low), 0, 1); e_mask = f32(1 - ramp)
    inv_freq = f32(f32(interpolation * f32(1 - e_mask)) + f32(extrapolation * e_mask))
    cos = f32(cos(f32(f32(pos) * inv_freq)) * f32(attention_factor))   (sin alike)

Everything runs in float32 on one CPU thread, with no randomness: two runs give byte-identical files.
Regenerate (from the repository root):

    python3 -m venv venv && venv/bin/pip install -r scripts/requirements.txt \
        && venv/bin/python scripts/gen_yarn_fixtures.py
"""

import argparse
import json
import math
import os
import re
import struct
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")             # everything is local: never reach for the Hub
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")  # the "implicit factor" warnings are expected

import numpy as np
import torch
import transformers
from safetensors.torch import save_file
from transformers import DeepseekV3Config, GptOssConfig
from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS
from transformers.models.deepseek_v3.modeling_deepseek_v3 import (
    DeepseekV3RotaryEmbedding,
    yarn_apply_mscale,
    yarn_get_mscale,
)
from transformers.models.gpt_oss.modeling_gpt_oss import GptOssRotaryEmbedding

torch.set_num_threads(1)
torch.set_default_dtype(torch.float32)

# Positions on both sides of the original 4096-token context, up to the last of gpt-oss's 131072.
POSITIONS = [0, 1, 2, 7, 100, 4095, 4096, 5000, 65537, 131071]

# The YaRN keys a case may set; absent ones are left out of the config, so transformers' defaults apply.
YARN_KEYS = ["factor", "beta_fast", "beta_slow", "truncate", "original_max_position_embeddings",
             "mscale", "mscale_all_dim", "attention_factor"]

GPT_OSS = {"factor": 32.0, "beta_fast": 32.0, "beta_slow": 1.0, "truncate": False,
           "original_max_position_embeddings": 4096}
# DeepSeek-V3's config.json writes its scaling in the older `rope_scaling` form, with `type` and no `truncate`.
DEEPSEEK_V3 = {"factor": 40, "mscale": 1.0, "mscale_all_dim": 1.0, "beta_fast": 32, "beta_slow": 1,
               "original_max_position_embeddings": 4096}

CASES = [
    dict(name="gpt_oss", model="gpt_oss", head_dim=64, rope_theta=150000.0, max_position_embeddings=131072,
         yarn=None,
         what="GptOssConfig() as it comes: its default YaRN (factor 32, beta 32/1, truncate false, "
              "original 4096) and rope_theta 150000, head_dim 64."),
    dict(name="gpt_oss_truncate", model="gpt_oss", head_dim=64, rope_theta=150000.0,
         max_position_embeddings=131072, yarn={**GPT_OSS, "truncate": True},
         what="gpt-oss's YaRN with truncate true: the correction range is floored/ceiled to whole pairs."),
    dict(name="deepseek_v3", model="deepseek_v3", head_dim=64, rope_theta=10000.0,
         max_position_embeddings=163840, yarn=DEEPSEEK_V3, legacy=True,
         what="DeepSeek-V3's config.json: rope_scaling with `type: yarn`, factor 40, mscale = mscale_all_dim "
              "= 1 (attention factor exactly 1), truncate absent (true), qk_rope_head_dim 64, theta 10000."),
    dict(name="deepseek_mscale_pair", model="deepseek_v3", head_dim=64, rope_theta=10000.0,
         max_position_embeddings=163840, yarn={**DEEPSEEK_V3, "mscale": 1.0, "mscale_all_dim": 0.5},
         what="DeepSeek-V3 with mscale 1 and mscale_all_dim 0.5: attention factor "
              "get_mscale(40, 1) / get_mscale(40, 0.5)."),
    dict(name="equal_ends", model="gpt_oss", head_dim=32, rope_theta=10000.0, max_position_embeddings=16384,
         yarn={"factor": 8.0, "beta_fast": 16.0, "beta_slow": 16.0, "truncate": False,
               "original_max_position_embeddings": 2048},
         what="beta_fast = beta_slow, truncate false: both ends of the correction range are equal, so "
              "transformers adds 0.001 to the upper one (the ramp becomes a step)."),
    dict(name="explicit_attention_factor", model="gpt_oss", head_dim=128, rope_theta=500000.0,
         max_position_embeddings=131072,
         yarn={"factor": 16.0, "beta_fast": 24.0, "beta_slow": 2.0, "truncate": False,
               "original_max_position_embeddings": 8192, "attention_factor": 0.8},
         what="attention_factor given explicitly (0.8): it replaces 0.1 ln(factor) + 1. head_dim 128, "
              "theta 500000, beta 24/2, original 8192."),
    dict(name="small_head", model="gpt_oss", head_dim=16, rope_theta=10000.0, max_position_embeddings=2048,
         yarn={"factor": 4.0, "original_max_position_embeddings": 512},
         what="head_dim 16, theta 10000, factor 4, original 512; beta_fast, beta_slow and truncate absent "
              "(defaults 32, 1, true)."),
    dict(name="clamped", model="gpt_oss", head_dim=16, rope_theta=100.0, max_position_embeddings=80000,
         yarn={"factor": 2.0, "beta_fast": 8192.0, "beta_slow": 1.0, "truncate": False,
               "original_max_position_embeddings": 40000},
         what="Both ends clamped: beta_fast's correction dimension is negative (clamped to 0), beta_slow's "
              "above head_dim - 1 (clamped to 15). head_dim 16, theta 100."),
    dict(name="factor_one", model="gpt_oss", head_dim=64, rope_theta=150000.0, max_position_embeddings=4096,
         yarn={**GPT_OSS, "factor": 1.0},
         what="gpt-oss's YaRN with factor 1: no scaling; attention factor 1, frequencies the unscaled ones "
              "(up to the rounding of the blend inside the ramp)."),
]


def to_json(obj):
    """json.dumps with indent 2, but lists of numbers (shapes, positions) kept on one line."""
    one_line = lambda m: "[" + ", ".join(v.strip() for v in m.group(1).split(",")) + "]"
    return re.sub(r"\[([-+\d\s,.e]*)\]", one_line, json.dumps(obj, indent=2)) + "\n"


def f64_bits(x):
    """The IEEE-754 bits of a Python float, as an integer: exact through any JSON reader."""
    return struct.unpack("<Q", struct.pack("<d", float(x)))[0]


def make_config(case):
    common = dict(num_hidden_layers=1, max_position_embeddings=case["max_position_embeddings"])
    if case["model"] == "gpt_oss":
        if case["yarn"] is None:
            config = GptOssConfig(**common)            # the defaults under test
            given = {k: v for k, v in config.rope_parameters.items() if k not in ("rope_type", "rope_theta")}
            assert given == GPT_OSS, config.rope_parameters
        else:
            params = {"rope_type": "yarn", "rope_theta": case["rope_theta"], **case["yarn"]}
            config = GptOssConfig(head_dim=case["head_dim"], rope_parameters=params, **common)
    else:
        if case.get("legacy"):
            config = DeepseekV3Config(qk_rope_head_dim=case["head_dim"], rope_theta=case["rope_theta"],
                                      rope_scaling={"type": "yarn", **case["yarn"]}, **common)
        else:
            params = {"rope_type": "yarn", "rope_theta": case["rope_theta"], **case["yarn"]}
            config = DeepseekV3Config(qk_rope_head_dim=case["head_dim"], rope_parameters=params, **common)
    assert config.head_dim == case["head_dim"], (case["name"], config.head_dim)
    assert config.rope_parameters["rope_type"] == "yarn"
    assert config.rope_parameters["rope_theta"] == case["rope_theta"], config.rope_parameters
    return config


def correction_range(config):
    """find_correction_range's (low, high), before linear_ramp_factor's +0.001 (a copy, checked below)."""
    p = config.rope_parameters
    d, base = config.head_dim, p["rope_theta"]
    dim = lambda rot: (d * math.log(p["original_max_position_embeddings"] / (rot * 2 * math.pi))) / (
        2 * math.log(base))
    low, high = dim(p.get("beta_fast") or 32), dim(p.get("beta_slow") or 1)
    if p.get("truncate", True):
        low, high = math.floor(low), math.ceil(high)
    return max(low, 0), min(high, d - 1)


def f32_steps(config, low, high, pow_f32):
    """inv_freq by the float32 steps of the docstring, from the given float32 powers."""
    f32 = np.float32
    d, factor = config.head_dim, config.rope_parameters["factor"]
    high = high + 0.001 if low == high else high
    extrapolation = f32(1.0) / pow_f32
    interpolation = f32(1.0) / (f32(factor) * pow_f32)
    ramp = np.clip((np.arange(d // 2, dtype=f32) - f32(low)) / f32(high - low), f32(0), f32(1))
    mask = f32(1) - ramp
    return interpolation * (f32(1) - mask) + extrapolation * mask


def run_case(case):
    config = make_config(case)
    p = config.rope_parameters
    d, theta = config.head_dim, p["rope_theta"]
    inv_freq, attention_factor = ROPE_INIT_FUNCTIONS["yarn"](config)
    assert inv_freq.dtype == torch.float32 and inv_freq.shape == (d // 2,)

    # torch's float32 power against the correctly rounded one (f64 power of the same f32 exponent)
    exponent = torch.arange(0, d, 2).to(dtype=torch.float) / d
    torch_pow = (theta ** exponent).numpy()
    exact_pow = np.array([float(theta) ** float(e) for e in exponent.numpy()]).astype(np.float32)
    pow_not_correctly_rounded = [int(i) for i in np.nonzero(torch_pow != exact_pow)[0]]

    low, high = correction_range(config)
    assert np.array_equal(f32_steps(config, low, high, torch_pow), inv_freq.numpy()), case["name"]

    rotary = (GptOssRotaryEmbedding if case["model"] == "gpt_oss" else DeepseekV3RotaryEmbedding)(config)
    assert torch.equal(rotary.inv_freq, inv_freq) and rotary.attention_scaling == attention_factor
    position_ids = torch.tensor([POSITIONS], dtype=torch.int64)
    x = torch.zeros(1, len(POSITIONS), d)                # only its dtype and device are read
    with torch.no_grad():
        cos, sin = rotary(x, position_ids)
    cos, sin = cos[0], sin[0]                            # (1, n, width) -> (n, width)
    angles = torch.tensor(POSITIONS, dtype=torch.int64)[:, None].float() * inv_freq[None, :]
    factor_f32 = torch.tensor([attention_factor], dtype=torch.float32)
    width = cos.shape[1]
    assert width == (d // 2 if case["model"] == "gpt_oss" else d), (case["name"], cos.shape)
    for got, f in [(cos, torch.cos), (sin, torch.sin)]:
        want = f(angles) * factor_f32
        assert torch.equal(got[:, : d // 2], want), case["name"]
        assert torch.equal(got[:, width - d // 2:], want), case["name"]

    meta = {"name": case["name"], "description": case["what"], "model": case["model"],
            "rotary_class": type(rotary).__name__, "head_dim": d, "rope_theta": theta,
            "max_position_embeddings": config.max_position_embeddings,
            "yarn": {k: (case["yarn"] or GPT_OSS).get(k) for k in YARN_KEYS},
            "rope_parameters_seen_by_transformers": dict(sorted(p.items())),
            "correction_range": [low, high],
            "attention_factor": attention_factor, "attention_factor_f64_bits": f64_bits(attention_factor),
            "pow_not_correctly_rounded": pow_not_correctly_rounded,
            "cos_width": width}
    if case["model"] == "deepseek_v3":
        m = yarn_get_mscale(p["factor"], p["mscale_all_dim"])
        scale = yarn_apply_mscale(p, config.qk_head_dim ** (-0.5))
        meta.update({"qk_head_dim": config.qk_head_dim,
                     "mscale_all_dim_factor": m, "mscale_all_dim_factor_f64_bits": f64_bits(m),
                     "softmax_scale": scale, "softmax_scale_f64_bits": f64_bits(scale)})
    tensors = {f"{case['name']}.inv_freq": inv_freq, f"{case['name']}.cos": cos,
               f"{case['name']}.sin": sin, f"{case['name']}.attention_factor": factor_f32}
    print(f"{case['name']:26s} range ({low:.4f}, {high:.4f})  attention factor {attention_factor:.9f}  "
          f"pow not correctly rounded at {pow_not_correctly_rounded}")
    return meta, tensors


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent.parent / "code/tests/fixtures")
    out_dir = parser.parse_args().out
    out_dir.mkdir(parents=True, exist_ok=True)
    metas, tensors = [], {}
    for case in CASES:
        meta, t = run_case(case)
        metas.append(meta)
        tensors.update(t)
    tensors = {k: v.detach().contiguous().clone() for k, v in sorted(tensors.items())}
    save_file(tensors, str(out_dir / "yarn.safetensors"))
    meta = {"case": "yarn", "generator": "scripts/gen_yarn_fixtures.py",
            "description": "YaRN RoPE: transformers' inv_freq, attention factor and the model's own cos/sin "
                           "tables (row r at positions[r]) for each case.",
            "torch_version": torch.__version__, "transformers_version": transformers.__version__,
            "positions": POSITIONS, "cases": metas,
            "tensors": {k: list(v.shape) for k, v in tensors.items()}}
    (out_dir / "yarn.json").write_text(to_json(meta))


if __name__ == "__main__":
    main()
