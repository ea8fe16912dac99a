"""Range tests: train briefly while the learning rate (or the batch size) sweeps over orders
of magnitude, and record the training loss against it (Smith 2017, section 3.3).

``lr`` mode: the learning rate rises exponentially from ``eta_min`` to ``eta_max`` over
``n_updates`` updates at the constant ``batch_size`` (the spec run has
``schedule="exponential"``). ``batch`` mode: the batch size rises exponentially from
``b_min`` to ``b_max`` at the constant learning rate ``eta_max``
(``batch_schedule="exponential"``). Every other parameter (network, update rule, L2,
augmentation, seed) is the spec's own, and so are the two random streams of every run: the
batches and augmentation draws come from the data stream (``data_seed``), the initial
weights and dropout masks from the trial's own (``seed``). The test trains on the engine's
one loop (:func:`group.train_group`) as a group of one that measures no curves. The loss at
each update is the mini-batch loss before
that update; ``smoothed`` is its bias-corrected exponential moving average. The test stops
early when the smoothed loss exceeds ``stop_factor`` times its minimum, or is NaN or inf.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from numsweep.engine.data import Dataset, Split, make_split
from numsweep.engine.group import GroupRun, train_group
from numsweep.engine.losses import l2_penalty
from numsweep.engine.spec import SpecError, TrialSpec

MODES = ("lr", "batch")
DEFAULT_UPDATES = 200


@dataclass(frozen=True)
class RangeTestResult:
    """What a range test measured, one entry per update run.

    ``losses``, ``costs`` and ``accs`` are the mini-batch's loss, cost (loss + L2) and
    accuracy before each update. ``values`` holds the learning rate (``lr`` mode) or the
    batch size (``batch`` mode) of each update; ``lrs`` and ``batch_sizes`` hold both.
    ``best`` is the value at the lowest smoothed loss, ``steepest`` the value where the
    smoothed loss fell fastest per unit of log(value) before that minimum, leaving out the
    first tenth (Smith's and fastai's suggestion for a learning rate); both are NaN when
    fewer than 3 updates were run.
    """

    mode: str
    spec: TrialSpec
    lrs: tuple[float, ...]
    batch_sizes: tuple[int, ...]
    losses: tuple[float, ...]
    costs: tuple[float, ...]
    accs: tuple[float, ...]
    smoothed: tuple[float, ...]
    best: float
    steepest: float
    updates: int
    param_count: int
    train_seconds: float
    stopped_early: bool
    message: str

    @property
    def values(self) -> tuple[float, ...]:
        return self.lrs if self.mode == "lr" else tuple(float(b) for b in self.batch_sizes)


def _mode_values(mode: str) -> dict[str, Any]:
    if mode not in MODES:
        raise ValueError(f"unknown range-test mode {mode!r} (modes: {', '.join(MODES)})")
    if mode == "lr":
        return {"schedule": "exponential", "batch_schedule": "constant"}
    return {"schedule": "constant", "batch_schedule": "exponential"}


def range_spec(spec: TrialSpec, mode: str) -> TrialSpec:
    """The spec actually run by a range test of ``mode`` (see the module docstring)."""
    n_updates = spec.n_updates if spec.n_updates is not None else DEFAULT_UPDATES
    return spec.replace(cycle_mult=1, eta_decay=1.0, gamma=1.0, step_size=None,
                        n_updates=n_updates, **_mode_values(mode))


MAX_RANGE_UPDATES = 100_000
"""A range test is a short run: each update is one curve row in the database."""


def range_spec_from(values: Mapping[str, Any], mode: str) -> TrialSpec:
    """A range test's spec from ``key=value`` parameters (``schedule`` and ``batch_schedule``
    default to the mode's, so ``n_updates`` may be given; contrary values are an error)."""
    fixed = _mode_values(mode)
    for name, value in fixed.items():
        if name in values and str(values[name]) != value:
            raise SpecError(f"{name}={values[name]!r} is invalid: the {mode} range test runs "
                            f"{name}={value}")
    spec = range_spec(TrialSpec.from_mapping({**fixed, **values}), mode)
    if spec.n_updates is not None and spec.n_updates > MAX_RANGE_UPDATES:
        raise SpecError(f"n_updates={spec.n_updates} is invalid: expected at most "
                        f"{MAX_RANGE_UPDATES:,} for a range test (one stored curve row per "
                        "update)")
    return spec


