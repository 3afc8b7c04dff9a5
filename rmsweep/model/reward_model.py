"""The reward model: a transformers `*ForSequenceClassification` model whose reward is read at the last
non-pad token, found from the attention mask (not from pad-token ids, which break when pad == eos).

Checkpoints stay plain `save_pretrained` sequence-classification models, loadable by any tool; a BNRM
checkpoint's `score` layer is the BNRM head (`heads.py`), which `load_checkpoint` rebuilds.
"""
import inspect
import json
from contextlib import contextmanager
from functools import cache
from pathlib import Path

import torch
from safetensors.torch import load_file
from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer, DynamicCache
from transformers.utils import logging as transformers_logging

from rmsweep.config import AUTO, ModelSpec
from rmsweep.data.tokenization import PLAIN_CHAT_TEMPLATE, pad
from rmsweep.model import auto_head, heads, masks, tiny

META_FILE = "rmsweep_meta.json"
RM_OUTPUTS = {"bt": 1, "regression": 5, "bnrm": 1}  # regression: the 5 HelpSteer2 attributes


def pin_pad_token(tokenizer) -> None:
    """Give the tokenizer a pad token. Reusing eos is safe here because rewards are read from the mask."""
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token


class RewardModel(torch.nn.Module):
    """A sequence-classification model (`.model`) whose forward returns the rewards at the last real tokens.

    Training calls this module, through DDP when data-parallel: DDP arms its gradient all-reduce in its own
    forward, so the reward must be computed inside it, not by reaching into the wrapped model.
    """

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                position_ids: torch.Tensor | None = None, last_tokens: torch.Tensor | None = None,
                segments: torch.Tensor | None = None, **shared_prompts) -> torch.Tensor:
        """Padded rows (`tokenization.pad`: input_ids, attention_mask), one padding-free row (`tokenization.pack`:
        input_ids, position_ids, last_tokens; with `segments`, `packing.pack_shared_prompts`), or pairs sharing
        their prompts (`packing.SharedPromptBatch.model_inputs`)."""
        if attention_mask is not None:
            return rewards(self.model, input_ids, attention_mask)
        if shared_prompts:
            return shared_prompt_rewards(self.model, input_ids, **shared_prompts)
        if segments is not None:
            return packed_shared_prompt_rewards(self.model, input_ids, position_ids, segments, last_tokens)
        return packed_rewards(self.model, input_ids, position_ids, last_tokens)


def unwrap(model) -> RewardModel:
    """The RewardModel inside a DDP wrapper (or the model itself)."""
    return getattr(model, "module", model)


def load_tokenizer(spec: ModelSpec, directory: Path | None = None):
    """The base model's tokenizer (a tiny twin's is built here; else from `directory` or the spec's source), with
    the plain chat format where the base model has no template."""
    if spec.is_tiny:
        tokenizer = tiny.tiny_tokenizer()
    else:
        source, revision = (directory, None) if directory else (spec.source, spec.revision)
        tokenizer = AutoTokenizer.from_pretrained(source, revision=revision, trust_remote_code=spec.trust_remote_code)
    if not spec.chat_template:
        tokenizer.chat_template = PLAIN_CHAT_TEMPLATE
    pin_pad_token(tokenizer)
    return tokenizer


def base_config(spec: ModelSpec, tokenizer, num_outputs: int):
    """The config the reward model is built from: a registry architecture's twin, a candidate's twin (its own
    config shrunk), or the checkpoint's; a head class registered where transformers has none (auto_head)."""
    if spec.is_tiny and spec.twin_of is None:
        return tiny.tiny_config(spec.architecture, tokenizer, num_outputs, **dict(spec.sizes))
    source = spec.twin_of if spec.is_tiny else spec.source
    config = AutoConfig.from_pretrained(source, revision=spec.revision, local_files_only=spec.is_tiny,
                                        trust_remote_code=spec.trust_remote_code, num_labels=num_outputs)
    if spec.is_tiny:
        config = tiny.shrink(config, tokenizer, num_outputs)
    if not spec.trust_remote_code:  # remote code brings its own classes
        auto_head.register_head(config)
    return config


