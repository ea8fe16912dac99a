"""Run a sweep: one process owns the database and the Optuna studies (ask/tell); worker
processes only train and send results back."""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass
from typing import Any

import numpy as np
import optuna
from joblib.externals.loky import get_reusable_executor

from numsweep.engine import TrialSpec
from numsweep.storage import CurveRecord, Storage, TrialState
from numsweep.sweeps.spec import ParamSpace, StageSpec, SweepSpec
from numsweep.sweeps.worker import TrialOutcome, TrialTask, execute

optuna.logging.set_verbosity(optuna.logging.WARNING)


@dataclass(frozen=True)
class TrialEvent:
    """Sent to the progress display when a trial starts or ends."""

    kind: str  # "started" or "finished"
    stage: str
    number: int
    state: TrialState | None = None
    val_acc: float | None = None
    message: str = ""


@dataclass(frozen=True)
class StageSummary:
    name: str
    planned: int
    counts: dict[str, int]
    best_val_acc: float | None
    best_params: dict[str, Any] | None


EventHandler = Callable[[TrialEvent], None]


def trial_seed(sweep_seed: int, stage_index: int, number: int) -> int:
    """A trial's seed depends only on the sweep seed and its place, never on worker timing."""
    return int(np.random.SeedSequence([sweep_seed, stage_index, number]).generate_state(1)[0])


def _distribution(p: ParamSpace, grid: bool) -> optuna.distributions.BaseDistribution:
    if p.type == "categorical":
        return optuna.distributions.CategoricalDistribution([_to_optuna(c) for c in p.choices])
    low, high = p.low, p.high
    if grid:
        values = p.grid_values()
        low, high = min(values), max(values)
    if p.type == "int":
        return optuna.distributions.IntDistribution(int(low), int(high), log=p.log)
    return optuna.distributions.FloatDistribution(float(low), float(high), log=p.log)


def _to_optuna(value: Any) -> Any:
    """Optuna's categorical values are scalars: lists (such as ``hidden``) travel as text."""
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    return value


class AskTellGridSampler(optuna.samplers.GridSampler):
    """Optuna's GridSampler without its ``study.stop()`` call, which only works inside
    ``optimize()``; with ask/tell the runner itself stops after the planned trials."""

    def after_trial(self, study: optuna.Study, trial: optuna.trial.FrozenTrial,
                    state: optuna.trial.TrialState, values: Any) -> None:
        return None


def make_sampler(stage: StageSpec, space: dict[str, ParamSpace],
                 seed: int) -> optuna.samplers.BaseSampler:
    if stage.sampler == "grid":
        grid = {name: [_to_optuna(v) for v in p.grid_values()] for name, p in space.items()}
        return AskTellGridSampler(grid, seed=seed)
    if stage.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed)


def planned_trials(stage: StageSpec, space: dict[str, ParamSpace]) -> int:
    if stage.sampler == "grid":
        size = int(np.prod([len(p.grid_values()) for p in space.values()])) if space else 1
        return min(size, stage.n_trials) if stage.n_trials else size
    assert stage.n_trials is not None
    return stage.n_trials


class InlineExecutor:
    """Runs each task at once in this process: ``--jobs 1`` needs no worker processes."""

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future[Any]:
        future: Future[Any] = Future()
        future.set_result(fn(*args))
        return future


def make_executor(jobs: int) -> Any:
    if jobs == 1:
        return InlineExecutor()
    return get_reusable_executor(max_workers=jobs, timeout=60)


