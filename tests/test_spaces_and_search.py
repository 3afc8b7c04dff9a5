import shutil
from collections import Counter
from types import SimpleNamespace

import numpy as np
import optuna
import pytest
import yaml
from optuna.trial import TrialState
from ray.tune.search import Searcher

from rmsweep.sweep import progress, search, spaces, storage
from rmsweep.sweep.placement import Placement
from rmsweep.sweep.search import PerModelSearcher
from rmsweep.sweep.trial import RAY_TRAIN_ENV, error_summary, set_ray_train_env


def test_default_space_resolves_per_rm_type_and_scale():
    paper_bt = spaces.load("gemma2", "bt", "full")
    assert paper_bt.lr == (5e-7, 5e-6) and paper_bt.lr_is_range and paper_bt.training.global_batch_size == 64
    assert paper_bt.data["train"] == [{"source": "helpsteer2-preference", "split": "train"}]
    paper_regression = spaces.load("gemma2", "regression", "full")
    assert paper_regression.lr == (1e-7, 9e-6) and paper_regression.data["train"][0]["source"] == "helpsteer2"
    tiny = spaces.load("gemma2", "bt", "tiny")
    assert tiny.lr[1] == 0.1 and tiny.epochs == (1, 2) and tiny.training.warmup_steps == 20
    assert tiny.data == "builtin"


def test_the_published_recipes_ship_as_named_spaces():
    paper_bt = spaces.load("gemma2", "bt", "full", name="paper-bt")
    assert paper_bt.grid() == {"lr": [5e-7, 6e-7, 7e-7, 8e-7, 9e-7, 1e-6, 2e-6, 3e-6, 4e-6, 5e-6], "epochs": [1]}
    assert paper_bt.training.global_batch_size == 64 and paper_bt.training.warmup_steps == 20
    paper_regression = spaces.load("gemma2", "regression", "full", name="paper-regression")
    assert paper_regression.grid() == {"lr": [1e-7, 3e-7, 5e-7, 7e-7, 9e-7, 1e-6, 3e-6, 5e-6, 7e-6, 9e-6],
                                       "epochs": [2]}
    rewardbench2 = spaces.load("gemma2", "bt", "full", name="rewardbench2")
    assert rewardbench2.grid() == {"lr": [1e-6, 3e-6, 2e-5], "epochs": [1, 2, 3]}
    assert [entry["source"] for entry in rewardbench2.data["train"]] == ["tulu3-preference", "skywork-80k-v0.2"]
    with pytest.raises(spaces.SpaceError, match="no search space 'paper-dpo'"):
        spaces.load("gemma2", "bt", "full", name="paper-dpo")
    with pytest.raises(spaces.SpaceError, match="needs lr as a list"):
        spaces.load("gemma2", "bt", "full").grid()


def test_family_file_wins_over_default(tmp_path):
    shutil.copy(spaces.DEFAULT_DIR / "default.yaml", tmp_path / "default.yaml")
    raw = yaml.safe_load((tmp_path / "default.yaml").read_text())
    raw["epochs"] = [2]
    (tmp_path / "gemma2.yaml").write_text(yaml.safe_dump(raw))
    assert spaces.load("gemma2", "bt", "full", tmp_path).epochs == (2,)
    assert spaces.load("qwen2.5", "bt", "full", tmp_path).epochs == (1, 2, 3)


@pytest.mark.parametrize("change, message", [
    (lambda raw: raw.update(learning_rate=1), "unknown key 'learning_rate'"),
    (lambda raw: raw.update(lr={"low": 0, "high": 1e-5}), "0 < low < high"),
    (lambda raw: raw.update(lr={"low": 1e-5, "high": 1e-6}), "0 < low < high"),
    (lambda raw: raw.update(epochs=[]), "non-empty list"),
    (lambda raw: raw["training"].update(warmup_steps=-1), "positive integer"),
])
def test_malformed_spaces_are_refused(tmp_path, change, message):
    raw = yaml.safe_load((spaces.DEFAULT_DIR / "default.yaml").read_text())
    change(raw)
    (tmp_path / "default.yaml").write_text(yaml.safe_dump(raw))
    with pytest.raises(spaces.SpaceError, match=message):
        spaces.load("gemma2", "bt", "full", tmp_path)