def load_reward_model(spec: ModelSpec, rm_type: str, attention: str = AUTO):
    """(tokenizer, RewardModel) with the RM type's head: a tiny twin (random weights of the architecture, drawn
    from `twin_seed`) or a hub id / local directory. Weights are read from safetensors only (a pickle can run
    code); the repository's own code runs only if `trust_remote_code` is set. `attention`: one of
    config.ATTENTIONS (auto: transformers' choice)."""
    num_outputs = RM_OUTPUTS[rm_type]
    tokenizer = load_tokenizer(spec)
    config = base_config(spec, tokenizer, num_outputs)
    implementation = {} if attention == AUTO else {"attn_implementation": attention}
    if spec.is_tiny:
        with torch.random.fork_rng():  # the twin's own weights; the trial's seed still orders data and noise
            torch.manual_seed(spec.twin_seed)
            model = AutoModelForSequenceClassification.from_config(config, **implementation)
    else:
        model = AutoModelForSequenceClassification.from_pretrained(
            spec.source, config=config, revision=spec.revision, use_safetensors=True,
            trust_remote_code=spec.trust_remote_code, **implementation,
        )
    model.config.pad_token_id = tokenizer.pad_token_id
    if rm_type == "bnrm":
        model.score = heads.BNRMHead(model.config.hidden_size)
    return tokenizer, RewardModel(model)


def _read_weights(directory: Path) -> dict:
    """Every tensor of a checkpoint: one safetensors file, or the shards of a large model."""
    return {key: tensor for file in sorted(Path(directory).glob("*.safetensors"))
            for key, tensor in load_file(file).items()}


def _load_bnrm_head(model, directory: Path) -> None:
    """Replace the plain `score` layer that from_pretrained built with the saved BNRM head."""
    state = {key.removeprefix("score."): tensor for key, tensor in _read_weights(directory).items()
             if key.startswith("score.")}
    model.score = heads.BNRMHead(model.config.hidden_size, state["factor_mean.weight"].shape[0])
    model.score.load_state_dict(state)


def load_weights(model: RewardModel, directory: Path) -> None:
    """Load the weights of a checkpoint written by `save_reward_model` into a model of the same shape."""
    model.model.load_state_dict(_read_weights(directory))


def rewards(model, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """A sequence-classification model's head outputs at each sequence's last real token: (batch, num_labels).

    Position ids count real tokens only, so left- and right-padded batches give the same rewards.
    """
    position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)
    hidden = model.base_model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                              use_cache=False)  # scoring whole sequences: a KV cache would only cost memory
    last_real = attention_mask.shape[1] - 1 - attention_mask.flip(-1).argmax(-1)
    last_hidden = hidden.last_hidden_state[torch.arange(input_ids.shape[0], device=input_ids.device), last_real]
    return model.score(last_hidden)


def packed_rewards(model, input_ids: torch.Tensor, position_ids: torch.Tensor,
                   last_tokens: torch.Tensor) -> torch.Tensor:
    """The head's outputs at the last token of each sequence packed in one row (`tokenization.pack`)."""
    # No KV cache: transformers looks for packed sequences only without one.
    hidden = model.base_model(input_ids=input_ids, position_ids=position_ids, use_cache=False)
    return model.score(hidden.last_hidden_state[0, last_tokens])


def packed_shared_prompt_rewards(model, input_ids: torch.Tensor, position_ids: torch.Tensor, segments: torch.Tensor,
                                 last_tokens: torch.Tensor) -> torch.Tensor:
    """The head's outputs at each response's last token, for pairs packed by `packing.pack_shared_prompts`: one
    FlexAttention pass under block masks that keep each response to its pair's prompt and itself."""
    block_masks = masks.shared_prompt_block_masks(model.config, position_ids[0], segments)
    hidden = model.base_model(input_ids=input_ids, position_ids=position_ids, attention_mask=block_masks,
                              use_cache=False)
    return model.score(hidden.last_hidden_state[0, last_tokens])


def takes_block_masks(model) -> bool:
    """FlexAttention takes any block mask, so pairs can share their prompt in one packed row."""
    return unwrap(model).model.config._attn_implementation == "flex_attention"


@cache
def _cache_argument(model_class) -> str:
    """transformers >= 5.24 names a model's key/value cache argument `cache`; earlier versions `past_key_values`."""
    return "cache" if "cache" in inspect.signature(model_class.forward).parameters else "past_key_values"


