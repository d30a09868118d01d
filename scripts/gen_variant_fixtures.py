"""Generate the Hugging Face transformers reference fixtures for attention variants beyond Llama 3.

Sliding windows (Mistral, Qwen3, Gemma 2/3, gpt-oss), logit soft-capping (Gemma 2), a softmax scale from
`query_pre_attn_scalar` (Gemma 2/3), q/k RMSNorm (Qwen3 `x̂·w`, Gemma 3 `x̂·(1+w)`), attention sinks and biases
(gpt-oss), per-layer-kind RoPE bases (Gemma 3), YaRN (gpt-oss, DeepSeek-V3) and DeepSeek-V3's and V2's multi-head
latent attention (MLA: low-rank query, compressed key/value latent, one shared RoPE key, interleaved RoPE, softmax
scale with YaRN's mscale). Each grouped-query model type also has a bf16 case (`*_bf16`) and Mistral, Qwen3 and
Gemma 3 a case at long positions (`*_long`, from 30000, 40000 and 100000). Last, RoPE scaling beyond gpt-oss's and
DeepSeek's: Gemma 3 4B-27B's linear scaling of its full layers (`gemma3_full_linear`, and `gemma3_sliding_linear`, a
sliding layer of the same config, which must stay unscaled), and a YaRN added to Qwen3 (as Qwen documents it) and to
Mistral (`qwen3_yarn`, `mistral_yarn`), all from position 20000 or 40000. For every case NAME this writes a
folder code/tests/fixtures/variants/NAME/ (or --out DIR/NAME/) laid out like a tiny Hugging Face checkpoint:

  config.json              written by the model's own config class (`save_pretrained`); it loads back with
                           AutoConfig and with the class
  model.safetensors        one attention layer, f32 (the *_bf16 cases and deepseek_v3_bias: bf16), under
                           `model.layers.{layer_idx}.self_attn.` with the model's parameter names (q_proj.weight,
                           q_proj.bias, q_norm.weight, sinks, q_a_proj.weight, kv_a_proj_with_mqa.weight, ...)
  input.safetensors        `hidden_states` (batch, seq, hidden_size), f32: randn * input_scale (mistral_window_bf16,
                           gemma2_sliding_bf16: rounded to bf16 before the run and stored as bf16)
  expected.safetensors     `attn_output` (batch, seq, hidden_size): the layer's prefill output;
                           `attn_weights` (batch, n_heads, seq, seq): what the module returns (gpt-oss: the
                           probabilities over the keys with the sink column already dropped, so rows sum to < 1);
                           `decode_output` (batch, seq, hidden_size): the first decode_from tokens as a prefill,
                           then one token at a time through the model's own DynamicCache, concatenated;
                           `inv_freq` (rope_dim/2,), `cos`, `sin` (seq, rope_dim) exactly as the model passes them
                           to this layer (gpt-oss passes half-width tables: rope_dim/2 columns, not rope_dim;
                           DeepSeek-V2 passes one complex table, stored as its real and imaginary parts, also
                           half-width);
                           MLA only: `latent_cache` (batch, 1, seq, kv_lora_rank) and `rope_key_cache` (batch, 1,
                           seq, qk_rope_head_dim), what the DynamicCache holds for the layer after the decode (its
                           keys and values: the normed latent and the rotated shared key)
  meta.json                sizes, seed, versions, scale, window, softcap, the facts verified while generating

The reference computation never re-implements what it tests. It builds the model's own base model
(MistralModel, Qwen3Model, Gemma2Model, Gemma3TextModel, GptOssModel, DeepseekV3Model, DeepseekV2Model) with
eager attention and just enough layers for the default layer_types to make layer `layer_idx` the wanted kind
(DeepSeek: layer 1, behind one dense layer, with a tiny MoE), puts the case's attention weights into that
layer, and runs the whole model forward. The model's forward builds the masks
(masking_utils.create_causal_mask / create_sliding_window_causal_mask, additive float, sized from the cache's
first layer of each kind), the RoPE tables (its own rotary class) and, when decoding, the cache
(DynamicCache(config=...), whose sliding layers are DynamicSlidingWindowLayer). A forward pre-hook on
`layers[layer_idx].self_attn` replaces only the hidden_states that the decoder layer hands to its attention
(the input_layernorm output) by ours; the other layers run with their own random weights, never reach this
layer's output, and keep the cache and masks exactly as in a real forward:

    config = XConfig(**case_config); config._attn_implementation = "eager"
    torch.manual_seed(seed)
    attn = XAttention(config, layer_idx)           # nn.Linear default init, as constructed
    q/k_norm.weight = 1 + 0.3·randn (Qwen3) or 0.3·randn (Gemma 3); sinks = 2·randn (gpt-oss)
    q_a/kv_a_layernorm.weight = 1 + 0.3·randn (MLA); all weights rounded to bf16 (*_bf16, deepseek_v3_bias)
    hidden_states = torch.randn(batch, seq, hidden) * input_scale             # rounded to bf16 if input_dtype
    model = XModel(config); model.layers[layer_idx].self_attn.load_state_dict(attn.state_dict())
    position_ids = arange(start_pos, start_pos + seq)
    model(inputs_embeds=hidden_states, position_ids=position_ids)            # prefill, no cache
    cache = DynamicCache(config=config)
    model(inputs_embeds=hidden_states[:, :decode_from], position_ids=..., cache=cache, use_cache=True)
    for t in decode_from .. seq: model(inputs_embeds=hidden_states[:, t:t+1], position_ids=..., cache=cache)

start_pos only offsets the RoPE positions: no earlier tokens are in the cache, as in the hf/ fixtures. The script
asserts decode_output == attn_output within 1e-5, that each variant visibly changes the output (softcap, sinks,
random norms, MLA's interleave, biases and YaRN scale: > 1e-3), and checks the window from the returned weights.
MLA cases are also recomputed independently in float64 (mla_check: Meta's interleaved RoPE pairs, none of
transformers' functions) to pin the weight layouts, the norms' eps, the scale and what the cache holds; for
DeepSeek-V2 also that rotate-half pairs are not what it computes, that rope_interleave changes nothing, and what
its config class does with head_dim, num_key_value_heads and an indivisible hidden_size. Cases from position
10000 on record that cos/sin are exactly cos/sin of the f32 angle pos·θ_i, and how far that is from the exact one.
Everything runs in float32 on one CPU thread with fixed seeds: two runs give byte-identical files. Regenerate
(from the repository root):

    python3 -m venv venv && venv/bin/pip install -r scripts/requirements.txt \
        && venv/bin/python scripts/gen_variant_fixtures.py
"""

import argparse
import json
import math
import os
import re
import copy
import shutil
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")             # everything is local: never reach for the Hub
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import safetensors
import torch
import transformers
from safetensors.torch import save_file
from transformers import (AutoConfig, DeepseekV2Config, DeepseekV3Config, DynamicCache, Gemma2Config,
                          Gemma3TextConfig, GptOssConfig, MistralConfig, Qwen3Config)
from transformers.models.deepseek_v2.modeling_deepseek_v2 import DeepseekV2Attention, DeepseekV2Model
from transformers.models.deepseek_v3.modeling_deepseek_v3 import (DeepseekV3Attention, DeepseekV3Model,
                                                                  yarn_apply_mscale)
from transformers.models.gemma2.modeling_gemma2 import Gemma2Attention, Gemma2Model
from transformers.models.gemma3.modeling_gemma3 import Gemma3Attention, Gemma3TextModel
from transformers.models.gpt_oss.modeling_gpt_oss import GptOssAttention, GptOssModel
from transformers.models.mistral.modeling_mistral import MistralAttention, MistralModel
from transformers.models.qwen3.modeling_qwen3 import Qwen3Attention, Qwen3Model

torch.set_num_threads(1)
torch.set_default_dtype(torch.float32)

DECODE_TOL = 1e-5        # cached decode vs prefill: same f32 ops on fewer/more keys, differences ~1e-7
LONG_POS = 10000         # cases from this start_pos on record how f32 rounds their RoPE angles
BITE_MIN = 1e-3          # a variant "bites" when switching it off moves some output element by more than this
MLA_CHECK_TOL = 1e-5     # float64 recomputation vs the module's float32: rounding of O(1) outputs, ~1e-6
MLA_NORM_EPS = 1e-6      # DeepseekV3RMSNorm's default eps, which q_a_layernorm / kv_a_layernorm keep

# Per model: config class, attention class, base model class, architectures entry for config.json.
MODELS = {
    "mistral": (MistralConfig, MistralAttention, MistralModel, "MistralForCausalLM"),
    "qwen3": (Qwen3Config, Qwen3Attention, Qwen3Model, "Qwen3ForCausalLM"),
    "gemma2": (Gemma2Config, Gemma2Attention, Gemma2Model, "Gemma2ForCausalLM"),
    "gemma3_text": (Gemma3TextConfig, Gemma3Attention, Gemma3TextModel, "Gemma3ForCausalLM"),
    "gpt_oss": (GptOssConfig, GptOssAttention, GptOssModel, "GptOssForCausalLM"),
    "deepseek_v3": (DeepseekV3Config, DeepseekV3Attention, DeepseekV3Model, "DeepseekV3ForCausalLM"),
    "deepseek_v2": (DeepseekV2Config, DeepseekV2Attention, DeepseekV2Model, "DeepseekV2ForCausalLM"),
}
MLA_MODELS = ("deepseek_v3", "deepseek_v2")

# Unrelated parts of the tiny models (MLP, vocabulary): small, never exported.
FILLER = {"vocab_size": 64, "intermediate_size": 16, "max_position_embeddings": 8192}

GEMMA2 = {"hidden_size": 24, "num_attention_heads": 6, "num_key_value_heads": 3, "head_dim": 8,
          "num_hidden_layers": 2, "sliding_window": 4, "query_pre_attn_scalar": 20,
          "attn_logit_softcapping": 3.0, "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0},
          **FILLER}
