"""Training and benchmark data: a hub dataset (`datasets.load_dataset`) or a local file/folder of the same
schema -> validated rows -> canonical records. Every row is checked; the first bad one is reported with its
file, row number (1-based, in the split as loaded: the line of a JSONL file), column and what was expected.

Canonical records (`prompt` is always a message list, so multi-turn prompts meet the model's chat template):
  pair:   {"prompt", "chosen", "rejected", "margin"}          margin: |preference strength|, else 1
  rating: {"prompt", "response", "attributes": [5 x 0-4]}     HelpSteer2 regression targets
  group:  {"id", "subset", "prompt", "completions", "num_correct"}   benchmark rows, correct completions first

A data spec (the `data:` section of a search space) names the sources of each role:
  data:
    train: [{source: tulu3-preference, weight: 1.0}, {source: skywork-80k-v0.2, weight: 0.5}]
    validation: [{source: helpsteer2-preference, split: validation}]   # or `holdout: 0.02` of train
    eval: [rewardbench, rewardbench2]
or `data: builtin`, the offline corpus of `builtin_corpus.py`. A source entry may carry `path:` (a local copy);
`--data-dir DIR` looks for DIR/<source key> (a folder, or a .jsonl/.json/.parquet/.csv file) instead of the hub.
"""
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from rmsweep.analysis import scoring
from rmsweep.data import builtin_corpus


class DataError(ValueError):
    """Bad data or a bad data spec; the message names the file, row and column."""


def _message_list(value) -> bool:
    return (isinstance(value, list) and len(value) >= 2 and all(
        isinstance(m, dict) and m.get("role") in ("system", "user", "assistant") and isinstance(m.get("content"), str)
        for m in value) and value[-1]["role"] == "assistant")


def _int_in(low: int, high: int) -> Callable:
    """A whole number in [low, high]; 2.0 counts (a column with a gap is read as floats)."""
    return lambda value: (isinstance(value, (int, float)) and not isinstance(value, bool)
                          and float(value).is_integer() and low <= value <= high)


TEXT = (lambda value: isinstance(value, str) and value.strip() != "", "non-empty text")
RESPONSE = (lambda value: isinstance(value, str), "text")
MESSAGES = (_message_list, "a list of {role, content} messages ending with the assistant's")
TEXT_LIST = (lambda value: isinstance(value, list) and value and all(isinstance(v, str) for v in value),
             "a non-empty list of texts")
RATING = (_int_in(0, 4), "an integer 0-4")
ID = (lambda value: isinstance(value, (int, str)) and not isinstance(value, bool), "an id (integer or text)")

# HelpSteer2 flattens multi-turn prompts: "<first user turn>\n<extra_id_1>Assistant\n...\n<extra_id_1>User\n...".
TURN_MARKER = re.compile(r"\n?<extra_id_1>(User|Assistant)\n?")


def helpsteer2_messages(prompt: str) -> list[dict]:
    parts = TURN_MARKER.split(prompt)
    messages = [{"role": "user", "content": parts[0]}] if parts[0].strip() else []
    messages += [{"role": role.lower(), "content": text} for role, text in zip(parts[1::2], parts[2::2])]
    return messages


def user_prompt(prompt: str) -> list[dict]:
    return [{"role": "user", "content": prompt}]


def _ratings(row: dict) -> dict:
    return {"prompt": helpsteer2_messages(row["prompt"]), "response": row["response"],
            "attributes": [int(row[attribute]) for attribute in scoring.ATTRIBUTES]}


def _strength_pair(row: dict) -> dict | None:
    """Strength > 0: response_2 is chosen; < 0: response_1; 0: no preference, dropped. |strength| is the margin."""
    strength = int(row["preference_strength"])
    if strength == 0:
        return None
    chosen, rejected = ("response_2", "response_1") if strength > 0 else ("response_1", "response_2")
    return {"prompt": helpsteer2_messages(row["prompt"]), "chosen": row[chosen], "rejected": row[rejected],
            "margin": float(abs(strength))}


def _conversation_pair(row: dict) -> dict:
    """Skywork / Tulu 3: `chosen` and `rejected` are whole conversations sharing everything but the last turn."""
    if row["chosen"][:-1] != row["rejected"][:-1]:
        raise ValueError("chosen and rejected conversations differ before their last message")
    prompt = [{"role": m["role"], "content": m["content"]} for m in row["chosen"][:-1]]
    return {"prompt": prompt, "chosen": row["chosen"][-1]["content"], "rejected": row["rejected"][-1]["content"],
            "margin": 1.0}


