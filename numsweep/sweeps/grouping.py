"""How a stage's trials form fused groups (``engine.group.train_group``): the automatic group
size, the lag of a grouped stage's proposals, and claimed trials partitioned into groups."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import TypeVar

from numsweep.engine import TrialSpec, max_group_size
from numsweep.engine.group import group_key, groupable

T = TypeVar("T")

MAX_AUTO_GROUP = 32
"""The largest group the automatic choice makes: past it the measured per-trial time of the
course ConvNet and the MLP hardly falls (fused.py)."""
MEMORY_SHARE = 0.5
"""The share of the free memory the automatic choice lets all groups of a process take."""


def available_memory(device: str = "cpu") -> int | None:
    """The memory free for new allocations on ``device`` (``backend.free_bytes``), or None
    when it cannot be told."""
    from numsweep.engine.backend import free_bytes

    try:
        return free_bytes(device)
    except Exception:  # no GPU library, no /proc/meminfo: size by the stage alone
        return None


LONE_BY_DEFAULT = ("convnet3",)
"""Models trained one trial at a time unless ``--group-size`` says otherwise: the three-layer
ConvNet (CPU only) in a group of 8 took 27.5 ms per update per trial against 21.3 ms for a lone
trial (its per-trial pooling and the im2col products do not gain from the trial axis)."""


def auto_group_size(spec: TrialSpec, trials: int, jobs: int, image_shape: Sequence[int],
                    num_classes: int, *, sync: int | None = None,
                    memory: int | None = None) -> int:
    """The group size chosen when ``--group-size`` is not given: the stage's ``trials``
    shared out over ``jobs`` processes (so every core gets a group), at most
    :data:`MAX_AUTO_GROUP`, and as many as :data:`MEMORY_SHARE` of the free memory holds
    (``engine.sizing.max_group_size``; on a GPU its free memory).
    A stage whose proposals wait for results (``sync``: tpe, gp, cmaes or a pruner) takes
    ``sync // 2`` whatever ``jobs`` is (two groups in flight; the group size decides the
    proposals, so it must not depend on ``--jobs``). 1 for a model that cannot be grouped,
    and for one whose groups are slower per trial than lone trials (:data:`LONE_BY_DEFAULT`;
    ``--group-size`` still groups it)."""
    if not groupable(spec) or trials <= 1:
        return 1
    if spec.model in LONE_BY_DEFAULT:
        return 1
    size = min(math.ceil(trials / max(jobs, 1)), MAX_AUTO_GROUP)
    if sync is not None:
        size = min(trials, MAX_AUTO_GROUP, max(1, sync // 2))
    memory = available_memory(spec.device) if memory is None else memory
    if memory is not None:  # engine.sizing: weights, gradients, optimizer state, activations
        share = MEMORY_SHARE if spec.device == "cpu" else 1.0  # a GPU: one process each
        size = min(size, max_group_size(spec, tuple(image_shape), num_classes,  # type: ignore[arg-type]
                                        int(memory * share / max(jobs, 1)),
                                        limit=MAX_AUTO_GROUP))
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
