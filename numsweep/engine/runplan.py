"""A run's lengths, all from its spec and its training-set size: the half-cycle ``n_s``,
the schedules and their total updates, the batch sizes, the curve points and the periods
(reporters hear at a period's end), and the evaluation chunk. The loop, the sizing and the
budget planner all take them from here."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from numsweep.engine.batch_schedules import BatchSchedule, largest_batch, make_batch_schedule
from numsweep.engine.schedules import CYCLIC, Schedule, make_schedule
from numsweep.engine.spec import TrialSpec, updates_with_n_s

EVAL_CHUNK = 1000
"""Images per forward pass when one trial measures a set: small enough that a chunk's
activations stay in the cache, large enough that the products are BLAS-sized."""

EVAL_CHUNK_MIN = 100
"""A group of K measures a set EVAL_CHUNK // K images per forward pass (at least this many),
so its activations stay about as large as one trial's."""


def eval_chunk(k: int) -> int:
    """Images per forward pass when a group of ``k`` measures a set."""
    return max(EVAL_CHUNK // k, EVAL_CHUNK_MIN) if k > 1 else EVAL_CHUNK


def resolve_n_s(spec: TrialSpec, n_train: int) -> int:
    """The half-cycle length: ``n_s``, or two epochs of ``n_train // batch_size`` updates."""
    return spec.n_s if spec.n_s is not None else 2 * (n_train // spec.batch_size)


def uses_n_s(spec: TrialSpec) -> bool:
    """Whether the run's lengths depend on ``n_s`` (the cyclic schedules, a run without
    ``n_updates``, the cyclic batch schedule): a range test's do not."""
    return (spec.schedule in CYCLIC or spec.n_updates is None
            or spec.batch_schedule == "cyclic")


def planned_updates(spec: TrialSpec, n_train: int) -> int:
    """The updates ``spec`` plans on ``n_train`` training images."""
    return updates_with_n_s(spec, resolve_n_s(spec, n_train))


def check_batch_sizes(spec: TrialSpec, n: int) -> None:
    if largest_batch(spec) > n:
        name = "batch_size" if spec.batch_schedule == "constant" else "b_max"
        raise ValueError(f"{name}={largest_batch(spec)} exceeds n_train={n}")


def curve_steps(ends: tuple[int, ...], points: int) -> tuple[int, ...]:
    """The update steps curves are measured at: ``points`` evenly spaced in each period
    (cycle or epoch) whose ends are ``ends``, the last at the period's end."""
    steps: set[int] = set()
    start = 0
    for end in ends:
        steps.update(start + round(k * (end - start) / points) for k in range(1, points + 1))
        start = end
    steps.discard(0)
    return tuple(sorted(steps))


@dataclass(frozen=True)
class RunPlan:
    """The lengths of a group's run (its specs share every one but the schedules' rates).

    ``curve_at`` are the steps curves are measured at (none for a run without curves),
    ``period_ends`` the steps reporters hear at."""

    n_train: int
    n_s: int
    total: int
    schedules: tuple[Schedule, ...]
    batches: BatchSchedule
    curve_at: frozenset[int]
    period_ends: tuple[int, ...]


def plan_run(specs: Sequence[TrialSpec], n_train: int, *, curves: bool = True) -> RunPlan:
    """The :class:`RunPlan` of ``specs`` on ``n_train`` images; a ValueError when a batch is
    larger than the training set or ``n_s`` resolves to nothing."""
    spec0 = specs[0]
    check_batch_sizes(spec0, n_train)
    n_s = resolve_n_s(spec0, n_train)
    if n_s < 1 and uses_n_s(spec0):
        raise ValueError(f"n_s resolves to {n_s}: n_train={n_train} is smaller than 2 batches")
    n_s = max(1, n_s)
    plans = [make_schedule(s, n_s, n_train // s.batch_size) for s in specs]
    total, ends = plans[0].total, plans[0].ends
    steps = frozenset(curve_steps(ends, spec0.curve_points)) if curves else frozenset()
    return RunPlan(n_train, n_s, total, tuple(p.schedule for p in plans),
                   make_batch_schedule(spec0, n_s, total), steps, ends)
