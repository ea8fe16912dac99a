"""Trial slots: continuous batching of training trials in one fused group.

:func:`train_slots` trains a *slot group*: ``size`` slots that share one
:func:`group.group_key` (model and shapes, batch schedule, optimizer, schedule kind, dtype,
device, ``data_seed``, lengths) and ONE data stream, one batch per group step that every
occupied slot trains on. Each slot holds one trial at its own update count: its own start
(the group step it joined at, stored as its spec's ``data_offset``), so its own schedule
position (its learning rate is its schedule at group step - start), curve points and
period ends; its optimizer state zeroed when it joins, its weights drawn from its own seed
(exactly as a lone trial draws them) and its own random stream (dropout masks).

When a trial ends (it completes its schedule, its :class:`Feed` stops it at one of its
period ends, or it diverges) its slot is refilled AT ONCE, before the next group update,
with whatever the feed gives (``Feed.refill``): a freed slot idles for no update unless
the feed has nothing to give. The fused network (``fused.py``) drops a leaving trial's rows
(``select``) and appends a joining one's (``join``); the update rule drops and appends its
rows too (``Rule.join``: zeros, and Adam's step count per trial).

What is reproducible: a trial that joined at group step s0 trains on batches s0, s0 + 1,
... of the stream; ``train(result.spec)`` alone (``data_offset = s0``) skips the first s0
batches of the same stream (their indices and augmentation draws) and gives the same
curves and metrics (float64 to rounding, float32 to the rounding of a different summation
order; on a GPU dropout masks come from the group's device generator, so runs with dropout
differ there). A run resumed from its checkpoint continues bitwise. A trial that diverges
ends at its own update on the CPU at once; on a device (nothing comes back per update) at
the group's next step with a curve point or an end, stored at the update it diverged.

Time: ``train_seconds`` and ``eval_seconds`` are the group's time shared among the trials
training (measured) at the time. :class:`SlotStats` says how full the slots were.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from numsweep.engine.backend import array_module, to_numpy
from numsweep.engine.build import build_network
from numsweep.engine.checkpoint import (
    CheckpointWriter,
    SlotState,
    keep_weights,
    load_slot_state,
    slot_digest,
)
from numsweep.engine.data import Dataset, Split, make_split
from numsweep.engine.evaluation import evaluate_group
from numsweep.engine.fused import FusedNet
from numsweep.engine.group import (
    GroupRun,
    PointWatcher,
    _capture_state,
    _restore_state,
    _unstack,
    check_group,
    resolved_spec,
    start_run,
)
from numsweep.engine.inputs import Prepared
from numsweep.engine.networks import Network, param_count
from numsweep.engine.optimizers import make_optimizer
from numsweep.engine.schedules import Schedule, make_schedule
from numsweep.engine.spec import CurvePoint, TrialResult, TrialSpec
from numsweep.engine.streams import trial_rng


@dataclass(frozen=True)
class SlotTrial:
    """A trial for a free slot."""

    key: int
    """The caller's id for it (a numsweep trial id)."""
    spec: TrialSpec
    """Its spec; ``data_offset`` is set by the engine when it joins."""
    watcher: PointWatcher | None = None
    """Told its curve points (:data:`group.PointWatcher`)."""
    weights: str | Path | None = None
    """Where its network is kept if it ends undiverged."""


class Feed(Protocol):
    """Where a slot group's trials come from, and where their ends and reports go."""

    def refill(self, ended: Sequence[tuple[int, TrialResult]],
               free: int) -> Sequence[SlotTrial]:
        """Called at the start (``ended=()``, ``free`` the slots ``first`` left; not when
        none is left) and at every group step at which trials ended (complete, pruned,
        diverged), with each ended trial's (key, result) exactly once and the number of
        free slots; returns at most ``free`` trials to start now, at this group step
        (fewer: the other slots stay empty until the next call). The group ends when no
        trial is active and the last call returned nothing; the last ended trials are
        delivered by a final call (free = size) whose answer may still start trials."""
        ...

    def report(self, reports: Sequence[tuple[int, int, float]]) -> Collection[int]:
        """Called once per group step at which one or more trials are at the end of one of
        their periods (a cycle, or an epoch without cycles; not their last update), with
        (key, the trial's own update count, its val_acc) each; returns the keys to stop
        there (pruned: each measured on the test set and ended with stopped=True, message
        "stopped by the pruner at update N")."""
        ...


