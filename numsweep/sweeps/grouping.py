"""How a stage's trials form fused groups (``engine.group.train_group``): the automatic group
size, the lag of a grouped stage's proposals, and claimed trials partitioned into groups."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from itertools import pairwise
from typing import TypeVar

import numpy as np

from numsweep.engine import TrialSpec
from numsweep.engine.group import group_key, groupable

T = TypeVar("T")

MAX_AUTO_GROUP = 32
"""The largest group the automatic choice makes: past it the measured per-trial time of the
course ConvNet and the MLP hardly falls (fused.py)."""
MEMORY_SHARE = 0.5
"""The share of the free memory the automatic choice lets all groups of a process take."""


def available_memory() -> int | None:
    """The memory free for new allocations (MemAvailable of /proc/meminfo), or None."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def trial_memory(spec: TrialSpec, image_shape: Sequence[int], num_classes: int) -> int:
    """A rough upper estimate of one trial's bytes inside a group: its parameters with
    gradients and optimizer state, and the activations of its largest batch and of an
    evaluation chunk."""
    d = int(np.prod(image_shape))
    widths = [*spec.hidden, num_classes]
    if spec.model == "convnet":
        fs = spec.f if isinstance(spec.f, tuple) else (spec.f,)
        nfs = spec.nf if isinstance(spec.nf, tuple) else (spec.nf,)
        side = image_shape[-2] if len(image_shape) >= 2 else 32
        conv = sum((side // f) ** 2 * nf for f, nf in zip(fs, nfs, strict=False))
        params = sum(f * f * 3 * nf for f, nf in zip(fs, nfs, strict=False))
        params += conv * widths[0] + sum(a * b for a, b in pairwise(widths))
        width = conv + sum(widths)
    else:
        sizes = [d, *widths]
        params = sum(a * b for a, b in pairwise(sizes))
        width = sum(widths)
    itemsize = np.dtype(spec.dtype).itemsize
    return itemsize * (6 * params + 4 * max(spec.batch_size, 1000) * width)


def auto_group_size(spec: TrialSpec, trials: int, jobs: int, image_shape: Sequence[int],
                    num_classes: int, *, sync: int | None = None,
                    memory: int | None = None) -> int:
    """The group size chosen when ``--group-size`` is not given: the stage's ``trials``
    shared out over ``jobs`` processes (so every core gets a group), at most
    :data:`MAX_AUTO_GROUP`, and as many as :data:`MEMORY_SHARE` of the free memory holds.
    A stage whose proposals wait for results (``sync``: tpe, gp, cmaes or a pruner) takes
    ``sync // 2`` whatever ``jobs`` is (two groups in flight; the group size decides the
    proposals, so it must not depend on ``--jobs``). 1 for a model that cannot be grouped."""
    if not groupable(spec) or trials <= 1:
        return 1
    size = min(math.ceil(trials / max(jobs, 1)), MAX_AUTO_GROUP)
    if sync is not None:
        size = min(trials, MAX_AUTO_GROUP, max(1, sync // 2))
    memory = available_memory() if memory is None else memory
    if memory is not None:
        per_trial = max(trial_memory(spec, image_shape, num_classes), 1)
        size = min(size, int(memory * MEMORY_SHARE / max(jobs, 1) // per_trial))
    return max(1, size)


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
