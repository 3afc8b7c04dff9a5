"""Tokenizing canonical records: the prompt is cut from the left, the response kept, and both counted."""
import pytest

from rmsweep.data import sources, token_cache, tokenization
from rmsweep.model import tiny
from rmsweep.sweep import storage

TOKENIZER = tiny.tiny_tokenizer()


def _pair(prompt_words: int, response_words: int) -> dict:
    return {"prompt": sources.user_prompt(" ".join(["rivers"] * prompt_words)),
            "chosen": " ".join(["detail"] * response_words), "rejected": " ".join(["vague"] * response_words),
            "margin": 2.0}


def test_long_prompts_are_cut_from_the_left_and_the_response_kept():
    tokenized = tokenization.tokenize_pairs(TOKENIZER, [_pair(3, 4), _pair(60, 4)], max_length=32)
    assert tokenized.truncated == 2 and tokenized.dropped == 0  # both sides of the second pair
    short, long = tokenized.sequences
    assert all(len(ids) <= 32 for ids in long)
    chosen_ids = TOKENIZER.convert_ids_to_tokens(long[0])
    assert chosen_ids[-6:] == ["<assistant>", "detail", "detail", "detail", "detail", "<eos>"]
    assert chosen_ids[0] == "rivers"  # the start of the prompt went first
    assert tokenized.targets == [2.0, 2.0]


def test_a_row_whose_response_alone_is_too_long_is_dropped_and_counted():
    tokenized = tokenization.tokenize_pairs(TOKENIZER, [_pair(3, 4), _pair(3, 40)], max_length=32)
    assert tokenized.dropped == 1 and tokenized.truncated == 0 and len(tokenized.sequences) == 1
    ratings = [{"prompt": sources.user_prompt("rivers"), "response": " ".join(["detail"] * n),
                "attributes": [n % 5] * 5} for n in (4, 40)]
    tokenized = tokenization.tokenize_ratings(TOKENIZER, ratings, max_length=32)
    assert tokenized.dropped == 1 and tokenized.targets == [[4] * 5]


def test_benchmark_completions_are_never_dropped():
    group = {"id": 0, "subset": "Math", "prompt": sources.user_prompt("rivers"), "num_correct": 1,
             "completions": [" ".join(["detail"] * n) for n in (4, 40, 5, 6)]}
    tokenized = tokenization.tokenize_groups(TOKENIZER, [group], max_length=32)
    assert len(tokenized.sequences) == 4 and tokenized.truncated == 1


@pytest.mark.parametrize("rm_type", ["bt", "regression"])
def test_a_tokenized_split_is_read_back_from_the_cache_unchanged(tmp_path, rm_type):
    rows = sources.builtin(rm_type).train[:40]
    tokenize = tokenization.tokenize_ratings if rm_type == "regression" else tokenization.tokenize_pairs
    calls = []

    def count_and_tokenize():
        calls.append(1)
        return tokenize(TOKENIZER, rows, 30)  # short enough to cut some prompts

    cache = storage.Location(tmp_path / "cache")
    key = {"tokenizer": "tiny", "data": token_cache.fingerprint(rows)}
    first = token_cache.load_or_tokenize(cache, key, count_and_tokenize)
    second = token_cache.load_or_tokenize(cache, key, count_and_tokenize)
    assert len(calls) == 1 and len(list((tmp_path / "cache").glob("*.parquet"))) == 1
    assert second == first and first.truncated > 0
    token_cache.load_or_tokenize(cache, {**key, "data": token_cache.fingerprint(rows[:39])}, count_and_tokenize)
    assert len(calls) == 2  # other data, another entry