def _rewardbench_group(row: dict) -> dict:
    return {"id": row["id"], "subset": row["subset"], "prompt": user_prompt(row["prompt"]),
            "completions": [row["chosen"], row["rejected"]], "num_correct": 1}


def _rewardbench2_group(row: dict) -> dict:
    if row["num_correct"] != len(row["chosen"]):
        raise ValueError(f"num_correct is {row['num_correct']} but `chosen` holds {len(row['chosen'])} completions")
    return {"id": row["id"], "subset": row["subset"], "prompt": user_prompt(row["prompt"]),
            "completions": list(row["chosen"]) + list(row["rejected"]), "num_correct": row["num_correct"]}


@dataclass(frozen=True)
class Source:
    hub_id: str
    kind: str                     # "ratings", "pairs" or "benchmark"
    columns: dict                 # column -> (check, what is expected)
    convert: Callable             # validated row -> canonical record, or None when the mapping drops it
    hub_splits: dict              # our split -> the hub's split
    hub_options: dict = field(default_factory=dict)
    split_column: dict = field(default_factory=dict)  # our split -> value of the `split` column


SOURCES = {
    "helpsteer2": Source(
        "nvidia/HelpSteer2", "ratings",
        {"prompt": TEXT, "response": RESPONSE, **{attribute: RATING for attribute in scoring.ATTRIBUTES}},
        _ratings, {"train": "train", "validation": "validation"}),
    "helpsteer2-preference": Source(
        "nvidia/HelpSteer2", "pairs",
        {"split": (lambda v: v in ("train", "val"), "'train' or 'val'"), "prompt": TEXT, "response_1": RESPONSE,
         "response_2": RESPONSE, "preference_strength": (_int_in(-3, 3), "an integer -3..3")},
        _strength_pair, {"train": "train", "validation": "train"}, {"data_dir": "preference"},
        {"train": "train", "validation": "val"}),
    "skywork-80k-v0.2": Source(
        "Skywork/Skywork-Reward-Preference-80K-v0.2", "pairs", {"chosen": MESSAGES, "rejected": MESSAGES},
        _conversation_pair, {"train": "train"}),
    "tulu3-preference": Source(
        "allenai/llama-3.1-tulu-3-8b-preference-mixture", "pairs",
        {"prompt": TEXT, "chosen": MESSAGES, "rejected": MESSAGES}, _conversation_pair, {"train": "train"}),
    "rewardbench": Source(
        "allenai/reward-bench", "benchmark",
        {"id": ID, "prompt": TEXT, "chosen": RESPONSE, "rejected": RESPONSE,
         "subset": (lambda v: v in scoring.SUBSET_SECTION or v in scoring.PRIOR_SETS, "a RewardBench subset name")},
        _rewardbench_group, {"eval": "filtered"}),
    "rewardbench2": Source(
        "allenai/reward-bench-2", "benchmark",
        {"id": ID, "prompt": TEXT, "chosen": TEXT_LIST, "rejected": TEXT_LIST,
         "num_correct": (_int_in(1, 1000), "a positive integer"),
         "subset": (lambda v: v in scoring.REWARDBENCH2_DOMAINS, f"one of {', '.join(scoring.REWARDBENCH2_DOMAINS)}")},
        _rewardbench2_group, {"eval": "test"}),
}
LOCAL_FORMATS = {".jsonl": "json", ".json": "json", ".gz": "json", ".parquet": "parquet", ".csv": "csv"}


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def convert_rows(key: str, rows, where: str, split: str | None = None) -> tuple[list[dict], int]:
    """(canonical records, rows the mapping dropped) from raw rows; the first bad row raises DataError."""
    source = SOURCES[key]
    wanted = source.split_column.get(split)
    records, dropped = [], 0
    for number, row in enumerate(rows, start=1):
        for column, (check, expected) in source.columns.items():
            if row.get(column) is None:
                raise DataError(f"{where}: row {number}: column {column!r} is missing (a {key} file needs "
                                f"{', '.join(source.columns)})")
            if not check(row[column]):
                raise DataError(f"{where}: row {number}: column {column!r}: expected {expected}, "
                                f"got {_short(row[column])}")
        if wanted and row["split"] != wanted:
            continue
        try:
            record = source.convert(row)
        except ValueError as error:
            raise DataError(f"{where}: row {number}: {error}") from None
        if record is None:
            dropped += 1
        else:
            records.append(record)
    return records, dropped


