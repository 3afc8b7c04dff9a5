"""One feature of one model: lm-evaluation-harness on the benchmark's data (hub or a local copy); a code
benchmark's samples then run in the sandbox, one process each."""
import logging
import time
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

from rmsweep.config import ModelSpec
from rmsweep.features import sandbox
from rmsweep.features.benchmarks import Benchmark, FeatureError, code_program, task_config, value

log = logging.getLogger(__name__)
CODE_LIMITS = sandbox.Limits(wall_seconds=20.0)  # EvalPlus's tests of one problem run in seconds


@dataclass(frozen=True)
class FeatureModel:
    """A model whose features are measured: a checkpoint (hub id or folder) as it is, no reward head."""
    name: str
    source: str
    revision: str | None = None
    chat_template: bool = True
    trust_remote_code: bool = False

    @classmethod
    def of(cls, name: str, spec: ModelSpec) -> "FeatureModel":
        """The checkpoint a (full-scale) ModelSpec loads; a hub id's revision pinned to the commit it names now."""
        revision = spec.revision if Path(spec.source).is_dir() else hub_commit(spec.source, spec.revision)
        return cls(name, spec.source, revision, spec.chat_template, spec.trust_remote_code)


def hub_commit(repo_id: str, revision: str | None) -> str | None:
    """The commit a hub id's revision (None: its default branch) names, from the hub or, offline, the local cache:
    a value is measured on, and cached under, those exact weights, so a branch that moves is measured anew. Where
    neither knows the model, the revision as given (loading it then fails with the hub's own error)."""
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(repo_id, revision=revision, allow_patterns=["config.json"])).name
    except (OSError, ValueError):  # not cached offline, unknown, unreachable
        return revision


def harness_version() -> str:
    return version("lm_eval")


def ensure_punkt_tab() -> None:
    """lm-eval's IFEval checker splits sentences with NLTK's punkt_tab data, which NLTK downloads: here, as the
    task's setup, before the checker is imported (it would try the download itself, on import)."""
    import nltk

    try:
        nltk.data.find("tokenizers/punkt_tab/english/")
    except LookupError:
        if not nltk.download("punkt_tab", quiet=True):
            raise FeatureError("IFEval needs NLTK's punkt_tab data, which could not be downloaded: put it in a "
                               "folder named by NLTK_DATA (docs/candidates.md)") from None


def _language_model(model: FeatureModel, device: str):
    from lm_eval.models.huggingface import HFLM

    on_gpu = device.startswith("cuda")
    return HFLM(pretrained=model.source, revision=model.revision or "main", device=device,
                dtype="bfloat16" if on_gpu else "float32", batch_size="auto" if on_gpu else 8,
                trust_remote_code=model.trust_remote_code)


def measure(model: FeatureModel, bench: Benchmark, local: Path | None, limit: int | None,
            max_new_tokens: int | None, device: str) -> dict:
    """{value, items, seconds, settings}: the feature as the benchmark's settings define it."""
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    started = time.monotonic()
    if bench.name == "ifeval":
        ensure_punkt_tab()
    template = bench.chat_template and model.chat_template
    # The task is inline: an index of lm-eval's own tasks (its default, read from thousands of YAML files) is not
    # needed, and building it takes longer than measuring a small model.
    output = simple_evaluate(model=_language_model(model, device), tasks=[task_config(bench, local, max_new_tokens)],
                             task_manager=TaskManager(include_defaults=False, verbosity="ERROR"), limit=limit,
                             apply_chat_template=template, predict_only=bench.code, log_samples=bench.code,
                             verbosity="ERROR")
    task = f"rmsweep_{bench.name}"
    if bench.code:
        samples = output["samples"][task]
        outcomes = [sandbox.run_python(code_program(bench, sample["doc"], sample["resps"][0][0]), CODE_LIMITS)
                    for sample in samples]
        items, feature = len(outcomes), 100 * sum(o.status == "passed" for o in outcomes) / max(1, len(outcomes))
    else:
        items, feature = output["n-samples"][task]["effective"], value(bench, output["results"][task])
    settings = bench.settings + ("" if template or not bench.chat_template else "; no chat template: raw prompt")
    log.info("%s %s: %.2f on %d items", model.name, bench.name, feature, items)
    return {"value": feature, "items": items, "seconds": time.monotonic() - started, "settings": settings}
