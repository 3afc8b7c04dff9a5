"""Tokenized splits kept on the sweep's storage, so that a split is tokenized once per (tokenizer, data,
max length) and every later trial, on any node, reads it instead.

Files are Parquet (token-id lists as list<int32> columns), never pickle: a shared bucket may be writable by
others, and reading one must not run code. Two trials that miss at once both tokenize and both write the
same file whole; either one's copy serves.
"""
import hashlib
import io
import json

import pyarrow as pa
import pyarrow.parquet as pq

from rmsweep.data.tokenization import Tokenized
from rmsweep.sweep import storage

FORMAT_VERSION = 1


def fingerprint(records) -> str:
    """A stable digest of canonical records (lists of dicts), computed once by the sweep driver."""
    return hashlib.sha256(json.dumps(records, sort_keys=True, default=str).encode()).hexdigest()


def _key(parts: dict) -> str:
    return hashlib.sha256(json.dumps({**parts, "format": FORMAT_VERSION}, sort_keys=True).encode()).hexdigest()[:32]


def _to_parquet(tokenized: Tokenized) -> bytes:
    pairs = bool(tokenized.sequences) and isinstance(tokenized.sequences[0], tuple)
    columns = ({"chosen": [c for c, _ in tokenized.sequences], "rejected": [r for _, r in tokenized.sequences]}
               if pairs else {"sequence": tokenized.sequences})
    if tokenized.targets:
        columns["target"] = tokenized.targets
    metadata = {"truncated": str(tokenized.truncated), "dropped": str(tokenized.dropped), "pairs": str(pairs)}
    table = pa.table({name: pa.array(values, type=pa.list_(pa.int32())) if name != "target" else pa.array(values)
                      for name, values in columns.items()}).replace_schema_metadata(metadata)
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    return buffer.getvalue()


def _from_parquet(data: bytes) -> Tokenized:
    table = pq.read_table(io.BytesIO(data))
    metadata = {key.decode(): value.decode() for key, value in table.schema.metadata.items()}
    if metadata["pairs"] == "True":
        sequences = list(zip(table.column("chosen").to_pylist(), table.column("rejected").to_pylist()))
    else:
        sequences = table.column("sequence").to_pylist()
    targets = table.column("target").to_pylist() if "target" in table.column_names else []
    return Tokenized(sequences, targets, int(metadata["truncated"]), int(metadata["dropped"]))


def load_or_tokenize(cache: storage.Location | None, key_parts: dict, tokenize) -> Tokenized:
    """`tokenize()`'s result, read from `cache` when an earlier call with the same key wrote it there."""
    if cache is None:
        return tokenize()
    name = f"{_key(key_parts)}.parquet"
    if cache.exists(name):
        return _from_parquet(cache.read_bytes(name))
    tokenized = tokenize()
    cache.write_bytes(name, _to_parquet(tokenized))
    return tokenized
