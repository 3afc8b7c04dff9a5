"""Scoring a reward model on benchmark rows: one reward per completion, and a regression RM's attribute weights."""
from rmsweep.analysis import scoring
from rmsweep.data import tokenization
from rmsweep.model import reward_model


def score_groups(model, tokenizer, groups: list[dict], max_length: int, device="cpu", weights=None) -> list[dict]:
    """Score rows (the --scores format) for benchmark groups: one reward per completion."""
    tokenized = tokenization.tokenize_groups(tokenizer, groups, max_length)
    outputs = reward_model.score_sequences(model, tokenized.sequences, tokenizer.pad_token_id, device)
    rewards = reward_model.scalar(outputs, weights).tolist()
    rows, offset = [], 0
    for group in groups:
        count = len(group["completions"])
        rows.append({"id": group["id"], "subset": group["subset"], "scores": rewards[offset: offset + count],
                     "num_correct": group["num_correct"]})
        offset += count
    return rows


def regression_weights(model, tokenizer, validation: list[dict], choice: str, max_length: int, device="cpu") -> dict:
    """A regression RM's attribute weights: a published vector, or (`search`) the paper's grid search on the
    validation pairs. Returns {"weights", "accuracy" on the validation pairs, "choice"}."""
    pairs = tokenization.tokenize_pairs(tokenizer, validation, max_length)
    chosen, rejected = reward_model.score_pairs(model, pairs, tokenizer.pad_token_id, device)
    if choice == "search":
        found = scoring.search_weights(chosen.numpy(), rejected.numpy())
        return {**found, "choice": choice}
    weights = list(scoring.PUBLISHED_WEIGHTS[choice])
    accuracy = scoring.pairwise_accuracy(reward_model.scalar(chosen, weights), reward_model.scalar(rejected, weights))
    return {"weights": weights, "accuracy": accuracy, "choice": choice}
