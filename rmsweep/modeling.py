"""The reward model: a transformers `*ForSequenceClassification` model whose reward is read at the last
non-pad token, found from the attention mask (not from pad-token ids, which break when pad == eos).

Checkpoints stay plain `save_pretrained` sequence-classification models, loadable by any tool.
"""
import json
from pathlib import Path

import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from rmsweep import tiny
from rmsweep.datasets import pad

META_FILE = "rmsweep_meta.json"


def pin_pad_token(tokenizer) -> None:
    """Give the tokenizer a pad token. Reusing eos is safe here because rewards are read from the mask."""
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token


def load_reward_model(model_spec: dict, num_outputs: int, trust_remote_code: bool = False):
    """(tokenizer, model) for a registry row resolved by `registry.model_spec`.

    `source` is `tiny` (random weights of the row's architecture) or a hub id / local directory.
    """
    if model_spec["source"] == "tiny":
        tokenizer = tiny.tiny_tokenizer()
        config = tiny.tiny_config(model_spec["architecture"], tokenizer, num_outputs)
        model = AutoModelForSequenceClassification.from_config(config)
    else:
        tokenizer = AutoTokenizer.from_pretrained(model_spec["source"], trust_remote_code=trust_remote_code)
        pin_pad_token(tokenizer)
        model = AutoModelForSequenceClassification.from_pretrained(
            model_spec["source"], num_labels=num_outputs, use_safetensors=True, trust_remote_code=trust_remote_code,
        )
    model.config.pad_token_id = tokenizer.pad_token_id
    return tokenizer, model


def rewards(model, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Reward head outputs at each sequence's last real token: shape (batch, num_labels).

    Position ids count real tokens only, so left- and right-padded batches give the same rewards.
    """
    model = getattr(model, "module", model)  # unwrap DDP
    position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)
    hidden = model.base_model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids)
    last_real = attention_mask.shape[1] - 1 - attention_mask.flip(-1).argmax(-1)
    last_hidden = hidden.last_hidden_state[torch.arange(input_ids.shape[0], device=input_ids.device), last_real]
    return model.score(last_hidden)


@torch.no_grad()
def score_pairs(model, pairs, pad_id: int, device="cpu", weights: torch.Tensor | None = None, batch_size: int = 64):
    """(chosen scores, rejected scores) as 1-D tensors for tokenized pairs.

    One output (BT) is the score itself; several (regression) are combined with `weights`.
    """
    model.eval()
    chosen, rejected = [], []
    for start in range(0, len(pairs.sequences), batch_size):
        batch = pairs.sequences[start: start + batch_size]
        input_ids, attention_mask = pad([c for c, _ in batch] + [r for _, r in batch], pad_id, device)
        outputs = rewards(model, input_ids, attention_mask).float().cpu()
        scores = outputs[:, 0] if weights is None else outputs @ weights
        chosen.append(scores[: len(batch)])
        rejected.append(scores[len(batch):])
    return torch.cat(chosen), torch.cat(rejected)


def save_reward_model(model, tokenizer, directory: Path, meta: dict) -> None:
    model = getattr(model, "module", model)
    model.save_pretrained(directory, safe_serialization=True)
    tokenizer.save_pretrained(directory)
    (Path(directory) / META_FILE).write_text(json.dumps(meta, indent=2))


def load_checkpoint(directory: Path):
    """(tokenizer, model, meta) from a directory written by `save_reward_model`.

    `meta["model_spec"]` says where the base model came from. A tiny twin's tokenizer is rebuilt: AutoTokenizer
    would pick the tokenizer class of the architecture (Qwen2Tokenizer for a qwen2 config), not the word-level
    one it was trained with.
    """
    meta = json.loads((Path(directory) / META_FILE).read_text())
    if meta["model_spec"]["source"] == "tiny":
        tokenizer = tiny.tiny_tokenizer()
    else:
        tokenizer = AutoTokenizer.from_pretrained(directory)
    model = AutoModelForSequenceClassification.from_pretrained(directory, use_safetensors=True)
    return tokenizer, model, meta
