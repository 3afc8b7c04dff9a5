"""Every hub schema's mapping to canonical records, on fixtures written in that schema (tests/fixtures)."""
import json
from pathlib import Path

import pandas as pd
import pytest

from rmsweep.data import sources

FIXTURES = Path(__file__).parent / "fixtures"


def _load(key, split="train"):
    return sources.load_source(key, split, FIXTURES / f"{key}.jsonl")


def test_helpsteer2_ratings_and_multi_turn_prompts():
    records, _ = _load("helpsteer2")
    assert records[0] == {"prompt": [{"role": "user", "content": "Name a colour of the sky."}],
                          "response": "Blue, on a clear day.", "attributes": [4, 4, 4, 1, 1]}
    assert records[2]["prompt"] == [{"role": "user", "content": "Suggest a name for a cat."},
                                    {"role": "assistant", "content": "Whiskers."},
                                    {"role": "user", "content": "Another one, please."}]


def test_preference_strength_sign_picks_the_chosen_and_zero_is_dropped():
    train, account = _load("helpsteer2-preference", "train")
    assert [(r["chosen"], r["rejected"], r["margin"]) for r in train] == [
        ("one, two, three", "1 2 3", 2.0),   # +2: response_2
        ("1 2 4", "1 2 3", 1.0),             # -1: response_1
        ("An apple.", "A rock.", 3.0),       # +3; the strength-0 row is gone
    ]
    assert "1 without preference dropped" in account


def test_preference_split_column_gives_train_and_validation():
    validation, _ = _load("helpsteer2-preference", "validation")
    assert len(validation) == 1
    assert validation[0]["chosen"] == "Hello again." and validation[0]["margin"] == 3.0
    assert validation[0]["prompt"][-1] == {"role": "user", "content": "Again."}


@pytest.mark.parametrize("key", ["skywork-80k-v0.2", "tulu3-preference"])
def test_message_lists_are_split_into_prompt_and_last_answer(key):
    records, _ = _load(key)
    assert all(r["margin"] == 1.0 for r in records)
    first, second = records
    assert first["prompt"][-1]["role"] == "user" and first["chosen"] != first["rejected"]
    if key == "skywork-80k-v0.2":
        assert [m["content"] for m in second["prompt"]] == ["Pick a number.", "Seven.", "Double it."]
        assert (second["chosen"], second["rejected"]) == ("Fourteen.", "Seventy.")
    else:
        assert second["prompt"][0] == {"role": "system", "content": "Be brief."}
        assert (second["chosen"], second["rejected"]) == ("Seven.", "Nine.")


def test_benchmarks_become_groups_with_the_correct_completions_first():
    rewardbench, _ = _load("rewardbench", "eval")
    assert rewardbench[3] == {"id": 3, "subset": "hep-go", "prompt": [{"role": "user", "content": "Question 3?"}],
                              "completions": ["Good answer 3.", "Bad answer 3."], "num_correct": 1}
    rewardbench2, _ = _load("rewardbench2", "eval")
    tied = rewardbench2[2]
    assert tied["id"] == "tied:5" and tied["num_correct"] == 3
    assert tied["completions"] == ["Red.", "Blue.", "Green.", "Loud.", "Heavy."]


def test_a_parquet_folder_in_the_hub_layout_loads_too(tmp_path):
    folder = tmp_path / "rewardbench2" / "data"
    folder.mkdir(parents=True)
    rows = [json.loads(line) for line in (FIXTURES / "rewardbench2.jsonl").read_text().splitlines()]
    pd.DataFrame(rows).drop(columns="additional_metadata").to_parquet(folder / "test-00000-of-00001.parquet")
    path = sources.local_path("rewardbench2", tmp_path)
    records, _ = sources.load_source("rewardbench2", "eval", path)
    assert len(records) == 4


