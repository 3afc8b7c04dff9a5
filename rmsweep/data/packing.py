"""Pairs whose chosen and rejected responses share one computation of their prompt.

A pair's shared prefix is the longest run of token ids both full sequences start with (the prompt, rendered by
the chat template), taken from the ids themselves: a tokenizer that merges tokens across the prompt/response
boundary only shortens it, and nothing is re-tokenized. The model runs the prefixes once (one row per pair),
keeps their keys and values, and runs the two rests (chosen rows, then rejected rows) attending to them, positions
continuing from the prefix's end: every token sees exactly what it sees in its own sequence, so the rewards equal
the two-sequence path's. A pair whose sides share no first token has an empty prefix (a fallback, counted).
`model.reward_model.shared_prompt_rewards` runs it; `model.masks` builds its masks.
"""
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class SharedPromptBatch:
    """One micro-batch of n pairs: prefix rows (n, P) and response rows (2n, R, chosen first), right-padded."""
    prompt_ids: torch.Tensor
    prompt_lengths: torch.Tensor  # (n,)
    response_ids: torch.Tensor
    response_lengths: torch.Tensor  # (2n,)

    def model_inputs(self) -> dict:
        """Keyword arguments of `RewardModel.forward`."""
        return {"input_ids": self.response_ids, "prompt_ids": self.prompt_ids, "prompt_lengths": self.prompt_lengths,
                "response_lengths": self.response_lengths}


def shared_prefix_length(chosen: list[int], rejected: list[int]) -> int:
    """Tokens both sequences start with, leaving each at least its last token (where its reward is read)."""
    limit = min(len(chosen), len(rejected)) - 1
    length = 0
    while length < limit and chosen[length] == rejected[length]:
        length += 1
    return length


def _right_padded(sequences: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    lengths = torch.tensor([len(sequence) for sequence in sequences])
    ids = torch.full((len(sequences), max(1, int(lengths.max()))), pad_id, dtype=torch.long)
    for row, sequence in enumerate(sequences):
        ids[row, : len(sequence)] = torch.tensor(sequence, dtype=torch.long)
    return ids, lengths


def share_prompts(pairs: list[tuple[list[int], list[int]]], pad_id: int, device=None) -> SharedPromptBatch:
    """Rewards come back chosen of every pair first, then rejected (as the two-sequence path orders them)."""
    prefixes = [shared_prefix_length(chosen, rejected) for chosen, rejected in pairs]
    prompt_ids, prompt_lengths = _right_padded([chosen[:p] for (chosen, _), p in zip(pairs, prefixes)], pad_id)
    rests = [c[p:] for (c, _), p in zip(pairs, prefixes)] + [r[p:] for (_, r), p in zip(pairs, prefixes)]
    response_ids, response_lengths = _right_padded(rests, pad_id)
    return SharedPromptBatch(prompt_ids.to(device), prompt_lengths.to(device), response_ids.to(device),
                             response_lengths.to(device))
