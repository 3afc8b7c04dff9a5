"""The base-model registry: the paper's 42 models with their published results and benchmark features.

`data/models.csv` is built from the shared reference by `scripts/build_models_csv.py`.
"""
import difflib
from functools import cache
from importlib import resources

import pandas as pd

SIZE_GROUPS = ("<3B", "3-6B", ">=6B")
# The paper's published RewardBench results: columns reg_* (Table 4) and bt_* (Table 5).
PAPER_SCORE_PREFIXES = {"regression": "reg", "bt": "bt"}


class RegistryError(ValueError):
    """A name the registry does not know; the message suggests the nearest known one."""


def _unknown(kind: str, name: str, known) -> RegistryError:
    close = difflib.get_close_matches(name, list(known), n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return RegistryError(f"unknown {kind} {name!r}{hint} (python -m rmsweep.run --list-families lists them)")


@cache
def models() -> pd.DataFrame:
    with resources.files("rmsweep").joinpath("data/models.csv").open() as handle:
        return pd.read_csv(handle)


def families() -> dict[str, list[str]]:
    """Family key -> model names, in registry order."""
    return {key: list(group["name"]) for key, group in models().groupby("family_key", sort=True)}


def family(key: str) -> pd.DataFrame:
    table = models()
    if key not in set(table["family_key"]):
        raise _unknown("family", key, table["family_key"].unique())
    return table[table["family_key"] == key].reset_index(drop=True)


def model(name: str) -> pd.Series:
    """A model by its name (`gemma-2-2b-it`) or hub id (`google/gemma-2-2b-it`)."""
    row = find(name)
    if row is None:
        raise _unknown("model", name, models()["name"])
    return row


def find(key: str) -> pd.Series | None:
    """A model by its name or hub id, or None."""
    table = models()
    match = table[(table["name"] == key) | (table["hf_id"] == key)]
    return None if match.empty else match.iloc[0]


def size_group(group: str) -> pd.DataFrame:
    if group not in SIZE_GROUPS:
        raise _unknown("size group", group, SIZE_GROUPS)
    table = models()
    return table[table["size_group"] == group].reset_index(drop=True)


def paper_score_columns(rm_type: str) -> dict:
    """Section name -> registry column of the paper's published scores for one RM type."""
    prefix = PAPER_SCORE_PREFIXES[rm_type]
    return {"Chat": f"{prefix}_chat", "Chat Hard": f"{prefix}_chat_hard", "Safety": f"{prefix}_safety",
            "Reasoning": f"{prefix}_reasoning", "overall": f"{prefix}_score"}


def nearest_published_columns(rm_type: str) -> dict:
    """The paper's score columns for an RM type: its own, or BT's for a BNRM (a BT RM with another head)."""
    return paper_score_columns(rm_type if rm_type in PAPER_SCORE_PREFIXES else "bt")


def with_results(results: pd.DataFrame, columns) -> pd.DataFrame:
    """Registry rows of the models named in a results table's `model` column, with its `columns` added.

    Models the registry does not know are dropped; callers that take outside files check for them.
    """
    scores = results.rename(columns={"model": "name"})[["name", *columns]]
    return models().merge(scores, on="name")