def test_mixture_weights_scale_each_sources_share():
    first = [{"source": "a", "i": i} for i in range(100)]
    second = [{"source": "b", "i": i} for i in range(40)]
    mixed = sources.mix([(first, 0.5), (second, 2.0)], seed=0)
    counts = pd.Series([r["source"] for r in mixed]).value_counts()
    assert counts["a"] == 50 and counts["b"] == 80
    assert len({r["i"] for r in mixed if r["source"] == "a"}) == 50  # a half is sampled without repeats
    assert [r["source"] for r in mixed[:20]].count("a") not in (0, 20)  # shuffled together


def test_a_data_spec_with_two_sources_and_a_holdout(tmp_path):
    spec = {"train": [{"source": "tulu3-preference", "weight": 2.0}, "skywork-80k-v0.2"], "holdout": 0.25,
            "eval": ["rewardbench2"]}
    data = sources.load(spec, "bt", data_dir=FIXTURES)
    assert len(data.train) + len(data.validation) == 2 * 2 + 2
    assert len(data.validation) == round(0.25 * 6)
    assert list(data.eval) == ["rewardbench2"]


@pytest.mark.parametrize("spec, message", [
    ({"train": ["helpsteer2"], "validation": ["helpsteer2-preference"], "eval": ["rewardbench"]}, "trains on pairs"),
    ({"train": ["helpsteer2-preference"], "eval": ["rewardbench"]}, "holdout must be a fraction"),
    ({"train": ["nope"], "holdout": 0.1, "eval": ["rewardbench"]}, "unknown source 'nope'"),
    ({"train": ["skywork-80k-v0.2"], "holdout": 0.1, "eval": [{"source": "helpsteer2", "split": "train"}]},
     "is not a benchmark"),
    ({"train": [{"source": "skywork-80k-v0.2", "weight": 0}], "holdout": 0.1, "eval": ["rewardbench"]},
     "must be a positive number"),
    ({"train": [{"source": "skywork-80k-v0.2", "split": "validation"}], "holdout": 0.1, "eval": ["rewardbench"]},
     "has no split 'validation'"),
])
def test_bad_data_specs_are_refused(spec, message):
    with pytest.raises(sources.DataError, match=message):
        sources.check_spec(spec, "bt")


def _corrupt(tmp_path, key, line, column, value):
    rows = [json.loads(text) for text in (FIXTURES / f"{key}.jsonl").read_text().splitlines()]
    if value is KeyError:
        del rows[line - 1][column]
    else:
        rows[line - 1][column] = value
    path = tmp_path / f"{key}.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


@pytest.mark.parametrize("key, line, column, value, message", [
    ("helpsteer2", 2, "verbosity", 7, r"row 2: column 'verbosity': expected an integer 0-4, got 7"),
    ("helpsteer2-preference", 4, "preference_strength", "much better",
     r"row 4: column 'preference_strength': expected an integer -3..3"),
    ("helpsteer2-preference", 1, "split", "dev", r"row 1: column 'split': expected 'train' or 'val'"),
    ("skywork-80k-v0.2", 2, "rejected", [{"role": "user", "content": "x"}],
     r"row 2: column 'rejected': expected a list"),
    ("tulu3-preference", 2, "rejected", [{"role": "user", "content": "Other."}, {"role": "assistant", "content": "x"}],
     r"row 2: chosen and rejected conversations differ"),
    ("rewardbench", 3, "subset", "made-up", r"row 3: column 'subset': expected a RewardBench subset name"),
    ("rewardbench2", 3, "num_correct", 2, r"row 3: num_correct is 2 but `chosen` holds 3"),
    ("rewardbench2", 1, "prompt", KeyError, r"row 1: column 'prompt' is missing"),
])
def test_a_malformed_row_is_reported_by_file_row_and_column(tmp_path, key, line, column, value, message):
    path = _corrupt(tmp_path, key, line, column, value)
    split = "eval" if key.startswith("rewardbench") else "train"
    with pytest.raises(sources.DataError, match=message) as error:
        sources.load_source(key, split, path)
    assert str(path) in str(error.value)


def test_a_missing_local_copy_is_named():
    with pytest.raises(sources.DataError, match="no helpsteer2 there"):
        sources.local_path("helpsteer2", FIXTURES / "nowhere")
