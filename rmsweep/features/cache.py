"""Measured features, one JSON file each under <storage>/features/, keyed by what decides the value: the model's
source and revision (a hub id's as a commit; a folder's config and weight files by name, size and time), the
benchmark, its data (hub dataset, or a local copy's digest), the harness version, and a rehearsal's --limit /
--max-new-tokens. A rerun reads what is there; a crash loses only the measurements still running."""
import hashlib
import json
import re
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from rmsweep.features.benchmarks import Benchmark
from rmsweep.sweep import storage

FOLDER = "features"


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def model_fingerprint(source: str) -> str | None:
    """A local folder's config and weights by name, size and modification time; None for a hub id (its revision
    names the weights)."""
    folder = Path(source)
    if not folder.is_dir():
        return None
    files = sorted(path for pattern in ("*.json", "*.safetensors") for path in folder.glob(pattern))
    return _digest(json.dumps([(p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in files]))


def data_fingerprint(bench: Benchmark, local: Path | None) -> str:
    if local is None:
        return f"{bench.hub_dataset}:{bench.hub_config or ''}:{bench.split}"
    return f"{local.name}:{hashlib.sha256(local.read_bytes()).hexdigest()[:16]}"


def key(model, bench: Benchmark, local: Path | None, harness: str, limit: int | None,
        max_new_tokens: int | None) -> dict:
    return {"source": model.source, "revision": model.revision, "model_files": model_fingerprint(model.source),
            "benchmark": bench.name, "data": data_fingerprint(bench, local), "harness": f"lm_eval {harness}",
            "limit": limit, "max_new_tokens": max_new_tokens}


def file_name(model_name: str, record_key: dict) -> str:
    readable = re.sub(r"[^A-Za-z0-9._-]+", "_", f"{model_name}-{record_key['benchmark']}")
    return f"{readable}-{_digest(json.dumps(record_key, sort_keys=True))}.json"


def read(root: storage.Location, model_name: str, record_key: dict) -> dict | None:
    folder, name = root.child(FOLDER), file_name(model_name, record_key)
    return json.loads(folder.read_text(name)) if folder.exists(name) else None


def write(root: storage.Location, model_name: str, record_key: dict, result: dict) -> dict:
    """The record as stored: the key, the result, and whether it is a rehearsal value (never used by the
    selector)."""
    record = {"model": model_name, **record_key, **result,
              "rehearsal": record_key["limit"] is not None or record_key["max_new_tokens"] is not None,
              "measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    root.child(FOLDER).write_text(file_name(model_name, record_key), json.dumps(record, indent=2))
    return record


def records(root: storage.Location) -> pd.DataFrame:
    """Every stored measurement, one row each."""
    folder = root.child(FOLDER)
    rows = [json.loads(folder.read_text(name)) for name in folder.names() if name.endswith(".json")]
    return pd.DataFrame(rows)


def measured_features(root: storage.Location) -> pd.DataFrame:
    """Source x benchmark: the latest non-rehearsal value of each (what the selector may use)."""
    table = records(root)
    if table.empty:
        return pd.DataFrame()
    table = table[~table["rehearsal"]].sort_values("measured_at")
    return table.pivot_table(index="source", columns="benchmark", values="value", aggfunc="last")