def _suggestions(values: list[float], smoothed: list[float]) -> tuple[float, float]:
    """(value at the lowest smoothed loss, value of steepest descent before it)."""
    if len(smoothed) < 3:
        return math.nan, math.nan
    s = np.asarray(smoothed)
    lowest = int(np.argmin(s))
    upto = max(lowest, 2) + 1
    log_v = np.log(np.asarray(values[:upto]))
    with np.errstate(divide="ignore", invalid="ignore"):  # repeated (rounded) batch sizes
        slope = np.gradient(s[:upto], log_v) if np.ptp(log_v) > 0 else np.full(upto, np.nan)
    slope[~np.isfinite(slope)] = np.nan
    slope[:upto // 10] = np.nan  # the first updates' average rests on few losses
    steepest = math.nan if np.isnan(slope).all() else values[int(np.nanargmin(slope))]
    return values[lowest], steepest


class _RangeRecorder:
    """The range test's :class:`group.UpdateObserver`: each update's batch loss, cost and
    accuracy (before the update), its smoothed loss, and the stopping rule."""

    def __init__(self, stop_factor: float, smoothing: float) -> None:
        self.stop_factor, self.smoothing = stop_factor, smoothing
        self.lrs: list[float] = []
        self.sizes: list[int] = []
        self.losses: list[float] = []
        self.costs: list[float] = []
        self.accs: list[float] = []
        self.smoothed: list[float] = []
        self.average = 0.0
        self.lowest = math.inf
        self.l2 = 0.0

    def before_update(self, run: GroupRun, xb: Any, yb: Any) -> None:
        scores = run.net.scores(xb)[0]
        self.accs.append(float((scores.argmax(axis=1) == yb).mean()))
        self.sizes.append(len(yb))
        self.l2 = l2_penalty(run.net.params, run.net.weight_names)

    def after_update(self, run: GroupRun, losses: Any, lrs: np.ndarray) -> dict[int, str]:
        loss, lam = float(losses[0]), run.specs[0].lam
        self.lrs.append(float(lrs[0]))
        self.losses.append(loss)
        self.costs.append(loss + lam * self.l2 if lam else loss)
        if not math.isfinite(loss):
            self.smoothed.append(math.inf)  # the loop ends the diverged run
            return {}
        self.average = self.smoothing * self.average + (1 - self.smoothing) * loss
        self.smoothed.append(self.average / (1 - self.smoothing ** len(self.losses)))
        self.lowest = min(self.lowest, self.smoothed[-1])
        if self.smoothed[-1] > self.stop_factor * self.lowest:
            return {0: f"stopped after {len(self.losses)} updates: smoothed loss "
                       f"{self.smoothed[-1]:.3g} exceeds {self.stop_factor:g} x its minimum "
                       f"{self.lowest:.3g}"}
        return {}


def range_test(spec: TrialSpec, data: Dataset | Split, mode: str = "lr", *,
               stop_factor: float = 4.0, smoothing: float = 0.98) -> RangeTestResult:
    """Run the ``mode`` range test of ``spec`` on ``data`` (see the module docstring): a
    group of one on the engine's loop (:func:`group.train_group`), without curves, its
    updates heard by a :class:`_RangeRecorder`."""
    run = range_spec(spec, mode)
    if run.device != "cpu":  # one short run: the CPU's job
        raise SpecError(f"device={run.device!r} is invalid for a range test: expected cpu "
                        "(range tests train one network on the CPU)")
    if not stop_factor > 1:
        raise ValueError(f"stop_factor={stop_factor} must be greater than 1")
    if not 0 <= smoothing < 1:
        raise ValueError(f"smoothing={smoothing} must be in [0, 1)")
    split = data if isinstance(data, Split) else make_split(data, run.n_train, run.n_val,
                                                             np.dtype(run.dtype))
    recorder = _RangeRecorder(stop_factor, smoothing)
    result = train_group([run], split, observer=recorder, curves=False)[0]
    values = recorder.lrs if mode == "lr" else [float(b) for b in recorder.sizes]
    finite = [v for v in recorder.smoothed if math.isfinite(v)]
    best, steepest = _suggestions(values[:len(finite)], finite)
    return RangeTestResult(
        mode=mode, spec=dataclasses.replace(run, n_train=len(split.y_train)),
        lrs=tuple(recorder.lrs), batch_sizes=tuple(recorder.sizes),
        losses=tuple(recorder.losses), costs=tuple(recorder.costs), accs=tuple(recorder.accs),
        smoothed=tuple(recorder.smoothed), best=best, steepest=steepest,
        updates=len(recorder.losses), param_count=result.param_count,
        train_seconds=result.train_seconds,
        stopped_early=result.stopped or result.diverged, message=result.message)
