"""The budget planner: a cost estimate per configuration from its arithmetic, calibrated on the
durations already in the database, and a plan that fits a sweep into a time budget.

The cost of a trial is counted in multiply-adds (MACs): a training update costs three forward
passes of the batch (forward, and backward through inputs and weights), and every curve
measurement one forward pass over ``eval_train`` training and ``n_val`` validation images,
plus a forward pass over the test set at the end, plus a fixed overhead per update for the
Python work around the arithmetic. Seconds = MACs x (seconds per MAC), where seconds per MAC is
the median over the complete trials in the database of their measured ``train_seconds +
eval_seconds`` divided by their MACs, or :data:`DEFAULT_SECONDS_PER_MAC` without any.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from numsweep.engine.build import network_shape
from numsweep.engine.runplan import planned_updates
from numsweep.engine.schedules import CYCLIC
from numsweep.engine.spec import SpecError, TrialSpec
from numsweep.storage import Storage, TrialState
from numsweep.sweeps.events import TrialEvent
from numsweep.sweeps.spec import StageSpec, SweepSpec, grid_points

DEFAULT_SECONDS_PER_MAC = 8e-11
"""About 12 GMAC/s: a guess (a two-layer network on CIFAR-10 on one recent core), used until
the database has measured trials."""
UPDATE_OVERHEAD_MACS = 2e5
"""Python work per update, in MAC-equivalents (about 50 microseconds at 4 GMAC/s)."""


@dataclass(frozen=True)
class DataShape:
    """What the cost depends on besides the parameters: the images and how many there are."""

    image_shape: tuple[int, int, int]
    num_classes: int
    n_images: int
    n_test: int


def forward_macs(spec: TrialSpec, shape: DataShape) -> float:
    """Multiply-adds of one forward pass of one image (the engine's layer shapes,
    :func:`~numsweep.engine.build.network_shape`)."""
    return float(network_shape(spec, shape.image_shape, shape.num_classes).forward_macs)


def trial_macs(spec: TrialSpec, shape: DataShape, updates: int | None = None) -> float:
    """The MAC count of one trial (``updates``: how many it ran, default all planned)."""
    n_train = spec.n_train if spec.n_train is not None else shape.n_images - spec.n_val
    n_train = max(1, n_train)
    total = planned_updates(spec, n_train)
    done = total if updates is None else updates
    batch = (spec.batch_size if spec.batch_schedule == "constant"
             else (spec.b_min + spec.b_max) / 2)
    fwd = forward_macs(spec, shape)
    train = done * (3 * batch * fwd * spec.aug_copies + UPDATE_OVERHEAD_MACS)
    periods = spec.cycles if spec.schedule in CYCLIC else max(
        1, total // max(1, n_train // spec.batch_size))
    points = 1 + spec.curve_points * periods * done / max(1, total)
    evaluate = points * (min(spec.eval_train, n_train) + spec.n_val) * fwd
    return train + evaluate + shape.n_test * fwd


@dataclass(frozen=True)
class CostModel:
    """Seconds per MAC and how many measured trials it rests on (0: the default guess)."""

    seconds_per_mac: float
    calibrated_on: int
    shape: DataShape

    def seconds(self, spec: TrialSpec) -> float:
        return trial_macs(spec, self.shape) * self.seconds_per_mac


def calibrate(storage: Storage, shape: DataShape, limit: int = 500) -> CostModel:
    """Fit seconds per MAC on the most recent complete trials in the database."""
    ratios = []
    for trial in storage.get_trials(states=[TrialState.COMPLETE])[-limit:]:
        seconds = trial.metrics.get("train_seconds", math.nan) + trial.metrics.get(
            "eval_seconds", math.nan)
        updates = trial.metrics.get("updates", math.nan)
        if not (math.isfinite(seconds) and seconds > 0 and math.isfinite(updates)):
            continue
        try:
            spec = TrialSpec.from_mapping(trial.params)
        except (SpecError, TypeError):
            continue  # written by another version of numsweep
        ratios.append(seconds / trial_macs(spec, shape, int(updates)))
    if not ratios:
        return CostModel(DEFAULT_SECONDS_PER_MAC, 0, shape)
    return CostModel(float(np.median(ratios)), len(ratios), shape)


class StageCalibrated:
    """The planner's estimate of a running sweep's trials, calibrated again as each stage
    starts (a ``"stage"`` :class:`TrialEvent`) on the trials finished so far: pass
    :meth:`seconds` as the run's ``estimate`` and :meth:`on_event` before the display."""

    def __init__(self, storage: Storage, model: CostModel) -> None:
        self.storage = storage
        self.model = model

    def on_event(self, event: TrialEvent) -> None:
        if event.kind == "stage":
            self.model = calibrate(self.storage, self.model.shape)

    def seconds(self, spec: TrialSpec) -> float:
        return self.model.seconds(spec)


def _typical_configs(spec: SweepSpec, stage: StageSpec) -> list[dict[str, Any]]:
    fixed = spec.stage_fixed(stage)
    if stage.sampler == "grid":
        return grid_points(spec.space, fixed)
    if stage.configs:
        return [dict(c) for c in stage.configs]
    probe = {}
    for name, p in spec.space.items():
        if p.type == "categorical":
            probe[name] = p.choices
        else:
            probe[name] = (p.low, p.high)
    configs: list[dict[str, Any]] = [{}]
    for name, values in probe.items():
        p = spec.space[name]
        configs = [{**c, **p.assign(v)} for c in configs for v in values][:64]
    return configs