@dataclass(frozen=True)
class SlotStats:
    """How a slot group used its slots."""

    size: int
    """The slots."""
    steps: int
    """Group updates made."""
    slot_updates: int
    """Trial-updates trained: the sum over the group updates of the trials in their batch's
    forward pass (one that diverged at an update counts at it)."""
    trials: int
    """Trials that trained in the group (joined it)."""
    full_steps: int
    """Group updates made before the feed first gave fewer trials than asked."""
    full_slot_updates: int
    """Trial-updates in those steps."""

    @property
    def occupancy(self) -> float:
        """slot_updates / (steps * size): the share of slot-updates a trial used (1.0 when
        no update was made)."""
        return self.slot_updates / (self.steps * self.size) if self.steps else 1.0


COUNTERS = ("steps", "slot_updates", "trials", "full_steps", "full_slot_updates")


@dataclass(eq=False)  # members are told apart by identity
class Member:
    """A trial in a slot: what it is, where it joined, its network and what it measured."""

    key: int
    spec: TrialSpec  # data_offset: the group step it joined at
    drawn0: int      # the data stream's images drawn when it joined
    schedule: Schedule
    lone: Network
    rng: np.random.Generator
    count: int
    watcher: PointWatcher | None = None
    weights: str | Path | None = None
    curves: list[CurvePoint] = field(default_factory=list)
    train_seconds: float = 0.0
    eval_seconds: float = 0.0

    @property
    def start(self) -> int:
        return self.spec.data_offset


