"""What runs inside a worker process for a slot group (``engine.train_slots``): its feed,
which turns each ended trial into a :class:`~numsweep.sweeps.worker.TrialOutcome` for the
sweep process and each trial the sweep process claimed into a slot (:class:`SlotFeed`), and
:func:`execute_slots`, which trains the group and never raises.

A slot group holds up to ``size`` trials of one stage that share a group key; a slot freed
by a trial that ended (complete, pruned, diverged) is refilled at once with the next trial
the sweep process has for the key. The engine knows each trial by its planned slot in the
stage (``TrialTask.slot``: the same for every attempt, so a group's checkpoint names its
members across a restart). Pruning by an Optuna pruner is asked of the sweep process at each
trial's own period ends, with the study as it is then; the ``front`` rule and a trial without
a pruner (its reports recorded, ``stop_at`` kept) are decided here.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from threadpoolctl import threadpool_limits

from numsweep.sweeps.front_pruning import FrontPruner, RungClock
from numsweep.sweeps.slot_links import SweepSideError
from numsweep.sweeps.worker import (
    Recorder,
    TrialOutcome,
    TrialTask,
    _outcome_extras,
    _watcher,
    load_split,
    prepared_for,
    trial_param_count,
    worker_name,
)

if TYPE_CHECKING:
    from numsweep.engine import TrialResult
    from numsweep.engine.slots import SlotStats, SlotTrial


@dataclass(frozen=True)
class SlotGroupTask:
    """One slot group of a stage: ``first`` the trials it starts with (a group continued
    from ``checkpoint`` starts with the members saved there), ``size`` its slots; ``link``
    reaches the sweep process (``slot_links.py``) for the rest."""

    group_id: int
    size: int
    first: tuple[TrialTask, ...]
    link: Any
    checkpoint: str | None = None
    stage_id: int | None = None


@dataclass(frozen=True)
class SlotGroupOutcome:
    """How a slot group ended: its occupancy (``engine.slots.SlotStats``; None when it
    failed), and the outcomes of the trials it could not hand to the sweep process (every
    member's failure when the group failed)."""

    group_id: int
    stats: SlotStats | None
    left: tuple[TrialOutcome, ...] = ()
    error: str = ""
    worker: str = ""  # the process that trained it (host:pid)


class LiveReports:
    """A trial pruned by the sweep process's Optuna pruner: its reports, kept for the
    outcome (the decisions are the sweep process's)."""

    def __init__(self) -> None:
        self.reports: list[tuple[int, float]] = []


Reporter = Recorder | FrontPruner | LiveReports


def slot_reporter(task: TrialTask, size: int, param_count: Callable[[], int]) -> Reporter:
    """``front``: the rung rule, each trial on a clock of its own (a slot's time is the
    group's shared among ``size`` slots); an Optuna pruner: the sweep process decides;
    none: a recorder."""
    if task.prune is None:
        return Recorder(task.stop_at)
    if task.prune.front is not None:
        return FrontPruner(task.prune.front, RungClock(size), param_count())
    return LiveReports()


class SlotFeed:
    """The engine's ``Feed`` of one slot group: asks the sweep process (``link``) for
    trials and pruning decisions; ``on_join`` / ``on_leave`` see the members change (the
    worker's pid files, ``deaths.py``)."""

    def __init__(self, task: SlotGroupTask, param_count: Callable[[TrialTask], int],
                 on_join: Callable[[Sequence[TrialTask]], None] = lambda _t: None,
                 on_leave: Callable[[Sequence[TrialTask]], None] = lambda _t: None) -> None:
        self.task = task
        self.param_count = param_count
        self.on_join = on_join
        self.on_leave = on_leave
        self.members: dict[int, TrialTask] = {}  # slot -> its task
        self.reporters: dict[int, Reporter] = {}
        self.worker = worker_name()

    def join(self, tasks: Sequence[TrialTask]) -> list[SlotTrial]:
        from numsweep.engine.slots import SlotTrial

        for t in tasks:
            assert t.slot is not None
            self.members[t.slot] = t
            self.reporters[t.slot] = slot_reporter(t, self.task.size,
                                                   lambda t=t: self.param_count(t))  # type: ignore[misc]
        self.on_join(tasks)
        return [SlotTrial(key=t.slot, spec=t.spec, watcher=_watcher(t), weights=t.weights)  # type: ignore[arg-type]
                for t in tasks]

    def outcome(self, key: int, result: TrialResult) -> TrialOutcome:
        t = self.members.pop(key)
        reporter = self.reporters.pop(key)
        return TrialOutcome(t.trial_id, result, worker=self.worker,
                            reports=tuple(reporter.reports),
                            group=(self.task.group_id, self.task.size),
                            **_outcome_extras(reporter))  # type: ignore[arg-type]

    def refill(self, ended: Sequence[tuple[int, TrialResult]], free: int) -> list[SlotTrial]:
        left = [self.members[key] for key, _ in ended]
        outcomes = tuple(self.outcome(key, result) for key, result in ended)
        tasks = self.task.link.ask("refill", self.task.group_id, (outcomes, free))
        self.on_leave(left)  # stored by the sweep process now
        return self.join(tasks)

    def report(self, reports: Sequence[tuple[int, int, float]]) -> Collection[int]:
        stop: set[int] = set()
        asked: list[tuple[int, int, float]] = []
        for key, step, val_acc in reports:
            reporter = self.reporters[key]
            if isinstance(reporter, LiveReports):
                reporter.reports.append((int(step), float(val_acc)))
                asked.append((self.members[key].trial_id, int(step), float(val_acc)))
            elif reporter(int(step), float(val_acc)):
                stop.add(key)
        if asked:
            pruned = set(self.task.link.ask("report", self.task.group_id, tuple(asked)))
            stop |= {key for key, t in self.members.items() if t.trial_id in pruned}
        return stop


def execute_slots(task: SlotGroupTask,
                  on_join: Callable[[Sequence[TrialTask]], None] = lambda _t: None,
                  on_leave: Callable[[Sequence[TrialTask]], None] = lambda _t: None
                  ) -> SlotGroupOutcome:
    """Train a slot group until the sweep process has nothing more for it; an exception
    (or a line to the sweep process that broke) fails the trials it holds then."""
    from numsweep.engine.slots import train_slots

    first = task.first[0] if task.first else None
    feed: SlotFeed | None = None
    try:
        if first is None:
            raise ValueError("a slot group starts with at least one trial")
        split = load_split(first)
        feed = SlotFeed(task, lambda t: trial_param_count(t.spec, split), on_join, on_leave)
        starting = feed.join(task.first)
        with threadpool_limits(limits=first.blas_threads):
            stats = train_slots(task.size, feed, split, first=starting,
                                prepared=prepared_for(first.spec, split, first.shared),
                                checkpoint=task.checkpoint)
        return SlotGroupOutcome(task.group_id, stats, worker=worker_name())
    except SweepSideError as exc:  # the group trained in the sweep's process, which stops
        raise exc.error from None
    except Exception as exc:  # the sweep records it for every trial the group held
        held = list(feed.members.values()) if feed is not None else list(task.first)
        error = f"{type(exc).__name__}: {exc}"
        text = traceback.format_exc()
        name = worker_name()
        return SlotGroupOutcome(task.group_id, None, tuple(
            TrialOutcome(t.trial_id, None, error=error, traceback=text, worker=name,
                         group=(task.group_id, task.size)) for t in held), error)
