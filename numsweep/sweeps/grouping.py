"""How a stage's trials form fused groups (``engine.group.train_group``): the automatic group
size (measured by ``engine.pace``, kept per machine by ``pace_cache``), the lag of a
grouped stage's proposals, and claimed trials partitioned into groups."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from numsweep.engine import TrialSpec, max_group_size
from numsweep.engine.group import group_key, groupable

T = TypeVar("T")

MAX_AUTO_GROUP = 32
"""The largest group the automatic choice makes on a CPU: past it the measured per-trial
time of the course ConvNet and the MLP hardly falls (fused.py)."""
MAX_AUTO_GROUP_GPU = 256
"""The largest group the automatic choice makes on a GPU, where groups of hundreds pay
(still no more than its free memory holds)."""
MEMORY_SHARE = 0.5
"""The share of the free memory the automatic choice lets all groups of a process take."""
_LONE_UNMEASURED = ("convnet3",)
"""Models trained one at a time when the measurement cannot run: the three-layer ConvNet in
a group of 8 once took 27.5 ms per update per trial against 21.3 ms alone on a CPU."""


def available_memory(device: str = "cpu") -> int | None:
    """The memory free for new allocations on ``device`` (``backend.free_bytes``), or None
    when it cannot be told."""
    from numsweep.engine.backend import free_bytes

    try:
        return free_bytes(device)
    except Exception:  # no GPU library, no /proc/meminfo: size by the stage alone
        return None


def device_cap(device: str) -> int:
    """The largest automatic group on ``device``."""
    return MAX_AUTO_GROUP if device == "cpu" else MAX_AUTO_GROUP_GPU


def group_cap(spec: TrialSpec, trials: int, jobs: int, image_shape: Sequence[int],
              num_classes: int, *, memory: int | None = None) -> int:
    """The largest group a stage of ``trials`` trials may take: the trials shared out over
    ``jobs`` processes (every core gets a group), at most :func:`device_cap`, and as many
    as :data:`MEMORY_SHARE` of the free memory holds (``engine.sizing.max_group_size``; on a
    GPU its free memory, one process each)."""
    limit = device_cap(spec.device)
    size = min(math.ceil(trials / max(jobs, 1)), limit)
    memory = available_memory(spec.device) if memory is None else memory
    if memory is not None:  # engine.sizing: weights, gradients, optimizer state, activations
        share = MEMORY_SHARE if spec.device == "cpu" else 1.0
        size = min(size, max_group_size(spec, tuple(image_shape), num_classes,  # type: ignore[arg-type]
                                        int(memory * share / max(jobs, 1)), limit=limit))
    return max(1, size)


def candidate_sizes(cap: int) -> list[int]:
    """The group sizes measured for a cap: 1, the powers of two below it, and the cap."""
    sizes = [1]
    while sizes[-1] * 2 < cap:
        sizes.append(sizes[-1] * 2)
    return sizes + ([cap] if cap > 1 else [])


@dataclass(frozen=True)
class GroupChoice:
    """The automatic group size and the measurement that chose it (seconds per
    trial-update by group size; empty when nothing was measured)."""

    size: int
    pace: dict[int, float] = field(default_factory=dict)


GAIN_MARGIN = 0.05
"""How much faster per trial than a lone trial a group must measure to be chosen: smaller
gains are within the measurement's spread on a busy machine (on a shared 2-core CPU the
three-layer ConvNet's group of 2 came out faster than a lone trial in one of three runs a
minute apart, slower in the other two)."""


def fastest_size(pace: Mapping[int, float], cap: int) -> int:
    """The size of least time per trial-update among the measured ones up to ``cap``, or the
    smallest within :data:`GAIN_MARGIN` of it (as fast within the spread, and a smaller
    group holds less memory and lags less); 1 when none is :data:`GAIN_MARGIN` faster per
    trial than a lone trial."""
    lone = pace[1]
    sizes = sorted(k for k in pace if 1 < k <= cap and pace[k] < lone * (1 - GAIN_MARGIN))
    if not sizes:
        return 1
    fastest = min(pace[k] for k in sizes)
    return next(k for k in sizes if pace[k] <= fastest * (1 + GAIN_MARGIN))


def auto_group_size(spec: TrialSpec, trials: int, jobs: int, image_shape: Sequence[int],
                    num_classes: int, *, threads: int = 1, memory: int | None = None,
                    measure: Callable[[Sequence[int]], Mapping[int, float]] | None = None
                    ) -> GroupChoice:
    """The group size chosen when ``--group-size`` is not given, for any sampler (a slot
    group refills a freed slot at once, so a stage that proposes from results needs no
    small groups): the size of least measured time per trial-update
    (:func:`fastest_size`) among 1, the powers of two and :func:`group_cap` itself.
    ``measure`` takes the sizes and gives the seconds per trial-update of each; by default
    the engine's measurement (``engine.pace``) under ``threads`` BLAS threads, kept per
    machine (:func:`pace_cache.cached_pace`). Nothing is measured for a model that cannot
    be grouped, a stage of one trial, or a cap of 1. When the measurement cannot run, the
    cap (1 for ``convnet3``)."""
    if not groupable(spec) or trials <= 1:
        return GroupChoice(1)
    cap = group_cap(spec, trials, jobs, image_shape, num_classes, memory=memory)
    if cap <= 1:
        return GroupChoice(1)
    sizes = candidate_sizes(cap)
    if measure is None:
        from numsweep.sweeps.pace_cache import cached_pace

        def measure(ks: Sequence[int]) -> Mapping[int, float]:
            return cached_pace(spec, image_shape, num_classes, ks, threads)
    try:
        pace = {int(k): float(v) for k, v in measure(sizes).items()
                if int(k) in sizes and math.isfinite(float(v)) and float(v) > 0}
    except Exception:  # the measurement cannot run here (a device, a library): today's rules
        pace = {}
    if 1 not in pace:
        return GroupChoice(1 if spec.model in _LONE_UNMEASURED else cap)
    return GroupChoice(fastest_size(pace, cap), pace)


def proposal_lag(sync: int, size: int) -> int:
    """How many configurations behind a grouped stage's proposals are: ``sync`` rounded up
    to a multiple of the group size (``sync`` itself for groups of one). A batch of ``size``
    configurations starting at ``k0`` is proposed knowing exactly the results of
    configurations ``0 .. k0 - lag``."""
    size = max(size, 1)
    return size * math.ceil(sync / size)


def form_groups(pending: Sequence[T], spec_of: Callable[[T], TrialSpec],
                size: int) -> list[list[T]]:
    """``pending`` trials in groups of at most ``size`` that share a group key, in their
    order; a trial that cannot be grouped is a group of its own."""
    groups: list[list[T]] = []
    open_groups: dict[object, list[T]] = {}
    for item in pending:
        spec = spec_of(item)
        if size <= 1 or not groupable(spec):
            groups.append([item])
            continue
        key = group_key(spec)
        group = open_groups.get(key)
        if group is None or len(group) >= size:
            group = []
            open_groups[key] = group
            groups.append(group)
        group.append(item)
    return groups