def test_searcher_gives_each_model_its_own_samples_round_robin():
    space = spaces.load("gemma2", "bt", "tiny")
    searcher = PerModelSearcher(["a", "b"], space.distributions(), samples_per_model=3, seed=0)
    configs = [searcher.suggest(f"t{i}") for i in range(6)]
    assert [c["model"] for c in configs] == ["a", "b"] * 3
    assert all(space.lr[0] <= c["lr"] <= space.lr[1] and c["epochs"] in space.epochs for c in configs)
    assert searcher.suggest("t6") == Searcher.FINISHED
    for i, config in enumerate(configs):
        searcher.on_trial_complete(f"t{i}", {"val_accuracy": 0.5, "step": 64, "total_steps": 64, **config})


def _result(value: float, step: int, total_steps: int = 64, **changes) -> dict:
    return {"val_accuracy": value, "step": step, "total_steps": total_steps, "diverged": False, "out_of_memory": "",
            **changes}


def test_trials_asha_stopped_reach_their_study_as_pruned_with_their_evaluations():
    space = spaces.load("gemma2", "bt", "tiny")
    searcher = PerModelSearcher(["a"], space.distributions(), samples_per_model=4, seed=0)
    for trial_id in ("stopped", "finished", "diverged"):
        searcher.suggest(trial_id)
        searcher.on_trial_result(trial_id, _result(0.80, 16))
    searcher.on_trial_result("stopped", _result(0.84, 32))
    searcher.on_trial_complete("stopped", _result(0.84, 32))  # ASHA stopped it at step 32 of 64
    searcher.on_trial_result("finished", _result(0.90, 64))
    searcher.on_trial_complete("finished", _result(0.90, 64))
    searcher.on_trial_complete("diverged", _result(0.80, 17, diverged=True))
    stopped, finished, diverged = searcher.studies["a"].trials
    assert stopped.state == TrialState.PRUNED and stopped.intermediate_values == {16: 0.80, 32: 0.84}
    assert finished.state == TrialState.COMPLETE and finished.value == 0.90
    assert finished.intermediate_values == {16: 0.80, 64: 0.90}
    assert diverged.state == TrialState.FAIL


def test_telling_the_last_point_of_a_grid_ends_no_sweep_by_itself():
    """Optuna's BruteForceSampler stops its study once the grid is exhausted, which raises outside
    study.optimize; the searcher tells the trial all the same, once, however often Tune repeats a completion."""
    space = spaces.load("gemma2", "bt", "tiny", name="rewardbench2")
    searcher = PerModelSearcher(["a"], space.distributions(), space.grid_size(), seed=0, sampler="grid")
    for index in range(space.grid_size()):
        searcher.suggest(f"t{index}")
    for index in range(space.grid_size()):
        searcher.on_trial_complete(f"t{index}", _result(0.9, 64))
    searcher.on_trial_complete("t0", _result(0.9, 64))
    assert [trial.state for trial in searcher.studies["a"].trials] == [TrialState.COMPLETE] * space.grid_size()


def test_an_interrupted_runs_ledger_is_told_to_the_studies_as_it_ended():
    space = spaces.load("gemma2", "bt", "tiny", name="rewardbench2")
    lr, epochs = space.lr, space.epochs
    finished = [{"model": "a", "lr": lr[0], "epochs": epochs[0], "status": "completed", "best_val_accuracy": 0.9,
                 "steps": 64},
                {"model": "a", "lr": lr[1], "epochs": epochs[0], "status": "stopped_early", "best_val_accuracy": 0.7,
                 "steps": 32}]
    interrupted = [{"model": "a", "trial_id": "old1", "lr": lr[2], "epochs": epochs[1], "status": "interrupted",
                    "best_val_accuracy": 0.8, "steps": 48}]
    searcher = PerModelSearcher(["a"], space.distributions(), 4, seed=0, sampler="grid", finished=finished,
                                interrupted=interrupted)
    states = {(t.params["lr"], t.state): t.intermediate_values for t in searcher.studies["a"].trials}
    assert states == {(lr[2], TrialState.PRUNED): {48: 0.8}, (lr[0], TrialState.COMPLETE): {},
                      (lr[1], TrialState.PRUNED): {32: 0.7}}