def shared_prompt_rewards(model, input_ids: torch.Tensor, prompt_ids: torch.Tensor, prompt_lengths: torch.Tensor,
                          response_lengths: torch.Tensor) -> torch.Tensor:
    """The head's outputs at each response's last token, for pairs laid out by `packing.share_prompts`: the
    prompts run once, their keys and values kept in a cache that both responses' rows attend to."""
    base, device = model.base_model, input_ids.device
    pairs, prompt_width = prompt_ids.shape
    prompt_positions = torch.arange(prompt_width, device=device).expand(pairs, -1)
    prompt_real = prompt_positions < prompt_lengths[:, None]
    cache = DynamicCache()  # no config: every layer keeps all keys (the masks apply the sliding windows)
    cache_argument = _cache_argument(type(base))
    base(input_ids=prompt_ids, position_ids=prompt_positions, **{cache_argument: cache}, use_cache=True,
         attention_mask=masks.attention_masks(model.config, prompt_positions, prompt_positions, prompt_real,
                                              model.dtype))
    for layer in cache.layers:  # rows 0..n-1 for the chosen responses, n..2n-1 for the rejected ones
        layer.keys, layer.values = layer.keys.repeat(2, 1, 1, 1), layer.values.repeat(2, 1, 1, 1)
    response_positions = prompt_lengths.repeat(2)[:, None] + torch.arange(input_ids.shape[1], device=device)
    response_real = torch.arange(input_ids.shape[1], device=device) < response_lengths[:, None]
    key_positions = torch.cat([prompt_positions.repeat(2, 1), response_positions], dim=1)
    key_real = torch.cat([prompt_real.repeat(2, 1), response_real], dim=1)
    hidden = base(input_ids=input_ids, position_ids=response_positions, **{cache_argument: cache}, use_cache=True,
                  attention_mask=masks.attention_masks(model.config, response_positions, key_positions, key_real,
                                                       model.dtype)).last_hidden_state
    return model.score(hidden[torch.arange(input_ids.shape[0], device=device), response_lengths - 1])


def supports_padding_free(model) -> bool:
    """Packing pays where attention runs per sequence (flash-attention's varlen kernels, FlexAttention's block
    mask, which skips the blocks across sequences); SDPA and eager attention would compute the whole packed row's
    block-diagonal mask instead."""
    return unwrap(model).model.config._attn_implementation.startswith(
        ("flash_attention", "kernels-community", "flex_attention"))


@torch.no_grad()
def score_sequences(model: RewardModel, sequences: list, pad_id: int, device="cpu", batch_size: int = 64):
    """The head's outputs for each token-id sequence: (sequences, outputs), on the CPU.

    Takes the RewardModel itself, not a DDP wrapper: ranks score shards of different sizes, and DDP's forward
    would start collectives that the other ranks never join.
    """
    model.eval()
    outputs = [model(*pad(sequences[start: start + batch_size], pad_id, device)).float().cpu()
               for start in range(0, len(sequences), batch_size)]
    return torch.cat(outputs)


def scalar(outputs: torch.Tensor, weights=None) -> torch.Tensor:
    """One reward per row: the single output (BT, BNRM), or the attributes weighted by `weights` (regression)."""
    return outputs[:, 0] if weights is None else outputs @ torch.as_tensor(weights, dtype=outputs.dtype)


def score_pairs(model, pairs, pad_id: int, device="cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """(chosen outputs, rejected outputs) for tokenized pairs, each (pairs, outputs)."""
    outputs = score_sequences(model, [c for c, _ in pairs.sequences] + [r for _, r in pairs.sequences], pad_id, device)
    return outputs[: len(pairs.sequences)], outputs[len(pairs.sequences):]


def save_reward_model(model, tokenizer, directory: Path, meta: dict, state_dict: dict | None = None) -> None:
    """`state_dict`: the gathered weights of a sharded model (distributed.full_state_dict); else the model's own."""
    unwrap(model).model.save_pretrained(directory, safe_serialization=True, state_dict=state_dict)
    tokenizer.save_pretrained(directory)
    (Path(directory) / META_FILE).write_text(json.dumps(meta, indent=2))


def load_checkpoint(directory: Path):
    """(tokenizer, RewardModel, meta) from a directory written by `save_reward_model`.

    `meta["model_spec"]` says where the base model came from. A tiny twin's tokenizer is rebuilt: AutoTokenizer
    would pick the tokenizer class of the architecture (Qwen2Tokenizer for a qwen2 config), not the word-level
    one it was trained with.
    """
    meta = json.loads((Path(directory) / META_FILE).read_text())
    spec = ModelSpec.from_record(meta["model_spec"])
    tokenizer = load_tokenizer(spec, directory)
    if not spec.trust_remote_code:
        auto_head.register_head(AutoConfig.from_pretrained(directory))
    load = dict(use_safetensors=True, trust_remote_code=spec.trust_remote_code)
    if meta["rm_type"] == "bnrm":
        with _quiet_transformers():  # it would warn that the plain score layer is missing
            model = AutoModelForSequenceClassification.from_pretrained(directory, **load)
        _load_bnrm_head(model, directory)
    else:
        model = AutoModelForSequenceClassification.from_pretrained(directory, **load)
    return tokenizer, RewardModel(model), meta


@contextmanager
def _quiet_transformers():
    level = transformers_logging.get_verbosity()
    transformers_logging.set_verbosity_error()
    try:
        yield
    finally:
        transformers_logging.set_verbosity(level)
