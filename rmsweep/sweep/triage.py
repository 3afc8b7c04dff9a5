"""Ranking candidates before training (--triage K): measure the selector's features they lack, predict each one's
RewardBench score with the selector fitted on the paper's published results, and sweep only the top K plus the
pinned ones. The predictions also seed a budget-aware sweep (--budget)."""
import logging
import math
from dataclasses import dataclass, replace
from pathlib import Path

import pandas as pd

from rmsweep.analysis import feature_values, selector
from rmsweep.data import candidates, registry
from rmsweep.features import benchmarks, cache
from rmsweep.sweep import storage

log = logging.getLogger(__name__)


class TriageError(ValueError):
    """A pin that is not a candidate, or too few candidates ranked; the message names it."""


@dataclass(frozen=True)
class Ranking:
    """The selector's summary (`selector.fit_selector`: ranking with intervals, unranked) and which values it read."""
    fitted: dict
    values: dict


def training_table(rm_type: str, exclude: list[str]) -> tuple[pd.DataFrame, str]:
    """The paper's models with a published score for the RM type (the candidates themselves left out, so that
    each is predicted by a fit that never saw its score), and that score's column."""
    target = registry.nearest_published_columns(rm_type)["overall"]
    table = registry.models().dropna(subset=[target])
    return table[~table["name"].isin(exclude)].assign(source=lambda t: t["hf_id"]), target


def candidate_table(facts: dict) -> pd.DataFrame:
    """name, source, params_b (read or published) and the registry's published features (NaN outside it)."""
    rows = []
    for name, fact in facts.items():
        published = registry.find(fact.entry.source) if fact.published else None
        rows.append({"name": name, "source": fact.entry.source, "params_b": fact.params_b,
                     **{feature: math.nan if published is None else published[feature]
                        for feature in benchmarks.BENCHMARKS}})
    return pd.DataFrame(rows)


def features_used(rm_type: str, names: list[str]) -> list[str]:
    """The features the triage's selector uses: those published for most of its training models."""
    table, _ = training_table(rm_type, names)
    return selector.widely_known(table)[0]


def rank(facts: dict, rm_type: str, root: storage.Location, choice: str = "auto", seed: int = 0) -> Ranking:
    training, target = training_table(rm_type, list(facts))
    features = selector.widely_known(training)[0]
    training, candidates, values = feature_values.choose(training, candidate_table(facts), features,
                                                         cache.measured_features(root), choice)
    return Ranking(selector.fit_selector(training, target, features, candidates=candidates, seed=seed), values)


def lacking_measurements(facts: dict, rm_type: str, root: storage.Location) -> list[tuple[str, str]]:
    """(candidate, benchmark) pairs the selector needs that are neither published nor measured yet."""
    features = [feature for feature in features_used(rm_type, list(facts)) if feature in benchmarks.BENCHMARKS]
    published = candidate_table(facts)
    measured = feature_values.with_measured(published, cache.measured_features(root), features)
    lacking = published[features].isna() & measured[features].isna()
    return [(name, feature) for feature in features for name in published.loc[lacking[feature], "name"]]


def measure_lacking(facts: dict, rm_type: str, root: storage.Location, data_dir: Path | None,
                    trust_remote_code: bool) -> None:
    """Measure what `lacking_measurements` names: full benchmarks (no rehearsal), one Ray task each."""
    from rmsweep.features import jobs
    from rmsweep.features.measure import FeatureModel

    todo = lacking_measurements(facts, rm_type, root)
    if not todo:
        return
    log.info("triage: measuring %s", ", ".join(f"{name} {feature}" for name, feature in todo))
    # One checkpoint per candidate, however many features it lacks (a hub id's commit is looked up once).
    models = {name: FeatureModel.of(name, candidates.model_spec(facts[name], "full",
                                                                trust_remote_code=trust_remote_code))
              for name in dict.fromkeys(name for name, _ in todo)}
    work = []
    for name, feature in todo:
        bench = benchmarks.benchmark(feature)
        work.append(jobs.Job(models[name], bench, benchmarks.local_copy(bench, data_dir), None, None))
    jobs.run(work, root, None)


def choose(ranking: Ranking, keep: int, pins: list[str], names: list[str]) -> list[str]:
    """The top `keep` of the ranking, then the pinned ones, in that order."""
    unknown = [pin for pin in pins if pin not in names]
    if unknown:
        raise TriageError(f"--pin {unknown[0]!r} is not one of the candidates ({', '.join(names)})")
    if ranking.fitted["status"] != "fitted":
        raise TriageError(f"triage cannot rank: {ranking.fitted['reason']}")
    top = [row["name"] for row in ranking.fitted["ranking"][:keep]]
    return top + [pin for pin in pins if pin not in top]


def record(ranking: Ranking, chosen: list[str], pins: list[str]) -> dict:
    """What sweep.json and the report keep of the triage."""
    fitted = ranking.fitted
    return {"target": fitted["target"], "features": fitted["features"], "values": ranking.values,
            "interval": fitted["interval"], "ranking": fitted["ranking"], "unranked": fitted["unranked"],
            "swept": chosen, "pinned": pins}


def narrowed(request, chosen: list[str]):
    """The request with only the chosen models."""
    keep = {name: request.models[name] for name in chosen}
    return replace(request, models=keep, facts={name: request.facts[name] for name in chosen},
                   params_b={name: request.params_b[name] for name in chosen},
                   model_shapes={name: shape for name, shape in request.model_shapes.items() if name in keep})