def test_tpe_samples_at_random_for_half_a_models_trials_then_guides(monkeypatch):
    made, tpe = [], search.TPESampler
    monkeypatch.setattr(search, "TPESampler", lambda **kwargs: made.append(kwargs) or tpe(**kwargs))
    space = spaces.load("gemma2", "bt", "tiny")
    PerModelSearcher(["a", "b"], space.distributions(), samples_per_model=8, seed=0)
    assert made == [{"n_startup_trials": 4, "seed": 0}, {"n_startup_trials": 4, "seed": 1}]


def test_grid_sampling_walks_every_point_once_per_model():
    space = spaces.load("gemma2", "bt", "tiny", name="rewardbench2")
    searcher = PerModelSearcher(["a", "b"], space.distributions(), space.grid_size(), seed=0, sampler="grid")
    configs = [searcher.suggest(f"t{i}") for i in range(2 * space.grid_size())]
    for model in ("a", "b"):
        points = sorted((c["lr"], c["epochs"]) for c in configs if c["model"] == model)
        assert points == sorted((lr, epochs) for lr in space.lr for epochs in space.epochs)


def test_a_resumed_grid_searcher_continues_the_interrupted_trials_and_never_repeats_a_point():
    space = spaces.load("gemma2", "bt", "tiny", name="rewardbench2")  # 3 lr x 3 epochs
    lr, epochs = space.lr, space.epochs
    finished = [{"model": "a", "lr": lr[0], "epochs": epochs[0], "status": "completed", "best_val_accuracy": 0.9,
                 "steps": 64},
                {"model": "a", "lr": lr[1], "epochs": epochs[2], "status": "diverged", "best_val_accuracy": None,
                 "steps": 3}]
    interrupted = [{"model": "a", "trial_id": "old1", "lr": lr[2], "epochs": epochs[1], "status": "running",
                    "best_val_accuracy": 0.7, "steps": 32}]
    searcher = PerModelSearcher(["a", "b"], space.distributions(), space.grid_size(), seed=0, sampler="grid",
                                finished=finished, interrupted=interrupted)
    configs = [searcher.suggest(f"t{i}") for i in range(2 * space.grid_size() - 2)]
    assert configs[0] == {"model": "a", "lr": lr[2], "epochs": epochs[1], "resume_trial_id": "old1"}
    assert searcher.suggest("one-too-many") == PerModelSearcher.FINISHED
    points_of_a = [(c["lr"], c["epochs"]) for c in configs if c["model"] == "a"]
    everything = sorted((row["lr"], row["epochs"]) for row in finished) + sorted(points_of_a)
    assert sorted(everything) == sorted((x, e) for x in lr for e in epochs)  # each point once, over both runs


def test_a_failed_trials_ledger_line_is_its_last_exception():
    ray_train_error = (
        "ray.exceptions.RayTaskError(WorkerGroupError): ray::run_trial() (pid=1, ip=10.0.0.1)\n"
        "Training failed due to worker errors:\n[Rank 1 Error Snippet]:\nTraceback (most recent call last):\n"
        '  File "rmsweep/train.py", line 160, in fit_reward_model\n    raise RuntimeError(out_of_memory) from error\n'
        "RuntimeError: out of memory: gemma-2-9b-it, micro-batch 4 x up to 2048 tokens (global batch 128, "
        "4 worker(s)) on cuda:1\n"
    )
    assert error_summary(ray_train_error) == (
        "RuntimeError: out of memory: gemma-2-9b-it, micro-batch 4 x up to 2048 tokens (global batch 128, "
        "4 worker(s)) on cuda:1")
    assert error_summary("the worker's node died\nmore") == "the worker's node died"


