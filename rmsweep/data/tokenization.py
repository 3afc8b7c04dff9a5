"""Canonical records (`sources.py`) -> chat-formatted token ids -> padded batches.

Over-long texts lose tokens from the left, so the prompt is cut and the response kept; a training or
validation row whose response alone is longer than `max_length` is dropped. Both are counted.
"""
from dataclasses import dataclass, field

import torch


@dataclass
class Tokenized:
    """Token-id lists of one split, and what truncation did to it."""
    sequences: list  # per row: one id list (ratings, completions) or (chosen ids, rejected ids) (pairs)
    targets: list = field(default_factory=list)  # per row: attribute ratings (ratings) or margin (pairs)
    truncated: int = 0  # texts cut to max_length (each side of a pair counts)
    dropped: int = 0  # rows left out: a response alone longer than max_length


# For a base model whose tokenizer has no chat template: each turn "Role: content" and a blank line, the text
# closed by eos so that the reward is read at the same kind of token as with a template.
PLAIN_CHAT_TEMPLATE = (
    "{{ bos_token or '' }}{% for message in messages %}{{ message['role'] | capitalize }}: {{ message['content'] }}"
    "\n\n{% endfor %}{% if add_generation_prompt %}Assistant:{% endif %}{{ eos_token or '' }}"
)


def chat_text(tokenizer, prompt: list[dict], response: str) -> str:
    return tokenizer.apply_chat_template(prompt + [{"role": "assistant", "content": response}], tokenize=False)


def _response_length(tokenizer, prompt: list[dict], sequence: list[int]) -> int:
    """Tokens of `sequence` after the part it shares with the prompt alone (rendered for generation): the
    response with its turn markers. A shared token prefix, not a text prefix, since some templates close
    even a prompt-only conversation (the tiny one adds eos)."""
    prefix = tokenizer(tokenizer.apply_chat_template(prompt, add_generation_prompt=True, tokenize=False),
                       add_special_tokens=False)["input_ids"]
    shared = next((i for i, (a, b) in enumerate(zip(prefix, sequence)) if a != b), min(len(prefix), len(sequence)))
    return len(sequence) - shared


def _encode(tokenizer, prompts: list, responses: list, max_length: int, drop_overlong: bool) -> tuple[list, int]:
    """Ids per text, cut from the left to `max_length`; None where `drop_overlong` and the response alone is
    longer. Returns (ids, number truncated)."""
    texts = [chat_text(tokenizer, prompt, response) for prompt, response in zip(prompts, responses)]
    ids = tokenizer(texts, add_special_tokens=False)["input_ids"]
    encoded, truncated = [], 0
    for prompt, sequence in zip(prompts, ids):
        if len(sequence) <= max_length:
            encoded.append(sequence)
            continue
        if drop_overlong and _response_length(tokenizer, prompt, sequence) > max_length:
            encoded.append(None)
            continue
        truncated += 1
        encoded.append(sequence[-max_length:])
    return encoded, truncated


def tokenize_pairs(tokenizer, rows: list[dict], max_length: int) -> Tokenized:
    prompts = [row["prompt"] for row in rows]
    chosen, truncated_chosen = _encode(tokenizer, prompts, [r["chosen"] for r in rows], max_length, True)
    rejected, truncated_rejected = _encode(tokenizer, prompts, [r["rejected"] for r in rows], max_length, True)
    kept = [i for i in range(len(rows)) if chosen[i] is not None and rejected[i] is not None]
    return Tokenized([(chosen[i], rejected[i]) for i in kept], [rows[i].get("margin", 1.0) for i in kept],
                     truncated_chosen + truncated_rejected, len(rows) - len(kept))


def tokenize_ratings(tokenizer, rows: list[dict], max_length: int) -> Tokenized:
    ids, truncated = _encode(tokenizer, [r["prompt"] for r in rows], [r["response"] for r in rows], max_length, True)
    kept = [i for i, sequence in enumerate(ids) if sequence is not None]
    return Tokenized([ids[i] for i in kept], [rows[i]["attributes"] for i in kept], truncated, len(rows) - len(kept))


def tokenize_groups(tokenizer, groups: list[dict], max_length: int) -> Tokenized:
    """Every completion of every benchmark row, flattened in order; none dropped (that would change the benchmark)."""
    prompts = [group["prompt"] for group in groups for _ in group["completions"]]
    completions = [completion for group in groups for completion in group["completions"]]
    ids, truncated = _encode(tokenizer, prompts, completions, max_length, drop_overlong=False)
    return Tokenized(ids, truncated=truncated)


def pad(sequences: list[list[int]], pad_id: int, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad to the longest sequence of this batch: (input_ids, attention_mask)."""
    longest = max(len(sequence) for sequence in sequences)
    input_ids = torch.full((len(sequences), longest), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(sequences), longest), dtype=torch.long)
    for row, sequence in enumerate(sequences):
        input_ids[row, : len(sequence)] = torch.tensor(sequence)
        attention_mask[row, : len(sequence)] = 1
    return input_ids.to(device), attention_mask.to(device)


def pack(sequences: list[list[int]], device=None) -> dict:
    """Padding-free: the sequences end to end in one row, position ids restarting at each.

    {input_ids (1, total), position_ids (1, total), last_tokens: each sequence's last index}. transformers finds
    the sequence bounds from the position ids: flash-attention runs its varlen kernel on them, SDPA and eager
    attention a block-diagonal mask, so no token attends across sequences.
    """
    lengths = torch.tensor([len(sequence) for sequence in sequences])
    input_ids = torch.tensor([token for sequence in sequences for token in sequence])
    position_ids = torch.cat([torch.arange(length) for length in lengths.tolist()])
    return {"input_ids": input_ids[None].to(device), "position_ids": position_ids[None].to(device),
            "last_tokens": (lengths.cumsum(0) - 1).to(device)}
