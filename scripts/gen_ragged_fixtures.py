"""Generate the Hugging Face transformers reference fixture for ragged batches (chapter 15).

A batch of three sequences of different lengths, each starting at its own position, run through one Llama
attention layer the way Hugging Face runs such a batch: LEFT padding to a common length, a 2-D `attention_mask`
(1 real, 0 pad) from which the model builds its own 4-D mask (masking_utils.create_causal_mask), explicit
per-sequence `position_ids`, then a few decode steps through the model's DynamicCache, each sequence at its own
next position. The same tokens are also run in transformers' padding-free ("packed") form: one row holding every
real token, position_ids restarting at each sequence, no attention_mask, from which transformers builds a
block-diagonal mask itself (masking_utils.find_packed_sequence_indices).

It writes code/tests/fixtures/ragged/llama_left_padded/ (or --out DIR/llama_left_padded/), laid out like the
hf/ and variants/ fixtures:

  config.json              written by LlamaConfig.save_pretrained; loads back with AutoConfig
  model.safetensors        the attention layer, f32, under `model.layers.0.self_attn.`
  input.safetensors        `hidden_states` (batch, seq, hidden_size): the left-padded prefill, f32; the pad rows
                           hold random numbers too (a mask that leaks would show them);
                           `attention_mask` (batch, seq) i64: 0 on the left pad, 1 on the real tokens;
                           `position_ids` (batch, seq) i64: start_pos[b] + (cumsum(mask) - 1), 0 on the pad
                           (what generate's _prepare_position_ids_for_generation gives, plus each start_pos);
                           `decode_hidden_states` (batch, steps, hidden_size): one new token per sequence per step;
                           `decode_position_ids` (batch, steps) i64: each sequence's next positions (the last + 1,
                           as generate's _update_model_kwargs_for_generation);
                           `packed_hidden_states` (1, total, hidden_size): the real prefill tokens concatenated;
                           `packed_position_ids` (1, total) i64
  expected.safetensors     `attn_output` (batch, seq, hidden_size): the eager prefill output, pad rows included;
                           `sdpa_attn_output` (batch, seq, hidden_size): the same with attn_implementation "sdpa";
                           `decode_output` (batch, steps, hidden_size): the decode steps' outputs;
                           `prefill_mask` (batch, 1, seq, seq): the eager additive mask the model built
                           (0 visible, torch.finfo(float32).min hidden);
                           `packed_output` (1, total, hidden_size): the padding-free run's output
  meta.json                sizes, lengths, start positions, seed, versions, and the facts checked here

The reference computation (eager attention, f32, one CPU thread):

    config = LlamaConfig(...); config._attn_implementation = "eager"
    attn = LlamaAttention(config, layer_idx=0)   # under torch.manual_seed(seed): nn.Linear default init
    model = LlamaModel(config)                    # one layer; attn's weights loaded into its attention
    hook: layers[0].self_attn receives our hidden_states instead of the input_layernorm's output
    model(inputs_embeds=x, attention_mask=mask, position_ids=position_ids)                  # attn_output
    cache = DynamicCache(config=config)
    model(inputs_embeds=x, attention_mask=mask, position_ids=position_ids, cache=cache, use_cache=True)
    for t in range(steps):
        mask = cat([mask, ones(batch, 1)], -1)
        model(inputs_embeds=x_new[:, t:t+1], attention_mask=mask, position_ids=next_pos[:, t:t+1], cache=cache)
    model(inputs_embeds=packed, position_ids=packed_position_ids, use_cache=False)          # packed_output

Facts asserted (and recorded in meta.json, with the measured numbers): the real rows equal each sequence run
alone, unpadded (prefill and decode, within 1e-5); eager's pad rows are o_proj of the plain mean of every value
row of their sequence (every score is finfo.min, so the softmax is uniform), sdpa's are exactly 0 and its real
rows equal eager's; the packed output equals the padded real rows; positions counted from the padded start
(position_ids left to the model's default, arange + past_seen_tokens) change the real rows only by rounding,
because RoPE sees differences of positions and the shift is the same for every token of a sequence; a prefill
rotated from the padded start followed by decode steps at the real positions does not; transformers'
padding-free detection is skipped when the model has a cache (use_cache defaults to true), and merges two
sequences when the second starts at the position after the first one's last token.
Two runs give byte-identical files. Regenerate (from the repository root):

    python3 -m venv venv && venv/bin/pip install -r scripts/requirements.txt \
        && venv/bin/python scripts/gen_ragged_fixtures.py
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
from transformers import AutoConfig, DynamicCache, LlamaConfig
from transformers.models.llama.modeling_llama import LlamaAttention, LlamaModel

torch.set_num_threads(1)
torch.set_default_dtype(torch.float32)

PREFIX = "model.layers.0.self_attn."
SAME_TOL = 1e-5          # two f32 computations of the same numbers in another order or shape: ~1e-7 measured
ROUNDING_MAX = 1e-5      # "changes only by rounding": below this
VISIBLE_MIN = 1e-2       # "changes the output": some real element moves by more than this

# Sizes small, non-square and pairwise different: hidden 36, 4 heads of 10 (4 * 10 != 36), 2 KV heads, batch 3,
# padded length 9, 5 decode steps; lengths 6, 1, 9 (one sequence a single token, one with no padding), first
# positions 0, 7, 20 (none continues the one before, so transformers' padding-free detection separates them).
CASE = dict(
    name="llama_left_padded", seed=301, lengths=[6, 1, 9], start_pos=[0, 7, 20], steps=5, input_scale=3.0,
    what="LlamaAttention (eager) on a left-padded batch of 3 sequences of 6, 1 and 9 tokens starting at positions "
         "0, 7 and 20: hidden 36, 4 heads of 10 (4 * 10 != 36), 2 KV heads, RoPE theta 10000; a prefill with the "
         "model's own mask from attention_mask, then 5 decode steps through DynamicCache, each sequence at its "
         "own position; and the same prefill tokens in transformers' padding-free packed form.",
    config={"hidden_size": 36, "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 10,
            "num_hidden_layers": 1, "intermediate_size": 16, "vocab_size": 64, "max_position_embeddings": 64,
            "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0}},
)


def to_json(obj):
    """json.dumps with indent 2, but lists of numbers or strings (shapes, lengths) kept on one line."""
    one_line = lambda m: "[" + ", ".join(v.strip() for v in m.group(1).split(",")) + "]"
    return re.sub(r'\[([-+\w\s,."]*)\]', one_line, json.dumps(obj, indent=2)) + "\n"


class LayerProbe:
    """Hooks on the attention module: swaps in our hidden_states, records its mask and output per call."""

    def __init__(self, module):
        self.feed, self.calls = None, []
        module.register_forward_pre_hook(self.pre, with_kwargs=True)
        module.register_forward_hook(self.post, with_kwargs=True)

    def pre(self, module, args, kwargs):
        assert not args and kwargs["hidden_states"].shape == self.feed.shape
        self.calls.append({"mask": kwargs["attention_mask"]})
        return args, {**kwargs, "hidden_states": self.feed}

    def post(self, module, args, kwargs, output):
        self.calls[-1]["out"] = output[0]

    def run(self, model, x, **kwargs):
        self.feed = x
        model(inputs_embeds=x, **kwargs)
        return self.calls[-1]


def max_diff(a, b):
    return (a - b).abs().max().item()


def real_rows_diff(a, b, lengths):
    """Largest difference over the real (right-aligned) rows of two left-padded outputs."""
    seq = a.shape[1]
    return max(max_diff(a[i, seq - n:], b[i, seq - n:]) for i, n in enumerate(lengths))


def left_padded(lengths, start_pos, seq):
    """attention_mask and position_ids of a left-padded batch, as generate builds them (plus each start)."""
    mask = torch.zeros(len(lengths), seq, dtype=torch.long)
    for i, n in enumerate(lengths):
        mask[i, seq - n:] = 1
    position_ids = (mask.cumsum(-1) - 1).masked_fill(mask == 0, 0)
    position_ids = position_ids + torch.tensor(start_pos)[:, None] * mask
    return mask, position_ids


def build(case, impl):
    config = LlamaConfig(**case["config"])
    config._attn_implementation = impl
    torch.manual_seed(case["seed"])
    attn = LlamaAttention(config, layer_idx=0)              # nn.Linear default init, as constructed
    model = LlamaModel(config).eval()                       # (its post_init draws N(0, 0.02) weights instead)
    model.layers[0].self_attn.load_state_dict(attn.state_dict())
    return config, model, LayerProbe(model.layers[0].self_attn)


def run_padded(model, probe, config, x, mask, position_ids, x_new, new_pos):
    """Prefill (no cache), then the prefill again into a DynamicCache and one step per new token."""
    prefill = probe.run(model, x, attention_mask=mask, position_ids=position_ids)
    cache = DynamicCache(config=config)
    probe.run(model, x, attention_mask=mask, position_ids=position_ids, cache=cache, use_cache=True)
    outs = []
    for t in range(x_new.shape[1]):
        mask = torch.cat([mask, torch.ones(mask.shape[0], 1, dtype=mask.dtype)], dim=-1)
        step = probe.run(model, x_new[:, t:t + 1], attention_mask=mask, position_ids=new_pos[:, t:t + 1],
                         cache=cache, use_cache=True)
        outs.append(step["out"])
    return prefill, torch.cat(outs, dim=1)


@torch.no_grad()
def make_case(out_dir, case):
    case_dir = out_dir / case["name"]
    case_dir.mkdir(parents=True, exist_ok=True)
    lengths, starts, steps = case["lengths"], case["start_pos"], case["steps"]
    batch, seq = len(lengths), max(lengths)

    config, model, probe = build(case, "eager")
    attn = model.layers[0].self_attn
    config.architectures = ["LlamaForCausalLM"]
    config.save_pretrained(case_dir)
    same = lambda c: {k: v for k, v in c.to_dict().items() if k != "_name_or_path"}
    auto = AutoConfig.from_pretrained(case_dir)
    assert type(auto) is LlamaConfig and same(auto) == same(LlamaConfig.from_pretrained(case_dir))
    hidden = config.hidden_size

    torch.manual_seed(case["seed"] + 1)
    x = torch.randn(batch, seq, hidden) * case["input_scale"]        # pad rows random too
    x_new = torch.randn(batch, steps, hidden) * case["input_scale"]
    mask, position_ids = left_padded(lengths, starts, seq)
    new_pos = torch.tensor([s + n for s, n in zip(starts, lengths)])[:, None] + torch.arange(steps)[None]

    prefill, decode = run_padded(model, probe, config, x, mask, position_ids, x_new, new_pos)
    attn_output, prefill_mask = prefill["out"], prefill["mask"]
    facts = {}

    # Each sequence alone, unpadded, at its own positions: the prefill, and the prefill + new tokens whole.
    alone_prefill, alone_decode = 0.0, 0.0
    for i, (n, s) in enumerate(zip(lengths, starts)):
        xi = x[i:i + 1, seq - n:]
        out = probe.run(model, xi, position_ids=torch.arange(s, s + n)[None])["out"]
        alone_prefill = max(alone_prefill, max_diff(out[0], attn_output[i, seq - n:]))
        whole = torch.cat([xi, x_new[i:i + 1]], dim=1)
        out = probe.run(model, whole, position_ids=torch.arange(s, s + n + steps)[None])["out"]
        alone_decode = max(alone_decode, max_diff(out[0, n:], decode[i]))
    assert alone_prefill < SAME_TOL and alone_decode < SAME_TOL, (alone_prefill, alone_decode)
    facts["real_rows_vs_each_sequence_alone"] = {
        "prefill_max_abs_diff": alone_prefill, "decode_max_abs_diff": alone_decode,
        "what": "each sequence run alone without padding at its own positions (decode: its prefill and new "
                "tokens run whole); equal within 1e-5"}

    # Eager's pad rows: every score of a pad query is finfo.min (its own key is a pad, later keys are future),
    # s + finfo.min rounds to finfo.min, so the softmax is uniform over all `seq` keys.
    values = attn.v_proj(x).view(batch, seq, config.num_key_value_heads, config.head_dim)
    group = config.num_attention_heads // config.num_key_value_heads
    mean = values.mean(dim=1).repeat_interleave(group, dim=1).reshape(batch, -1)     # (batch, n_heads * head_dim)
    uniform = attn.o_proj(mean)
    pad_vs_uniform = max(max_diff(attn_output[i, :seq - n], uniform[i].expand(seq - n, -1))
                         for i, n in enumerate(lengths) if n < seq)
    assert pad_vs_uniform < SAME_TOL, pad_vs_uniform
    min_f32 = torch.finfo(torch.float32).min
    facts["eager_pad_rows"] = {
        "max_abs_diff_from_o_proj_of_mean_values": pad_vs_uniform,
        "mask_fill_value": min_f32,
        "fully_masked_rows_all_fill_value": all(
            bool((prefill_mask[i, 0, :seq - n] == min_f32).all()) for i, n in enumerate(lengths)),
        "what": "a pad query's scores are all finfo.min after the mask, so eager's softmax is uniform over all "
                "padded-length keys and the pad row is o_proj of the mean of the sequence's value rows"}

    _, sdpa_model, sdpa_probe = build(case, "sdpa")       # the same seed: the same weights
    sdpa_output = sdpa_probe.run(sdpa_model, x, attention_mask=mask, position_ids=position_ids)["out"]
    sdpa_pad_max = max((sdpa_output[i, :seq - n].abs().max().item() for i, n in enumerate(lengths) if n < seq))
    sdpa_real = real_rows_diff(sdpa_output, attn_output, lengths)
    assert sdpa_pad_max == 0.0 and sdpa_real < SAME_TOL, (sdpa_pad_max, sdpa_real)
    facts["sdpa_pad_rows"] = {"max_abs": sdpa_pad_max, "real_rows_vs_eager_max_abs_diff": sdpa_real,
                              "what": "PyTorch's SDPA gives a fully masked query an output of exactly 0"}

    # Positions counted from the padded start: the model's default position_ids (arange + past_seen_tokens).
    padded_start, padded_start_decode = run_padded(
        model, probe, config, x, mask, torch.arange(seq)[None].expand(batch, seq), x_new,
        torch.arange(seq, seq + steps)[None].expand(batch, steps))
    shift_prefill = real_rows_diff(padded_start["out"], attn_output, lengths)
    shift_decode = max_diff(padded_start_decode, decode)
    # The prefill rotated from the padded start, the decode steps at each sequence's real next position.
    _, mixed_decode = run_padded(model, probe, config, x, mask, torch.arange(seq)[None].expand(batch, seq),
                                 x_new, new_pos)
    mixed = max_diff(mixed_decode, decode)
    assert shift_prefill < ROUNDING_MAX and shift_decode < ROUNDING_MAX and mixed > VISIBLE_MIN
    facts["positions_from_padded_start"] = {
        "everywhere_prefill_max_abs_diff": shift_prefill, "everywhere_decode_max_abs_diff": shift_decode,
        "prefill_padded_start_decode_real_max_abs_diff": mixed,
        "what": "position_ids = column index for every token shifts each sequence by its pad length: RoPE sees "
                "only differences, so the real rows change by rounding; rotating the prefill from the padded "
                "start and the decode steps from the real count does change them"}

    # transformers' padding-free form: one row, position_ids restarting per sequence, no mask, no cache.
    packed = torch.cat([x[i, seq - n:] for i, n in enumerate(lengths)])[None]
    packed_pos = torch.cat([torch.arange(s, s + n) for s, n in zip(starts, lengths)])[None]
    # use_cache=False: with a cache (LlamaModel makes one when use_cache, config.use_cache's default True) the
    # detection is skipped and the mask is one causal triangle over every sequence.
    packed_output = probe.run(model, packed, position_ids=packed_pos, use_cache=False)["out"]
    padded_real = torch.cat([attn_output[i, seq - n:] for i, n in enumerate(lengths)])[None]
    packed_diff = max_diff(packed_output, padded_real)
    with_cache = max_diff(probe.run(model, packed, position_ids=packed_pos)["out"], padded_real)
    assert packed_diff < SAME_TOL and with_cache > VISIBLE_MIN, (packed_diff, with_cache)
    # The detection splits where a position does not continue the one before: a second sequence starting
    # at the position after the first's last token is read as its continuation.
    merged_pos = torch.cat([torch.arange(0, lengths[0]), torch.arange(lengths[0], lengths[0] + lengths[1])])[None]
    merged = probe.run(model, packed[:, :lengths[0] + lengths[1]], position_ids=merged_pos,
                       use_cache=False)["out"]
    alone = probe.run(model, packed[:, lengths[0]:lengths[0] + lengths[1]],
                      position_ids=merged_pos[:, lengths[0]:], use_cache=False)["out"]
    merged_diff = max_diff(merged[:, lengths[0]:], alone)
    assert merged_diff > VISIBLE_MIN, merged_diff
    facts["packed_form"] = {
        "vs_padded_real_rows_max_abs_diff": packed_diff,
        "with_use_cache_default_max_abs_diff": with_cache,
        "merged_when_positions_continue_max_abs_diff": merged_diff,
        "what": "transformers splits a packed row where position_ids do not continue (find_packed_sequence_"
                "indices), only without a cache: with use_cache left at its default (true) the model makes a "
                "DynamicCache, skips the detection and attends across sequences; sequence 1 placed at positions "
                "6.. after sequence 0's 0..5 is merged into it"}

    weights = {PREFIX + k: v.contiguous() for k, v in attn.state_dict().items()}
    save_file(weights, str(case_dir / "model.safetensors"), metadata={"format": "pt"})
    inputs = {"hidden_states": x, "attention_mask": mask, "position_ids": position_ids,
              "decode_hidden_states": x_new, "decode_position_ids": new_pos,
              "packed_hidden_states": packed, "packed_position_ids": packed_pos}
    save_file({k: v.contiguous() for k, v in inputs.items()}, str(case_dir / "input.safetensors"))
    expected = {"attn_output": attn_output, "sdpa_attn_output": sdpa_output, "decode_output": decode,
                "prefill_mask": prefill_mask, "packed_output": packed_output}
    save_file({k: v.contiguous() for k, v in expected.items()}, str(case_dir / "expected.safetensors"))

    meta = {
        "case": case["name"], "description": case["what"], "seed": case["seed"],
        "transformers_version": transformers.__version__, "torch_version": torch.__version__,
        "safetensors_version": safetensors.__version__, "attn_implementation": "eager",
        "prefix": PREFIX, "batch": batch, "seq": seq, "lengths": lengths, "start_positions": starts,
        "steps": steps, "input_scale": case["input_scale"],
        "tensors": {"input": {k: list(v.shape) for k, v in sorted(inputs.items())},
                    "expected": {k: list(v.shape) for k, v in sorted(expected.items())}},
        "facts": facts,
    }
    (case_dir / "meta.json").write_text(to_json(meta))
    print(f"{case['name']}: lengths {lengths}, start_pos {starts}, {steps} decode steps, "
          f"max |out| {attn_output.abs().max().item():.3f}")
    for k, v in facts.items():
        print(f"  {k}: " + ", ".join(f"{kk} {vv:.3e}" for kk, vv in v.items() if isinstance(vv, float)))


def main(out_dir):
    make_case(out_dir, dict(CASE))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("code/tests/fixtures/ragged"), help="output folder")
    main(parser.parse_args().out)
