"""The aggregator: a named Ray actor that keeps the sweep's ledger and turns it into results.

During the sweep it receives every finished trial (from `sweep.LedgerCallback`) and rewrites `trials.csv`
atomically. At the end it scores each base model's best checkpoint on the eval set (one Ray task per
model, so a cluster scores them in parallel), fits the selector and writes the run directory's outputs.
"""
import json
from pathlib import Path

import pandas as pd
import pyarrow.fs
import ray
import ray.train
import torch

from rmsweep import atomic, datasets, evaluate, modeling, registry, report, selector


def actor_name(run_name: str) -> str:
    return f"rmsweep-aggregator-{run_name}"


def prune_other_checkpoints(kept: str) -> int:
    """Delete the trial's checkpoints other than `kept` (local path or URI); returns how many.

    Ray Train keeps one, but a trial stopped by ASHA while uploading can leave a second behind.
    """
    filesystem, kept_path = pyarrow.fs.FileSystem.from_uri(kept)
    parent = kept_path.rstrip("/").rsplit("/", 1)[0]
    others = [info.path for info in filesystem.get_file_info(pyarrow.fs.FileSelector(parent))
              if info.type == pyarrow.fs.FileType.Directory and info.base_name.startswith("checkpoint_")
              and info.path.rstrip("/") != kept_path.rstrip("/")]
    for path in others:
        filesystem.delete_dir(path)
    return len(others)


@ray.remote
def score_checkpoint(checkpoint_path: str, eval_rows: list[dict], max_length: int) -> dict:
    """RewardBench-style scores of one checkpoint on the eval rows."""
    with ray.train.Checkpoint(checkpoint_path).as_directory() as directory:
        tokenizer, model, meta = modeling.load_checkpoint(Path(directory))
    device = "cuda" if torch.cuda.is_available() else "cpu"
    pairs = datasets.tokenize_pairs(tokenizer, eval_rows, max_length)
    weights = torch.tensor(meta["regression_weights"]) if meta["rm_type"] == "regression" else None
    chosen, rejected = modeling.score_pairs(model.to(device), pairs, tokenizer.pad_token_id, device, weights)
    return evaluate.rewardbench_scores([row["subset"] for row in eval_rows], chosen.numpy(), rejected.numpy())


@ray.remote(num_cpus=0)
class Aggregator:
    def __init__(self, run_dir: str, sweep: dict):
        self._run_dir = Path(run_dir)
        self._sweep = sweep
        self._trials: list[dict] = []

    def record_trial(self, row: dict) -> None:
        if row["checkpoint"]:
            prune_other_checkpoints(row["checkpoint"])
        self._trials.append({**row, "rm_type": self._sweep["rm_type"]})
        atomic.write_csv(self._run_dir / "trials.csv", pd.DataFrame(self._trials))

    def finalize(self) -> pd.DataFrame:
        """Score the best trial of each base model, fit the selector, write every output; returns the table."""
        trials = pd.DataFrame(self._trials)
        scored = trials.dropna(subset=["checkpoint"])
        best = scored.loc[scored.groupby("model")["best_val_accuracy"].idxmax()]
        eval_rows = datasets.builtin(self._sweep["data_seed"])["eval"]
        max_length = self._sweep["training"]["max_length"]
        scorer = score_checkpoint.options(num_gpus=min(1.0, self._sweep["gpus_per_worker"]))
        scores = ray.get([scorer.remote(path, eval_rows, max_length) for path in best["checkpoint"]])
        best_per_model = self._best_per_model(best, scores)
        atomic.write_csv(self._run_dir / "best_per_model.csv", best_per_model)

        fitted = self._fit_selector(best_per_model)
        atomic.write_text(self._run_dir / "selector.json", json.dumps(fitted, indent=2))
        report.write_report(self._run_dir, self._sweep, trials, best_per_model, fitted)
        return best_per_model

    def _best_per_model(self, best: pd.DataFrame, scores: list[dict]) -> pd.DataFrame:
        rows = []
        for (_, trial), score in zip(best.iterrows(), scores):
            info = registry.model(trial["model"])
            rows.append({
                "model": trial["model"], "hf_id": info["hf_id"], "family": info["family_key"],
                "params_b": info["params_b"], "size_group": info["size_group"], "stage": info["stage"],
                "rm_type": self._sweep["rm_type"], "scale": self._sweep["scale"], "best_lr": trial["lr"],
                "best_epochs": trial["epochs"], "val_accuracy": trial["best_val_accuracy"],
                **{column: score["sections"].get(section) for section, column in evaluate.SCORE_COLUMNS.items()
                   if section != "overall"},
                "rewardbench": score["overall"], "trial_id": trial["trial_id"], "checkpoint": trial["checkpoint"],
            })
        return pd.DataFrame(rows).sort_values("rewardbench", ascending=False).reset_index(drop=True)

    def _fit_selector(self, best_per_model: pd.DataFrame) -> dict:
        """Fit on this sweep's models when there are enough; else on the paper's published results.

        Uses the default features known for most training models (models lacking one are listed and left
        out); the rarer features are listed as left out.
        """
        table = registry.models()
        swept = table["name"].isin(best_per_model["model"])
        candidates = table[~swept]
        if swept.sum() >= selector.MIN_MODELS:
            sections = evaluate.SCORE_COLUMNS
            training = registry.with_results(best_per_model, sections.values())
            fitted_on = "this sweep's best checkpoints (eval-set score)"
        else:
            sections = registry.paper_score_columns(self._sweep["rm_type"])
            training = table.dropna(subset=[sections["overall"]])
            fitted_on = (f"the paper's published RewardBench results ({sections['overall']}): this sweep has "
                         f"fewer than {selector.MIN_MODELS} models")
        features, left_out = selector.widely_known(training)
        fitted = selector.fit_selector(training, sections["overall"], features, sections, candidates,
                                       seed=self._sweep["seed"])
        return {"fitted_on": fitted_on, "features_left_out": left_out, **fitted}