def _load_raw(key: str, split: str, path: Path | None):
    """The raw rows of one split of a source, and a description of where they came from."""
    import datasets

    source = SOURCES[key]
    hub_split = source.hub_splits[split]
    try:
        if path is None:
            return datasets.load_dataset(source.hub_id, split=hub_split, **source.hub_options), \
                f"{source.hub_id} ({hub_split})"
        if path.is_file():
            suffix = path.suffix.lower()
            if suffix not in LOCAL_FORMATS:
                raise DataError(f"{path}: unknown file type (use {', '.join(sorted(LOCAL_FORMATS))})")
            return datasets.load_dataset(LOCAL_FORMATS[suffix], data_files=str(path), split="train"), str(path)
        options = {k: v for k, v in source.hub_options.items() if (path / v).is_dir()}
        return datasets.load_dataset(str(path), split=hub_split, **options), f"{path} ({hub_split})"
    except DataError:
        raise
    except Exception as error:  # offline, missing file, unreadable format: say which and how to fix
        where = path or f"the hub dataset {source.hub_id}"
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise DataError(f"cannot load {key} from {where}: {message}; pass --data-dir DIR with a local copy "
                        f"at DIR/{key}") from None


def local_path(key: str, data_dir: Path | None) -> Path | None:
    """DIR/<key> as a folder or a file of a known type, if there is one."""
    if data_dir is None:
        return None
    candidates = [data_dir / key] + [data_dir / f"{key}{suffix}" for suffix in (".jsonl", ".json", ".parquet", ".csv")]
    found = [path for path in candidates if path.exists()]
    if not found:
        raise DataError(f"--data-dir {data_dir}: no {key} there (expected {data_dir / key}[.jsonl|.parquet|...])")
    return found[0]


def load_source(key: str, split: str, path: Path | None = None) -> tuple[list[dict], str]:
    """Canonical records of one split of a source and a one-line account of them."""
    rows, where = _load_raw(key, split, path)
    records, dropped = convert_rows(key, rows, where, split)
    account = f"{key} {split}: {len(records):,} from {where}" + (f", {dropped:,} without preference dropped"
                                                                   if dropped else "")
    return records, account


def mix(parts: list[tuple[list[dict], float]], seed: int) -> list[dict]:
    """Several sources' records by weight: each source contributes weight x its rows (2.0: every row twice;
    0.5: a random half), then all are shuffled together."""
    rng = np.random.default_rng(seed)
    mixed = []
    for records, weight in parts:
        whole, fraction = divmod(weight, 1.0)
        mixed += records * int(whole)
        extra = rng.choice(len(records), size=round(fraction * len(records)), replace=False)
        mixed += [records[i] for i in sorted(extra)]
    return [mixed[i] for i in rng.permutation(len(mixed))]


@dataclass
class Data:
    train: list
    validation: list
    eval: dict               # benchmark -> groups
    accounts: list           # one line per source loaded


ROLE_SPLITS = {"train": "train", "validation": "validation"}


def _entries(raw, role: str) -> list[dict]:
    entries = raw if isinstance(raw, list) else [raw]
    parsed = []
    for entry in entries:
        entry = {"source": entry} if isinstance(entry, str) else entry
        if not isinstance(entry, dict) or entry.get("source") not in SOURCES:
            got = entry.get("source") if isinstance(entry, dict) else entry
            raise DataError(f"data.{role}: unknown source {got!r} (known: {', '.join(SOURCES)})")
        unknown = sorted(set(entry) - {"source", "split", "weight", "path"})
        if unknown:
            raise DataError(f"data.{role}: unknown key {unknown[0]!r} (allowed: source, split, weight, path)")
        weight = entry.get("weight", 1.0)
        if not (isinstance(weight, (int, float)) and weight > 0 and math.isfinite(weight)):
            raise DataError(f"data.{role}: weight of {entry['source']} must be a positive number, got {weight!r}")
        split = entry.get("split", "eval" if role == "eval" else ROLE_SPLITS.get(role, "train"))
        if split not in SOURCES[entry["source"]].hub_splits:
            raise DataError(f"data.{role}: {entry['source']} has no split {split!r} "
                            f"(it has {', '.join(SOURCES[entry['source']].hub_splits)})")
        parsed.append({**entry, "split": split, "weight": float(weight)})
    return parsed


