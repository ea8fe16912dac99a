"""Population-based training (Jaderberg et al. 2017) inside one fused group.

A population of P specs of one :func:`group.group_key` trains as one fused group
(``group.py``). Every ``interval`` updates (an *exploit step*, at 0 < u < total) every
member is measured at once (:func:`evaluation.evaluate_group` on the validation set or its
first ``metric_subset`` images) and ranked; each member of the bottom ceil(q P) (the
diverged ones first, always replaced) copies a member of the top ceil(q P) drawn by the
PBT generator. The copy is one row of each fused array into another
(:meth:`group.GroupRun.copy_member`: parameters, optimizer state, Adam's count when per
trial; the members share the step, so the schedule position is the same) and the source's
explored values (:class:`Bound`); *explore* then multiplies each value by one of
``factors`` or, with ``resample_probability``, draws it anew from its bound, and clips it
there (:meth:`group.GroupRun.set_values`: the spec, the member's schedule rebuilt with the
values, the rule's and the network's per-trial values). Nothing touches the disk.

A member whose loss becomes NaN/inf stays in the group, marked, until the next exploit
step replaces it; one that diverges after the last exploit step leaves the group, its
result marked diverged. Decisions come from their own generator (``settings.seed``), so
the same specs, data and settings give the same events and results; the checkpoint holds
every exploit step's state (the group's, the events, the generator) and a run resumed from
it continues with the same history bitwise.

Replay: :func:`lineage_changes` turns the events into a member's ``hp_changes``, the values
its final weights trained under, back through the members it copied to its root ancestor
(:func:`lineage_root`): ``train(replace(specs[root], hp_changes=...))`` retrains that
schedule alone from scratch.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from numsweep.engine.checkpoint import (
    CheckpointWriter,
    PopulationState,
    load_population_state,
    state_digest,
)
from numsweep.engine.data import Dataset, Split
from numsweep.engine.evaluation import evaluate_group
from numsweep.engine.group import GroupRun, PointWatcher, check_group, start_run
from numsweep.engine.inputs import Prepared
from numsweep.engine.spec import CHANGEABLE, SpecError, TrialResult, TrialSpec

METRICS = {"val_acc": True, "val_loss": False}
"""The metrics a population is ranked by, and whether higher is better."""


@dataclass(frozen=True)
class Bound:
    """One explored parameter's range (a :data:`spec.CHANGEABLE` name); ``log``: resampled
    log-uniformly (else uniformly)."""

    name: str
    low: float
    high: float
    log: bool = True

    def __post_init__(self) -> None:
        if self.name not in CHANGEABLE:
            raise SpecError(f"PBT bound {self.name!r} is invalid: expected one of "
                            f"{', '.join(CHANGEABLE)}")
        if not (math.isfinite(self.low) and math.isfinite(self.high)
                and self.low <= self.high and (self.low > 0 or not self.log)):
            raise SpecError(f"PBT bound {self.name}=[{self.low}, {self.high}] is invalid: "
                            f"expected finite low <= high{', low > 0 (log)' * self.log}")

    def clip(self, value: float) -> float:
        return float(min(max(value, self.low), self.high))

    def draw(self, rng: np.random.Generator) -> float:
        if self.log:
            return self.clip(math.exp(rng.uniform(math.log(self.low), math.log(self.high))))
        return self.clip(rng.uniform(self.low, self.high))


@dataclass(frozen=True)
class PBTSettings:
    """How a population exploits and explores (see the module docstring)."""

    interval: int
    quantile: float = 0.25
    metric: str = "val_acc"
    metric_subset: int | None = None
    factors: tuple[float, ...] = (0.8, 1.2)
    resample_probability: float = 0.25
    bounds: tuple[Bound, ...] = ()
    seed: int = 0

    def __post_init__(self) -> None:
        checks = [
            (self.interval > 0, "interval", "> 0 updates"),
            (0 < self.quantile <= 0.5, "quantile", "in (0, 0.5]"),
            (self.metric in METRICS, "metric", f"one of {', '.join(METRICS)}"),
            (self.metric_subset is None or self.metric_subset >= 1, "metric_subset",
             "at least 1 image (unset: the whole validation set)"),
            (len(self.factors) >= 1 and all(math.isfinite(f) and f > 0 for f in self.factors),
             "factors", "one or more positive factors"),
            (0 <= self.resample_probability <= 1, "resample_probability", "in [0, 1]"),
            (len({b.name for b in self.bounds}) == len(self.bounds), "bounds",
             "one bound per parameter"),
            (self.seed >= 0, "seed", ">= 0")]
        for ok, name, expected in checks:
            if not ok:
                raise SpecError(f"PBT {name}={getattr(self, name)!r} is invalid: expected "
                                f"{expected}")


@dataclass(frozen=True)
class ExploitEvent:
    """One member replaced at an exploit step: the member it copied, both metrics then
    (NaN for a diverged member), its explored values before and after."""

    update: int
    member: int
    source: int
    metric_member: float
    metric_source: float
    before: Mapping[str, float]
    after: Mapping[str, float]


@dataclass(frozen=True)
class PopulationResult:
    """One result per member (its spec with the member's final values; curves as measured),
    every exploit event in order, and the seconds spent in exploit steps (measuring and
    copying; not counted in the members' ``train_seconds``/``eval_seconds``)."""

    results: tuple[TrialResult, ...]
    events: tuple[ExploitEvent, ...]
    exploit_seconds: float = field(default=0.0)

    def exploit_share(self) -> float:
        """``exploit_seconds`` over the population's wall time spent training, measuring
        and exploiting (the members' seconds are its time shared out among them)."""
        spent = sum(r.train_seconds + r.eval_seconds for r in self.results)
        total = spent + self.exploit_seconds
        return self.exploit_seconds / total if total > 0 else 0.0


def exploit_steps(total: int, interval: int) -> tuple[int, ...]:
    """The updates an exploit step is made before: every ``interval``, 0 < u < total."""
    return tuple(range(interval, total, interval))


def choose_members(metric: np.ndarray, diverged: Collection[int], n: int,
                   higher_better: bool) -> tuple[list[int], list[int]]:
    """(the members replaced, in order: the diverged ones by index, then the worst first up
    to ``n`` in all; the ``n`` members copied from, best first). A member whose metric is
    not finite counts as diverged; ties go by index."""
    p = len(metric)
    bad = [i for i in range(p) if i in diverged or not np.isfinite(metric[i])]
    sign = -1.0 if higher_better else 1.0
    healthy = sorted((i for i in range(p) if i not in bad), key=lambda i: (sign * metric[i], i))
    top = healthy[:n]
    worst = [i for i in reversed(healthy) if i not in top][:max(0, n - len(bad))]
    return bad + worst, top


def explore_values(values: Mapping[str, float], settings: PBTSettings,
                   rng: np.random.Generator) -> dict[str, float]:
    """Each bound's value of ``values`` times one of ``factors`` or, with
    ``resample_probability``, drawn anew from its bound; clipped to the bound."""
    out = {}
    for b in settings.bounds:
        if rng.random() < settings.resample_probability:
            out[b.name] = b.draw(rng)
        else:
            factor = settings.factors[int(rng.integers(len(settings.factors)))]
            out[b.name] = b.clip(values[b.name] * factor)
    return out


def member_values(spec: TrialSpec) -> dict[str, float]:
    """A spec's :data:`spec.CHANGEABLE` values (what an exploit copies and may change)."""
    return {name: float(getattr(spec, name)) for name in CHANGEABLE}


def consistent(values: dict[str, float]) -> dict[str, float]:
    """``values`` with ``eta_min`` capped at ``eta_max`` (a spec's rule: an explored
    eta_max may fall below the source's eta_min)."""
    if "eta_min" in values and "eta_max" in values:
        values["eta_min"] = min(values["eta_min"], values["eta_max"])
    return values


class Population:
    """A population's run: its fused group (:class:`group.GroupRun`, all members training
    while an exploit step lies ahead), the PBT generator and the events so far."""

    def __init__(self, run: GroupRun, settings: PBTSettings,
                 on_exploit: Callable[[ExploitEvent], None] | None) -> None:
        self.run, self.settings, self.on_exploit = run, settings, on_exploit
        self.rng = np.random.default_rng(settings.seed)
        self.events: list[ExploitEvent] = []
        self.exploit_seconds = 0.0
        self.steps = exploit_steps(run.plan.total, settings.interval)
        self.done_at: int | None = None  # the exploit step last made (a resumed run's)
        self.n = math.ceil(settings.quantile * len(run.specs))

    def explored(self, i: int) -> dict[str, float]:
        return {b.name: float(getattr(self.run.specs[i], b.name)) for b in self.settings.bounds}

    def measure(self) -> np.ndarray:
        """Every member's metric (member order), fused, on the validation set's first
        ``metric_subset`` images (all when unset)."""
        run, subset = self.run, self.settings.metric_subset
        with np.errstate(all="ignore"):  # a diverged member's inf/NaN
            loss, _, acc = evaluate_group(run.net, run.prepared.x_val[:subset],
                                          run.prepared.y_val[:subset], run.values("lam"),
                                          run.values("eps"))
        return acc if METRICS[self.settings.metric] else loss

    def exploit(self) -> list[ExploitEvent]:
        """The exploit step at ``run.step``: measure, rank, copy rows, explore."""
        t0 = time.perf_counter()
        run = self.run
        run.flush_diverged()  # on a device: the marks made there
        metric = self.measure()
        metric[list(run.marked)] = math.nan  # a diverged member's accuracy means nothing
        replaced, sources = choose_members(metric, run.marked, self.n,
                                           METRICS[self.settings.metric])
        if not sources:  # every member diverged: nothing to copy from
            self.end_diverged()
            return []
        events = []
        for i in replaced:
            src = sources[int(self.rng.integers(len(sources)))]
            before = self.explored(i)
            after = explore_values(self.explored(src), self.settings, self.rng)
            run.copy_member(i, src)
            run.set_values(i, consistent({**member_values(run.specs[src]), **after}))
            run.marked.pop(i, None)
            events.append(ExploitEvent(run.step, i, src, float(metric[i]), float(metric[src]),
                                       before, after))
        self.events += events
        self.exploit_seconds += time.perf_counter() - t0
        return events

    def end_diverged(self) -> None:
        """Every member leaves, diverged (each with the message it was marked with)."""
        run = self.run
        for i in run.active:
            run.finish(i, run.step, diverged=True, message=run.marked.get(
                i, f"metric not finite at update {run.step}"))
        run.leave(list(range(len(run.active))))

    def capture(self) -> PopulationState:
        run = self.run
        return PopulationState(run.capture(), {
            "values": [member_values(s) for s in run.specs],
            "events": [dataclasses.asdict(e) for e in self.events],
            "rng": self.rng.bit_generator.state, "exploit_seconds": self.exploit_seconds,
            "done_at": self.done_at, "marked": {str(i): m for i, m in run.marked.items()}})

    def resume(self, saved: PopulationState) -> None:
        """Continue from ``saved``: the group's state, the members' values, the events,
        the generator."""
        run, extra = self.run, saved.extra
        run.resume(saved.group)
        for i, values in enumerate(extra["values"]):
            run.set_values(i, {k: float(v) for k, v in values.items()})
        self.events = [ExploitEvent(**e) for e in extra["events"]]
        self.rng.bit_generator.state = extra["rng"]
        self.exploit_seconds = float(extra["exploit_seconds"])
        self.done_at = extra["done_at"]
        run.marked = {int(i): str(m) for i, m in extra["marked"].items()}

    def train(self, writer: CheckpointWriter | None) -> None:
        """Update to the end: an exploit step (then the checkpoint, then ``on_exploit``)
        before each of :attr:`steps`, curves at the curve points."""
        run, steps = self.run, set(self.steps)
        last = self.steps[-1] if self.steps else 0
        while run.step < run.plan.total and run.active:
            if run.step in steps and run.step != self.done_at:
                events = self.exploit()
                self.done_at = run.step
                if writer is not None and run.active:
                    writer.save(self.capture)
                if self.on_exploit is not None:
                    for event in events:
                        self.on_exploit(event)
                if not run.active:
                    break
            run.hold_diverged = run.step < last
            with np.errstate(over="ignore", invalid="ignore"):  # a diverging member's step
                run.update()
            if run.active and run.step in run.plan.curve_at:
                run.at_curve_point(None)
        run.flush_diverged()
        if run.active:
            run.finish_active()


def check_population(specs: Sequence[TrialSpec], settings: PBTSettings) -> None:
    """A ValueError (SpecError for a value) when ``specs`` cannot train as a population."""
    if len(specs) < 2:
        raise ValueError(f"a population needs at least 2 members, not {len(specs)}")
    check_group(specs)
    for spec in specs:
        if spec.hp_changes or spec.data_offset:
            raise ValueError("a population's specs have no hp_changes and data_offset=0 "
                             "(PBT makes the changes)")
    for b in settings.bounds:  # each end valid with the group's optimizer and schedule
        for value in (b.low, b.high):
            try:
                dataclasses.replace(specs[0], **consistent({**member_values(specs[0]),
                                                            b.name: value}))
            except SpecError as exc:
                raise SpecError(f"PBT bound {b.name}=[{b.low}, {b.high}] is invalid: "
                                f"{exc}") from None


def population_digest(run: GroupRun, settings: PBTSettings) -> str:
    """What a population's checkpoint must match: its specs and data (as a group's),
    and the settings."""
    text = json.dumps(dataclasses.asdict(settings), sort_keys=True)
    return state_digest(run.specs, run.prepared.y_train, run.split.x_train.shape[1:],
                        run.split.num_classes) + ".pbt." + hashlib.sha256(
                            text.encode()).hexdigest()


def train_population(specs: Sequence[TrialSpec], data: Dataset | Split,
                     settings: PBTSettings, *, prepared: Prepared | None = None,
                     checkpoint: str | Path | None = None,
                     on_points: Sequence[PointWatcher | None] | None = None,
                     on_exploit: Callable[[ExploitEvent], None] | None = None,
                     weights: Sequence[str | Path | None] | None = None) -> PopulationResult:
    """Train ``specs`` (one group key, P >= 2, all from update 0) as a PBT population.

    ``checkpoint``: written at every exploit step; a file holding a state of these specs,
    data and settings is resumed from (the watchers first hear the points before it),
    and the run ends as an uninterrupted one would. ``on_points``: one watcher (or None)
    per member, as in :func:`group.train_group`; ``on_exploit`` hears each event after
    its step (and its checkpoint); ``weights``: one path (or None) per member for its
    final network."""
    specs = list(specs)
    check_population(specs, settings)
    watchers = list(on_points) if on_points is not None else [None] * len(specs)
    if len(watchers) != len(specs) or (weights is not None and len(weights) != len(specs)):
        raise ValueError(f"point watchers and weights need one entry per member "
                         f"({len(specs)})")
    run = start_run(specs, data, prepared=prepared)
    run.watchers, run.weights = watchers, weights
    run.declared = run.specs  # a member's result holds its final values
    population = Population(run, settings, on_exploit)
    digest = population_digest(run, settings)
    saved = load_population_state(checkpoint, digest)
    writer = CheckpointWriter(checkpoint, digest) if checkpoint is not None else None
    if saved is not None:
        population.resume(saved)
    elif run.plan.curve_at:
        run.record()
    try:
        population.train(writer)
    finally:
        if writer is not None:
            writer.close()
    return PopulationResult(tuple(run.results[i] for i in range(len(specs))),
                            tuple(population.events), population.exploit_seconds)


def _segments(events: Sequence[ExploitEvent], member: int) -> tuple[int, list[int]]:
    """(the root ancestor, the indices of the events the member's final weights came
    through, the latest first). A source is never replaced at its own exploit step, so
    the source's latest event before this one is at an earlier update."""
    chain: list[int] = []
    current = member
    for n in range(len(events) - 1, -1, -1):
        if events[n].member == current:
            chain.append(n)
            current = events[n].source
    return current, chain


def lineage_root(events: Sequence[ExploitEvent], member: int) -> int:
    """The member whose initial weights (update 0) ``member``'s final weights came from,
    following the copies back (itself when it was never replaced)."""
    return _segments(events, member)[0]


def lineage_changes(events: Sequence[ExploitEvent], member: int,
                    initial_values: Sequence[Mapping[str, float] | TrialSpec]
                    ) -> tuple[tuple[int, str, float], ...]:
    """``member``'s ancestry as ``hp_changes`` of the root's spec (:func:`lineage_root`):
    the values its final weights trained under. ``initial_values``: one mapping (or spec)
    per member; an exploit gives the member the source's values then with the explored
    ones of ``after`` (and :func:`consistent`), as the run did; a change wherever a value
    differs from the one before."""
    values = [member_values(v) if isinstance(v, TrialSpec) else dict(v)
              for v in initial_values]
    root, chain = _segments(events, member)
    set_at: dict[int, dict[str, float]] = {}
    for n, e in enumerate(events):  # every member's values, event by event
        values[e.member] = set_at[n] = consistent({**values[e.source], **e.after})
    current = dict(member_values(initial_values[root]) if isinstance(
        initial_values[root], TrialSpec) else initial_values[root])
    changes: list[tuple[int, str, float]] = []
    for n in reversed(chain):
        for name, value in set_at[n].items():
            if current.get(name) != value:
                changes.append((events[n].update, name, float(value)))
                current[name] = value
    return tuple(changes)
