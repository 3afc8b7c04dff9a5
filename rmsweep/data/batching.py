"""Which examples go in each optimizer step and micro-batch, per rank: shuffled by seed and epoch, each step's
examples sorted by length and split where padding is least, or filled up to a token budget (the step's gradient
unchanged either way)."""
import math

import numpy as np

from rmsweep.data.packing import shared_prefix_length
from rmsweep.data.tokenization import Tokenized


def sequence_lengths(tokenized: Tokenized) -> np.ndarray:
    """Per row, the padded length it needs: its sequence's, or for a pair the longer side's."""
    return np.array([max(map(len, row)) if isinstance(row, tuple) else len(row) for row in tokenized.sequences])


def prompt_lengths(tokenized: Tokenized) -> np.ndarray:
    """Per row, the prefix a pair's two sequences share (`packing.shared_prefix_length`); 0 for a sequence."""
    return np.array([shared_prefix_length(*row) if isinstance(row, tuple) else 0 for row in tokenized.sequences])


def unit_lengths(tokenized: Tokenized, prompts: np.ndarray) -> np.ndarray:
    """Per row, its real tokens with `prompts` (`prompt_lengths`) computed once: a pair's two sides less it."""
    return np.array([sum(map(len, row)) - prompt if isinstance(row, tuple) else len(row)
                     for row, prompt in zip(tokenized.sequences, prompts)])


def pass_shapes(tokenized: Tokenized, prompts: np.ndarray) -> np.ndarray:
    """Per example, (prompt tokens, longest rest, rows of rests) as a forward pass lays it out: a pair sharing its
    prompt (`prompts`, zeros where none is shared) is a prompt row and two rows of rests; a sequence is one row."""
    shapes = [(0, len(row), 1) if not isinstance(row, tuple) else (prompt, max(map(len, row)) - prompt, 2)
              for row, prompt in zip(tokenized.sequences, prompts)]
    return np.array(shapes).reshape(-1, 3)


def pass_tokens(shapes: np.ndarray) -> int:
    """Tokens one forward pass over these examples computes, padding included: every prompt row as long as the
    longest prompt, every other row as the longest rest."""
    prompts, rests, rows = shapes[:, 0], shapes[:, 1], shapes[:, 2]
    return int(len(shapes) * prompts.max() + rows.sum() * rests.max())


def packed_tokens(lengths: np.ndarray) -> int:
    """Tokens one padding-free pass over these examples computes (`lengths`: each one's real tokens, a pair's
    two sides together): all of them, end to end, no padding."""
    return int(lengths.sum())


def rank_micro_batches(num_examples: int, global_batch: int, micro_batch: int, rank: int, world_size: int,
                       seed: int, epoch: int, lengths: np.ndarray | None = None, token_budget: int | None = None,
                       shapes: np.ndarray | None = None, pass_cost=pass_tokens):
    """Yield, per optimizer step, this rank's micro-batches of example indices.

    Every rank shuffles with the same seed, takes its slice of each global batch, and splits it into
    micro-batches (gradient accumulation); an incomplete last global batch is dropped so that every step
    sees exactly `global_batch` examples across ranks. With `lengths`, the slice is sorted by length and split
    where padding is least (`least_padding_split`): the step's gradient (the sum over the same examples) is
    unchanged, and so are its number of forward passes and its largest one. With `token_budget` (and `lengths`
    and `shapes`, `pass_shapes`), the sorted slice is cut instead into micro-batches whose forward pass computes
    at most that many tokens (`token_budget_split`); `pass_cost` counts them (`packed_tokens` for padding-free
    passes, whose `shapes` are each example's real tokens).
    """
    order = np.random.default_rng([seed, epoch]).permutation(num_examples)
    per_rank = global_batch // world_size
    for start in range(0, num_examples - global_batch + 1, global_batch):
        mine = order[start + rank * per_rank: start + (rank + 1) * per_rank]
        if lengths is None:
            yield [mine[i: i + micro_batch].tolist() for i in range(0, per_rank, micro_batch)]
            continue
        mine = mine[np.argsort(-lengths[mine], kind="stable")]
        bounds = (token_budget_split(shapes[mine], token_budget, pass_cost) if token_budget
                  else least_padding_split(lengths[mine].tolist(), micro_batch))
        yield [mine[begin:end].tolist() for begin, end in bounds]


def least_padding_split(lengths: list[int], micro_batch: int) -> list[tuple[int, int]]:
    """Split lengths sorted longest first into contiguous micro-batches (begin, end) holding the fewest padded
    tokens (rows x longest), in no more micro-batches than fixed ones of `micro_batch` rows and none larger in
    padded tokens than the largest of those: the longest rows go in small micro-batches, the short ones in
    large. Dynamic programming over where each micro-batch ends."""
    count, parts = len(lengths), math.ceil(len(lengths) / micro_batch)
    cap = max(min(micro_batch, count - i) * lengths[i] for i in range(0, count, micro_batch))
    # fewest[k][i]: (padded tokens, end of the first micro-batch) to split lengths[i:] into at most k micro-batches
    fewest = [[(0, count) if i == count else (math.inf, None) for i in range(count + 1)] for _ in range(parts + 1)]
    for k in range(1, parts + 1):
        for i in range(count - 1, -1, -1):
            for end in range(i + 1, count + 1):
                padded = (end - i) * lengths[i]  # sorted longest first: row i is the micro-batch's longest
                if padded > cap:
                    break
                total = padded + fewest[k - 1][end][0]
                if total < fewest[k][i][0]:
                    fewest[k][i] = (total, end)
    bounds, begin, k = [], 0, parts
    while begin < count:
        end = fewest[k][begin][1]
        bounds.append((begin, end))
        begin, k = end, k - 1
    return bounds


def token_budget_split(shapes: np.ndarray, budget: int, pass_cost=pass_tokens) -> list[tuple[int, int]]:
    """Contiguous micro-batches (begin, end), each as long as its forward pass computes at most `budget` tokens
    (`pass_cost`); an example over the budget goes alone."""
    bounds, begin = [], 0
    for index in range(1, len(shapes)):
        if pass_cost(shapes[begin: index + 1]) > budget:
            bounds.append((begin, index))
            begin = index
    return bounds + [(begin, len(shapes))]