def check_spec(spec, rm_type: str) -> dict | str:
    """The data spec, validated against the RM type: raises DataError naming the bad key."""
    if spec == "builtin":
        return spec
    if not isinstance(spec, dict):
        raise DataError(f"data must be 'builtin' or a mapping of train, validation (or holdout) and eval; got {spec!r}")
    unknown = sorted(set(spec) - {"train", "validation", "holdout", "eval"})
    if unknown:
        raise DataError(f"data: unknown key {unknown[0]!r} (allowed: train, validation, holdout, eval)")
    for role in ("train", "eval"):
        if not spec.get(role):
            raise DataError(f"data: {role} names no source")
    checked = {role: _entries(spec[role], role) for role in ("train", "validation", "eval") if spec.get(role)}
    wanted = "ratings" if rm_type == "regression" else "pairs"
    for entry in checked["train"]:
        if SOURCES[entry["source"]].kind != wanted:
            raise DataError(f"data.train: {entry['source']} holds {SOURCES[entry['source']].kind}, but a "
                            f"{rm_type} RM trains on {wanted}")
    for entry in checked.get("validation", []):
        if SOURCES[entry["source"]].kind != "pairs":
            raise DataError(f"data.validation: {entry['source']} holds no preference pairs")
    for entry in checked["eval"]:
        if SOURCES[entry["source"]].kind != "benchmark":
            raise DataError(f"data.eval: {entry['source']} is not a benchmark ({', '.join(scoring.BENCHMARKS)})")
    holdout = spec.get("holdout")
    if "validation" in checked and holdout is not None:
        raise DataError("data: give validation or holdout, not both")
    if "validation" not in checked:
        if not (isinstance(holdout, (int, float)) and 0 < holdout < 1):
            raise DataError(f"data: without validation, holdout must be a fraction in (0, 1), got {holdout!r}")
        if wanted != "pairs":
            raise DataError("data: a regression RM needs validation pairs; name a validation source")
    return {**checked, "holdout": holdout}


def load(spec, rm_type: str, data_dir: Path | None = None, seed: int = 0) -> Data:
    """Every record a sweep needs, loaded and validated before any compute."""
    spec = check_spec(spec, rm_type)
    if spec == "builtin":
        return builtin(rm_type, seed)
    accounts = []

    def records_of(entry):
        path = Path(entry["path"]) if entry.get("path") else local_path(entry["source"], data_dir)
        records, account = load_source(entry["source"], entry["split"], path)
        accounts.append(account + (f" (weight {entry['weight']:g})" if entry["weight"] != 1 else ""))
        return records, entry["weight"]

    train = mix([records_of(entry) for entry in spec["train"]], seed)
    if "validation" in spec:
        validation = mix([records_of(entry) for entry in spec["validation"]], seed)
    else:
        held = round(spec["holdout"] * len(train))
        train, validation = train[held:], train[:held]
        accounts.append(f"validation: {held:,} pairs held out of the training mix")
    evaluation = {entry["source"]: records_of(entry)[0] for entry in spec["eval"]}
    if not train or not validation:
        raise DataError(f"data: {'train' if not train else 'validation'} is empty after filtering")
    return Data(train, validation, evaluation, accounts)


def builtin(rm_type: str, seed: int = 0) -> Data:
    """The offline corpus, in canonical records."""
    splits = builtin_corpus.builtin_splits(seed)

    def pairs(rows):
        return [{"prompt": user_prompt(r["prompt"]), "chosen": r["chosen"], "rejected": r["rejected"],
                 "margin": float(r["strength"])} for r in rows]

    train = ([{"prompt": user_prompt(r["prompt"]), "response": r["response"], "attributes": r["attributes"]}
              for r in builtin_corpus.ratings(splits["train"])] if rm_type == "regression" else pairs(splits["train"]))
    evaluation = {
        "rewardbench": [_rewardbench_group(row) for row in splits["rewardbench"]],
        "rewardbench2": [_rewardbench2_group(row) for row in splits["rewardbench2"]],
    }
    accounts = [f"built-in corpus (seed {seed}): {len(train):,} train, {len(splits['validation']):,} validation, "
                + ", ".join(f"{len(rows):,} {name}" for name, rows in evaluation.items())]
    return Data(train, pairs(splits["validation"]), evaluation, accounts)
