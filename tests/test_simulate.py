"""The simulator's surfaces (`rmsweep/simulate/surface.py`) hold the published facts they are built from."""
import itertools

import numpy as np
import pandas as pd
import pytest

from rmsweep.data import registry
from rmsweep.simulate import surface
from rmsweep.sweep import spaces


def _paper_grid(rm_type: str) -> list:
    """(lr, epochs, fraction of the steps): every point of the paper's grid, trained to its end."""
    space = spaces.load(None, rm_type, "full", name=f"paper-{'bt' if rm_type == 'bt' else 'regression'}")
    return [(lr, epochs, 1.0) for lr, epochs in itertools.product(space.lr, space.epochs)]


@pytest.mark.parametrize("rm_type", ["bt", "regression"])
def test_each_surface_peaks_at_the_models_published_score_on_the_papers_grid(rm_type):
    grid = _paper_grid(rm_type)
    lrs, epochs = np.array([lr for lr, _, _ in grid]), np.array([e for _, e, _ in grid])
    column = registry.paper_score_columns(rm_type)["overall"]
    published = registry.models().dropna(subset=[column]).set_index("name")[column]
    simulated = surface.surfaces(rm_type, grid, seed=3)
    assert set(simulated) == set(published.index) and len(simulated) >= 40
    for name, model_surface in simulated.items():
        assert model_surface.true_score(lrs, epochs).max() == pytest.approx(published[name], abs=1e-9)


def test_the_fitted_shape_orders_rewardbench2s_learning_rates_as_published():
    shape = surface.fit_rewardbench2()
    assert shape.rms_residual < 1.0 and shape.slope_high > shape.slope_low > 0
    tulu = surface.Surface("Tulu 8B SFT", 8.0, shape.optimum, shape.peak, shape)
    rows = surface._read_rewardbench2().query("base == 'Tulu 8B SFT' and train_data == 'Tulu'")
    for epochs, group in rows.groupby("epochs"):
        published = group.sort_values("avg")["lr"].tolist()
        fitted = sorted(group["lr"], key=lambda lr: float(tulu.true_score(lr, epochs)))
        assert fitted == published, f"{epochs} epoch(s)"


def test_curves_rise_and_over_trained_ones_fall_so_curves_cross():
    model = surface.surfaces("bt", _paper_grid("bt"))["gemma-2-9b-it"]
    fractions = np.linspace(0.05, 1, 20)
    high, low = model.true_score(5e-6, 1, fractions), model.true_score(5e-7, 1, fractions)
    assert np.all(np.diff(low) >= 0)  # under-trained all along: it only rises
    assert high.argmax() < len(fractions) - 1 and high[-1] < high.max()  # past its optimum: it falls
    assert high[0] > low[0] and high[-1] < low[-1]  # ahead early, behind at the end: the curves cross


def test_an_observation_is_the_true_score_with_binomial_noise_of_the_validation_split():
    model = surface.surfaces("bt", _paper_grid("bt"))["gemma-2-9b-it"]
    settings, rng = surface.SimulationSettings(), np.random.default_rng(0)
    draws = np.array([model.observe(2e-6, 1, 1.0, 0.0, settings, rng) for _ in range(4000)])
    truth = float(model.true_score(2e-6, 1)) / 100
    assert draws.mean() == pytest.approx(truth, abs=0.002)
    assert draws.std() == pytest.approx(np.sqrt(truth * (1 - truth) / 352), rel=0.1)
    doubled = surface.SimulationSettings(noise_scale=2.0)
    wider = np.array([model.observe(2e-6, 1, 1.0, 0.0, doubled, rng) for _ in range(4000)])
    assert wider.std() == pytest.approx(2 * draws.std(), rel=0.15)


PAPER_BT = spaces.load(None, "bt", "full", name="paper-bt")
TWO_MODELS = ["gemma-2-2b-it", "gemma-2-9b-it"]