def _run_allocation(allocation, accuracy_of, steps_of):
    """Drive an allocation as Tune would with one trial at a time: (model per trial, trial-steps spent)."""
    models, spent, suggested = [], 0, Counter()
    for number in range(1000):
        model = allocation.assign(f"t{number}", suggested)
        if model == Searcher.FINISHED:
            return models, spent
        assert model is not None  # one at a time: nothing is running, so nothing to wait for
        models.append(model)
        suggested[model] += 1  # as the searcher counts
        # As Tune does for a trial ASHA stops: its last result comes with the completion only.
        allocation.on_complete(f"t{number}", {"step": steps_of(model), "val_accuracy": accuracy_of(model)})
        spent += steps_of(model)
    raise AssertionError("never finished")


def test_budget_allocation_halves_the_models_and_stays_within_budget():
    priors = {"a": 0.9, "b": 0.8, "c": 0.7, "d": 0.6}
    accuracy = {"a": 0.70, "b": 0.60, "c": 0.95, "d": 0.50}  # c is better than the selector thought
    allocation = search.ModelHalving(priors, budget_steps=1600, max_trial_steps=100)
    models, spent = _run_allocation(allocation, accuracy.get, lambda model: 100)
    # Round 0: 2 trials for the predicted top half, 1 for the rest; round 1: c and a, 4 each; round 2: c alone.
    assert models[:6] == ["a", "b", "c", "d", "a", "b"]  # round-robin, the predicted best first
    assert sorted(models[6:14]) == ["a"] * 4 + ["c"] * 4
    assert set(models[14:]) == {"c"} and spent == 1600 and allocation.rounds == 3


def test_budget_allocation_counts_steps_of_early_stopped_trials_and_caps_a_grid():
    allocation = search.ModelHalving({"a": 1.0, "b": 0.0}, budget_steps=10_000, max_trial_steps=100,
                                    max_trials_per_model=3)
    models, spent = _run_allocation(allocation, {"a": 0.9, "b": 0.5}.get, lambda model: 25)  # ASHA stopped each
    assert models.count("a") == 3 and models.count("b") == 1 and spent == 4 * 25  # a's grid is done: no more


def test_budget_allocation_waits_for_running_trials_before_a_new_round():
    allocation = search.ModelHalving({"a": 1.0, "b": 0.0}, budget_steps=10_000, max_trial_steps=100, first_round=1)
    assert allocation.assign("t0", Counter()) == "a" and allocation.assign("t1", Counter(a=1)) == "b"
    assert allocation.assign("t2", Counter(a=1, b=1)) is None  # round 0 is handed out but not finished
    for trial, accuracy in (("t0", 0.9), ("t1", 0.5)):
        allocation.on_result(trial, {"step": 100, "val_accuracy": accuracy})
        allocation.on_complete(trial, None)
    assert allocation.assign("t2", Counter(a=1, b=1)) == "a"


def test_tpe_on_a_list_of_points_does_not_rerun_a_point_while_new_ones_remain():
    space = spaces.load("qwen2.5", "bt", "tiny", name="paper-bt")  # 10 lr x 1 epoch
    searcher = PerModelSearcher(["a"], space.distributions(), samples_per_model=space.grid_size(), seed=0)
    points = []
    for i in range(space.grid_size()):  # one at a time, each told before the next: TPE would exploit the best
        config = searcher.suggest(f"t{i}")
        points.append((config["lr"], config["epochs"]))
        searcher.on_trial_complete(f"t{i}", {"val_accuracy": 0.9 if config["lr"] == space.lr[0] else 0.5, "step": 1})
    assert len(set(points)) == space.grid_size()


