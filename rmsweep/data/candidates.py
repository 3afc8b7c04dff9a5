"""Base models as a sweep takes them: the registry's (published facts) and any other checkpoint (facts read from
its config, not typed), named on the command line or in a model-set YAML file (docs/candidates.md).

From the checkpoint's config: the architecture (`model_type`), the parameter count (the causal LM instantiated on
the meta device: no weights loaded or allocated), the size group that count falls in, and how a reward head goes
on (transformers' own sequence-classification class where it has one, else a linear head on the causal LM's last
hidden state). From its tokenizer files: whether it has a chat template.
"""
import json
import os
import zlib
from dataclasses import dataclass
from pathlib import Path

import yaml

from rmsweep.config import ModelSpec

SET_KEYS = {"name", "source", "revision", "stage", "family", "notes"}
# How a reward head goes on (model/auto_head.py builds the second).
SEQUENCE_CLASSIFICATION = "sequence-classification"
LINEAR_HEAD = "causal-lm + linear head"


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
    """What rmsweep knows of a base model: published (a registry model) or read from its checkpoint."""
    entry: Entry
    architecture: str  # the registry's key for a registry model, else the config's model_type
    params_b: float
    size_group: str
    head: str  # SEQUENCE_CLASSIFICATION or LINEAR_HEAD
    has_chat_template: bool
    published: bool = False  # a registry model: its facts and benchmark features are the registry's

    @property
    def name(self) -> str:
        return self.entry.name


def from_registry(row) -> Candidate:
    """A registry model (a row of registry.models()) with its published facts."""
    entry = Entry(row["name"], row["hf_id"], stage=row["stage"], family=row["family_key"])
    return Candidate(entry, row["architecture"], float(row["params_b"]), row["size_group"], SEQUENCE_CLASSIFICATION,
                     has_chat_template=True, published=True)


def registry_row(entry: Entry):
    """The registry's row when an entry's source is a registry model (its name or hub id, no revision); else None."""
    from rmsweep.data import registry

    return registry.find(entry.source) if entry.revision is None else None


def model_spec(candidate: Candidate, scale: str, model_dir: Path | None = None,
               trust_remote_code: bool = False) -> ModelSpec:
    """Where a base model's weights come from: its tiny twin (a registry architecture's, or the candidate's own
    config shrunk), a registry model's folder under `model_dir`, or its source (hub id or folder); whether its
    repository's own modeling code may run (only when the user passed --trust-remote-code)."""
    entry = candidate.entry
    format_and_revision = dict(revision=entry.revision, chat_template=candidate.has_chat_template)
    if scale == "tiny":  # its weights fixed by its name, as a real checkpoint's are: twins of one architecture differ
        return ModelSpec("tiny", candidate.architecture, twin_seed=zlib.crc32(entry.name.encode()),
                         twin_of=None if candidate.published else entry.source, **format_and_revision)
    source = str(Path(model_dir) / entry.name) if model_dir is not None and candidate.published else entry.source
    return ModelSpec(source, candidate.architecture, trust_remote_code=trust_remote_code, **format_and_revision)


def is_hub_id(text: str) -> bool:
    """`org/name`: not a path."""
    return not text.startswith((".", "/", "~")) and text.count("/") == 1 and all(text.split("/"))


def entry_from_argument(text: str) -> Entry | None:
    """A --models argument that is not a registry name: a folder (named by its last part) or a hub id
    `org/name[@revision]` (named by `name`); None for a plain name (the registry's to judge)."""
    folder = Path(os.path.abspath(Path(text).expanduser()))
    if folder.is_dir():
        return Entry(folder.name, str(folder))
    source, _, revision = text.partition("@")
    if is_hub_id(source):
        return Entry(source.split("/")[1], source, revision=revision or None)
    if "/" in text or text.startswith((".", "~")):
        raise CandidateError(f"{text}: no such folder")
    return None


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


TEMPLATE_FILES = ("chat_template.jinja", "chat_template.json", "tokenizer_config.json")


def _has_chat_template(entry: Entry, local_only: bool) -> bool:
    """Whether the tokenizer files carry a chat template: in the folder, or fetched from the hub (cache)."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError

    for name in TEMPLATE_FILES:
        if Path(entry.source).is_dir():
            path = Path(entry.source) / name
        else:
            try:
                path = Path(hf_hub_download(entry.source, name, revision=entry.revision,
                                            local_files_only=local_only))
            except (EntryNotFoundError, LocalEntryNotFoundError):
                continue
        if path.exists() and (name != "tokenizer_config.json" or json.loads(path.read_text()).get("chat_template")):
            return True
    return False


def read_config(entry: Entry, local_only: bool = True, trust_remote_code: bool = False):
    """A candidate's config from its folder, or for a hub id from the local hub cache (`local_only`) or the hub."""
    from transformers import AutoConfig  # here: reading a model-set file needs neither transformers nor torch

    folder = Path(entry.source)
    if not folder.is_dir() and not is_hub_id(entry.source):
        raise CandidateError(f"{entry.name}: {entry.source} is neither a folder nor a hub id (org/name)")
    try:
        return AutoConfig.from_pretrained(entry.source, revision=entry.revision, local_files_only=local_only,
                                          trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as error:
        where = " (not in the local hub cache)" if local_only and not folder.is_dir() else ""
        raise CandidateError(f"{entry.name}: cannot read the config of {entry.source}{where} "
                             f"({str(error).splitlines()[0]})") from None


def read(entry: Entry, local_only: bool = True, trust_remote_code: bool = False) -> Candidate:
    """A candidate's facts from its config and tokenizer files (a folder, the hub cache, or the hub); no weights."""
    from rmsweep.model import auto_head

    config = read_config(entry, local_only, trust_remote_code)
    try:
        head = auto_head.head_route(getattr(config, "model_type", None))
    except auto_head.UnsupportedArchitecture as error:
        raise CandidateError(f"{entry.name}: {error}") from None
    params_b = parameter_count(config) / 1e9
    return Candidate(entry, config.model_type, params_b, size_group(params_b), head,
                     _has_chat_template(entry, local_only))


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
            source = os.path.abspath(path.parent / source)  # folders relative to the file
        entries.append(Entry(**{**{key: str(value) for key, value in row.items()}, "source": source}))
    return entries
