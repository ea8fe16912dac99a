"""Fused trials: train K specs of the same structure together and get K TrialResults.

:func:`train_group` is the engine's one training loop: every model and run kind trains
through it. It trains a group of specs that share a :func:`group_key` as one fused network
(``fused.py``): their weights stacked along a leading trial axis, one shared batch per
update, one product where K lone trials would run K. A lone trial is a group of one
(:func:`train.train` is ``train_group([spec])[0]``); a range test (``range_test.py``) is a
group of one that measures no curves, with an :class:`UpdateObserver` that reads each
update's batch loss and stops it. Each result is what that spec gives alone (the same
curves and metrics; float64 to rounding, float32 to the rounding of a different summation
order), except that ``train_seconds`` and ``eval_seconds`` are the group's time shared out
evenly among the trials training at the time.

The loop is a sequence of named steps (:class:`GroupRun`): prepare the inputs, draw a
batch, step, measure a curve point, checkpoint, leave or finish. A slot group
(``slots.py``) builds on the same pieces and refills a freed row at once; the trials of one
``train_group`` share their ``data_offset`` (the batches of the stream skipped first).

Randomness comes in two explicit streams (``streams.py``). The data stream (batch order,
augmentation draws) is seeded by ``data_seed`` (``seed`` when unset) and shared by the
group, so every trial of a group sees the same batches: comparing them is a paired
comparison (common random numbers). Each trial's own stream (initialisation, dropout
masks) is seeded by its ``seed``.

Per-trial values (:data:`PER_TRIAL`) are (K,)-shaped arrays inside the group; everything
else is the group key. A trial whose loss becomes NaN or inf leaves the group with its
result marked diverged (in population-based training, ``pbt.py``, it stays, marked, until
the next exploit step replaces its rows); a trial its reporter stops (a pruned trial)
leaves it too; the others train on unchanged, as they would without it.

A group of one keeps the lone trial's Python floats for its hyperparameters and takes plain
2-D products; measured side by side in one process against the former lone fast path
(``FastNetwork.train_step``, 1 BLAS thread, CPU time, 7 alternating runs each on this
project's busy 2-core machine) it took 1-7% more per update (medians; the course ConvNet
with SGD, Adam, Nesterov + dropout and the MLP), within the run-to-run spread there. Every
model fuses: the MLP of any depth, the patchify ConvNet (one or several patch sizes) and
the three-layer ConvNet.

Devices: ``device`` is part of the group key. With ``device=cuda`` the same code runs on
CuPy arrays (every array function is taken from the arrays, ``backend.array_module``): the
data is copied to the GPU once per process, the data stream's indices (host) gather each
batch there, dropout masks are drawn there (one generator per group, so they differ from
the CPU's), and nothing comes back per update (divergence is marked on the device and
acted on at the next curve point). ``sizing.max_group_size`` says how many trials fit.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from numsweep.engine.augment import Augmenter
from numsweep.engine.backend import array_module, device_module, to_numpy
from numsweep.engine.batch_schedules import BatchSampler, largest_batch
from numsweep.engine.build import build_network
from numsweep.engine.checkpoint import (
    SCRATCH_SLOTS,
    CheckpointWriter,
    GroupState,
    keep_weights,
    load_state,
    state_digest,
)
from numsweep.engine.data import Dataset, Split, make_split
from numsweep.engine.evaluation import evaluate_group
from numsweep.engine.fused import FusedNet, fuse
from numsweep.engine.inputs import BatchDrawer, Prepared, prepare_inputs
from numsweep.engine.networks import Network, param_count
from numsweep.engine.optimizers import Optimizer, make_optimizer
from numsweep.engine.runplan import RunPlan, plan_run
from numsweep.engine.schedules import CYCLIC, make_schedule
from numsweep.engine.spec import CurvePoint, SpecError, TrialResult, TrialSpec
from numsweep.engine.streams import data_rng, device_seed, resolve_data_seed, trial_rng

Reporter = Callable[[int, float], bool]
"""Called with (update step, validation accuracy) at the end of every period (a cycle, or an
epoch for the schedules without cycles); returning True stops training (a pruned trial)."""

PointWatcher = Callable[[tuple[CurvePoint, ...], int], None]
"""Called with the curve points a trial has just measured (one per split, at one update
step) and its planned number of updates, as they are measured, so that a running trial can be
shown; a run resumed from a checkpoint first passes the points restored from it (all at
once). Called at curve points only: training pays nothing between them."""

PER_TRIAL = ("lam", "eps", "eta_min", "eta_max", "eta_decay", "gamma", "momentum", "beta1",
             "beta2", "rho", "opt_eps", "dropout", "dropout_input", "seed", "data_offset",
             "hp_changes")
"""The parameters that may differ inside a group: none changes an array's shape, the batches
or the kind of computation (``data_offset``: the trials of a slot group, ``slots.py``, join
its data stream at different steps; those of one :func:`train_group` share it;
``hp_changes``: each trial's values change at its own updates, :meth:`GroupRun.set_values`)."""

RULE_VALUES = {"momentum": "momentum", "beta1": "beta1", "beta2": "beta2", "rho": "rho",
               "opt_eps": "eps"}
"""The spec's update-rule values and the rule fields (``optimizers.py``) that hold them."""

GROUPABLE_MODELS = ("mlp", "convnet", "convnet3")


def groupable(spec: TrialSpec) -> bool:
    """Whether ``spec`` can train in a group of several (the MLP and the patchify ConvNet);
    every spec trains as a group of one."""
    return spec.model in GROUPABLE_MODELS


def group_key(spec: TrialSpec) -> tuple[tuple[str, Any], ...]:
    """What specs of one group must share: every parameter but :data:`PER_TRIAL`, with
    ``data_seed`` resolved. Specs with equal keys (and :func:`groupable`) train together."""
    values = dataclasses.asdict(spec)
    values["data_seed"] = resolve_data_seed(spec)
    return tuple((name, _hashable(value)) for name, value in values.items()
                 if name not in PER_TRIAL)


def _hashable(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def _unstack(net: FusedNet, j: int, lone: Network) -> Network:
    """Trial j's parameters copied into its lone network (same names and shapes; on the
    host, wherever the group trains)."""
    for name, p in lone.params.items():
        one = to_numpy(net.params[name][j:j + 1])
        p[...] = net.lone_param(name, one)[0].reshape(p.shape)
    return lone


class UpdateObserver(Protocol):
    """Hears every update of a run (a range test's measurements and stopping rule)."""

    def before_update(self, run: GroupRun, xb: Any, yb: Any) -> None:
        """Called with update ``run.step``'s batch before its forward pass."""

    def after_update(self, run: GroupRun, losses: Any, lrs: np.ndarray) -> dict[int, str]:
        """Called with the batch's data losses and learning rates (one per active trial)
        before the parameters are updated; returns the trials (positions in the group's
        spec order) to stop once this update is made, each with its message."""
        ...


class GroupRun:
    """One group's run: its trials, their (fused) network and optimizer, the data stream,
    and what each trial measured so far. Its methods are the loop's steps."""

    def __init__(self, specs: list[TrialSpec], split: Split, net: FusedNet,
                 lones: list[Network], rngs: list[np.random.Generator], xp: Any,
                 prepared: Prepared, plan: RunPlan, sampler: BatchSampler,
                 drawer: BatchDrawer) -> None:
        self.specs, self.split, self.net, self.lones, self.rngs, self.xp = (
            specs, split, net, lones, rngs, xp)
        self.declared = list(specs)  # as given: ``specs`` hold the values trained with now
        self.prepared, self.plan, self.sampler, self.drawer = prepared, plan, sampler, drawer
        # plain SGD takes the gradients already scaled by each trial's learning rate
        self.fused_sgd = specs[0].optimizer == "sgd"
        self.optimizer = make_optimizer(specs, prescaled=self.fused_sgd)
        self.counts = [param_count(lone) for lone in lones]
        self.period_ends = frozenset(plan.period_ends)
        self.reporters: list[Reporter | None] = [None] * len(specs)
        self.watchers: list[PointWatcher | None] = [None] * len(specs)
        self.weights: Sequence[str | Path | None] | None = None
        self.observer: UpdateObserver | None = None
        self.step = 0
        self.active = list(range(len(specs)))  # trials still training, in the group's order
        self.curves: list[list[CurvePoint]] = [[] for _ in specs]
        self.train_seconds = [0.0] * len(specs)
        self.eval_seconds = [0.0] * len(specs)
        self.results: dict[int, TrialResult] = {}
        self.resumed_at: int | None = None
        # On a device the losses stay there: each update marks the trials whose loss became
        # NaN/inf (the first such update and its loss), and at the next curve point they
        # leave the group as they would have at that update.
        self.watch: list[Any] = []        # [first bad update (K,), its loss (K,)], on device
        self.epochs_at: list[float] = []  # the sampler's epochs after each update's batch
        self.ones = np.ones(len(specs))
        # population-based training (pbt.py) keeps a diverged trial in the group, marked
        # (spec position -> message), until an exploit step replaces its rows
        self.hold_diverged = False
        self.marked: dict[int, str] = {}
        self.changes = _changes_by_update(specs, plan.total)
        self.refresh()

    # -- per-trial values ------------------------------------------------------------------

    def values(self, name: str) -> np.ndarray:
        return np.array([getattr(self.specs[i], name) for i in self.active], dtype=np.float64)

    def refresh(self) -> None:
        """The active trials' L2 and label smoothing, after trials left."""
        self.eps_arr, self.lam_arr = self.values("eps"), self.values("lam")

    def set_values(self, i: int, values: dict[str, float]) -> None:
        """Trial i's (spec position, training) per-trial values from the next update on:
        its spec, its schedule rebuilt with them (a function of the step, so at the same
        position), the update rule's and the network's per-trial values."""
        spec = self.specs[i] = dataclasses.replace(self.specs[i], **values)
        j, plan = self.active.index(i), self.plan
        schedules = list(plan.schedules)
        schedules[i] = make_schedule(spec, plan.n_s, plan.n_train // spec.batch_size).schedule
        self.plan = dataclasses.replace(plan, schedules=tuple(schedules))
        self.optimizer.set_values(j, **{field: getattr(spec, name)
                                        for name, field in RULE_VALUES.items()})
        self.net.set_values(j, dropout=spec.dropout, dropout_input=spec.dropout_input)
        self.refresh()

    def copy_member(self, dst: int, src: int) -> None:
        """Trial ``dst``'s rows (positions in ``active``) become copies of trial ``src``'s:
        parameters, optimizer state, Adam's count when per trial (its values stay)."""
        self.net.copy_row(dst, src)
        self.optimizer.copy_row(dst, src)

    def apply_changes(self, step: int) -> None:
        """The ``hp_changes`` due just before update ``step`` (of the trials training)."""
        for i, values in self.changes.get(step, ()):
            if i in self.active:
                self.set_values(i, values)

    def share(self, seconds: list[float], dt: float) -> None:
        for i in self.active:
            seconds[i] += dt / len(self.active)

    def learning_rates(self, step: int) -> np.ndarray:
        return np.array([self.plan.schedules[i].lr(step) for i in self.active])

    # -- one update ------------------------------------------------------------------------

    def update(self) -> None:
        """Update ``step``: draw the batch, forward and backward, leave the trials whose
        loss diverged, step the rest, stop those the observer stops."""
        t0 = time.perf_counter()
        step = self.step
        xb, yb = self.drawer.draw(step)
        if self.xp is not np:
            self.epochs_at.append(self.sampler.epochs)
        lrs = self.learning_rates(step)
        if self.observer is not None:
            self.observer.before_update(self, xb, yb)
        with np.errstate(over="ignore", invalid="ignore"):  # divergence is checked just below
            losses, grads = self.net.train_step(
                xb, yb, eps=self.eps_arr, rngs=[self.rngs[i] for i in self.active],
                scale=lrs if self.fused_sgd else self.ones[:len(self.active)])
        stops = {} if self.observer is None else self.observer.after_update(self, losses, lrs)
        if array_module(losses) is not np:
            self.watch_step(losses, step)  # no copy back: checked at the next curve point
            losses = None
        bad = [] if losses is None or np.isfinite(losses).all() else [
            j for j in range(len(self.active)) if not np.isfinite(losses[j])]
        if bad and self.hold_diverged:
            self.mark({j: (step, float(losses[j])) for j in bad})
            bad = []
        if bad:
            self.share(self.train_seconds, time.perf_counter() - t0)
            t0 = time.perf_counter()
            grads, lrs = self.drop_diverged(bad, losses, grads, lrs)
            if not self.active:
                return
        self.apply(grads, lrs)
        self.step += 1
        self.share(self.train_seconds, time.perf_counter() - t0)
        if stops:
            self.stop_trials(stops)

    def drop_diverged(self, bad: list[int], losses: Any, grads: dict[str, Any],
                      lrs: np.ndarray) -> tuple[dict[str, Any], np.ndarray]:
        """The trials at positions ``bad`` diverged at this update: they leave, and the
        update's gradients and rates are those of the others."""
        step = self.step
        for j in bad:
            self.finish(self.active[j], step, diverged=True, message=(
                f"loss diverged ({losses[j]}) at update {step} with learning rate "
                f"{lrs[j]:.3g}"))
        keep = [j for j in range(len(self.active)) if j not in bad]
        at = np.array(keep, dtype=np.intp)
        xp = self.xp
        grads = {name: g[at if xp is np else xp.asarray(at)] for name, g in grads.items()}
        self.leave(bad)
        self.refresh()
        return grads, lrs[keep]

    def mark(self, lost: dict[int, tuple[int, float]]) -> None:
        """Trials (positions in ``active``) whose loss diverged (update, loss), held in the
        group (:attr:`hold_diverged`): marked with the message they would leave with."""
        for j, (step, loss) in lost.items():
            i = self.active[j]
            self.marked.setdefault(i, f"loss diverged ({loss}) at update {step} with "
                                      f"learning rate {self.plan.schedules[i].lr(step):.3g}")

    def apply(self, grads: dict[str, Any], lrs: np.ndarray) -> None:
        """The update rule's step, L2 included."""
        self.optimizer.update(self.net.params, grads, lrs, self.lam_arr, self.net.weight_names)

    def watch_step(self, losses: Any, step: int) -> None:
        xp, watch = self.xp, self.watch
        if not watch:
            watch[:] = [xp.full(len(self.active), -1, dtype=np.int64),
                        xp.zeros(len(self.active))]
        newly = ~xp.isfinite(losses) & (watch[0] < 0)
        watch[0] = xp.where(newly, step, watch[0])
        watch[1] = xp.where(newly, losses, watch[1])

    def flush_diverged(self) -> bool:
        """The trials marked by :meth:`watch_step` leave; whether any did."""
        if not self.watch:
            return False
        at, lost = to_numpy(self.watch[0]), to_numpy(self.watch[1])
        self.watch.clear()
        bad = [j for j in range(len(self.active)) if at[j] >= 0]
        if self.hold_diverged:
            self.mark({j: (int(at[j]), float(lost[j])) for j in bad})
            return False
        for j in bad:
            first, i = int(at[j]), self.active[j]
            self.finish(i, first, diverged=True, epochs=self.epochs_at[first], message=(
                f"loss diverged ({lost[j]}) at update {first} with learning rate "
                f"{self.plan.schedules[i].lr(first):.3g}"))
        if bad:
            self.leave(bad)
            self.refresh()
        return bool(bad)

    # -- curve points ------------------------------------------------------------------------

    def record(self) -> np.ndarray:
        """A curve point of every active trial at ``step`` (training and validation sets);
        the validation accuracies (K,)."""
        step, prepared = self.step, self.prepared
        t0 = time.perf_counter()
        lams, eps = self.values("lam"), self.values("eps")
        accs = np.empty(len(self.active))
        x_ev = prepared.x_train[: self.specs[0].eval_train]
        y_ev = prepared.y_train[: self.specs[0].eval_train]
        for split_name, x, y in (("train", x_ev, y_ev), ("val", prepared.x_val, prepared.y_val)):
            with np.errstate(over="ignore", invalid="ignore"):  # a diverging run's inf/NaN
                loss, cost, acc = evaluate_group(self.net, x, y, lams, eps)
            for j, i in enumerate(self.active):
                self.curves[i].append(CurvePoint(step, split_name, float(loss[j]),
                                                 float(cost[j]), float(acc[j]),
                                                 self.plan.schedules[i].lr(step)))
            accs = acc
        self.share(self.eval_seconds, time.perf_counter() - t0)
        for i in self.active:
            watcher = self.watchers[i]
            if watcher is not None:
                watcher(tuple(self.curves[i][-2:]), self.plan.total)
        return accs

    def at_curve_point(self, writer: CheckpointWriter | None) -> None:
        """Measure the curves; at a period's end the reporters may stop their trials; then
        the checkpoint is written."""
        step = self.step
        if self.flush_diverged() and not self.active:
            return
        val_accs = self.record()
        if step in self.period_ends and step < self.plan.total:
            reps = self.reporters
            self.stop_trials({i: f"stopped by the pruner at update {step}"
                              for j, i in enumerate(self.active)
                              if reps[i] is not None and reps[i](step, float(val_accs[j]))})
        if writer is not None and self.active:
            writer.save(partial(_capture_state, step, self.net, self.optimizer, self.lones,
                                self.active, self.rngs, self.sampler, self.curves,
                                self.train_seconds, self.eval_seconds, self.results))

    # -- leaving and finishing -----------------------------------------------------------------

    def leave(self, gone: list[int]) -> None:
        """Trials (positions in ``active``) leave the group; the others keep their slices."""
        keep = np.array([j for j in range(len(self.active)) if j not in gone], dtype=np.intp)
        if len(keep):
            self.net.select(keep)
            self.optimizer.select(keep)
        self.active[:] = [self.active[j] for j in keep]

    def stop_trials(self, stops: dict[int, str]) -> None:
        """The trials ``stops`` (spec positions, each with its message) leave the group,
        each measured on the test set alone (on the group's device) when the run measures
        curves."""
        gone = [j for j, i in enumerate(self.active) if i in stops]
        for j in gone:
            i = self.active[j]
            t0 = time.perf_counter()
            lone = _unstack(self.net, j, self.lones[i])
            test_acc = math.nan
            if self.plan.curve_at:
                alone = fuse([lone], [0.0], [0.0])
                alone.to_device(self.xp, 0)
                _, _, test_accs = evaluate_group(alone, self.prepared.x_test,
                                                 self.prepared.y_test,
                                                 self.values("lam")[j:j + 1],
                                                 self.values("eps")[j:j + 1])
                test_acc = float(test_accs[0])
            self.eval_seconds[i] += time.perf_counter() - t0
            self.finish(i, self.step, stopped=True, test_acc=test_acc, lone=lone,
                        message=stops[i])
        if gone:
            self.leave(gone)
            self.refresh()

    def finish_active(self) -> None:
        """The trials still training at the end: measured on the test set, finished."""
        t0 = time.perf_counter()
        test_accs = np.full(len(self.active), math.nan)
        if self.plan.curve_at:
            _, _, test_accs = evaluate_group(self.net, self.prepared.x_test,
                                             self.prepared.y_test, self.values("lam"),
                                             self.values("eps"))
        self.share(self.eval_seconds, time.perf_counter() - t0)
        for j, i in enumerate(self.active):
            lone = _unstack(self.net, j, self.lones[i]) if self.weights is not None else None
            self.finish(i, self.step, test_acc=float(test_accs[j]), lone=lone)

    def finish(self, i: int, step: int, *, diverged: bool = False, stopped: bool = False,
               message: str = "", test_acc: float = math.nan, lone: Network | None = None,
               epochs: float | None = None) -> None:
        """Trial i's result, after ``step`` updates (its weights kept when asked); its spec
        as given (``hp_changes`` and all)."""
        spec = self.declared[i]
        if self.resumed_at is not None:
            message = _joined(message, f"resumed from its checkpoint at update "
                                       f"{self.resumed_at}")
        val_acc = train_acc = math.nan
        if not diverged:
            train_acc, val_acc = _last_acc(self.curves[i], "train"), _last_acc(self.curves[i],
                                                                               "val")
        path = self.weights[i] if self.weights is not None else None
        if lone is not None and path is not None:
            message = _joined(message, keep_weights(
                path, spec, lone.params, test_acc=test_acc, val_acc=val_acc, updates=step,
                image_shape=list(self.split.x_train.shape[1:])))
        resolved = resolved_spec(spec, self.plan)
        self.results[i] = TrialResult(
            spec=resolved, val_acc=val_acc, test_acc=test_acc, train_acc=train_acc,
            train_seconds=self.train_seconds[i], eval_seconds=self.eval_seconds[i],
            updates=step, param_count=self.counts[i],
            epochs=self.sampler.epochs if epochs is None else epochs, diverged=diverged,
            stopped=stopped, message=message, curves=tuple(self.curves[i]))

    # -- checkpoints ---------------------------------------------------------------------------

    def capture(self) -> GroupState:
        """The group's state now (host copies, in the lone layout)."""
        return _capture_state(self.step, self.net, self.optimizer, self.lones, self.active,
                              self.rngs, self.sampler, self.curves, self.train_seconds,
                              self.eval_seconds, self.results)

    def resume(self, saved: GroupState) -> None:
        """Continue from ``saved``: its state restored, the reporters and watchers told
        again what they heard before it."""
        self.step = self.resumed_at = saved.step
        _restore_state(saved, self.net, self.optimizer, self.lones, self.rngs, self.sampler)
        self.active[:] = saved.active
        self.curves[:] = saved.curves
        self.results.update(saved.results)
        self.train_seconds[:], self.eval_seconds[:] = saved.train_seconds, saved.eval_seconds
        self.epochs_at[:] = [math.nan] * saved.step  # watch_step indexes it by update
        for step in sorted(u for u in self.changes if u < saved.step):
            self.apply_changes(step)
        self.refresh()
        replay_reports(self.reporters, self.curves, self.results, sorted(self.period_ends),
                       self.plan.total, saved.step)
        for i, watcher in enumerate(self.watchers):
            if watcher is not None and self.curves[i]:
                watcher(tuple(self.curves[i]), self.plan.total)


def resolved_spec(spec: TrialSpec, plan: RunPlan) -> TrialSpec:
    """``spec`` as run: ``n_s``, ``n_train``, ``data_seed`` and ``n_updates`` resolved."""
    return dataclasses.replace(
        spec, n_s=plan.n_s, n_train=plan.n_train, data_seed=resolve_data_seed(spec),
        n_updates=None if spec.n_updates is None and spec.schedule in CYCLIC else plan.total)


def _changes_by_update(specs: Sequence[TrialSpec], total: int
                       ) -> dict[int, list[tuple[int, dict[str, float]]]]:
    """Each update's ``hp_changes``: (spec position, its values) in spec order; a
    SpecError for a change at no update of the run (0 < update < total)."""
    out: dict[int, list[tuple[int, dict[str, float]]]] = {}
    for i, spec in enumerate(specs):
        by_update: dict[int, dict[str, float]] = {}
        for update, name, value in spec.hp_changes:
            if not 0 < update < total:
                raise SpecError(f"hp_changes={[update, name, value]!r} is invalid: expected "
                                f"an update in 1..{total - 1} (the run has {total} updates)")
            by_update.setdefault(update, {})[name] = value
        for update, values in by_update.items():
            out.setdefault(update, []).append((i, values))
    return dict(sorted(out.items()))


def _joined(*messages: str) -> str:
    return "; ".join(m for m in messages if m)


def _last_acc(curve: Sequence[CurvePoint], split: str) -> float:
    return next((c.acc for c in reversed(curve) if c.split == split), math.nan)


def _per_spec(values: Sequence[Any] | None, n: int, what: str) -> list[Any]:
    out = list(values) if values is not None else [None] * n
    if len(out) != n:
        raise ValueError(f"{len(out)} {what} for {n} specs")
    return out


def start_run(specs: list[TrialSpec], data: Dataset | Split, *, prepared: Prepared | None,
              curves: bool = True, layout: str | None = None) -> GroupRun:
    """Prepare a group's run: the split, each trial's stream and lone network, the fused
    network on the group's device (``layout``: see :func:`fused.fuse`), the inputs there,
    the run's lengths, the data stream (its first ``data_offset`` batches skipped)."""
    spec0 = specs[0]
    xp = device_module(spec0.device)  # a one-line DeviceError before any work
    split = data if isinstance(data, Split) else make_split(data, spec0.n_train, spec0.n_val,
                                                             np.dtype(spec0.dtype))
    rngs = [trial_rng(s) for s in specs]
    lones = [build_network(s, split.x_train.shape[1:], split.num_classes, r)
             for s, r in zip(specs, rngs, strict=True)]
    net = fuse(lones, [s.dropout for s in specs], [s.dropout_input for s in specs], layout)
    net.to_device(xp, device_seed(specs))
    augment = Augmenter.from_spec(spec0)
    prepared = prepare_inputs(net, split, augment, spec0.eval_train, xp, prepared=prepared,
                              eval_sets=curves)
    plan = plan_run(specs, len(prepared.y_train), curves=curves)
    sampler = BatchSampler(plan.n_train, data_rng(resolve_data_seed(spec0)))
    drawer = BatchDrawer(prepared, split, augment, net, sampler, plan.batches,
                         largest_batch(spec0), xp)
    if spec0.data_offset:  # the batches drawn before the trial joined its stream
        drawer.skip(range(spec0.data_offset))
        sampler.drawn = 0  # its epochs count its own images
    return GroupRun(specs, split, net, lones, rngs, xp, prepared, plan, sampler, drawer)


def open_checkpoint(run: GroupRun, checkpoint: str | Path | None) -> CheckpointWriter | None:
    """Resume ``run`` from ``checkpoint`` when it holds a state of these specs; the writer
    of its next states (None without a file)."""
    digest = state_digest(run.specs, run.prepared.y_train, run.split.x_train.shape[1:],
                          run.split.num_classes)
    saved = load_state(checkpoint, digest)
    writer = CheckpointWriter(checkpoint, digest) if checkpoint is not None else None
    if saved is not None:
        run.resume(saved)
    elif run.plan.curve_at:
        run.record()
    return writer


def run_updates(run: GroupRun, writer: CheckpointWriter | None) -> None:
    """Update until the schedule ends or no trial is left; curves (and the checkpoint) at
    the curve points; then the trials still training finish. A run stopped by an exception
    (a watcher's, Ctrl-C) first waits for its checkpoint write in flight."""
    try:
        while run.step < run.plan.total and run.active:
            if run.changes:
                run.apply_changes(run.step)
            run.update()
            if run.active and run.step in run.plan.curve_at:
                run.at_curve_point(writer)
        run.flush_diverged()
    finally:
        if writer is not None:
            writer.close()
    if run.active:
        run.finish_active()


def train_group(specs: Sequence[TrialSpec], data: Dataset | Split, *,
                reporters: Sequence[Reporter | None] | None = None,
                prepared: Prepared | None = None, checkpoint: str | Path | None = None,
                weights: Sequence[str | Path | None] | None = None,
                on_points: Sequence[PointWatcher | None] | None = None,
                observer: UpdateObserver | None = None,
                curves: bool = True) -> list[TrialResult]:
    """Train the specs of one group together; one TrialResult per spec, in their order.

    The specs must share :func:`group_key`, and be :func:`groupable` when they are more
    than one. Curves hold the loss, cost and accuracy on the first ``eval_train`` training
    images and on the validation set, ``curve_points`` times per period plus once before
    training; a period is a cycle of the cyclic schedules (``cyclic``, ``exp_range``) and
    an epoch of ``n_train // batch_size`` updates for the others. ``reporters`` holds one
    :data:`Reporter` (or None) per spec, called at the end of every period; one that
    returns True stops its own trial only. ``prepared`` is the split turned into the
    network's inputs (:class:`inputs.Prepared`), shared by every trial of the group. With
    augmentation on, each batch is augmented and then prepared (``net.prepare``).

    ``checkpoint``: the group's checkpoint file (``checkpoint.py``), written at every curve
    point; when it holds a state of these specs the run continues from it (the reporters
    first hear again the reports made before it) and ends as an uninterrupted run would.
    ``weights``: one path (or None) per spec where a trial that ends without diverging
    saves its network (:func:`checkpoint.keep_weights`: a failed write is said in the
    trial's message, its result stands). ``on_points``: one :data:`PointWatcher` (or
    None) per spec, told each curve point of its trial. ``observer`` hears every update
    (:class:`UpdateObserver`); ``curves=False`` measures no curves and no test accuracy.

    With ``device=cuda`` (CuPy) the split and ``prepared`` are copied to the GPU once per
    process (:func:`backend.device_copy`), the network's inputs prepared there, batches
    gathered there by the indices the CPU would draw (the same data stream), and the curves
    measured there; nothing comes back per update: a trial whose loss became NaN/inf is
    marked on the device and leaves at the next curve point, stored as diverged at the
    update it diverged (as on the CPU).
    """
    specs = list(specs)
    if not specs:
        return []
    check_group(specs)
    reps = _per_spec(reporters, len(specs), "reporters")
    watchers = _per_spec(on_points, len(specs), "point watchers")
    run = start_run(specs, data, prepared=prepared, curves=curves)
    run.reporters, run.watchers, run.weights, run.observer = reps, watchers, weights, observer
    writer = open_checkpoint(run, checkpoint)
    run_updates(run, writer)
    return [run.results[i] for i in range(len(specs))]


def check_group(specs: Sequence[TrialSpec]) -> None:
    """A ValueError naming the first parameter two specs of a would-be group differ in."""
    if len(specs) > 1 and not groupable(specs[0]):
        raise ValueError(f"model={specs[0].model} cannot train in a group (only "
                         f"{', '.join(GROUPABLE_MODELS)})")
    key0 = group_key(specs[0])
    offsets = sorted({s.data_offset for s in specs})
    if len(offsets) > 1:
        raise ValueError(f"specs of one group must share data_offset ({offsets[0]} != "
                         f"{offsets[1]}; a slot group, slots.train_slots, joins trials at "
                         "different steps)")
    for spec in specs[1:]:
        for (name, a), (_, b) in zip(key0, group_key(spec), strict=True):
            if a != b:
                raise ValueError(f"specs of one group must share {name} ({a!r} != {b!r})")


# -- checkpoints: the group's state out of and back into its arrays ----------------------------

def _lone_index(net: FusedNet, name: str, shape: tuple[int, ...]) -> np.ndarray:
    """For each position of a trial's parameter ``name`` in the lone layout (flat), the flat
    position in the fused layout of shape ``shape`` (one trial's) it comes from."""
    idx = np.arange(int(np.prod(shape))).reshape(1, *shape)
    return np.asarray(net.lone_param(name, idx)[0]).reshape(-1)


def _capture_state(step: int, net: FusedNet, optimizer: Optimizer, lones: Sequence[Network],
                   active: Sequence[int], rngs: Sequence[np.random.Generator],
                   sampler: BatchSampler, curves: Sequence[Sequence[CurvePoint]],
                   train_seconds: Sequence[float], eval_seconds: Sequence[float],
                   results: dict[int, TrialResult]) -> GroupState:
    """The group's state after update ``step`` (host copies, in the lone layout)."""
    from numsweep.engine.backend import to_numpy

    def lone(name: str, a: Any, j: int, i: int) -> np.ndarray:
        shape = lones[i].params[name].shape  # a copy: the live arrays train on meanwhile
        return np.array(to_numpy(net.lone_param(name, a[j:j + 1])[0]).reshape(shape))

    params = [{name: lone(name, p, j, i) for name, p in net.params.items()}
              for j, i in enumerate(active)]
    slots = [{name: {slot: lone(name, a, j, i) for slot, a in named.items()
                     if slot not in SCRATCH_SLOTS}
              for name, named in optimizer.state.items()} for j, i in enumerate(active)]
    return GroupState(
        step=step, active=list(active), params=params, slots=slots,
        opt_t=getattr(optimizer, "t", None),
        trial_rngs=[r.bit_generator.state for r in rngs],
        data_rng=sampler.rng.bit_generator.state, sampler_order=np.array(sampler.order),
        sampler_cursor=sampler.cursor, sampler_drawn=sampler.drawn,
        curves=[list(c) for c in curves], train_seconds=list(train_seconds),
        eval_seconds=list(eval_seconds), results=dict(results))


def _restore_state(state: GroupState, net: FusedNet, optimizer: Optimizer,
                   lones: Sequence[Network], rngs: Sequence[np.random.Generator],
                   sampler: BatchSampler) -> None:
    """Put ``state`` into a freshly built group (all its trials): the trials that had left
    leave again, then parameters, optimizer state and random streams are set."""
    xp = array_module(next(iter(net.params.values())))
    keep = np.asarray(state.active, dtype=np.intp)
    if len(keep) < net.k:
        net.select(keep)
        optimizer.select(keep)

    def fused(name: str, per_trial_arrays: Sequence[np.ndarray], like: Any) -> Any:
        shape = like.shape[1:]
        out = np.empty((len(per_trial_arrays), int(np.prod(shape))), dtype=like.dtype)
        index = _lone_index(net, name, shape)
        for j, a in enumerate(per_trial_arrays):
            out[j, index] = np.asarray(a).reshape(-1)
        return xp.asarray(out.reshape(like.shape))

    for name, p in net.params.items():
        p[...] = fused(name, [params[name] for params in state.params], p)
    optimizer.state = {name: {slot: fused(name, [s[name][slot] for s in state.slots],
                                          net.params[name])
                              for slot in state.slots[0][name]}
                       for name in state.slots[0]} if state.slots else {}
    if state.opt_t is not None:
        optimizer.t = state.opt_t  # type: ignore[union-attr]
    for rng, rng_state in zip(rngs, state.trial_rngs, strict=True):
        rng.bit_generator.state = rng_state
    sampler.rng.bit_generator.state = state.data_rng
    sampler.order = np.asarray(state.sampler_order)
    sampler.cursor, sampler.drawn = state.sampler_cursor, state.sampler_drawn


def replay_reports(reporters: Sequence[Any], curves: Sequence[Sequence[CurvePoint]],
                    results: dict[int, TrialResult], period_ends: Sequence[int], total: int,
                    step: int) -> None:
    """Tell each trial's reporter again what it heard before the checkpoint (the validation
    accuracy at each period end a run reports), so its record is that of one run."""
    for i, reporter in enumerate(reporters):
        if reporter is None:
            continue
        last = results[i].updates if i in results else step
        val = {c.step: c.acc for c in curves[i] if c.split == "val"}
        for end in period_ends:
            if end < total and end <= last and end in val:
                reporter(end, val[end])
