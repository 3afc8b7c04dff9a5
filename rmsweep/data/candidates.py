"""Base models beyond the registry: a candidate's facts read from its checkpoint, not typed, and named sets of
candidates in a YAML file (docs/candidates.md).

From the checkpoint's config: the architecture (`model_type`), the parameter count (the causal LM instantiated on
the meta device: no weights loaded or allocated), the size group that count falls in, and how a reward head goes
on (transformers' own sequence-classification class where it has one, else a linear head on the causal LM's last
hidden state). From its tokenizer files: whether it has a chat template.
"""
import json
from dataclasses import dataclass
from pathlib import Path

import yaml

SET_KEYS = {"name", "source", "revision", "stage", "family", "notes"}
HEADS = ("sequence-classification", "causal-lm + linear head")


class CandidateError(ValueError):
    """A candidate or model-set file that cannot be used; the message names the file or model."""


@dataclass(frozen=True)
class Entry:
    """One candidate as a user names it."""
    name: str
    source: str  # a hub id or a local checkpoint folder
    revision: str | None = None
    stage: str | None = None
    family: str | None = None
    notes: str | None = None


@dataclass(frozen=True)
class Candidate:
    """What rmsweep reads of a candidate."""
    entry: Entry
    architecture: str
    params_b: float
    size_group: str
    head: str  # one of HEADS
    has_chat_template: bool


def size_group(params_b: float) -> str:
    """The paper's size groups: <3B, 3-6B, >=6B."""
    return "<3B" if params_b < 3 else "3-6B" if params_b < 6 else ">=6B"


def parameter_count(config) -> int:
    """Parameters of the causal LM `config` describes, counted on the meta device."""
    import torch
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    return sum(parameter.numel() for parameter in model.parameters())


def _has_chat_template(folder: Path) -> bool:
    if (folder / "chat_template.jinja").exists() or (folder / "chat_template.json").exists():
        return True
    tokenizer_config = folder / "tokenizer_config.json"
    return tokenizer_config.exists() and bool(json.loads(tokenizer_config.read_text()).get("chat_template"))


def read(entry: Entry, trust_remote_code: bool = False) -> Candidate:
    """A candidate's facts from its local folder, or from the hub cache for a hub id (nothing is downloaded)."""
    from transformers import AutoConfig  # here: reading a model-set file needs neither transformers nor torch
    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
        MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES,
    )

    folder = Path(entry.source)
    if not folder.is_dir() and (entry.source.startswith((".", "/", "~")) or entry.source.count("/") != 1):
        raise CandidateError(f"{entry.name}: {entry.source} is neither a folder nor a hub id (org/name)")
    try:
        config = AutoConfig.from_pretrained(entry.source, revision=entry.revision, local_files_only=True,
                                            trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as error:
        raise CandidateError(f"{entry.name}: cannot read the config of {entry.source} "
                             f"({str(error).splitlines()[0]})") from None
    architecture = getattr(config, "model_type", None)
    if architecture in MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES:
        head = HEADS[0]
    elif architecture in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        head = HEADS[1]
    else:
        raise CandidateError(f"{entry.name}: architecture {architecture!r} has neither a sequence-classification "
                             "nor a causal-LM class in the installed transformers")
    params_b = parameter_count(config) / 1e9
    local = folder if folder.is_dir() else _cached_folder(entry)
    return Candidate(entry, architecture, params_b, size_group(params_b), head,
                     local is not None and _has_chat_template(local))


def _cached_folder(entry: Entry) -> Path | None:
    """The hub cache's snapshot folder of a hub id, if its config is cached."""
    from huggingface_hub import try_to_load_from_cache

    path = try_to_load_from_cache(entry.source, "config.json", revision=entry.revision)
    return Path(path).parent if isinstance(path, str) else None


def load_set(path: Path) -> list[Entry]:
    """The candidates of a model-set file, checked: a list under `models`, each with a unique name and a source,
    no other keys than SET_KEYS."""
    if not path.is_file():
        raise CandidateError(f"{path}: no such file")
    try:
        document = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise CandidateError(f"{path}: not valid YAML ({str(error).splitlines()[0]})") from None
    rows = document.get("models") if isinstance(document, dict) else None
    if not isinstance(rows, list) or not rows:
        raise CandidateError(f"{path}: needs a non-empty list under 'models'")
    entries, seen = [], set()
    for index, row in enumerate(rows):
        where = f"{path}: models[{index}]"
        if not isinstance(row, dict) or not row.get("name") or not row.get("source"):
            raise CandidateError(f"{where} needs a name and a source (a hub id or a folder)")
        unknown = sorted(set(row) - SET_KEYS)
        if unknown:
            raise CandidateError(f"{where}: unknown key {unknown[0]!r} (allowed: {', '.join(sorted(SET_KEYS))})")
        if row["name"] in seen:
            raise CandidateError(f"{path}: the name {row['name']!r} is used twice")
        seen.add(row["name"])
        source = str(row["source"])
        if not Path(source).is_absolute() and (path.parent / source).is_dir():
            source = str(path.parent / source)  # folders relative to the file
        entries.append(Entry(**{**{key: str(value) for key, value in row.items()}, "source": source}))
    return entries