def stage_trials(spec: SweepSpec, stage: StageSpec) -> int:
    if stage.sampler == "grid":
        n = len(grid_points(spec.space, spec.stage_fixed(stage)))
        n = min(n, stage.n_trials) if stage.n_trials else n
    elif stage.sampler == "list":
        n = len(stage.configs)
    elif stage.sampler == "best":
        n = 1
    elif stage.pbt is not None:  # its population, trained together
        n = stage.pbt.population
    else:
        n = stage.n_trials or 0
    return n * stage.replicates


def stage_seconds_per_trial(spec: SweepSpec, stage: StageSpec, model: CostModel) -> float:
    costs = []
    for config in _typical_configs(spec, stage):
        try:
            costs.append(model.seconds(TrialSpec.from_mapping({**spec.stage_fixed(stage),
                                                               **config})))
        except (SpecError, ValueError):  # not a trial, or shapes that do not fit the images
            continue
    if not costs:
        costs = [model.seconds(TrialSpec.from_mapping(spec.stage_fixed(stage)))]
    return float(np.mean(costs))


@dataclass(frozen=True)
class Plan:
    spec: SweepSpec
    overrides: dict[str, str]
    estimate: float  # seconds of the planned sweep on ``jobs`` workers
    lines: tuple[str, ...]


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def estimate_sweep(spec: SweepSpec, model: CostModel, jobs: int) -> tuple[float, list[str]]:
    total = 0.0
    lines = []
    for stage in spec.stages:
        n = stage_trials(spec, stage)
        per = stage_seconds_per_trial(spec, stage, model)
        seconds = n * per / max(1, min(jobs, n)) if n else 0.0
        total += seconds
        at_once = min(jobs, max(n, 1))
        lines.append(f"{stage.name}: {_count(n, 'trial')} x {per:.3g} s / "
                     f"{_count(at_once, 'job')} = {seconds:.3g} s")
    return total, lines


def narrowing_grid_floor(spec: SweepSpec) -> tuple[int, str]:
    """The fewest grid points per range for which each stage narrowing from a grid stage
    still narrows: its ``top_k`` neighbouring points widened by ``widen`` steps on each side
    span top_k - 1 + 2 widen steps, fewer than the grid's points - 1 only above
    top_k + 2 widen points. (1, "") when no stage narrows from a grid."""
    least, why = 1, ""
    for stage in spec.stages:
        source = next((s for s in spec.stages
                       if stage.narrow is not None and s.name == stage.narrow.source), None)
        if source is None or source.sampler != "grid" or stage.narrow is None:
            continue
        points = math.floor(stage.narrow.top_k + 2 * stage.narrow.widen) + 1
        if points > least:
            least = points
            why = (f"{stage.name} narrows around the best {stage.narrow.top_k} of "
                   f"{source.name}, widened by {stage.narrow.widen:g}")
    return least, why


def plan(spec: SweepSpec, budget: float, model: CostModel, jobs: int) -> Plan:
    """Shrink the sweep until its estimate fits ``budget`` seconds: fewer trials in sampler
    stages and fewer grid points per range in grid stages, each scaled by the same factor
    (never below 1 trial or 2 grid points); a sweep that fits already is left as it is."""
    calib = (f"calibrated on {model.calibrated_on} trials in the database"
             if model.calibrated_on else "default speed guess (no trials in the database)")
    total, lines = estimate_sweep(spec, model, jobs)
    overrides: dict[str, str] = {}
    current = spec
    least, why_least = narrowing_grid_floor(spec)
    floored = False
    for _ in range(30):
        if total <= budget:
            break
        scale = max(0.05, min(0.95, budget / total))
        numeric = [p for p in current.space.values() if p.numeric and p.grid]
        for name, p in current.space.items():
            if p.numeric and p.grid and any(s.sampler == "grid" for s in current.stages):
                grid = max(2, math.floor(p.grid * scale ** (1 / max(1, len(numeric)))))
                if grid < least <= p.grid:
                    grid, floored = least, True
                if grid < p.grid:
                    overrides[f"space.{name}.grid"] = str(grid)
        for stage in current.stages:
            if stage.sampler not in ("grid", "list", "best") and stage.n_trials:
                n = max(1, math.floor(stage.n_trials * scale))
                overrides[f"{stage.name}.n_trials"] = str(n)
        shrunk = spec.with_overrides(overrides)
        if shrunk == current:
            break
        current = shrunk
        total, lines = estimate_sweep(current, model, jobs)
    fits = "fits" if total <= budget else "does not fit even at its smallest"
    head = (f"budget {budget:.0f} s: estimate {total:.0f} s on {jobs} jobs ({calib}); {fits}"
            + (f"; changed {', '.join(f'{k}={v}' for k, v in overrides.items())}"
               if overrides else "")
            + (f"; grids kept at {least} points or more ({why_least})" if floored else ""))
    return Plan(current, overrides, total, (head, *lines))


def data_shape(x_train: np.ndarray, n_classes: int, n_test: int) -> DataShape:
    return DataShape(tuple(x_train.shape[1:]), n_classes, len(x_train), n_test)  # type: ignore[arg-type]

