"""Attention masks for shared-prompt pairs (`data.packing`), in the form each architecture's attention takes.

transformers uses a 4D mask as given (its masking utilities return one unchanged), so these masks carry
everything the model would otherwise add: causality and padding, counted in position ids (a response's positions
continue from its prompt's end, whatever the padding between them), and a sliding window where layers have one.
Models whose layers differ (Gemma 2 alternates sliding and full attention) take a dict by layer type.
"""
from functools import cache

import torch
from torch.nn.attention.flex_attention import create_block_mask

# Attention implementations that take an arbitrary 4D mask; flash-attention's kernels take none.
MASKABLE = ("eager", "sdpa")


def takes_custom_masks(config) -> bool:
    return config._attn_implementation in MASKABLE


def _layer_kinds(config) -> set:
    layer_types = getattr(config, "layer_types", None)
    if layer_types:
        return set(layer_types)
    return {"sliding_attention" if getattr(config, "sliding_window", None) else "full_attention"}


def _in_form(mask: torch.Tensor, config, dtype: torch.dtype) -> torch.Tensor:
    """SDPA takes bool; eager attention adds the mask to its scores."""
    if config._attn_implementation == "sdpa":
        return mask
    return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill(~mask, torch.finfo(dtype).min)


def attention_masks(config, query_positions: torch.Tensor, key_positions: torch.Tensor, key_real: torch.Tensor,
                    dtype: torch.dtype):
    """What the base model's `attention_mask` takes, one mask or {layer type: mask}: query i of a row may attend to
    key j where j is a real token at a position no later than i's (within the window, for sliding layers).

    query_positions (rows, queries); key_positions and key_real (rows, keys), the queries' own tokens being the
    last `queries` keys. Every query also sees its own key: a padding query past the last real token of a sliding
    window would otherwise see none, and softmax would give NaN.
    """
    queries, keys = query_positions.shape[1], key_positions.shape[1]
    distance = query_positions[:, :, None] - key_positions[:, None, :]
    allowed = key_real[:, None, :] & (distance >= 0)
    own_key = torch.arange(keys - queries, keys, device=allowed.device)[:, None] == torch.arange(
        keys, device=allowed.device)[None, :]
    masks = {}
    for kind in _layer_kinds(config):
        mask = allowed & (distance < config.sliding_window) if kind == "sliding_attention" else allowed
        masks[kind] = _in_form((mask | own_key)[:, None], config, dtype)
    return masks if len(masks) > 1 else next(iter(masks.values()))


def shared_prompt_block_masks(config, positions: torch.Tensor, segments: torch.Tensor):
    """FlexAttention block masks for a row of `packing.pack_shared_prompts`, one or {layer type: mask}: a token sees
    the tokens of its pair at positions no later than its own, in the prompt or in its own part (within the window,
    for sliding layers). `positions` (tokens,), `segments` (2, tokens): pair and part."""
    pair, part = segments

    def allowed(batch, head, query, key):
        return ((pair[query] == pair[key]) & (positions[key] <= positions[query])
                & ((part[key] == 0) | (part[key] == part[query])))

    def within_window(batch, head, query, key):
        return allowed(batch, head, query, key) & (positions[query] - positions[key] < config.sliding_window)

    length = positions.shape[0]
    masks = {kind: _compiled_create_block_mask()(within_window if kind == "sliding_attention" else allowed, 1, None,
                                                 length, length, device=positions.device)
             for kind in _layer_kinds(config)}
    return masks if len(masks) > 1 else next(iter(masks.values()))


@cache
def _compiled_create_block_mask():
    """Compiled, as transformers builds its own block masks: uncompiled, a long row's whole mask is materialized."""
    return torch.compile(create_block_mask)