class SlotRun:
    """One slot group's run: the shared pieces of a :class:`group.GroupRun` (split, fused
    network, update rule, data stream, plan), its members (one per occupied slot, in the
    network's row order), the group step and the counters. Its methods are the steps."""

    def __init__(self, size: int, feed: Feed, data: Dataset | Split,
                 prepared: Prepared | None, curves: bool) -> None:
        self.size, self.feed, self.data, self.prepared, self.curves = (
            size, feed, data, prepared, curves)
        self.group: GroupRun | None = None
        self.members: list[Member] = []
        self.step = 0
        self.counters = dict.fromkeys(COUNTERS, 0)
        self.short = False        # the feed has given fewer trials than asked
        self.ended: list[tuple[int, TrialResult]] = []
        self.measured = False     # a curve point was measured at this group step
        self.watch: list[Any] = []  # on a device: [first bad step, its loss] per row
        self.drawn_at: dict[int, int] = {}
        self.eps_arr = self.lam_arr = np.zeros(0)

    # -- the group's pieces ----------------------------------------------------------------

    @property
    def g(self) -> GroupRun:
        assert self.group is not None
        return self.group

    def split_for(self, spec: TrialSpec) -> Split:
        if not isinstance(self.data, Split):
            self.data = make_split(self.data, spec.n_train, spec.n_val, np.dtype(spec.dtype))
        return self.data

    def digest(self, members: Sequence[tuple[int, TrialSpec]]) -> str:
        split = self.split_for(members[0][1])
        return slot_digest(self.size, members, split.y_train, split.x_train.shape[1:],
                           split.num_classes)

    def setup(self, trials: Sequence[SlotTrial], starts: Sequence[int]) -> None:
        """The group built for its first trials (their rows in this order), at step 0."""
        specs = [dataclasses.replace(t.spec, data_offset=0) for t in trials]
        check_group(specs)
        run = start_run(specs, self.split_for(specs[0]), prepared=self.prepared,
                        curves=self.curves, layout="wide" if self.size > 1 else "lone")
        run.optimizer.per_trial(len(specs))  # one form as trials come and go: bitwise resumes
        self.group, self.prepared = run, run.prepared
        self.members = [
            Member(t.key, dataclasses.replace(t.spec, data_offset=s), 0, run.plan.schedules[j],
                   run.lones[j], run.rngs[j], run.counts[j], t.watcher, t.weights)
            for j, (t, s) in enumerate(zip(trials, starts, strict=True))]
        self.refresh()

    def refresh(self) -> None:
        """The members' label smoothing and L2, after trials came or left."""
        self.eps_arr = np.array([m.spec.eps for m in self.members], dtype=np.float64)
        self.lam_arr = np.array([m.spec.lam for m in self.members], dtype=np.float64)

    def own(self, m: Member) -> int:
        return self.step - m.start

    # -- joining and leaving -------------------------------------------------------------------

    def join(self, trials: Sequence[SlotTrial]) -> None:
        """``trials`` take free slots at this group step: each network drawn from its own
        seed, its optimizer rows zeroed, its first curve point measured."""
        if not trials:
            return
        keys = [t.key for t in trials] + [m.key for m in self.members]
        if len(set(keys)) < len(keys) or len(keys) > self.size:
            raise ValueError(f"{len(trials)} trials for {self.size - len(self.members)} free "
                             "slots, or a key already in the group")
        for t in trials:
            if self.step and t.spec.batch_schedule != "constant":
                raise ValueError(f"a trial joins a slot group mid-way (at group step "
                                 f"{self.step}) only with batch_schedule=constant, not "
                                 f"{t.spec.batch_schedule}")
            if t.spec.hp_changes:  # a slot's values are its own rows' for the whole run
                raise ValueError("a trial with hp_changes trains alone or in train_group, "
                                 "not in a slot group")
        if self.group is None:
            self.setup(trials, [0] * len(trials))
            new = self.members
        else:
            new = self.append(trials)
        self.counters["trials"] += len(new)
        if self.g.plan.curve_at:
            self.record(new)

    def append(self, trials: Sequence[SlotTrial]) -> list[Member]:
        """New rows after the current ones (their networks and optimizer rows)."""
        g = self.g
        check_group([g.specs[0], *(dataclasses.replace(t.spec, data_offset=0) for t in trials)])
        specs = [dataclasses.replace(t.spec, data_offset=self.step) for t in trials]
        split = g.split
        new = []
        for t, spec in zip(trials, specs, strict=True):
            rng = trial_rng(spec)
            lone = build_network(spec, split.x_train.shape[1:], split.num_classes, rng)
            sched = make_schedule(spec, g.plan.n_s, g.plan.n_train // spec.batch_size).schedule
            new.append(Member(t.key, spec, g.sampler.drawn, sched, lone, rng, param_count(lone),
                              t.watcher, t.weights))
        g.net.join([m.lone for m in new], [s.dropout for s in specs],
                   [s.dropout_input for s in specs])
        g.optimizer.join(make_optimizer(specs, prescaled=g.fused_sgd), len(self.members),
                         len(new))
        self.members.extend(new)
        self.refresh()
        return new

    def leave(self, gone: Sequence[Member]) -> None:
        """Members leave; the others keep their rows (in order)."""
        if not gone:
            return
        keep = np.array([j for j, m in enumerate(self.members) if m not in gone], np.intp)
        self.g.net.select(keep)
        self.g.optimizer.select(keep)
        self.members = [self.members[j] for j in keep]
        self.refresh()

    def ask(self, ended: Sequence[tuple[int, TrialResult]]) -> None:
        """The feed refills the free slots (told the ended trials)."""
        free = self.size - len(self.members)
        trials = list(self.feed.refill(ended, free))
        if len(trials) > free:
            raise ValueError(f"the feed gave {len(trials)} trials for {free} free slots")
        if len(trials) < free:
            self.short = True
        self.join(trials)

    # -- one group update ----------------------------------------------------------------------

    def update(self) -> None:
        """Group update ``step``: every member trains on its batch at its own learning rate;
        the members whose loss diverged (CPU) end at once."""
        g, members, t0 = self.g, self.members, time.perf_counter()
        xb, yb = g.drawer.draw(self.step)
        if g.xp is not np:
            self.drawn_at[self.step] = g.sampler.drawn
        lrs = np.array([m.schedule.lr(self.own(m)) for m in members])
        with np.errstate(over="ignore", invalid="ignore"):  # divergence is checked just below
            losses, grads = g.net.train_step(
                xb, yb, eps=self.eps_arr, rngs=[m.rng for m in members],
                scale=lrs if g.fused_sgd else np.ones(len(members)))
        if array_module(losses) is not np:
            self.watch_step(losses)  # no copy back: checked at the next curve point
            losses = None
        bad = [] if losses is None else [j for j in range(len(members))
                                         if not np.isfinite(losses[j])]
        for j in bad:
            m = members[j]
            self.finish(m, self.own(m), diverged=True, message=(
                f"loss diverged ({losses[j]}) at update {self.own(m)} with learning rate "
                f"{lrs[j]:.3g}"))
        if bad:
            at = np.array([j for j in range(len(members)) if j not in bad], dtype=np.intp)
            grads = {name: a[at] for name, a in grads.items()}
            lrs = lrs[at]
            self.leave([members[j] for j in bad])
        if self.members:
            g.optimizer.update(g.net.params, grads, lrs, self.lam_arr, g.net.weight_names)
        self.step += 1
        self.count(len(members))
        self.share("train_seconds", members, time.perf_counter() - t0)

    def count(self, rows: int) -> None:
        c = self.counters
        c["steps"] += 1
        c["slot_updates"] += rows
        if not self.short:
            c["full_steps"] += 1
            c["full_slot_updates"] += rows

    def share(self, what: str, members: Sequence[Member], dt: float) -> None:
        for m in members:
            setattr(m, what, getattr(m, what) + dt / len(members))

    def watch_step(self, losses: Any) -> None:
        xp, watch = self.g.xp, self.watch
        if not watch:
            watch[:] = [xp.full(len(self.members), -1, dtype=np.int64),
                        xp.zeros(len(self.members))]
        newly = ~xp.isfinite(losses) & (watch[0] < 0)
        watch[0] = xp.where(newly, self.step, watch[0])
        watch[1] = xp.where(newly, losses, watch[1])

    def flush_diverged(self) -> None:
        """On a device: the members marked by :meth:`watch_step` end at the update they
        diverged."""
        if not self.watch:
            return
        at, lost = to_numpy(self.watch[0]), to_numpy(self.watch[1])
        self.watch.clear()
        bad = [m for j, m in enumerate(self.members) if at[j] >= 0]
        for j, m in enumerate(self.members):
            if at[j] >= 0:
                first = int(at[j])
                own = first - m.start
                self.finish(m, own, diverged=True,
                            epochs=(self.drawn_at[first] - m.drawn0) / self.g.plan.n_train,
                            message=f"loss diverged ({lost[j]}) at update {own} with "
                                    f"learning rate {m.schedule.lr(own):.3g}")
        self.drawn_at.clear()
        self.leave(bad)

    # -- the group step after an update -------------------------------------------------------

    def settle(self, writer: CheckpointWriter | None) -> None:
        """This group step's curve points, period-end reports and ends (stops, completions),
        then the freed slots refilled and, when a curve point was measured, the checkpoint."""
        plan = self.g.plan
        self.measured = False
        due = [m for m in self.members if self.own(m) in plan.curve_at]
        done = [m for m in self.members if self.own(m) >= plan.total]
        if (due or done) and self.watch:
            self.flush_diverged()
            due = [m for m in due if m in self.members]
            done = [m for m in done if m in self.members]
        accs = self.record(due) if due else {}
        reports = [(m.key, self.own(m), accs[m.key]) for m in due
                   if self.own(m) in plan.period_ends and self.own(m) < plan.total]
        if reports:
            stops = set(self.feed.report(reports))
            self.end([m for m in self.members if m.key in stops], stopped=True)
        self.end([m for m in done if m in self.members])
        if self.ended:
            ended, self.ended = self.ended, []
            self.ask(ended)
        if writer is not None and self.measured and self.members:
            writer.save(partial(self.capture))

    def record(self, members: Sequence[Member]) -> dict[int, float]:
        """A curve point of ``members`` at their own steps (training and validation sets),
        measured fused over their rows only; their validation accuracies by key."""
        t0, p = time.perf_counter(), self.prepared
        assert p is not None
        net = self.subset(members)
        lams = np.array([m.spec.lam for m in members])
        eps = np.array([m.spec.eps for m in members])
        n_ev = members[0].spec.eval_train
        accs: dict[int, float] = {}
        for split, x, y in (("train", p.x_train[:n_ev], p.y_train[:n_ev]),
                            ("val", p.x_val, p.y_val)):
            with np.errstate(over="ignore", invalid="ignore"):  # a diverging run's inf/NaN
                loss, cost, acc = evaluate_group(net, x, y, lams, eps)
            for j, m in enumerate(members):
                own = self.own(m)
                m.curves.append(CurvePoint(own, split, float(loss[j]), float(cost[j]),
                                           float(acc[j]), m.schedule.lr(own)))
                accs[m.key] = float(acc[j])
        self.share("eval_seconds", members, time.perf_counter() - t0)
        self.measured = True
        for m in members:
            if m.watcher is not None:
                m.watcher(tuple(m.curves[-2:]), self.g.plan.total)
        return accs

    def subset(self, members: Sequence[Member]) -> FusedNet:
        """The fused network of ``members``' rows: the group's own when they are all, else a
        copy of just their rows (the group's arrays untouched)."""
        net = self.g.net
        rows = [self.members.index(m) for m in members]  # in the order of ``members``
        if rows == list(range(len(self.members))):
            return net
        sub = copy.copy(net)
        sub.select(np.array(rows, dtype=np.intp))
        return sub

    def end(self, members: Sequence[Member], *, stopped: bool = False) -> None:
        """``members`` end at this step (their schedules done, or stopped by the feed):
        measured on the test set (when the run measures curves), finished, gone."""
        if not members:
            return
        t0, p = time.perf_counter(), self.prepared
        assert p is not None
        tests = np.full(len(members), math.nan)
        if self.g.plan.curve_at:
            _, _, tests = evaluate_group(self.subset(members), p.x_test, p.y_test,
                                         np.array([m.spec.lam for m in members]),
                                         np.array([m.spec.eps for m in members]))
        self.share("eval_seconds", members, time.perf_counter() - t0)
        for m, test_acc in zip(members, tests, strict=True):
            own = self.own(m)
            self.finish(m, own, stopped=stopped, test_acc=float(test_acc),
                        message=f"stopped by the pruner at update {own}" if stopped else "")
        self.leave(members)

    def finish(self, m: Member, updates: int, *, diverged: bool = False,
               stopped: bool = False, message: str = "", test_acc: float = math.nan,
               epochs: float | None = None) -> None:
        """Member ``m``'s result after ``updates`` of its own (its weights kept when asked
        and it did not diverge); delivered to the feed at this step's refill."""
        val_acc = train_acc = math.nan
        if not diverged:
            train_acc = next((c.acc for c in reversed(m.curves) if c.split == "train"),
                             math.nan)
            val_acc = next((c.acc for c in reversed(m.curves) if c.split == "val"), math.nan)
            if m.weights is not None:
                row = self.members.index(m)
                lone = _unstack(self.g.net, row, m.lone)
                message = "; ".join(x for x in (message, keep_weights(
                    m.weights, m.spec, lone.params, test_acc=test_acc, val_acc=val_acc,
                    updates=updates, image_shape=list(self.g.split.x_train.shape[1:]))) if x)
        g = self.g
        if epochs is None:
            epochs = (g.sampler.drawn - m.drawn0) / g.plan.n_train
        self.ended.append((m.key, TrialResult(
            spec=resolved_spec(m.spec, g.plan), val_acc=val_acc, test_acc=test_acc,
            train_acc=train_acc, train_seconds=m.train_seconds, eval_seconds=m.eval_seconds,
            updates=updates, param_count=m.count, epochs=epochs, diverged=diverged,
            stopped=stopped, message=message, curves=tuple(m.curves))))

    # -- checkpoints ---------------------------------------------------------------------------

    def capture(self) -> SlotState:
        """The group's state at this step (host copies, in the lone layout)."""
        g, ms = self.g, self.members
        state = _capture_state(self.step, g.net, g.optimizer, [m.lone for m in ms],
                               list(range(len(ms))), [m.rng for m in ms], g.sampler,
                               [m.curves for m in ms], [m.train_seconds for m in ms],
                               [m.eval_seconds for m in ms], {})
        t = getattr(g.optimizer, "t", None)
        state.opt_t = None if t is None else [int(v) for v in np.asarray(t).reshape(-1)]
        members = [{"key": m.key, "spec": m.spec.to_dict(), "drawn0": m.drawn0} for m in ms]
        return SlotState(self.digest([(m.key, m.spec) for m in ms]), state, members,
                         {**self.counters, "short": self.short})

    def resume(self, saved: SlotState, first: Sequence[SlotTrial]) -> None:
        """Continue from ``saved`` (its members are ``first``'s trials): the group rebuilt
        with their rows in its order and its state put back; the watchers told the points
        restored."""
        by_key = {t.key: t for t in first}
        trials = [by_key[int(m["key"])] for m in saved.members]
        starts = [int(m["spec"]["data_offset"]) for m in saved.members]
        self.setup(trials, starts)
        gs = saved.group
        g = self.g
        _restore_state(gs, g.net, g.optimizer, [m.lone for m in self.members],
                       [m.rng for m in self.members], g.sampler)
        if gs.opt_t is not None:
            g.optimizer.t = np.asarray(gs.opt_t, dtype=np.int64)  # type: ignore[union-attr]
        self.step = gs.step
        for j, (m, saved_m) in enumerate(zip(self.members, saved.members, strict=True)):
            m.drawn0 = int(saved_m["drawn0"])
            m.curves = list(gs.curves[j])
            m.train_seconds, m.eval_seconds = gs.train_seconds[j], gs.eval_seconds[j]
            if m.watcher is not None and m.curves:
                m.watcher(tuple(m.curves), g.plan.total)
        self.counters = {name: int(saved.stats[name]) for name in COUNTERS}
        self.short = bool(saved.stats["short"])

    def stats(self) -> SlotStats:
        return SlotStats(self.size, **self.counters)


def open_slots(run: SlotRun, first: Sequence[SlotTrial],
               checkpoint: str | Path | None) -> CheckpointWriter | None:
    """Resume ``run`` from ``checkpoint`` when it holds a state whose members are ``first``;
    else start: ``first`` join, then the feed is asked for the other slots. The writer of
    the group's next states (None without a file)."""
    saved = None
    if checkpoint is not None and first:
        saved = load_slot_state(checkpoint, run.digest([(t.key, t.spec) for t in first]))
    if saved is not None:
        run.resume(saved, first)
    else:
        run.join(first)
        if run.size > len(run.members):
            run.ask(())
    return CheckpointWriter(checkpoint, "") if checkpoint is not None else None


def train_slots(size: int, feed: Feed, data: Dataset | Split, *,
                first: Sequence[SlotTrial] = (), prepared: Prepared | None = None,
                checkpoint: str | Path | None = None, curves: bool = True) -> SlotStats:
    """Train a slot group of ``size`` slots until the feed has no more trials and every slot
    is empty (see the module docstring); its :class:`SlotStats`.

    ``first``: trials to start with (the feed is then asked for the rest of the slots);
    each trial's result goes to the feed (``Feed.refill``) at the group step it ends, its
    spec's ``data_offset`` the group step it joined at. ``prepared``: the split as the
    network's inputs, shared (:class:`inputs.Prepared`). ``checkpoint``: the group's
    checkpoint file, written at group steps where a trial measured a curve point; when it
    holds a state whose members are exactly ``first``'s keys (same specs) the group
    continues from it bitwise (each member mid-run; the feed is asked only when a slot
    frees), else it starts afresh (a :class:`checkpoint.CheckpointWarning` names a file it
    cannot use). ``curves=False`` measures no curves and no test accuracy.

    A ValueError when ``size`` < 1, ``first`` or the feed give more trials than free slots
    or a key twice, a trial's :func:`group.group_key` differs from the group's, or a trial
    joins at a group step > 0 without ``batch_schedule=constant``.
    """
    if size < 1:
        raise ValueError(f"a slot group needs at least 1 slot, not {size}")
    run = SlotRun(size, feed, data, prepared, curves)
    writer = open_slots(run, list(first), checkpoint)
    try:
        while run.members:
            run.update()
            run.settle(writer)
    finally:
        if writer is not None:
            writer.close()
    return run.stats()