def test_a_trial_resumed_before_its_first_evaluation_keeps_its_ledger_row(tmp_path):
    """Interrupted before it had evaluated (no best score yet, None in the resumed ledger): its first result
    after the resume is its best so far, with that result's checkpoint."""
    rows, evaluations = [], []
    aggregator = SimpleNamespace(trial_progress=SimpleNamespace(
        remote=lambda row, evaluation=None: rows.append(row) or evaluations.append(evaluation)))
    interrupted = {"trial_id": "old1", "wall_seconds": 12.0, "best_val_accuracy": None, "checkpoint": None}
    callback = progress.LedgerCallback(aggregator, total_trials=1, placements={"a": Placement(1, 1.0, 0.0, "ddp")},
                                    checkpoints=storage.Location(tmp_path), interrupted=[interrupted])
    trial = SimpleNamespace(trial_id="t1", config={"model": "a", "lr": 1e-3, "epochs": 1, "resume_trial_id": "old1"})
    callback.on_trial_start(0, [], trial)
    result = {"step": 16, "total_steps": 64, "train_truncated": 0, "train_dropped": 0, "diverged": False,
              "out_of_memory": "", "nodes": "n1", "tokens_per_second": 100.0, "gradient_checkpointing": False,
              "layout": "shared_prompt", "two_sequence_pairs": 0, "startup_seconds": 1.0, "eval_seconds": 0.5,
              "loop_seconds": 5.0, search.METRIC: 0.8,
              "tokens_trained": 1000, progress.CHECKPOINT_PATH_KEY: str(tmp_path / "checkpoint_000000")}
    callback.on_trial_result(0, [], trial, result)
    assert rows[-1]["trial_id"] == "old1" and rows[-1]["best_val_accuracy"] == 0.8
    assert rows[-1]["checkpoint"] == storage.Location(tmp_path).address_of(str(tmp_path / "checkpoint_000000"))
    assert rows[-1]["wall_seconds"] >= 12.0
    assert evaluations[-1]["trial_id"] == "old1" and evaluations[-1]["step"] == 16  # its curve goes on too


