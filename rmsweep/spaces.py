"""Search spaces: `search_spaces/<family>.yaml` (or `default.yaml`) -> validated Optuna distributions and
fixed training settings."""
from dataclasses import dataclass
from pathlib import Path

import optuna
import yaml

DEFAULT_DIR = Path(__file__).resolve().parents[1] / "search_spaces"
SEARCHED = {"lr", "epochs"}
TRAINING_KEYS = {"global_batch_size", "micro_batch_size", "warmup_steps", "eval_every", "max_length"}
ASHA_KEYS = {"grace_period", "reduction_factor"}
TOP_KEYS = SEARCHED | {"training", "asha", "by_rm_type", "by_scale"}


class SpaceError(ValueError):
    """A malformed search-space file; the message names the file and the key."""


@dataclass(frozen=True)
class SearchSpace:
    path: Path
    lr_low: float
    lr_high: float
    epochs: tuple
    training: dict
    asha: dict

    def distributions(self) -> dict:
        return {
            "lr": optuna.distributions.FloatDistribution(self.lr_low, self.lr_high, log=True),
            "epochs": optuna.distributions.CategoricalDistribution(self.epochs),
        }


def _check_keys(section: dict, allowed: set, where: str) -> None:
    if not isinstance(section, dict):
        raise SpaceError(f"{where} must be a mapping")
    unknown = sorted(set(section) - allowed)
    if unknown:
        raise SpaceError(f"{where}: unknown key {unknown[0]!r} (allowed: {', '.join(sorted(allowed))})")


def _merge(base: dict, override: dict, where: str) -> dict:
    _check_keys(override, SEARCHED | {"training", "asha"}, where)
    merged = dict(base)
    for key, value in override.items():
        merged[key] = {**base.get(key, {}), **value} if key in ("training", "asha") else value
    return merged


def resolve(raw: dict, rm_type: str, scale: str, path: Path) -> SearchSpace:
    _check_keys(raw, TOP_KEYS, str(path))
    settings = {key: raw[key] for key in SEARCHED | {"training", "asha"} if key in raw}
    for section, choice in (("by_rm_type", rm_type), ("by_scale", scale)):
        override = raw.get(section, {}).get(choice)
        if override:
            settings = _merge(settings, override, f"{path}: {section}.{choice}")
    missing = sorted((SEARCHED | {"training", "asha"}) - set(settings))
    if missing:
        raise SpaceError(f"{path}: missing {missing[0]!r}")
    lr, epochs = settings["lr"], settings["epochs"]
    _check_keys(lr, {"low", "high"}, f"{path}: lr")
    if not (isinstance(lr.get("low"), (int, float)) and isinstance(lr.get("high"), (int, float))):
        raise SpaceError(f"{path}: lr needs numeric low and high")
    if lr["low"] <= 0 or lr["low"] >= lr["high"]:
        raise SpaceError(f"{path}: lr range must satisfy 0 < low < high, got {lr['low']}..{lr['high']}")
    if not epochs or not all(isinstance(e, int) and e > 0 for e in epochs):
        raise SpaceError(f"{path}: epochs must be a non-empty list of positive integers, got {epochs}")
    _check_keys(settings["training"], TRAINING_KEYS, f"{path}: training")
    _check_keys(settings["asha"], ASHA_KEYS, f"{path}: asha")
    for section, keys in (("training", TRAINING_KEYS), ("asha", ASHA_KEYS)):
        for key in keys:
            value = settings[section].get(key)
            if not (isinstance(value, int) and value > 0):
                raise SpaceError(f"{path}: {section}.{key} must be a positive integer, got {value!r}")
    return SearchSpace(path, float(lr["low"]), float(lr["high"]), tuple(sorted(set(epochs))),
                       dict(settings["training"]), dict(settings["asha"]))


def load(family: str, rm_type: str, scale: str, directory: Path = DEFAULT_DIR) -> SearchSpace:
    """The family's own file if there is one, else `default.yaml`."""
    path = directory / f"{family}.yaml"
    if not path.exists():
        path = directory / "default.yaml"
    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as error:
        raise SpaceError(f"cannot read search space {path}: {error}") from None
    return resolve(raw or {}, rm_type, scale, path)
