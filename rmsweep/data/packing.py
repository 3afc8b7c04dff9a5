"""Pairs whose chosen and rejected responses share one computation of their prompt.

A pair's shared prefix is the longest run of token ids both full sequences start with (the prompt, rendered by
the chat template), taken from the ids themselves: a tokenizer that merges tokens across the prompt/response
boundary only shortens it, and nothing is re-tokenized. The model runs the prefixes once (one row per pair),
keeps their keys and values, and runs the two rests (chosen rows, then rejected rows) attending to them, positions
continuing from the prefix's end: every token sees exactly what it sees in its own sequence, so the rewards equal
the two-sequence path's. A pair whose sides share no first token has an empty prefix (a fallback, counted).
`model.reward_model.shared_prompt_rewards` runs it; `model.masks` builds its masks.

With FlexAttention nothing is padded: `pack_shared_prompts` lays a micro-batch out as one row of
[prompt, chosen rest, rejected rest] per pair, and a block mask keeps each token within its pair and the rejected
rest off the chosen one (`model.reward_model.packed_shared_prompt_rewards`).
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


def pack_shared_prompts(pairs: list[tuple[list[int], list[int]]], device=None) -> dict:
    """`RewardModel.forward`'s keyword arguments for one padding-free row holding, per pair, its prompt, chosen
    rest and rejected rest; both rests' positions continue from the prompt's end. `segments` (2, tokens): each
    token's pair and part (0 prompt, 1 chosen, 2 rejected); `last_tokens`: every chosen rest's last index, then
    every rejected rest's (the two-sequence path's order)."""
    ids, positions, pair_of, part_of, last = [], [], [], [], {1: [], 2: []}
    for index, (chosen, rejected) in enumerate(pairs):
        prefix = shared_prefix_length(chosen, rejected)
        for part, tokens, start in ((0, chosen[:prefix], 0), (1, chosen[prefix:], prefix),
                                    (2, rejected[prefix:], prefix)):
            ids += tokens
            positions += range(start, start + len(tokens))
            pair_of += [index] * len(tokens)
            part_of += [part] * len(tokens)
            if part:
                last[part].append(len(ids) - 1)

    def tensor(values):
        return torch.tensor(values, dtype=torch.long, device=device)
    return {"input_ids": tensor(ids)[None], "position_ids": tensor(positions)[None],
            "segments": torch.stack([tensor(pair_of), tensor(part_of)]), "last_tokens": tensor(last[1] + last[2])}
