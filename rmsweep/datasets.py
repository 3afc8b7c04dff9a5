"""Data for training and scoring: canonical records -> chat-formatted token ids -> padded batches.

Canonical records (what every source is turned into):
  pairs:   {"prompt", "chosen", "rejected", ...}            (Bradley-Terry training, validation, eval)
  ratings: {"prompt", "response", "attributes": [5 x 0-4]}   (regression training)
The built-in corpus (`synthetic.py`) provides both; hub loaders add more sources later.
"""
from dataclasses import dataclass, field

import numpy as np
import torch

from rmsweep import synthetic


@dataclass
class Tokenized:
    """Token-id lists of one split, and what truncation did to it."""
    sequences: list  # per example: one id list (ratings) or (chosen ids, rejected ids) (pairs)
    targets: list = field(default_factory=list)  # per example: attribute ratings (ratings only)
    truncated: int = 0


def chat_text(tokenizer, prompt: str, response: str) -> str:
    messages = [{"role": "user", "content": prompt}, {"role": "assistant", "content": response}]
    return tokenizer.apply_chat_template(messages, tokenize=False)


def _encode(tokenizer, texts: list[str], max_length: int) -> tuple[list, int]:
    """Ids for each text; over-long ones lose tokens from the left, so the response is kept."""
    ids = tokenizer(texts, add_special_tokens=False)["input_ids"]
    truncated = sum(len(sequence) > max_length for sequence in ids)
    return [sequence[-max_length:] for sequence in ids], truncated


def tokenize_pairs(tokenizer, rows: list[dict], max_length: int) -> Tokenized:
    def encode(side: str):
        return _encode(tokenizer, [chat_text(tokenizer, r["prompt"], r[side]) for r in rows], max_length)

    (chosen, truncated_chosen), (rejected, truncated_rejected) = encode("chosen"), encode("rejected")
    return Tokenized(list(zip(chosen, rejected)), truncated=truncated_chosen + truncated_rejected)


def tokenize_ratings(tokenizer, rows: list[dict], max_length: int) -> Tokenized:
    ids, truncated = _encode(tokenizer, [chat_text(tokenizer, r["prompt"], r["response"]) for r in rows], max_length)
    return Tokenized(ids, [r["attributes"] for r in rows], truncated)


def pad(sequences: list[list[int]], pad_id: int, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad to the longest sequence of this batch: (input_ids, attention_mask)."""
    longest = max(len(sequence) for sequence in sequences)
    input_ids = torch.full((len(sequences), longest), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(sequences), longest), dtype=torch.long)
    for row, sequence in enumerate(sequences):
        input_ids[row, : len(sequence)] = torch.tensor(sequence)
        attention_mask[row, : len(sequence)] = 1
    return input_ids.to(device), attention_mask.to(device)


def rank_micro_batches(num_examples: int, global_batch: int, micro_batch: int, rank: int, world_size: int,
                       seed: int, epoch: int):
    """Yield, per optimizer step, this rank's micro-batches of example indices.

    Every rank shuffles with the same seed, takes its slice of each global batch, and splits it into
    micro-batches (gradient accumulation); an incomplete last global batch is dropped so that every step
    sees exactly `global_batch` examples across ranks.
    """
    order = np.random.default_rng([seed, epoch]).permutation(num_examples)
    per_rank = global_batch // world_size
    for start in range(0, num_examples - global_batch + 1, global_batch):
        mine = order[start + rank * per_rank: start + (rank + 1) * per_rank]
        yield [mine[i: i + micro_batch].tolist() for i in range(0, per_rank, micro_batch)]


def builtin(seed: int = 0) -> dict:
    """The built-in corpus: train/validation pairs and ratings, and the RewardBench-shaped eval set."""
    splits = synthetic.builtin_splits(seed)
    return {
        "train_pairs": splits["train"],
        "train_ratings": synthetic.ratings(splits["train"]),
        "validation_pairs": splits["validation"],
        "validation_ratings": synthetic.ratings(splits["validation"]),
        "eval": splits["eval"],
    }
