"""The shipped searcher and scheduler driven in-process, without Ray Tune's controller: for the thousands of
simulated sweeps a paper-scale comparison takes (through Tune a simulated trial costs its controller's round trips;
docs/simulator.md has the measured cost).

It calls them as Tune's controller does (`ray/tune/execution/tune_controller.py`): `suggest` while fewer than
`concurrency` trials run; for each result the scheduler first, then the searcher's `on_trial_result` unless the
scheduler stopped the trial; at a trial's end `on_trial_complete` of both with its last result. Simulated time is
optimizer steps: every running trial advances one step per unit, so the trial whose next evaluation comes first
reports next. `tests/test_simulate.py` checks that one trial at a time gives Tune's own outcome.
"""
import heapq
import itertools
from dataclasses import dataclass, field

from ray.tune.schedulers import TrialScheduler
from ray.tune.search import Searcher


@dataclass
class SimulatedTrial:
    """What Tune's ASHA reads of a trial, and the reports it will make."""
    trial_id: str
    config: dict
    reports: list[dict]
    made: list[dict] = field(default_factory=list)


def run(searcher: Searcher, scheduler: TrialScheduler, reports_of, concurrency: int) -> list[SimulatedTrial]:
    """Every trial the searcher suggests, run until it ends or the scheduler stops it; `reports_of(config)` gives
    a trial's reports in order (each with its "step")."""
    events, running, ended = [], {}, []
    numbers = itertools.count()
    clock, exhausted = 0, False
    while True:
        while not exhausted and len(running) < concurrency:
            trial_id = f"simulated_{next(numbers):05d}"
            config = searcher.suggest(trial_id)
            if config is None or config == Searcher.FINISHED:
                exhausted = config == Searcher.FINISHED
                break
            trial = SimulatedTrial(trial_id, config, reports_of(config))
            scheduler.on_trial_add(None, trial)
            running[trial_id] = (trial, clock)
            heapq.heappush(events, (clock + trial.reports[0]["step"], trial_id))
        if not events:
            return ended
        clock, trial_id = heapq.heappop(events)
        trial, started = running[trial_id]
        result = {**trial.reports[len(trial.made)], "training_iteration": len(trial.made) + 1}
        trial.made.append(result)
        stopped = scheduler.on_trial_result(None, trial, result) == TrialScheduler.STOP
        if not stopped:
            searcher.on_trial_result(trial_id, result)
        if stopped or len(trial.made) == len(trial.reports):
            scheduler.on_trial_complete(None, trial, result)
            searcher.on_trial_complete(trial_id, result)
            del running[trial_id]
            ended.append(trial)
        else:
            heapq.heappush(events, (started + trial.reports[len(trial.made)]["step"], trial_id))
