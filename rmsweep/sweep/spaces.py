"""Search spaces: `search_spaces/<name>.yaml` -> validated Optuna distributions (or a grid), fixed training
settings, ASHA settings and the data spec (`sources.py`).

A sweep uses `--space NAME` if given, else the family's own file, else `default.yaml`. `lr` is a log-uniform
range `{low, high}` or a list of values (a grid, searched by Optuna or walked whole with `--sampler grid`).
"""
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path

import optuna
import yaml

from rmsweep.config import TRAINING_FIELDS, TrainingSettings

# Read through the package (rmsweep/search_spaces links to the repository's search_spaces/), so that an installed
# wheel finds them as an editable install does.
DEFAULT_DIR = Path(str(resources.files("rmsweep") / "search_spaces"))
SEARCHED = {"lr", "epochs"}
TRAINING_KEYS = set(TRAINING_FIELDS)
ASHA_KEYS = {"grace_period", "reduction_factor"}
SETTINGS = SEARCHED | {"training", "asha", "data"}
TOP_KEYS = SETTINGS | {"by_rm_type", "by_scale"}


class SpaceError(ValueError):
    """A malformed search-space file; the message names the file and the key."""


@dataclass(frozen=True)
class SearchSpace:
    path: Path
    lr: tuple  # (low, high) of a log-uniform range, or the values of a grid
    lr_is_range: bool
    epochs: tuple
    training: TrainingSettings
    asha: dict
    data: object  # the data spec, checked against the RM type by sources.check_spec

    def distributions(self, ordered: bool = False) -> dict:
        """Optuna's distributions; `ordered`: a list of learning rates as the log-scale range between its ends
        (for samplers that model lr as a number; the searcher takes each sample to the nearest listed value)."""
        lr = (optuna.distributions.FloatDistribution(min(self.lr), max(self.lr), log=True)
              if self.lr_is_range or ordered else optuna.distributions.CategoricalDistribution(self.lr))
        return {"lr": lr, "epochs": optuna.distributions.CategoricalDistribution(self.epochs)}

    def grid(self) -> dict:
        """The values of each searched parameter, for --sampler grid; only a space whose lr is a list has one."""
        if self.lr_is_range:
            raise SpaceError(f"{self.path}: --sampler grid needs lr as a list of values, not a range")
        return {"lr": list(self.lr), "epochs": list(self.epochs)}

    def grid_size(self) -> int:
        return len(self.lr) * len(self.epochs)

    def describe(self) -> dict:
        return {"file": str(self.path), "lr": list(self.lr), "lr_is_range": self.lr_is_range,
                "epochs": list(self.epochs), "asha": self.asha, "training": asdict(self.training)}


def _check_keys(section: dict, allowed: set, where: str) -> None:
    if not isinstance(section, dict):
        raise SpaceError(f"{where} must be a mapping")
    unknown = sorted(set(section) - allowed)
    if unknown:
        raise SpaceError(f"{where}: unknown key {unknown[0]!r} (allowed: {', '.join(sorted(allowed))})")


def _merge(base: dict, override: dict, where: str) -> dict:
    _check_keys(override, SETTINGS, where)
    merged = dict(base)
    for key, value in override.items():
        merged[key] = {**base.get(key, {}), **value} if key in ("training", "asha") else value
    return merged


def _learning_rates(lr, path: Path) -> tuple[tuple, bool]:
    """(values, is_range) from `{low, high}` or a list of positive numbers."""
    if isinstance(lr, list):
        if not lr or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0 for v in lr):
            raise SpaceError(f"{path}: lr must be a non-empty list of positive numbers, got {lr}")
        return tuple(sorted({float(v) for v in lr})), False
    _check_keys(lr, {"low", "high"}, f"{path}: lr")
    if not (isinstance(lr.get("low"), (int, float)) and isinstance(lr.get("high"), (int, float))):
        raise SpaceError(f"{path}: lr needs numeric low and high (or a list of values)")
    if lr["low"] <= 0 or lr["low"] >= lr["high"]:
        raise SpaceError(f"{path}: lr range must satisfy 0 < low < high, got {lr['low']}..{lr['high']}")
    return (float(lr["low"]), float(lr["high"])), True


def resolve(raw: dict, rm_type: str, scale: str, path: Path) -> SearchSpace:
    _check_keys(raw, TOP_KEYS, str(path))
    settings = {key: raw[key] for key in SETTINGS if key in raw}
    for section, choice in (("by_rm_type", rm_type), ("by_scale", scale)):
        override = raw.get(section, {}).get(choice)
        if override:
            settings = _merge(settings, override, f"{path}: {section}.{choice}")
    missing = sorted(SETTINGS - set(settings))
    if missing:
        raise SpaceError(f"{path}: missing {missing[0]!r}")
    lr, epochs = settings["lr"], settings["epochs"]
    lr_values, lr_is_range = _learning_rates(lr, path)
    if not epochs or not all(isinstance(e, int) and e > 0 for e in epochs):
        raise SpaceError(f"{path}: epochs must be a non-empty list of positive integers, got {epochs}")
    _check_keys(settings["training"], TRAINING_KEYS, f"{path}: training")
    _check_keys(settings["asha"], ASHA_KEYS, f"{path}: asha")
    for section, keys in (("training", TRAINING_KEYS), ("asha", ASHA_KEYS)):
        for key in keys:
            value = settings[section].get(key)
            if not (isinstance(value, int) and value > 0):
                raise SpaceError(f"{path}: {section}.{key} must be a positive integer, got {value!r}")
    return SearchSpace(path, lr_values, lr_is_range, tuple(sorted(set(epochs))),
                       TrainingSettings(**settings["training"]),
                       dict(settings["asha"]), settings["data"])


def names(directory: Path = DEFAULT_DIR) -> list[str]:
    return sorted(path.stem for path in directory.glob("*.yaml"))


def load(family: str | None, rm_type: str, scale: str, directory: Path = DEFAULT_DIR,
         name: str | None = None) -> SearchSpace:
    """`name`: a shipped space's name, or the path of a user's YAML file. Without one, the family's own file if
    there is one, else `default.yaml`."""
    if name and (name.endswith((".yaml", ".yml")) or "/" in name):
        path = Path(name)
        if not path.is_file():
            raise SpaceError(f"no search space file {path}")
    elif name:
        path = directory / f"{name}.yaml"
        if not path.exists():
            raise SpaceError(f"no search space {name!r} in {directory} (there: {', '.join(names(directory))}); "
                             "or give a path to a .yaml file")
    else:
        path = directory / f"{family}.yaml"
        if not family or not path.exists():
            path = directory / "default.yaml"
    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as error:
        raise SpaceError(f"cannot read search space {path}: {error}") from None
    if not isinstance(raw or {}, dict):
        raise SpaceError(f"{path}: expected a mapping of settings (lr, epochs, training, asha, data)")
    return resolve(raw or {}, rm_type, scale, path)