def test_a_simulated_grid_without_noise_recommends_the_true_best(tmp_path):
    from rmsweep.simulate import sweep as simulated

    problem = simulated.simulated_problem("bt", PAPER_BT, surface.SimulationSettings(noise_scale=0.0), 1, TWO_MODELS)
    figures = simulated.run(problem, simulated.STRATEGIES["grid"], str(tmp_path), seed=1)
    # The whole grid, every trial to its last step (105 steps: evaluations at 20, 40, ..., 100 and 105).
    assert figures["trials"] == 20 and figures["trial_steps"] == 20 * (simulated.TRAIN_PAIRS // 64)
    assert figures["regret_all"] == 0 and figures["picked_best_<3B"] and figures["picked_best_>=6B"]


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["tpe+asha", "budget"])
def test_a_simulated_sweep_through_tune_ends_as_the_in_process_engine_does(local_ray, tmp_path, strategy):
    """One trial at a time, Ray Tune's controller (with the ledger and aggregator) and the in-process engine call
    the searcher and scheduler in the same order: the same trials, spending and recommendation."""
    from rmsweep.simulate import sweep as simulated

    problem = simulated.simulated_problem("bt", PAPER_BT, seed=0, models=TWO_MODELS)
    runs = [simulated.run(problem, simulated.STRATEGIES[strategy], str(tmp_path / engine), seed=0, concurrency=1,
                          engine=engine) for engine in simulated.ENGINES]
    assert runs[0] == runs[1]
    assert runs[0]["trials"] == 8 and 0 < runs[0]["trial_steps"] < 8 * (simulated.TRAIN_PAIRS // 64)
    assert (tmp_path / "tune" / "curves.parquet").exists()


@pytest.mark.slow
def test_a_recorded_sweep_replays_to_the_same_best_trial(local_ray, tmp_path):
    """A grid recorded through Tune (ledger, curves.parquet, sweep.json as a real sweep writes them), replayed:
    the grid finds the recorded best checkpoint; other strategies run on the recording."""
    from dataclasses import replace

    from rmsweep.simulate import replay
    from rmsweep.simulate import sweep as simulated

    space = replace(PAPER_BT, lr=(5e-7, 1e-6, 5e-6))
    recorded = simulated.run(simulated.simulated_problem("bt", space, seed=2, models=TWO_MODELS),
                             simulated.STRATEGIES["grid"], str(tmp_path / "recorded"), seed=2, engine="tune")
    curves = pd.read_parquet(tmp_path / "recorded" / "curves.parquet")
    top = curves.sort_values("val_accuracy", ascending=False, kind="stable").iloc[0]
    assert recorded["recommended"] == (top["model"], top["lr"], top["epochs"], top["step"])
    recording = replay.Replay(str(tmp_path / "recorded"))
    replayed = simulated.run(recording, simulated.STRATEGIES["grid"], str(tmp_path / "replayed"), seed=5)
    assert replayed["recommended"] == recorded["recommended"] and replayed["regret_all"] == 0
    assert replayed["trial_steps"] == recorded["trial_steps"]
    other = simulated.run(recording, simulated.STRATEGIES["tpe+asha"], str(tmp_path / "tpe"), seed=0)
    assert other["trials"] == 2 * 4 and other["regret_all"] >= 0  # 4 trials a model (one repeats a point)


def test_a_replay_refuses_a_recording_without_the_whole_grid(tmp_path):
    from rmsweep.simulate import replay

    with pytest.raises(replay.ReplayError, match="not the run directory of a sweep"):
        replay.Replay(str(tmp_path))


def test_regret_is_measured_at_the_recommended_checkpoint():
    from rmsweep.simulate import sweep as simulated

    problem = simulated.simulated_problem("bt", PAPER_BT, models=TWO_MODELS)
    trials = pd.DataFrame({"trial_id": ["a", "b"], "model": ["gemma-2-9b-it", "gemma-2-2b-it"],
                           "total_steps": [100, 100], "steps": [100, 40]})
    # Trial a's noisy best evaluation is its early one (step 20): the recommendation is that checkpoint.
    curves = pd.DataFrame({"trial_id": ["a", "a", "b"], "model": ["gemma-2-9b-it", "gemma-2-9b-it", "gemma-2-2b-it"],
                           "lr": [5e-7, 5e-7, 2e-6], "epochs": [1, 1, 1], "step": [20, 100, 40],
                           "val_accuracy": [0.9, 0.7, 0.6]})
    figures = simulated.measure(trials, curves, problem)
    truth = max(problem.best_true(name) for name in TWO_MODELS)
    recommended = float(problem.model_surfaces["gemma-2-9b-it"].true_score(5e-7, 1, 0.2))
    assert figures["regret_all"] == pytest.approx(truth - recommended)
    assert figures["trial_steps"] == 140 and figures["trials"] == 2
    assert figures["recommended"] == ("gemma-2-9b-it", 5e-7, 1, 20)


def test_the_budget_strategy_gets_its_share_of_the_whole_grids_trial_steps(tmp_path):
    from rmsweep.simulate import sweep as simulated

    models = ["gemma-2-2b-it", "gemma-2-9b-it", "Qwen2.5-1.5B-Instruct"]
    problem = simulated.simulated_problem("bt", PAPER_BT, models=models)
    config = simulated.sweep_config(problem, simulated.STRATEGIES["budget"], str(tmp_path), 0, 8)
    assert config.budget_steps == round(0.3 * 3 * 10 * (simulated.TRAIN_PAIRS // 64))
    assert set(config.priors) == set(models)


def test_one_evaluation_then_top_k_runs_every_point_once_and_the_best_k_to_the_end():
    from rmsweep.simulate import sweep as simulated

    problem = simulated.simulated_problem("bt", PAPER_BT, seed=4, models=TWO_MODELS)
    trials, curves = simulated.first_evaluation_then_top_k(problem, 3)
    full = simulated.TRAIN_PAIRS // 64
    assert len(trials) == 20 and (trials["steps"] == full).sum() == 6 and (trials["steps"] == 20).sum() == 14
    first = curves[curves["step"] == 20]
    for model, rows in first.groupby("model"):
        continued = set(trials.loc[trials["steps"] == full, "trial_id"]) & set(rows["trial_id"])
        assert continued == set(rows.nlargest(3, "val_accuracy", keep="first")["trial_id"])


def test_the_command_writes_its_tables_and_plot_and_a_result_line(tmp_path, capsys):
    from rmsweep.cli import simulate

    code = simulate.main(["--seeds", "2", "--models", *TWO_MODELS, "Qwen2.5-1.5B-Instruct",
                          "--strategies", "grid", "tpe+asha+transfer", "--sensitivity", "--out", str(tmp_path)])
    assert code == 0
    results = pd.read_csv(tmp_path / "results.csv")
    assert len(results) == 5 * 2 * 2  # settings x strategies x seeds
    assert set(results["setting"]) == {"default", "noise x2", "lr* spread x2", "size exponent 0", "size exponent x2"}
    summary = pd.read_csv(tmp_path / "summary.csv")
    assert (summary.loc[summary["strategy"] == "grid", "share_of_grid_steps"] == 1).all()
    assert (tmp_path / "regret_vs_cost.png").stat().st_size > 0
    result = capsys.readouterr().out.strip().splitlines()[-1]
    fields = dict(item.split("=") for item in result.removeprefix("RESULT ").split())
    assert fields["best"] in ("grid", "tpe_asha_transfer") and fields["target_met"] in ("0", "1")
    assert float(fields["grid_regret_mean"]) == pytest.approx(results.query("setting == 'default' and "
                                                                            "strategy == 'grid'")["regret_all"].mean(),
                                                              abs=1e-3)


@pytest.mark.parametrize("argv, message", [
    (["--models", "no-such-model"], "no published bt score for no-such-model"),
    (["--replay", "somewhere", "--sensitivity"], "--replay takes its models and noise from the recording"),
    (["--seeds", "0"], "--seeds and --concurrency must be at least 1"),
    (["--replay", "not-a-run"], "not-a-run: no sweep.json and curves.parquet"),
])
def test_the_command_refuses_bad_input_in_one_line(tmp_path, capsys, argv, message):
    from rmsweep.cli import simulate

    try:
        code = simulate.main([*argv, "--out", str(tmp_path / "out")])
    except SystemExit as exit:  # argparse's errors
        code = exit.code
    error = capsys.readouterr().err.strip()
    assert code == 2 and message in error and len(error.splitlines()) == 1 and not (tmp_path / "out").exists()