def run_sweep(spec: SweepSpec, storage: Storage, *, data_source: str | None, jobs: int = 1,
              on_event: EventHandler | None = None) -> list[StageSummary]:
    """Run every stage of ``spec`` in order and store every trial; returns a summary per stage."""
    if jobs < 1:
        raise ValueError(f"--jobs must be at least 1, got {jobs}")
    notify = on_event or (lambda _event: None)
    sweep = storage.get_or_create_sweep(spec.name, spec.to_dict(), spec.seed)
    blas_threads = max(1, (os.cpu_count() or 1) // jobs) if jobs > 1 else None
    pool = make_executor(jobs)
    summaries = []
    for index, stage in enumerate(spec.stages):
        space = dict(spec.space)
        grid = stage.sampler == "grid"
        distributions = {name: _distribution(p, grid) for name, p in space.items()}
        stage_rec = storage.get_or_create_stage(
            sweep.id, index, stage.name, stage.sampler,
            {name: _space_summary(p) for name, p in space.items()})
        study = optuna.create_study(
            direction="maximize",
            sampler=make_sampler(stage, space, trial_seed(spec.seed, index, 2**31 - 1)))
        planned = planned_trials(stage, space)
        fixed = {**spec.fixed, **stage.fixed}
        pending: dict[Future[TrialOutcome], tuple[optuna.Trial, int]] = {}
        counts: dict[str, int] = {}
        asked = 0
        while asked < planned or pending:
            while asked < planned and len(pending) < jobs:
                trial = study.ask(distributions)
                params = {k: _from_optuna(space[k], v) for k, v in trial.params.items()}
                seed = trial_seed(spec.seed, index, asked)
                trial_spec = TrialSpec.from_mapping({**fixed, **params, "seed": seed})
                number = storage.next_trial_number(sweep.id)
                trial_id = storage.start_trial(sweep.id, stage_rec.id, number,
                                               trial_spec.to_dict(), seed)
                notify(TrialEvent("started", stage.name, number))
                task = TrialTask(trial_id, trial_spec, data_source, blas_threads)
                pending[pool.submit(execute, task)] = (trial, number)
                asked += 1
            done, _ = wait(list(pending), return_when=FIRST_COMPLETED)
            for future in done:
                trial, number = pending.pop(future)
                outcome = future.result()
                state = _record(storage, outcome)
                counts[state.value] = counts.get(state.value, 0) + 1
                val = outcome.result.val_acc if outcome.result else None
                if state is TrialState.COMPLETE and val is not None:
                    study.tell(trial, val)
                else:
                    study.tell(trial, state=optuna.trial.TrialState.FAIL)
                message = outcome.error or (outcome.result.message if outcome.result else "")
                notify(TrialEvent("finished", stage.name, number, state, val, message))
        complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
        top = max(complete, key=lambda t: t.value) if complete else None
        summaries.append(StageSummary(
            stage.name, planned, counts, top.value if top else None,
            {k: _from_optuna(space[k], v) for k, v in top.params.items()} if top else None))
    return summaries


def _from_optuna(p: ParamSpace, value: Any) -> Any:
    if p.type == "categorical":
        for choice in p.choices:
            if _to_optuna(choice) == value:
                return list(choice) if isinstance(choice, tuple) else choice
    return value


def _space_summary(p: ParamSpace) -> dict[str, Any]:
    if p.type == "categorical":
        return {"type": p.type, "choices": [_to_optuna(c) for c in p.choices]}
    return {"type": p.type, "low": p.low, "high": p.high, "log": p.log, "grid": p.grid}


def _record(storage: Storage, outcome: TrialOutcome) -> TrialState:
    result = outcome.result
    if result is None:
        storage.finish_trial(outcome.trial_id, TrialState.FAILED, message=outcome.error,
                             traceback=outcome.traceback, worker=outcome.worker)
        return TrialState.FAILED
    state = (TrialState.FAILED if result.diverged
             else TrialState.PRUNED if result.stopped else TrialState.COMPLETE)
    curves = [CurveRecord(outcome.trial_id, c.step, c.split, c.loss, c.cost, c.acc, c.lr)
              for c in result.curves]
    storage.finish_trial(outcome.trial_id, state, metrics=result.metrics(), curves=curves,
                         message=result.message, worker=outcome.worker,
                         params=result.spec.to_dict())
    return state


def run_single(trial_spec: TrialSpec, storage: Storage, *, data_source: str | None,
               sweep_name: str = "train") -> tuple[int, TrialOutcome]:
    """Train one configuration in this process and store it as a trial of ``sweep_name``."""
    sweep = storage.get_or_create_sweep(sweep_name, {"name": sweep_name, "single": True}, 0)
    number = storage.next_trial_number(sweep.id)
    trial_id = storage.start_trial(sweep.id, None, number, trial_spec.to_dict(), trial_spec.seed)
    outcome = execute(TrialTask(trial_id, trial_spec, data_source))
    _record(storage, outcome)
    return trial_id, outcome
