"""Measuring many (model, benchmark) pairs at once: one Ray task each, with the GPU it needs, writing its value to
the cache as it finishes; pairs already in the cache are not run again."""
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

import ray

from rmsweep.features import cache
from rmsweep.features.benchmarks import Benchmark
from rmsweep.features.measure import FeatureModel, harness_version, measure
from rmsweep.sweep import session, storage

log = logging.getLogger(__name__)
FORWARDED_ENVIRONMENT = ("NLTK_DATA", "HF_HUB_OFFLINE", "HF_HOME", "HF_TOKEN")


@dataclass(frozen=True)
class Job:
    model: FeatureModel
    bench: Benchmark
    local: Path | None  # the benchmark's local copy, or None: the hub's
    limit: int | None
    max_new_tokens: int | None

    def key(self, harness: str) -> dict:
        return cache.key(self.model, self.bench, self.local, harness, self.limit, self.max_new_tokens)


@ray.remote(num_cpus=1)
def _measure_and_store(job: Job, root: storage.Location) -> dict:
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    result = measure(job.model, job.bench, job.local, job.limit, job.max_new_tokens, device)
    return cache.write(root, job.model.name, job.key(harness_version()), result)


def run(jobs: list[Job], root: storage.Location, gpus_per_task: float | None) -> list[dict]:
    """Each job's record, from the cache or measured now (Ray started only then); a line per job as it finishes.
    `gpus_per_task` None: 1 where the cluster has GPUs, else 0."""
    harness = harness_version()
    records = {index: cache.read(root, job.model.name, job.key(harness)) for index, job in enumerate(jobs)}
    missing = [index for index, record in records.items() if record is None]
    log.info("%d of %d measurements from the cache (%s)", len(jobs) - len(missing), len(jobs),
             root.child(cache.FOLDER))
    if missing:
        session.start_ray(verbose=log.getEffectiveLevel() <= logging.DEBUG)
        if gpus_per_task is None:
            gpus_per_task = 1.0 if ray.cluster_resources().get("GPU", 0) > 0 else 0.0
        environment = {name: os.environ[name] for name in FORWARDED_ENVIRONMENT if name in os.environ}
        options = {"num_gpus": gpus_per_task, **({"runtime_env": {"env_vars": environment}} if environment else {})}
        log.info("measuring %d (model, benchmark) pairs, %g GPU each", len(missing), gpus_per_task)
        pending = {_measure_and_store.options(**options).remote(jobs[index], root): index for index in missing}
        _gather(pending, records, len(jobs))
    return [records[index] for index in range(len(jobs))]


def _gather(pending: dict, records: dict, total: int) -> None:
    started = time.monotonic()
    while pending:
        [finished], _ = ray.wait(list(pending))
        index = pending.pop(finished)
        record = records[index] = ray.get(finished)  # a failed measurement raises here, the finished ones kept
        done = sum(value is not None for value in records.values())
        log.info("[%d/%d] %s %s = %.2f on %d items%s (%.0f s)", done, total, record["model"], record["benchmark"],
                 record["value"], record["items"], ", rehearsal" if record["rehearsal"] else "",
                 time.monotonic() - started)