GEMMA3 = {"hidden_size": 28, "num_attention_heads": 4, "num_key_value_heads": 1, "head_dim": 10,
          "num_hidden_layers": 6, "sliding_window": 5, "query_pre_attn_scalar": 14,
          "rope_parameters": {"sliding_attention": {"rope_type": "default", "rope_theta": 10000.0},
                              "full_attention": {"rope_type": "default", "rope_theta": 1000000.0}},
          **FILLER}
GPT_OSS = {"hidden_size": 20, "num_attention_heads": 6, "num_key_value_heads": 3, "head_dim": 12,
           "num_hidden_layers": 2, "sliding_window": 4, "attention_bias": True,
           "num_local_experts": 2, "num_experts_per_tok": 1, **FILLER}
GPT_OSS_DEFAULT_ROPE = {"rope_type": "default", "rope_theta": 150000.0}
# MLA: d_model 48, 4 heads, query rank 24, latent 20, heads of 14 + 8 (RoPE) = 22 for q/k and 10 for v; the
# kv_a output is 20 + 8 = 28. Layer 1 of 2 (layer 0 dense, layer 1 MoE, as DeepSeek's first_k_dense_replace
# does), with a tiny MoE. num_key_value_heads must equal the head count (see mla_real_config_facts).
# rms_norm_eps 1e-5 (DeepSeek: 1e-6) tells the MLA norms' fixed 1e-6 apart from it.
DEEPSEEK_V3 = {"hidden_size": 48, "num_attention_heads": 4, "num_key_value_heads": 4, "q_lora_rank": 24,
               "kv_lora_rank": 20, "qk_nope_head_dim": 14, "qk_rope_head_dim": 8, "v_head_dim": 10,
               "num_hidden_layers": 2, "first_k_dense_replace": 1, "n_routed_experts": 4, "n_group": 2,
               "topk_group": 1, "num_experts_per_tok": 2, "moe_intermediate_size": 8, "rms_norm_eps": 1e-5,
               "rope_interleave": True, "attention_bias": False,
               "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0}, **FILLER}
# DeepSeek-V3's YaRN exactly as its hub config.json writes it: top-level rope_theta and a `rope_scaling` with
# "type" (not rope_parameters / rope_type); max_position_embeddings 163840 = 4096 * 40 as in that file.
DEEPSEEK_V3_HUB_ROPE = {"rope_theta": 10000, "max_position_embeddings": 163840,
                        "rope_scaling": {"beta_fast": 32, "beta_slow": 1, "factor": 40, "mscale": 1.0,
                                         "mscale_all_dim": 1.0, "original_max_position_embeddings": 4096,
                                         "type": "yarn"}}
# DeepSeek-V3 (671B) as its hub config.json gives the attention sizes, compared with DeepseekV3Config()'s defaults.
DEEPSEEK_V3_REAL = {"hidden_size": 7168, "num_attention_heads": 128, "num_key_value_heads": 128,
                    "q_lora_rank": 1536, "kv_lora_rank": 512, "qk_nope_head_dim": 128, "qk_rope_head_dim": 64,
                    "v_head_dim": 128, "num_hidden_layers": 61, "rms_norm_eps": 1e-6,
                    **DEEPSEEK_V3_HUB_ROPE}
# DeepSeek-V2's MLA, smaller than DEEPSEEK_V3: d_model 12 for 3 heads (DeepseekV2Config refuses a hidden_size
# the heads do not divide; the MoE's grouped matmul wants rows of a multiple of 16 bytes), query rank 9, latent 10,
# heads of 6 + 8 (RoPE) = 14 for q/k and 5 for v; kv_a output 10 + 8 = 18. No num_key_value_heads and no
# rope_interleave: the class sets the first to the head count, and its attention never reads the second.
# Layer 1 of 2 (layer 0 dense, layer 1 MoE with greedy routing).
DEEPSEEK_V2 = {"hidden_size": 12, "num_attention_heads": 3, "q_lora_rank": 9, "kv_lora_rank": 10,
               "qk_nope_head_dim": 6, "qk_rope_head_dim": 8, "v_head_dim": 5, "num_hidden_layers": 2,
               "first_k_dense_replace": 1, "n_routed_experts": 4, "num_experts_per_tok": 2,
               "moe_intermediate_size": 8, "rms_norm_eps": 1e-5, "attention_bias": False,
               "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0}, **FILLER}
# Gemma 3 4B / 12B / 27B's RoPE as their config.json (text_config) writes it: rope_theta 1e6 for the full layers,
# scaled by rope_scaling (linear, factor 8), and rope_local_base_freq 1e4 for the sliding layers, which
# Gemma3TextConfig never scales. max_position_embeddings 131072 as those models'.
GEMMA3_HUB_LINEAR_ROPE = {"rope_theta": 1000000.0, "rope_local_base_freq": 10000.0,
                          "rope_scaling": {"factor": 8.0, "rope_type": "linear"}}
GEMMA3_LINEAR = {"hidden_size": 20, "num_attention_heads": 4, "num_key_value_heads": 1, "head_dim": 8,
                 "num_hidden_layers": 6, "sliding_window": 3, "query_pre_attn_scalar": 12,
                 **GEMMA3_HUB_LINEAR_ROPE, **FILLER, "max_position_embeddings": 131072}
# YaRN as Qwen's documentation adds it to Qwen3's config.json for contexts past 32768 (rope_scaling, rope_type
# yarn, factor 4, original 32768), with max_position_embeddings 131072 = 4 * 32768 so that the class's check of the
# factor agrees; rope_theta 1e6 as Qwen3's. Tiny models need not shrink it: the correction range depends on
# head_dim, the base and the original context only (for head_dim 8: pairs 1..3 of 4).
QWEN3_DOC_YARN = {"rope_theta": 1000000.0, "max_position_embeddings": 131072,
                  "rope_scaling": {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32768}}
# The bf16 and long-position cases are smaller than the first ones, to keep the fixtures small: 2 or 3 sequences
# of 5 to 7 tokens, windows of 3 (seq > 2 * window, as the window cases need).
GEMMA3_SMALL_ROPE = {"sliding_attention": {"rope_type": "default", "rope_theta": 10000.0},
                     "full_attention": {"rope_type": "default", "rope_theta": 1000000.0}}

# Sizes are small, non-square and pairwise different within a case (d_model, n_heads, n_kv_heads, head_dim,
# window, seq, batch); seq is longer than the window and decode_from is below it, so the cached decode crosses
# the window boundary. input_scale makes the scaled logits large enough for softcap/sinks to matter.
CASES = [
    dict(name="mistral_window", model="mistral", layer_idx=0, seed=201, batch=3, seq=13, start_pos=0,
         decode_from=3, input_scale=1.0,
         what="MistralAttention with sliding_window 5 on every layer: 4 heads of 12 (4 * 12 != hidden 40), "
              "2 KV heads, RoPE theta 10000, 13 tokens from position 0.",
         config={"hidden_size": 40, "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 12,
                 "num_hidden_layers": 1, "sliding_window": 5,
                 "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0}, **FILLER}),
    dict(name="gemma2_sliding", model="gemma2", layer_idx=0, seed=202, batch=2, seq=11, start_pos=3,
         decode_from=2, input_scale=4.0,
         what="Gemma2Attention, layer 0 (sliding by the default layer_types), window 4, attn_logit_softcapping 3 "
              "applied to the scaled logits before the mask, softmax scale query_pre_attn_scalar^-0.5 = 20^-0.5 "
              "(head_dim 8), 6 heads of 8 (6 * 8 != hidden 24), 3 KV heads, positions 3..13.",
         config=GEMMA2),
    dict(name="gemma2_full", model="gemma2", layer_idx=1, seed=203, batch=2, seq=11, start_pos=3,
         decode_from=2, input_scale=4.0,
         what="Gemma2Attention, layer 1 (full attention by the default layer_types), otherwise as gemma2_sliding: "
              "softcap 3, scale 20^-0.5, head_dim 8, positions 3..13.",
         config=GEMMA2),
    dict(name="qwen3_qknorm", model="qwen3", layer_idx=0, seed=204, batch=3, seq=9, start_pos=5,
         decode_from=4, input_scale=1.0, norms="qwen3",
         what="Qwen3Attention with q_norm/k_norm (RMSNorm over head_dim, x̂·w) with random weights 1 + 0.3·randn, "
              "biases on q, k, v and o, full attention, 4 heads of 10 (4 * 10 != hidden 36), 2 KV heads, "
              "positions 5..13.",
         config={"hidden_size": 36, "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 10,
                 "num_hidden_layers": 1, "attention_bias": True,
                 "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0}, **FILLER}),
    dict(name="qwen3_window", model="qwen3", layer_idx=1, seed=205, batch=3, seq=11, start_pos=2,
         decode_from=3, input_scale=1.0, norms="qwen3",
         what="Qwen3Attention with use_sliding_window, sliding_window 4, max_window_layers 1: layer 0 is full, "
              "layer 1 (this one) sliding; random q/k norm weights, no biases, 6 heads of 8, 2 KV heads, "
              "hidden 28, positions 2..12.",
         config={"hidden_size": 28, "num_attention_heads": 6, "num_key_value_heads": 2, "head_dim": 8,
                 "num_hidden_layers": 2, "use_sliding_window": True, "sliding_window": 4,
                 "max_window_layers": 1,
                 "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0}, **FILLER}),
    dict(name="gemma3_sliding", model="gemma3_text", layer_idx=0, seed=206, batch=2, seq=12, start_pos=7,
         decode_from=3, input_scale=2.0, norms="gemma3",
         what="Gemma3 text attention, layer 0 (sliding by the default pattern 6), window 5, RoPE base 10000 "
              "(sliding layers), q/k norm x̂·(1+w) with w = 0.3·randn, scale query_pre_attn_scalar^-0.5 = "
              "14^-0.5 (head_dim 10), 4 heads of 10 (4 * 10 != hidden 28), 1 KV head (as Gemma 3 1B), "
              "positions 7..18.",
         config=GEMMA3),
    dict(name="gemma3_full", model="gemma3_text", layer_idx=5, seed=207, batch=2, seq=12, start_pos=7,
         decode_from=3, input_scale=2.0, norms="gemma3",
         what="Gemma3 text attention, layer 5 (full by the default pattern 6), RoPE theta 1e6 (full layers), "
              "otherwise as gemma3_sliding.",
         config=GEMMA3),
    dict(name="gpt_oss_sinks", model="gpt_oss", layer_idx=0, seed=208, batch=2, seq=10, start_pos=2,
         decode_from=3, input_scale=2.0, sinks=True,
         what="GptOssAttention, layer 0 (sliding), window 4, sinks 2·randn (one logit per head, softmax over "
              "keys + sink, sink column dropped), biases on q, k, v, o, 6 heads of 12 (6 * 12 != hidden 20), "
              "3 KV heads; RoPE 'default' theta 150000, not gpt-oss's YaRN (see gpt_oss_yarn).",
         config={**GPT_OSS, "rope_parameters": GPT_OSS_DEFAULT_ROPE}),
    dict(name="gpt_oss_full", model="gpt_oss", layer_idx=1, seed=209, batch=2, seq=10, start_pos=2,
         decode_from=3, input_scale=2.0, sinks=True,
         what="GptOssAttention, layer 1 (full attention), otherwise as gpt_oss_sinks (RoPE 'default', sinks).",
         config={**GPT_OSS, "rope_parameters": GPT_OSS_DEFAULT_ROPE}),
    dict(name="gpt_oss_yarn", model="gpt_oss", layer_idx=1, seed=210, batch=2, seq=10, start_pos=5000,
         decode_from=3, input_scale=2.0, sinks=True,
         what="GptOssAttention, layer 1 (full), gpt-oss's default YaRN RoPE (factor 32, beta_fast 32, beta_slow 1, "
              "truncate false, original max 4096, theta 150000) at positions 5000..5009 (> 4096); inv_freq, cos, "
              "sin (half-width) and the attention factor are stored. Waits for YaRN support in the crate.",
         config=GPT_OSS),        # rope_parameters unset: GptOssConfig fills in its default YaRN
    dict(name="deepseek_v3_mla", model="deepseek_v3", layer_idx=1, seed=211, batch=2, seq=11, start_pos=3,
         decode_from=4, input_scale=1.0, norms="mla", real_config=True,
         what="DeepseekV3Attention (MLA), layer 1: q_a_proj 48 -> 24, q_a_layernorm, q_b_proj -> 4 heads of "
              "14 + 8; kv_a_proj_with_mqa 48 -> latent 20 + shared RoPE key 8, kv_a_layernorm, kv_b_proj -> 4 "
              "heads of k_nope 14 + v 10; o_proj 40 -> 48. Norm weights 1 + 0.3·randn, rope_interleave true, "
              "RoPE 'default' theta 10000, no biases, scale 22^-0.5, positions 3..13.",
         config=DEEPSEEK_V3),
    dict(name="deepseek_v3_no_q_lora", model="deepseek_v3", layer_idx=1, seed=212, batch=2, seq=11, start_pos=3,
         decode_from=4, input_scale=1.0, norms="mla",
         what="DeepseekV3Attention with q_lora_rank null: a plain q_proj 48 -> 4 * 22, no q_a_layernorm; "
              "rope_interleave false (rotate-half); otherwise as deepseek_v3_mla.",
         config={**DEEPSEEK_V3, "q_lora_rank": None, "rope_interleave": False}),
    dict(name="deepseek_v3_yarn", model="deepseek_v3", layer_idx=1, seed=213, batch=2, seq=11, start_pos=5000,
         decode_from=4, input_scale=1.0, norms="mla",
         what="DeepseekV3Attention with DeepSeek-V3's YaRN written as its hub config.json does (rope_theta 10000, "
              "rope_scaling type yarn, factor 40, mscale 1, mscale_all_dim 1, beta_fast 32, beta_slow 1, "
              "original max 4096, max_position_embeddings 163840) at positions 5000..5010 (> 4096): inv_freq "
              "from YaRN, attention factor gm(40, 1) / gm(40, 1) = 1, softmax scale 22^-0.5 · gm(40, 1)²; "
              "otherwise as deepseek_v3_mla.",
         config={**{k: v for k, v in DEEPSEEK_V3.items() if k != "rope_parameters"}, **DEEPSEEK_V3_HUB_ROPE}),
    dict(name="deepseek_v3_bias", model="deepseek_v3", layer_idx=1, seed=214, batch=2, seq=11, start_pos=3,
         decode_from=4, input_scale=1.0, norms="mla", weights_dtype="bf16",
         what="DeepseekV3Attention with attention_bias true: biases on q_a_proj, kv_a_proj_with_mqa and o_proj "
              "only; every weight rounded to bf16 and stored as bf16 (the run uses exactly those values in f32); "
              "otherwise as deepseek_v3_mla.",
         config={**DEEPSEEK_V3, "attention_bias": True}),
    # One bf16 case per grouped-query model type: every weight rounded to bf16 and stored as bf16, the run in f32
    # on exactly those values; two of them also store their input as bf16 (rounded the same way before the run).
    dict(name="mistral_window_bf16", model="mistral", layer_idx=0, seed=215, batch=2, seq=7, start_pos=1,
         decode_from=2, input_scale=1.0, weights_dtype="bf16", input_dtype="bf16",
         what="MistralAttention with sliding_window 3, weights and input rounded to bf16 and stored as bf16 (the "
              "run uses exactly those values in f32): 4 heads of 6 (4 * 6 != hidden 12), 1 KV head, RoPE theta "
              "10000, positions 1..7.",
         config={"hidden_size": 12, "num_attention_heads": 4, "num_key_value_heads": 1, "head_dim": 6,
                 "num_hidden_layers": 1, "sliding_window": 3,
                 "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0}, **FILLER}),
    dict(name="qwen3_qknorm_bf16", model="qwen3", layer_idx=0, seed=216, batch=3, seq=5, start_pos=5,
         decode_from=2, input_scale=1.0, norms="qwen3", weights_dtype="bf16",
         what="Qwen3Attention with q_norm/k_norm (x̂·w, w = 1 + 0.3·randn) and biases on q, k, v and o, every "
              "weight rounded to bf16 and stored as bf16 (input f32); full attention, 4 heads of 6 (4 * 6 != "
              "hidden 14), 2 KV heads, RoPE theta 1e6, positions 5..9.",
         config={"hidden_size": 14, "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 6,
                 "num_hidden_layers": 1, "attention_bias": True,
                 "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0}, **FILLER}),
    dict(name="gemma2_sliding_bf16", model="gemma2", layer_idx=0, seed=217, batch=2, seq=7, start_pos=3,
         decode_from=2, input_scale=4.0, weights_dtype="bf16", input_dtype="bf16",
         what="Gemma2Attention, layer 0 (sliding), window 3, attn_logit_softcapping 3 before the mask, scale "
              "query_pre_attn_scalar^-0.5 = 10^-0.5 (head_dim 6), weights and input rounded to bf16 and stored as "
              "bf16; 4 heads of 6 (4 * 6 != hidden 20), 1 KV head, positions 3..9.",
         config={"hidden_size": 20, "num_attention_heads": 4, "num_key_value_heads": 1, "head_dim": 6,
                 "num_hidden_layers": 2, "sliding_window": 3, "query_pre_attn_scalar": 10,
                 "attn_logit_softcapping": 3.0,
                 "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0}, **FILLER}),
    dict(name="gemma3_full_bf16", model="gemma3_text", layer_idx=5, seed=218, batch=3, seq=5, start_pos=7,
         decode_from=2, input_scale=2.0, norms="gemma3", weights_dtype="bf16",
         what="Gemma3 text attention, layer 5 (full by the default pattern 6), RoPE theta 1e6, q/k norm x̂·(1+w) "
              "with w = 0.3·randn, scale query_pre_attn_scalar^-0.5 = 9^-0.5 (head_dim 6), every weight rounded "
              "to bf16 and stored as bf16 (input f32); 4 heads of 6 (4 * 6 != hidden 12), 2 KV heads, positions "
              "7..11.",
         config={"hidden_size": 12, "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 6,
                 "num_hidden_layers": 6, "sliding_window": 4, "query_pre_attn_scalar": 9,
                 "rope_parameters": GEMMA3_SMALL_ROPE, **FILLER}),
    dict(name="gpt_oss_sinks_bf16", model="gpt_oss", layer_idx=0, seed=219, batch=2, seq=7, start_pos=2,
         decode_from=2, input_scale=2.0, sinks=True, weights_dtype="bf16",
         what="GptOssAttention, layer 0 (sliding), window 3, sinks 2·randn, biases on q, k, v, o, every weight "
              "rounded to bf16 and stored as bf16 (input f32); 4 heads of 8 (4 * 8 != hidden 12), 1 KV head, "
              "RoPE 'default' theta 150000, positions 2..8.",
         config={"hidden_size": 12, "num_attention_heads": 4, "num_key_value_heads": 1, "head_dim": 8,
                 "num_hidden_layers": 2, "sliding_window": 3, "attention_bias": True,
                 "num_local_experts": 2, "num_experts_per_tok": 1, "rope_parameters": GPT_OSS_DEFAULT_ROPE,
                 **FILLER}),
    # Long positions: RoPE angles pos·θ_i formed in f32 at positions far past the first cases', the cache
    # decoding there. max_position_embeddings as the real models'.
    dict(name="mistral_long", model="mistral", layer_idx=0, seed=220, batch=2, seq=7, start_pos=30000,
         decode_from=2, input_scale=1.0,
         what="MistralAttention with sliding_window 3 at positions 30000..30006 (max_position_embeddings 32768, "
              "as Mistral 7B v0.1), RoPE theta 10000: 4 heads of 8 (4 * 8 != hidden 10), 1 KV head.",
         config={"hidden_size": 10, "num_attention_heads": 4, "num_key_value_heads": 1, "head_dim": 8,
                 "num_hidden_layers": 1, "sliding_window": 3,
                 "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0},
                 **FILLER, "max_position_embeddings": 32768}),
    dict(name="qwen3_long", model="qwen3", layer_idx=0, seed=221, batch=2, seq=5, start_pos=40000,
         decode_from=2, input_scale=1.0, norms="qwen3",
         what="Qwen3Attention with q_norm/k_norm (x̂·w, w = 1 + 0.3·randn), full attention, at positions "
              "40000..40004 (max_position_embeddings 40960, as Qwen3), RoPE theta 1e6: 3 heads of 8 (3 * 8 != "
              "hidden 14), 1 KV head, no biases.",
         config={"hidden_size": 14, "num_attention_heads": 3, "num_key_value_heads": 1, "head_dim": 8,
                 "num_hidden_layers": 1,
                 "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0},
                 **FILLER, "max_position_embeddings": 40960}),
    dict(name="gemma3_full_long", model="gemma3_text", layer_idx=5, seed=222, batch=2, seq=5, start_pos=100000,
         decode_from=2, input_scale=2.0, norms="gemma3",
         what="Gemma3 text attention, layer 5 (full), RoPE theta 1e6 at positions 100000..100004 "
              "(max_position_embeddings 131072, as Gemma 3), q/k norm x̂·(1+w) with w = 0.3·randn, scale "
              "query_pre_attn_scalar^-0.5 = 10^-0.5 (head_dim 8), 3 heads of 8 (3 * 8 != hidden 12), 1 KV head.",
         config={"hidden_size": 12, "num_attention_heads": 3, "num_key_value_heads": 1, "head_dim": 8,
                 "num_hidden_layers": 6, "sliding_window": 4, "query_pre_attn_scalar": 10,
                 "rope_parameters": GEMMA3_SMALL_ROPE, **FILLER, "max_position_embeddings": 131072}),
    dict(name="deepseek_v2_mla", model="deepseek_v2", layer_idx=1, seed=223, batch=2, seq=7, start_pos=3,
         decode_from=3, input_scale=1.0, norms="mla", v2_config=True,
         what="DeepseekV2Attention (MLA), layer 1: q_a_proj 12 -> 9, q_a_layernorm, q_b_proj -> 3 heads of "
              "6 + 8; kv_a_proj_with_mqa 12 -> latent 10 + shared RoPE key 8, kv_a_layernorm, kv_b_proj -> 3 "
              "heads of k_nope 6 + v 5; o_proj 15 -> 12. Norm weights 1 + 0.3·randn, RoPE 'default' theta 10000 "
              "as complex numbers (freqs_cis), always on interleaved pairs (2i, 2i+1) kept in place, no biases, "
              "scale 14^-0.5, positions 3..9.",
         config=DEEPSEEK_V2),
    # RoPE scaling beyond gpt-oss's and DeepSeek's YaRN, at positions past the original context.
    dict(name="gemma3_full_linear", model="gemma3_text", layer_idx=5, seed=224, batch=2, seq=7, start_pos=20000,
         decode_from=2, input_scale=2.0, norms="gemma3", rope_check="linear",
         what="Gemma3 text attention, layer 5 (full by the default pattern 6), RoPE written as Gemma 3 4B/12B/27B's "
              "config.json writes it (rope_theta 1e6, rope_scaling linear factor 8, rope_local_base_freq 1e4): "
              "inv_freq = 1e6^(-2i/8) / 8, at positions 20000..20006; q/k norm x̂·(1+w) with w = 0.3·randn, scale "
              "query_pre_attn_scalar^-0.5 = 12^-0.5 (head_dim 8), 4 heads of 8 (4 * 8 != hidden 20), 1 KV head.",
         config=GEMMA3_LINEAR),
    dict(name="gemma3_sliding_linear", model="gemma3_text", layer_idx=0, seed=225, batch=2, seq=7, start_pos=20000,
         decode_from=2, input_scale=2.0, norms="gemma3", rope_check="linear",
         what="Gemma3 text attention, layer 0 (sliding, window 3) of gemma3_full_linear's config: its RoPE is "
              "rope_local_base_freq 1e4 unscaled (rope_scaling reaches the full layers only), positions "
              "20000..20006; otherwise as gemma3_full_linear.",
         config=GEMMA3_LINEAR),
    dict(name="qwen3_yarn", model="qwen3", layer_idx=0, seed=226, batch=2, seq=6, start_pos=40000,
         decode_from=2, input_scale=1.0, norms="qwen3", rope_check="yarn",
         what="Qwen3Attention with YaRN as Qwen documents it (rope_scaling rope_type yarn, factor 4, "
              "original_max_position_embeddings 32768; max_position_embeddings 131072, rope_theta 1e6) at "
              "positions 40000..40005 (> 32768): truncate true, beta 32 / 1, attention factor 0.1·ln 4 + 1; "
              "q/k norm x̂·w with w = 1 + 0.3·randn, full attention, 3 heads of 8 (3 * 8 != hidden 18), 1 KV head, "
              "no biases.",
         config={"hidden_size": 18, "num_attention_heads": 3, "num_key_value_heads": 1, "head_dim": 8,
                 "num_hidden_layers": 1, **FILLER, **QWEN3_DOC_YARN}),
    dict(name="mistral_yarn", model="mistral", layer_idx=0, seed=227, batch=2, seq=7, start_pos=40000,
         decode_from=2, input_scale=1.0, rope_check="yarn",
         what="MistralAttention with sliding_window 3 on every layer and a YaRN RoPE in rope_parameters (rope_type "
              "yarn, rope_theta 1e6, factor 4, original_max_position_embeddings 32768, beta_fast 32, beta_slow 1; "
              "max_position_embeddings 131072) at positions 40000..40006: 4 heads of 6 (4 * 6 != hidden 22), 1 KV "
              "head.",
         config={"hidden_size": 22, "num_attention_heads": 4, "num_key_value_heads": 1, "head_dim": 6,
                 "num_hidden_layers": 1, "sliding_window": 3,
                 "rope_parameters": {"rope_type": "yarn", "rope_theta": 1000000.0, "factor": 4.0,
                                     "original_max_position_embeddings": 32768, "beta_fast": 32.0,
                                     "beta_slow": 1.0},
                 **FILLER, "max_position_embeddings": 131072}),
]


def to_json(obj):
    """json.dumps with indent 2, but lists of numbers or strings (shapes, layer kinds) kept on one line."""
    one_line = lambda m: "[" + ", ".join(v.strip() for v in m.group(1).split(",")) + "]"
    return re.sub(r'\[([-+\w\s,."]*)\]', one_line, json.dumps(obj, indent=2, ensure_ascii=False)) + "\n"


def write_config(case_dir, config_cls, arch, kwargs):
    """Write config.json with the class's own save_pretrained, then load it back (class and AutoConfig)."""
    config = config_cls(**copy.deepcopy(kwargs))           # the class may fill in nested dicts
    config.architectures = [arch]
    config.save_pretrained(case_dir)
    loaded = config_cls.from_pretrained(case_dir)
    auto = AutoConfig.from_pretrained(case_dir)
    assert type(auto) is config_cls, type(auto)
    same = lambda c: {k: v for k, v in c.to_dict().items() if k != "_name_or_path"}
    assert same(loaded) == same(auto) == same(config)
    loaded._attn_implementation = "eager"
    return loaded


def long_position_facts(cos, sin, inv_freq, attention_factor, start, seq):
    """At long positions the f32 angle pos·θ_i is itself rounded (by up to half an ulp of the product): the tables
    are exactly cos/sin of that f32 product, not of the exact angle. Records how far the two are apart."""
    pos = torch.arange(start, start + seq)
    angle32 = pos[:, None].float() * inv_freq[None, :]                  # (seq, rope_dim/2), as the rotary class
    angle64 = pos[:, None].double() * inv_freq[None, :].double()        # the same θ_i, the product exact
    width = cos.shape[-1] // angle32.shape[-1]                           # full-width tables repeat the halves
    want_cos = (angle32.cos() * attention_factor).repeat(1, width)
    want_sin = (angle32.sin() * attention_factor).repeat(1, width)
    assert torch.equal(cos, want_cos) and torch.equal(sin, want_sin)
    exact = (angle64.cos() * attention_factor).repeat(1, width)
    return {"angle": "pos·inv_freq formed in f32 (f32 inv_freq times float(position_ids)); cos and sin are "
                     "exactly torch's cos/sin of those f32 angles",
            "max_angle": angle32.max().item(),
            "f32_angle_rounding_max_abs": (angle32.double() - angle64).abs().max().item(),
            "cos_vs_exact_angle_max_abs_diff": (cos.double() - exact).abs().max().item()}


def max_diff(a, b):
    return (a - b).abs().max().item()


class LayerProbe:
    """Hooks on one attention module: swaps in our hidden_states, records its inputs and outputs per call."""

    def __init__(self, module):
        self.module, self.feed, self.calls = module, None, []
        module.register_forward_pre_hook(self.pre, with_kwargs=True)
        module.register_forward_hook(self.post, with_kwargs=True)

    def pre(self, module, args, kwargs):
        assert not args and "hidden_states" in kwargs                  # the decoder layer calls by keyword
        assert kwargs["hidden_states"].shape == self.feed.shape
        kwargs = {**kwargs, "hidden_states": self.feed}
        self.calls.append({"mask": kwargs["attention_mask"], "rope": kwargs["position_embeddings"]})
        return args, kwargs

    def post(self, module, args, kwargs, output):
        self.calls[-1]["out"], self.calls[-1]["weights"] = output[0], output[1]


def run_model(model, probe, hidden_states, start_pos, decode_from):
    """The model's own forward: a prefill without cache, then prefill + token-by-token decode with a cache."""
    batch, seq, _ = hidden_states.shape
    positions = lambda a, b: torch.arange(start_pos + a, start_pos + b)[None].expand(batch, b - a)

    probe.calls.clear()
    probe.feed = hidden_states
    model(inputs_embeds=hidden_states, position_ids=positions(0, seq))
    prefill = probe.calls[0]

    probe.calls.clear()
    cache = DynamicCache(config=model.config)
    for a, b in [(0, decode_from)] + [(t, t + 1) for t in range(decode_from, seq)]:
        probe.feed = hidden_states[:, a:b]
        model(inputs_embeds=probe.feed, position_ids=positions(a, b), cache=cache, use_cache=True)
    decode = torch.cat([c["out"] for c in probe.calls], dim=1)
    decode_keys = [c["weights"].shape[-1] for c in probe.calls]
    return prefill, decode, decode_keys, cache


def window_facts(weights, window):
    """Which keys each query attends to, read off the returned weights (exactly 0 = masked)."""
    batch, heads, q, k = weights.shape
    i = torch.arange(q)[:, None]
    j = torch.arange(k)[None, :]
    want = (j <= i) if window is None else (j <= i) & (j > i - window)
    seen = weights != 0
    assert torch.equal(seen, want.expand_as(seen)), "the mask is not the expected (sliding) causal mask"
    return {"visible_keys": "j <= i" if window is None else f"i - {window} < j <= i ({window} keys incl. itself)",
            "visible_per_row": seen[0, 0].sum(-1).tolist()}


def yarn_mscale(scale, mscale):
    """YaRN's gm(s, m) = 0.1·m·ln(s) + 1, and 1 for s <= 1."""
    return 1.0 if scale <= 1 else 0.1 * mscale * math.log(scale) + 1.0


def mla_scale(config):
    """MLA's softmax scale: qk_head_dim^-0.5, times gm(factor, mscale_all_dim)² when a scaled RoPE sets it."""
    rope = config.rope_parameters
    scale = (config.qk_nope_head_dim + config.qk_rope_head_dim) ** -0.5
    if rope["rope_type"] != "default" and rope.get("mscale_all_dim"):
        scale *= yarn_mscale(rope["factor"], rope["mscale_all_dim"]) ** 2
    return scale


def yarn_inv_freq(rope, dim):
    """YaRN's inverse frequencies (truncate defaults to true), in float64: a check on the rotary class's."""
    base, factor, orig = rope["rope_theta"], rope["factor"], rope["original_max_position_embeddings"]
    end = lambda beta: dim * math.log(orig / (beta * 2 * math.pi)) / (2 * math.log(base))
    low, high = end(rope.get("beta_fast") or 32), end(rope.get("beta_slow") or 1)
    if rope.get("truncate", True):
        low, high = math.floor(low), math.ceil(high)
    low, high = max(low, 0), min(high, dim - 1)
    high = high + 0.001 if low == high else high
    ramp = ((torch.arange(dim // 2, dtype=torch.float64) - low) / (high - low)).clamp(0, 1)
    inv = 1.0 / base ** (torch.arange(0, dim, 2, dtype=torch.float64) / dim)
    return inv / factor * ramp + inv * (1 - ramp), (low, high)


def default_inv_freq(base, dim):
    """RoPE's unscaled inverse frequencies base^(-2i/dim), in f32, by the steps of transformers' rotary classes."""
    return 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.int64).float() / dim))


def linear_facts(config, rotary, layer_kind, run, attn_output):
    """Gemma 3's linear scaling: the full layers' inv_freq is the default one divided by the factor (bit for bit),
    the sliding layers' the default one at the local base, unscaled. The other choice for this case's layer (the
    full layer unscaled, or the sliding layer scaled too) changes its output: the fixture tells them apart."""
    full, sliding = config.rope_parameters["full_attention"], config.rope_parameters["sliding_attention"]
    dim, factor = config.head_dim, full["factor"]
    assert full["rope_type"] == "linear" and sliding["rope_type"] == "default"
    full_inv, sliding_inv = rotary.full_attention_inv_freq, rotary.sliding_attention_inv_freq
    assert torch.equal(full_inv, default_inv_freq(full["rope_theta"], dim) / factor)
    assert torch.equal(sliding_inv, default_inv_freq(sliding["rope_theta"], dim))
    assert rotary.full_attention_attention_scaling == rotary.sliding_attention_attention_scaling == 1.0
    facts = {"rope_read_from": "hub form (rope_theta, rope_local_base_freq, rope_scaling {rope_type linear, factor "
                               "8}): Gemma3TextConfig merges rope_scaling into rope_parameters['full_attention'] "
                               "only; config.json is written nested",
             "linear_inv_freq": f"full layers: 1 / {full['rope_theta']}^(2i/{dim}) in f32, then one f32 division by "
                                f"{factor}; sliding layers: 1 / {sliding['rope_theta']}^(2i/{dim}), unscaled; "
                                "attention factor 1 for both"}
    buffer = getattr(rotary, f"{layer_kind}_inv_freq")
    saved = buffer.clone()
    if layer_kind == "full_attention":
        buffer.copy_(default_inv_freq(full["rope_theta"], dim))
        what = "linear_scaling_off_effect_max_abs_diff"
    else:
        buffer.copy_(sliding_inv / factor)
        what = "sliding_layer_scaled_too_effect_max_abs_diff"
    facts[what] = max_diff(run(), attn_output)
    buffer.copy_(saved)
    assert facts[what] > BITE_MIN
    return facts


def yarn_facts(config, rotary, run, attn_output):
    """YaRN on a grouped-query model (Qwen3, Mistral): the rotary class's inv_freq against a float64 recomputation,
    its correction range, its attention factor 0.1·ln(factor) + 1 (no mscale keys); switching YaRN off (default
    frequencies, factor 1) changes the output."""
    rope, dim = config.rope_parameters, config.head_dim
    assert rope["rope_type"] == "yarn" and "mscale" not in rope and "attention_factor" not in rope
    inv_freq, (low, high) = yarn_inv_freq(rope, dim)
    rel = (rotary.inv_freq.double() - inv_freq) / inv_freq
    facts = {"yarn_correction_range": [low, high], "yarn_inv_freq_vs_f64_max_rel_diff": rel.abs().max().item(),
             "yarn_truncate": rope.get("truncate", True)}
    assert facts["yarn_inv_freq_vs_f64_max_rel_diff"] < 1e-6
    assert rotary.attention_scaling == yarn_mscale(rope["factor"], 1)
    facts["yarn_attention_factor"] = "0.1·ln(factor) + 1: cos and sin are multiplied by it"
    saved = rotary.inv_freq.clone(), rotary.attention_scaling
    rotary.inv_freq.copy_(default_inv_freq(rope["rope_theta"], dim))
    rotary.attention_scaling = 1.0
    facts["yarn_off_effect_max_abs_diff"] = max_diff(run(), attn_output)
    rotary.inv_freq.copy_(saved[0])
    rotary.attention_scaling = saved[1]
    assert facts["yarn_off_effect_max_abs_diff"] > BITE_MIN
    return facts


def rope_tables(rope):
    """cos and sin as the model handed them to the layer: a (cos, sin) pair (batch, seq, width), or
    DeepSeek-V2's complex freqs_cis (batch, seq, rope_dim/2), cos + i·sin of one angle per pair."""
    if isinstance(rope, torch.Tensor):
        assert rope.is_complex(), rope.dtype
        return rope.real, rope.imag
    return rope


def mla_interleave(config):
    """Whether the MLA layer rotates interleaved pairs (2i, 2i+1): DeepSeek-V3's rope_interleave; DeepSeek-V2's
    attention always does (view_as_complex) and never reads the key."""
    return True if config.model_type == "deepseek_v2" else config.rope_interleave


def rotate_pairs(x, cos, sin, interleave):
    """RoPE on the last dim, cos/sin (seq, dim/2) per pair: interleaved pairs (2i, 2i+1) kept in place (Meta's
    layout, chapter 7) or rotate-half pairs (i, i + dim/2)."""
    if interleave:
        x1, x2 = x[..., 0::2], x[..., 1::2]
        out = torch.empty_like(x)
        out[..., 0::2], out[..., 1::2] = x1 * cos - x2 * sin, x2 * cos + x1 * sin
        return out
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((x1 * cos - x2 * sin, x2 * cos + x1 * sin), dim=-1)


def mla_check(weights, config, hidden_states, cos, sin, scale, interleave):
    """MLA recomputed in float64 from the weights alone (a check, not the reference): pins the weight layouts,
    the norms' eps, the RoPE pairs and the scale. Keeps RoPE interleaved where transformers de-interleaves.
    cos/sin are the tables the model passed (seq, rope_dim; DeepSeek-V2: seq, rope_dim/2), first rope_dim/2
    columns = one angle per pair; interleave: pairs (2i, 2i+1), else (i, i + rope_dim/2)."""
    w = {k: v.double() for k, v in weights.items()}
    lin = lambda x, n: x @ w[n + ".weight"].T + (w[n + ".bias"] if n + ".bias" in w else 0)
    rms = lambda x, n: x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + MLA_NORM_EPS) * w[n + ".weight"]
    n_heads, nope, rope_dim = config.num_attention_heads, config.qk_nope_head_dim, config.qk_rope_head_dim
    v_dim, rank = config.v_head_dim, config.kv_lora_rank
    batch, seq, _ = hidden_states.shape
    h = hidden_states.double()
    q = lin(h, "q_proj") if config.q_lora_rank is None else lin(rms(lin(h, "q_a_proj"), "q_a_layernorm"), "q_b_proj")
    q = q.view(batch, seq, n_heads, nope + rope_dim).transpose(1, 2)     # (b, s, H·(nope+rope)) -> (b, H, s, ..)
    latent, k_rope = lin(h, "kv_a_proj_with_mqa").split([rank, rope_dim], dim=-1)   # (b, s, rank), (b, s, rope)
    latent = rms(latent, "kv_a_layernorm")
    kv = lin(latent, "kv_b_proj").view(batch, seq, n_heads, nope + v_dim).transpose(1, 2)   # (b, H, s, nope+v)
    k_nope, v = kv.split([nope, v_dim], dim=-1)
    c, s = cos[:, : rope_dim // 2].double(), sin[:, : rope_dim // 2].double()
    q_rot = rotate_pairs(q[..., nope:], c, s, interleave)              # (b, H, s, rope)
    k_rot = rotate_pairs(k_rope, c, s, interleave)                     # (b, s, rope): one key for all heads
    scores = (q[..., :nope] @ k_nope.transpose(-1, -2) + q_rot @ k_rot[:, None].transpose(-1, -2)) * scale
    causal = torch.ones(seq, seq, dtype=torch.bool).tril()
    probs = scores.masked_fill(~causal, float("-inf")).softmax(-1)     # (b, H, s, s)
    out = lin((probs @ v).transpose(1, 2).reshape(batch, seq, n_heads * v_dim), "o_proj")
    return out, probs, latent, k_rot


def rerun(model, probe, hidden_states, start, decode_from):
    """The prefill output of the model's forward (after a temporary change to the layer)."""
    return run_model(model, probe, hidden_states, start, decode_from)[0]["out"]


def mla_facts(case, config, attn, target, model, probe, hidden_states, prefill, cache):
    """Checks on an MLA layer: what the cache holds, layouts, norms, RoPE layout, scale, biases. Returns the facts
    and the two cache tensors (latent, rope key) for expected.safetensors."""
    facts, attn_output = {}, prefill["out"]
    batch, seq, _ = hidden_states.shape
    start, decode_from, layer_idx = case["start_pos"], case["decode_from"], case["layer_idx"]
    rank, rope_dim = config.kv_lora_rank, config.qk_rope_head_dim
    run = lambda: rerun(model, probe, hidden_states, start, decode_from)

    # What DynamicCache keeps for the layer: keys = the normed latent, values = the rotated shared RoPE key.
    layer_cache = cache.layers[layer_idx]
    latent_cache, rope_key_cache = layer_cache.keys, layer_cache.values
    assert tuple(latent_cache.shape) == (batch, 1, seq, rank), latent_cache.shape
    assert tuple(rope_key_cache.shape) == (batch, 1, seq, rope_dim), rope_key_cache.shape
    facts["cache"] = ("DynamicCache layer keys = kv_a_layernorm(latent) (batch, 1, seq, kv_lora_rank), values = "
                      "the RoPE-rotated shared key (batch, 1, seq, qk_rope_head_dim); kv_b_proj runs after the "
                      "cache read, on every cached token at every step")

    # The float64 recomputation (Meta's interleaved pairs, RoPE key kept interleaved).
    cos, sin = rope_tables(prefill["rope"])
    weights = {k: v for k, v in attn.state_dict().items()}
    interleave, v2 = mla_interleave(config), config.model_type == "deepseek_v2"
    assert target.num_key_value_groups == 1 and config.num_key_value_heads == config.num_attention_heads
    assert math.isclose(target.scaling, mla_scale(config), rel_tol=1e-12), (target.scaling, mla_scale(config))
    want_out, want_probs, want_latent, want_k_rot = mla_check(weights, config, hidden_states, cos[0], sin[0],
                                                              mla_scale(config), interleave)
    facts["check_f64_max_abs_diff"] = {
        "attn_output": max_diff(attn_output.double(), want_out),
        "attn_weights": max_diff(prefill["weights"].double(), want_probs),
        "latent_cache": max_diff(latent_cache[:, 0].double(), want_latent)}
    # DeepSeek-V3 de-interleaves the rotated pairs; DeepSeek-V2 (complex product, view_as_real) keeps them in place
    layout = (torch.cat((want_k_rot[..., 0::2], want_k_rot[..., 1::2]), dim=-1) if interleave and not v2
              else want_k_rot)
    facts["check_f64_max_abs_diff"]["rope_key_cache"] = max_diff(rope_key_cache[:, 0].double(), layout)
    assert max(facts["check_f64_max_abs_diff"].values()) < MLA_CHECK_TOL, facts["check_f64_max_abs_diff"]
    facts["check_f64"] = ("independent float64 forward from the weights (mla_check) matches attn_output, "
                          "attn_weights and both cache tensors within " + f"{MLA_CHECK_TOL:g}")
    facts["layouts"] = {
        "q_b_proj/q_proj rows": "head-major, per head [q_nope (qk_nope_head_dim) | q_rope (qk_rope_head_dim)]",
        "kv_a_proj_with_mqa rows": "[latent (kv_lora_rank) | k_rope (qk_rope_head_dim)], k_rope shared by all heads",
        "kv_b_proj rows": "head-major, per head [k_nope (qk_nope_head_dim) | v (v_head_dim)]",
        "o_proj input": "head-major, n_heads * v_head_dim",
        "key per head": "[k_nope | k_rope] (nope first), queries likewise"}
    if v2:
        facts["rope_interleave"] = (
            "absent, and never read: DeepseekV2Attention always rotates pairs (2i, 2i+1) by angle i, as complex "
            "numbers (view_as_complex(x.reshape(..., -1, 2)) * freqs_cis, view_as_real, flatten), and keeps them "
            "in place: rope_key_cache is in Meta's interleaved order. The model passes freqs_cis = "
            "polar(1, pos·inv_freq) (batch, seq, qk_rope_head_dim/2), complex; cos and sin here are its real and "
            "imaginary parts, half-width")
        # rotate-half pairs are not what it computes
        rotate_half = mla_check(weights, config, hidden_states, cos[0], sin[0], mla_scale(config), False)[0]
        facts["rotate_half_f64_vs_attn_output_max_abs_diff"] = max_diff(attn_output.double(), rotate_half)
        assert facts["rotate_half_f64_vs_attn_output_max_abs_diff"] > BITE_MIN
        assert not hasattr(config, "rope_interleave") and not hasattr(target, "rope_interleave")
        config.rope_interleave = False                                 # the attribute V3 reads
        assert torch.equal(run(), attn_output)
        del config.rope_interleave
        facts["rope_interleave_false_effect"] = "none: setting config.rope_interleave = False leaves the output " \
            "bit-identical"
    elif config.rope_interleave:
        facts["rope_interleave"] = (
            "true: pairs (2i, 2i+1) rotated by angle i (first half of cos/sin), as Meta's layout; but "
            "apply_rotary_pos_emb_interleave returns them de-interleaved, [rotated x[0::2] | rotated x[1::2]]. "
            "q and k get the same permutation, so q·k, attn_weights and attn_output are unchanged (the float64 "
            "check keeps Meta's interleaved layout and agrees); it matters only where a rotated vector is read "
            "itself: rope_key_cache is stored in the de-interleaved order")
    else:
        facts["rope_interleave"] = ("false: rotate-half pairs (i, i + qk_rope_head_dim/2); rope_key_cache in "
                                    "that order")
    assert target.config is config                                     # so flipping it reaches the layer
    if not v2:
        config.rope_interleave = not config.rope_interleave
        facts["rope_interleave_flip_effect_max_abs_diff"] = max_diff(run(), attn_output)
        config.rope_interleave = not config.rope_interleave
        assert facts["rope_interleave_flip_effect_max_abs_diff"] > BITE_MIN

    # The two norms: eps 1e-6 whatever rms_norm_eps says (the decoder's own norms do use rms_norm_eps).
    norms = [n for n in ("q_a_layernorm", "kv_a_layernorm") if getattr(target, n) is not None]
    assert all(getattr(target, n).variance_epsilon == MLA_NORM_EPS for n in norms)
    assert model.layers[layer_idx].input_layernorm.variance_epsilon == config.rms_norm_eps != MLA_NORM_EPS
    for n in norms:
        getattr(target, n).variance_epsilon = config.rms_norm_eps
    facts["norm_eps_as_rms_norm_eps_effect_max_abs_diff"] = max_diff(run(), attn_output)
    for n in norms:
        getattr(target, n).variance_epsilon = MLA_NORM_EPS
    facts["norms"] = (f"{' and '.join(norms)}: x̂·w, x̂ = x / sqrt(mean(x²) + 1e-6), eps fixed at 1e-6 (the "
                      f"config's rms_norm_eps {config.rms_norm_eps} applies only to the decoder's norms); "
                      "q_a_layernorm only when q_lora_rank is set; kv_a_layernorm on the latent only, not k_rope")
    saved = {n: getattr(target, n).weight.clone() for n in norms}
    for n in norms:
        getattr(target, n).weight.fill_(1.0)
    facts["norm_weights_effect_max_abs_diff"] = max_diff(run(), attn_output)
    for n, v in saved.items():
        getattr(target, n).weight.copy_(v)
    assert facts["norm_weights_effect_max_abs_diff"] > BITE_MIN

    # Biases: attention_bias puts them on q_a_proj, kv_a_proj_with_mqa and o_proj, never on q_proj/q_b/kv_b.
    biases = sorted(k.removesuffix(".bias") for k in weights if k.endswith(".bias"))
    want = sorted(["q_a_proj", "kv_a_proj_with_mqa", "o_proj"]) if config.attention_bias else []
    assert biases == want, biases
    facts["biases"] = biases
    if biases:
        saved = {n: getattr(target, n).bias.clone() for n in biases}
        for n in biases:
            getattr(target, n).bias.zero_()
        facts["biases_effect_max_abs_diff"] = max_diff(run(), attn_output)
        for n, v in saved.items():
            getattr(target, n).bias.copy_(v)
        assert facts["biases_effect_max_abs_diff"] > BITE_MIN

    # Softmax scale and RoPE scaling.
    rope, rotary = config.rope_parameters, model.rotary_emb
    facts["scaling"] = "qk_head_dim^-0.5" if rope["rope_type"] == "default" else \
        "qk_head_dim^-0.5 · gm(factor, mscale_all_dim)², gm(s, m) = 0.1·m·ln(s) + 1"
    if rope["rope_type"] == "yarn":
        facts["rope_read_from"] = ("hub form (top-level rope_theta, rope_scaling with 'type'): transformers moves "
                                   "it into rope_parameters, adds rope_type 'yarn' and keeps 'type'")
        inv_freq, (low, high) = yarn_inv_freq(rope, rope_dim)
        facts["yarn_correction_range"] = [low, high]
        rel = (rotary.inv_freq.double() - inv_freq) / inv_freq
        facts["yarn_inv_freq_vs_f64_max_rel_diff"] = rel.abs().max().item()
        assert facts["yarn_inv_freq_vs_f64_max_rel_diff"] < 1e-6
        gm = lambda m: yarn_mscale(rope["factor"], m)
        want_factor = gm(rope["mscale"]) / gm(rope["mscale_all_dim"])
        assert rotary.attention_scaling == want_factor == 1.0
        facts["yarn_attention_factor"] = ("gm(factor, mscale) / gm(factor, mscale_all_dim) = 1.0 exactly with "
                                          "DeepSeek's mscale = mscale_all_dim = 1: cos/sin are not scaled; YaRN's "
                                          "temperature lives in the softmax scale instead")
        facts["yarn_truncate"] = rope.get("truncate", True)
        target.scaling = (config.qk_nope_head_dim + rope_dim) ** -0.5
        facts["scale_without_mscale_effect_max_abs_diff"] = max_diff(run(), attn_output)
        target.scaling = mla_scale(config)
        assert facts["scale_without_mscale_effect_max_abs_diff"] > BITE_MIN
    if case.get("weights_dtype"):
        facts["weights_dtype"] = (f"every parameter rounded to {case['weights_dtype']} before the run and stored "
                                  "so; widening the stored values to f32 gives exactly the weights used")
    facts["head_dim"] = (f"config.head_dim is overwritten with qk_rope_head_dim ({config.head_dim}) and sizes "
                         "only the RoPE tables; the attention uses qk_head_dim and v_head_dim")
    return facts, latent_cache, rope_key_cache


def mla_sizes(config, target):
    """The MLA block of meta.json: sizes as the module reads them, its scale and RoPE layout."""
    return {"q_lora_rank": target.q_lora_rank, "kv_lora_rank": target.kv_lora_rank,
            "qk_nope_head_dim": target.qk_nope_head_dim, "qk_rope_head_dim": target.qk_rope_head_dim,
            "qk_head_dim": target.qk_head_dim, "v_head_dim": target.v_head_dim, "config_head_dim": config.head_dim,
            "scaling": target.scaling, "rope_interleave": mla_interleave(config),
            "norm_eps": MLA_NORM_EPS,
            "cache_elements_per_token_per_layer": target.kv_lora_rank + target.qk_rope_head_dim}


def v2_config_facts(case_config, config):
    """What DeepseekV2Config does differently from DeepseekV3Config with the keys that size the attention:
    head_dim, num_key_value_heads, a hidden_size the heads do not divide, rope_interleave."""
    heads, rope_dim = case_config["num_attention_heads"], case_config["qk_rope_head_dim"]
    assert "num_key_value_heads" not in case_config and config.num_key_value_heads == heads
    other_head_dim = DeepseekV2Config(**copy.deepcopy(case_config), head_dim=rope_dim + 3)
    assert other_head_dim.head_dim == rope_dim
    try:
        DeepseekV2Config(**{**copy.deepcopy(case_config), "hidden_size": case_config["hidden_size"] + 1})
        error = None
    except Exception as e:                                              # the strict dataclass's validation
        error = f"{type(e).__name__}: " + " ".join(line.strip() for line in str(e).splitlines())
    assert error is not None and "not a multiple" in error, error
    assert "rope_interleave" not in config.to_dict()
    return {"num_key_value_heads_omitted": f"the class sets it to num_attention_heads ({heads}); "
                                           "DeepseekV3Config keeps its default 128",
            "head_dim": f"always overwritten with qk_rope_head_dim: head_dim = {rope_dim + 3} in the kwargs "
                        f"gives {other_head_dim.head_dim}",
            "hidden_size_not_divisible": f"hidden_size {case_config['hidden_size'] + 1} with {heads} heads is "
                                         f"refused: {error}",
            "rope_interleave": "not a DeepseekV2Config key, not written to config.json; the attention never "
                               "reads it"}


def mla_real_config_facts(case_config):
    """DeepSeek-V3's real sizes vs DeepseekV3Config's defaults, its cache per token, and what a config without
    num_key_value_heads does."""
    default = DeepseekV3Config()
    real = DeepseekV3Config(**copy.deepcopy(DEEPSEEK_V3_REAL))
    keys = [k for k in DEEPSEEK_V3_REAL if k not in ("rope_theta", "rope_scaling")]
    differ = {k: {"hub_config": DEEPSEEK_V3_REAL[k], "transformers_default": getattr(default, k)}
              for k in keys if getattr(default, k) != DEEPSEEK_V3_REAL[k]}
    if default.rope_parameters != real.rope_parameters:
        differ["rope_parameters"] = {"hub_config": real.rope_parameters,
                                     "transformers_default": default.rope_parameters}
    heads, layers = real.num_attention_heads, real.num_hidden_layers
    qk_head_dim = real.qk_nope_head_dim + real.qk_rope_head_dim
    per_layer = real.kv_lora_rank + real.qk_rope_head_dim
    expanded = heads * (qk_head_dim + real.v_head_dim)
    assert math.isclose(yarn_apply_mscale(real.rope_parameters, qk_head_dim ** -0.5), mla_scale(real), rel_tol=1e-12)
    facts = {"sizes": {k: getattr(real, k) for k in keys}, "qk_head_dim": qk_head_dim,
             "scaling": yarn_apply_mscale(real.rope_parameters, qk_head_dim ** -0.5),   # as the module's __init__
             "defaults_differ_from_hub_config": differ,
             "cache_elements_per_token_per_layer": per_layer,
             "cache_formula": "kv_lora_rank + qk_rope_head_dim (latent + shared RoPE key), as DynamicCache stores it",
             "cache_elements_per_token_all_layers": per_layer * layers,
             "cache_bytes_per_token_all_layers_bf16": 2 * per_layer * layers,
             "expanded_kv_elements_per_token_per_layer": expanded,
             "expanded_kv_formula": "num_attention_heads * (qk_head_dim + v_head_dim), K and V per head",
             "expanded_over_mla_ratio": expanded / per_layer}
    # Without num_key_value_heads the dataclass default 128 stays (not the head count): num_key_value_groups =
    # heads // 128 = 0 and the eager attention fails. Shown on a throwaway module (its own RNG stream).
    bad = DeepseekV3Config(**{k: v for k, v in copy.deepcopy(case_config).items() if k != "num_key_value_heads"})
    bad._attn_implementation = "eager"
    with torch.random.fork_rng():
        module = DeepseekV3Attention(bad, 0)
        x = torch.zeros(1, 3, bad.hidden_size)
        cos_sin = (torch.ones(1, 3, bad.qk_rope_head_dim), torch.zeros(1, 3, bad.qk_rope_head_dim))
        try:
            module(hidden_states=x, position_embeddings=cos_sin, attention_mask=None)
            error = None
        except RuntimeError as e:
            error = f"RuntimeError: {e}"
    facts["num_key_value_heads_omitted"] = {"num_key_value_heads": bad.num_key_value_heads,
                                            "num_key_value_groups": module.num_key_value_groups,
                                            "eager_forward": error}
    assert error is not None and module.num_key_value_groups == 0
    return facts


@torch.no_grad()
def make_case(out_dir, case):
    case_dir = out_dir / case["name"]
    if case_dir.exists():
        shutil.rmtree(case_dir)
    case_dir.mkdir(parents=True)
    config_cls, attn_cls, model_cls, arch = MODELS[case["model"]]
    config = write_config(case_dir, config_cls, arch, case["config"])
    layer_idx = case["layer_idx"]
    prefix = f"model.layers.{layer_idx}.self_attn."
    layer_kind = config.layer_types[layer_idx] if getattr(config, "layer_types", None) else (  # Mistral, DeepSeek
        "sliding_attention" if getattr(config, "sliding_window", None) is not None else "full_attention")
    window = config.sliding_window if layer_kind == "sliding_attention" else None

    # The layer's weights: nn.Linear default init as constructed, then the random norm / sink values.
    torch.manual_seed(case["seed"])
    attn = attn_cls(config, layer_idx=layer_idx).eval()
    if case.get("norms") == "qwen3":                                    # x̂·w, init ones: use 1 + 0.3·randn
        attn.q_norm.weight.copy_(1 + 0.3 * torch.randn(config.head_dim))
        attn.k_norm.weight.copy_(1 + 0.3 * torch.randn(config.head_dim))
    if case.get("norms") == "gemma3":                                   # x̂·(1+w), init zeros: use 0.3·randn
        attn.q_norm.weight.copy_(0.3 * torch.randn(config.head_dim))
        attn.k_norm.weight.copy_(0.3 * torch.randn(config.head_dim))
    if case.get("sinks"):                                               # torch.empty as constructed
        attn.sinks.copy_(2.0 * torch.randn(config.num_attention_heads))
    if case.get("norms") == "mla":                                      # x̂·w, init ones: use 1 + 0.3·randn
        for norm in (attn.q_a_layernorm, attn.kv_a_layernorm):
            if norm is not None:                                        # no q_a_layernorm without q_lora_rank
                norm.weight.copy_(1 + 0.3 * torch.randn(norm.weight.shape))
    if case.get("weights_dtype") == "bf16":                             # what is stored is what runs
        for v in attn.state_dict().values():
            v.copy_(v.to(torch.bfloat16).float())
    hidden = config.hidden_size
    batch, seq, start, decode_from = case["batch"], case["seq"], case["start_pos"], case["decode_from"]
    hidden_states = torch.randn(batch, seq, hidden) * case["input_scale"]
    if case.get("input_dtype") == "bf16":                               # what is stored is what runs
        hidden_states = hidden_states.to(torch.bfloat16).float()
    assert decode_from < seq and (window is None or decode_from < window < seq - decode_from)

    # The model around it (its other weights never reach this layer's output).
    torch.manual_seed(case["seed"] + 1000)
    model = model_cls(config).eval()
    assert model.config._attn_implementation == "eager"
    target = model.layers[layer_idx].self_attn
    assert type(target) is attn_cls
    target.load_state_dict(attn.state_dict())
    probe = LayerProbe(target)

    prefill, decode, decode_keys, cache = run_model(model, probe, hidden_states, start, decode_from)
    attn_output, attn_weights = prefill["out"], prefill["weights"]
    mask = prefill["mask"]
    decode_diff = max_diff(decode, attn_output)
    assert decode_diff <= DECODE_TOL, f"decode vs prefill: {decode_diff:.3e}"
    assert torch.isfinite(attn_output).all()

    facts = {}
    # The mask the forward passed to this layer: additive float, (batch, 1, q, k), finfo.min where masked.
    assert mask.dtype == torch.float32 and tuple(mask.shape) == (batch, 1, seq, seq)
    assert set(mask.unique().tolist()) == {0.0, torch.finfo(torch.float32).min}
    facts["prefill_mask"] = "additive float32 (batch, 1, seq, seq): 0 visible, torch.finfo(float32).min masked"
    facts.update(window_facts(attn_weights, window))
    facts["decode"] = (f"tokens 0..{decode_from - 1} as one prefill, then one token per forward through "
                       "DynamicCache(config=config); keys the layer saw per forward in decode_keys_per_step")
    facts["decode_keys_per_step"] = decode_keys
    layer_cache = cache.layers[layer_idx]
    facts["cache_layer_class"] = type(layer_cache).__name__
    facts["cache_tokens_at_end"] = layer_cache.keys.shape[-2]
    if window is not None:
        assert facts["cache_tokens_at_end"] == window - 1
        assert max(decode_keys[1:]) == window                           # W - 1 cached + the new token
    else:
        assert facts["cache_tokens_at_end"] == seq

    if case["model"] == "gemma2":
        # Soft-capping: the masked weights are exactly 0 (checked above), so the cap (tanh(x/c)·c >= -c) came
        # before the mask was added. Switch it off to show that it bites.
        target.attn_logit_softcapping = None
        no_cap = run_model(model, probe, hidden_states, start, decode_from)[0]["out"]
        target.attn_logit_softcapping = config.attn_logit_softcapping
        facts["softcap_effect_max_abs_diff"] = max_diff(no_cap, attn_output)
        assert facts["softcap_effect_max_abs_diff"] > BITE_MIN
        facts["softcap"] = "tanh(q·k·scale / cap)·cap, applied before the mask is added"
    if case["model"] == "gemma3_text":
        # Gemma 3 never passes attn_logit_softcapping to the attention function: setting one changes nothing.
        target.attn_logit_softcapping = target.config.attn_logit_softcapping = 1.0
        capped = run_model(model, probe, hidden_states, start, decode_from)[0]["out"]
        target.attn_logit_softcapping = target.config.attn_logit_softcapping = None
        assert torch.equal(capped, attn_output)
        facts["softcap_ignored"] = "setting attn_logit_softcapping = 1.0 leaves the output bit-identical"
    if case.get("norms") in ("qwen3", "gemma3"):
        x = torch.randn(5, config.head_dim)
        xhat = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + config.rms_norm_eps)
        w = target.q_norm.weight
        want = xhat * (w if case["norms"] == "qwen3" else 1 + w)
        facts["norm_formula"] = ("x̂·w" if case["norms"] == "qwen3" else "x̂·(1+w)") + \
            f", x̂ = x / sqrt(mean(x²) + {config.rms_norm_eps}), over head_dim, per head, before RoPE"
        assert max_diff(target.q_norm(x), want) < 1e-6
        neutral = 1.0 if case["norms"] == "qwen3" else 0.0              # the init values
        saved = {n: getattr(target, n).weight.clone() for n in ("q_norm", "k_norm")}
        for n in saved:
            getattr(target, n).weight.fill_(neutral)
        plain = run_model(model, probe, hidden_states, start, decode_from)[0]["out"]
        for n, v in saved.items():
            getattr(target, n).weight.copy_(v)
        facts["norm_weights_effect_max_abs_diff"] = max_diff(plain, attn_output)
        assert facts["norm_weights_effect_max_abs_diff"] > BITE_MIN
    if case.get("sinks"):
        mass = 1 - attn_weights.sum(-1)                                 # probability taken by the sink
        facts["sink_mass_min_max"] = [mass.min().item(), mass.max().item()]
        saved = target.sinks.clone()
        target.sinks.fill_(float("-inf"))
        no_sink = run_model(model, probe, hidden_states, start, decode_from)[0]["out"]
        target.sinks.copy_(saved)
        facts["sinks_effect_max_abs_diff"] = max_diff(no_sink, attn_output)
        assert facts["sinks_effect_max_abs_diff"] > BITE_MIN
        facts["sinks"] = ("sinks[h] appended as one more logit column after scaling and mask, row max "
                          "subtracted, softmax in the logits' dtype (float32 here), sink column dropped")
        facts["attn_weights"] = "(batch, n_heads, q, keys): keys only, rows sum to 1 - sink mass"
    if case.get("weights_dtype") and case["model"] not in MLA_MODELS:   # MLA: in mla_facts
        facts["weights_dtype"] = (f"every parameter rounded to {case['weights_dtype']} before the run and stored "
                                  "so; widening the stored values to f32 gives exactly the weights used")
    if case.get("input_dtype"):
        facts["input_dtype"] = (f"hidden_states rounded to {case['input_dtype']} before the run and stored so; "
                                "widening the stored values to f32 gives exactly the input used")

    cos, sin = rope_tables(prefill["rope"])
    rotary = model.rotary_emb
    if case["model"] == "gemma3_text":
        inv_freq = getattr(rotary, f"{layer_kind}_inv_freq")
        attention_factor = getattr(rotary, f"{layer_kind}_attention_scaling")
        rope = config.rope_parameters[layer_kind]
    else:
        inv_freq, attention_factor, rope = rotary.inv_freq, rotary.attention_scaling, config.rope_parameters
    if start >= LONG_POS:
        facts["long_positions"] = long_position_facts(cos[0], sin[0], inv_freq, attention_factor, start, seq)
    run = lambda: rerun(model, probe, hidden_states, start, decode_from)
    if case.get("rope_check") == "linear":
        facts.update(linear_facts(config, rotary, layer_kind, run, attn_output))
    if case.get("rope_check") == "yarn":
        facts.update(yarn_facts(config, rotary, run, attn_output))

    mla = extra = None
    if case["model"] in MLA_MODELS:
        mla_f, latent_cache, rope_key_cache = mla_facts(case, config, attn, target, model, probe, hidden_states,
                                                        prefill, cache)
        facts.update(mla_f)
        mla = mla_sizes(config, target)
        extra = {"latent_cache": latent_cache.contiguous(), "rope_key_cache": rope_key_cache.contiguous()}
    real = mla_real_config_facts(case["config"]) if case.get("real_config") else None
    if case.get("v2_config"):
        facts["deepseek_v2_config"] = v2_config_facts(case["config"], config)

    store = {"bf16": torch.bfloat16}.get(case.get("weights_dtype"), torch.float32)
    weights = {prefix + k: v.to(store).contiguous() for k, v in attn.state_dict().items()}
    assert all(torch.equal(weights[prefix + k].float(), v) for k, v in attn.state_dict().items())
    save_file(weights, str(case_dir / "model.safetensors"), metadata={"format": "pt"})
    store_input = {"bf16": torch.bfloat16}.get(case.get("input_dtype"), torch.float32)
    stored_input = hidden_states.to(store_input).contiguous()
    assert torch.equal(stored_input.float(), hidden_states)
    save_file({"hidden_states": stored_input}, str(case_dir / "input.safetensors"))
    expected = {"attn_output": attn_output.contiguous(), "attn_weights": attn_weights.contiguous(),
                "decode_output": decode.contiguous(), "inv_freq": inv_freq.contiguous(),
                "cos": cos[0].contiguous(), "sin": sin[0].contiguous(), **(extra or {})}
    save_file(expected, str(case_dir / "expected.safetensors"))

    meta = {
        "case": case["name"], "what": case["what"], "model_type": config.model_type,
        "class": attn_cls.__name__, "model_class": model_cls.__name__, "layer_idx": layer_idx,
        "prefix": prefix, "layer_kind": layer_kind.removesuffix("_attention"), "layer_types": config.layer_types
        if getattr(config, "layer_types", None) else None, "window": window,
        "softcap": getattr(target, "attn_logit_softcapping", None), "scaling": target.scaling,
        "start_pos": start, "decode_from": decode_from, "batch": batch, "seq": seq, "seed": case["seed"],
        "input_scale": case["input_scale"], "dtype": "f32",
        **({"weights_dtype": case["weights_dtype"]} if case.get("weights_dtype") else {}),
        **({"input_dtype": case["input_dtype"]} if case.get("input_dtype") else {}),
        "hf_parsed": {"hidden_size": hidden, "num_attention_heads": config.num_attention_heads,
                      "num_key_value_heads": config.num_key_value_heads,
                      "head_dim": getattr(target, "head_dim", None),                 # MLA: see "mla"
                      "attention_bias": getattr(config, "attention_bias", False),
                      "rms_norm_eps": getattr(config, "rms_norm_eps", None),
                      "query_pre_attn_scalar": getattr(config, "query_pre_attn_scalar", None),
                      "rope": rope, "rope_attention_factor": attention_factor},
        **({"mla": mla} if mla else {}), **({"deepseek_v3_real_config": real} if real else {}),
        "decode_vs_prefill_max_abs_diff": decode_diff, "decode_tolerance": DECODE_TOL,
        "facts": facts,
        "transformers_version": transformers.__version__, "torch_version": torch.__version__,
        "safetensors_version": safetensors.__version__,
        "tensors": {"model": {k: list(v.shape) for k, v in sorted(weights.items())},
                    "input": {"hidden_states": list(hidden_states.shape)},
                    "expected": {k: list(v.shape) for k, v in sorted(expected.items())}},
    }
    (case_dir / "meta.json").write_text(to_json(meta))
    print(f"{case['name']:21s} {layer_kind:17s} window {str(window):4s} out {tuple(attn_output.shape)} "
          f"decode diff {decode_diff:.1e}, cache keeps {facts['cache_tokens_at_end']}, "
          f"keys per decode step {decode_keys}")


def write_real_configs(config_dir):
    """configs/deepseek_v3.json: DeepSeek-V3 (671B)'s config as transformers serializes it from the hub sizes
    (DEEPSEEK_V3_REAL), for the memory table of chapter 12 and the test that MlaShape::DEEPSEEK_V3 is that config."""
    config_dir.mkdir(parents=True, exist_ok=True)
    config = DeepseekV3Config(**copy.deepcopy(DEEPSEEK_V3_REAL))
    (config_dir / "deepseek_v3.json").write_text(config.to_json_string(use_diff=False))


def main(out_dir):
    for case in CASES:
        make_case(out_dir, dict(case))
    write_real_configs(out_dir.parent / "configs")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("code/tests/fixtures/variants"), help="output folder")
    main(parser.parse_args().out)