def test_trials_hand_ray_train_the_sweep_settings_unless_the_environment_sets_them(monkeypatch):
    from ray.train.v2._internal.constants import get_env_vars_to_propagate  # what a TorchTrainer passes on

    # Set, then deleted, through monkeypatch: its undo restores the variable's absence after the test, so the
    # value set_ray_train_env() gives it does not leak into later tests.
    monkeypatch.setenv("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "unset below")
    monkeypatch.delenv("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S")
    monkeypatch.setenv("RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S", "90")
    set_ray_train_env()
    passed_on = get_env_vars_to_propagate()
    assert passed_on["RAY_TRAIN_HEALTH_CHECK_INTERVAL_S"] == RAY_TRAIN_ENV["RAY_TRAIN_HEALTH_CHECK_INTERVAL_S"]
    assert passed_on["RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S"] == "90"


@pytest.mark.parametrize("sampler", ["tpe", "gp"])
def test_model_based_samplers_search_a_list_of_learning_rates_on_its_log_scale(sampler):
    """The study sees lr as a number (so neighbouring rates can inform each other); every trial gets a listed
    value, the one nearest the sample."""
    space = spaces.load(None, "bt", "full", name="paper-bt")
    searcher = PerModelSearcher(["a"], space.distributions(ordered=True), 6, seed=0, sampler=sampler,
                                lr_grid=space.lr)
    for index in range(6):
        config = searcher.suggest(f"t{index}")
        assert config["lr"] in space.lr
        asked = searcher._asked[f"t{index}"]
        nearest = min(space.lr, key=lambda lr: abs(np.log10(lr) - np.log10(asked.params["lr"])))
        assert config["lr"] == nearest
        searcher.on_trial_complete(f"t{index}", _result(0.9 - abs(np.log10(config["lr"]) + 6) / 10, 64))
    trials = [trial for trial in searcher.studies["a"].trials if trial.state == TrialState.COMPLETE]
    assert isinstance(trials[0].distributions["lr"], optuna.distributions.FloatDistribution)
    assert len({searcher._on_grid(trial.params["lr"]) for trial in trials}) == 6  # no point run twice


def test_random_search_draws_listed_points_without_repeats():
    space = spaces.load(None, "bt", "full", name="paper-bt")
    searcher = PerModelSearcher(["a"], space.distributions(), 10, seed=0, sampler="random")
    points = [searcher.suggest(f"t{index}")["lr"] for index in range(10)]
    assert sorted(points) == sorted(space.lr)


def test_the_learning_rate_prior_follows_the_finished_models_and_refits_as_they_finish():
    from rmsweep.sweep.transfer import LearningRatePrior

    prior = LearningRatePrior({"s": 1.0, "m": 4.0, "l": 16.0, "next": 64.0}, (1e-7, 1e-5))
    assert prior.predict("next") == pytest.approx(1e-6)  # nothing finished: the middle of the published range
    prior.model_finished("s", 4e-6)
    assert prior.predict("next") == pytest.approx(4e-6)  # one model: its rate
    prior.model_finished("m", 2e-6)
    prior.model_finished("l", 1e-6)  # lr halves as size quadruples: lr ~ params^-0.5
    assert prior.predict("next") == pytest.approx(5e-7)


def test_the_learning_rate_prior_shifts_a_model_towards_its_familys_finished_models():
    from rmsweep.sweep.transfer import LearningRatePrior

    params = {"a1": 1.0, "b1": 1.0, "a2": 4.0, "b2": 4.0, "a3": 16.0, "b3": 16.0}
    prior = LearningRatePrior(params, (1e-7, 1e-5), {name: name[0] for name in params})
    for size in "12":  # family a's optima sit a factor 2 above family b's, at every size
        prior.model_finished(f"a{size}", 2e-6 * 2 ** -(int(size) - 1))
        prior.model_finished(f"b{size}", 1e-6 * 2 ** -(int(size) - 1))
    assert prior.predict("a3") == pytest.approx(2 * prior.predict("b3"), rel=1e-6)
    assert prior.predict("a3") == pytest.approx(5e-7, rel=1e-6)  # on family a's own line


def test_transfer_sweeps_models_in_turn_and_starts_each_at_the_predicted_rate():
    from rmsweep.sweep.transfer import InOrderAllocation, LearningRatePrior

    space = spaces.load(None, "bt", "full", name="paper-bt")
    params = {"big": 8.0, "small": 2.0}
    searcher = PerModelSearcher(list(params), space.distributions(ordered=True), 3, seed=0, sampler="tpe",
                                allocation=InOrderAllocation(params, 3), lr_grid=space.lr,
                                lr_prior=LearningRatePrior(params, (min(space.lr), max(space.lr))))
    first = [searcher.suggest(f"s{index}") for index in range(3)]
    assert [config["model"] for config in first] == ["small"] * 3
    assert first[0]["lr"] == 2e-6  # nothing finished yet: the grid's middle on the log scale (1.6e-6), on the grid

    def score(lr):  # the small model does best near 3e-6
        return 0.9 - abs(np.log10(lr / 3e-6)) / 10

    for index, config in enumerate(first):
        searcher.on_trial_complete(f"s{index}", _result(score(config["lr"]), 64))
    assert len({config["lr"] for config in first}) == 3
    best = max((config["lr"] for config in first), key=score)
    assert searcher.suggest("b0") == {"model": "big", "lr": best, "epochs": 1}


def test_a_resumed_trial_that_fails_is_completed_without_a_result():
    """A trial resumed from an interrupted run whose worker then fails reaches on_trial_complete with an error and
    no result: the searcher ends it (it used to fail there, on the resumed config only a result defines)."""
    space = spaces.load("gemma2", "bt", "tiny", name="rewardbench2")
    interrupted = [{"model": "a", "trial_id": "old1", "lr": space.lr[0], "epochs": space.epochs[0],
                    "status": "running", "best_val_accuracy": 0.7, "steps": 32}]
    searcher = PerModelSearcher(["a"], space.distributions(), 2, seed=0, sampler="grid", interrupted=interrupted)
    assert searcher.suggest("t0")["resume_trial_id"] == "old1"
    searcher.on_trial_complete("t0", result=None, error=True)
    assert searcher.suggest("t1")["model"] == "a"  # the sweep goes on with the model's other trial
