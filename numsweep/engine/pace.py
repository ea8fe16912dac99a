"""How fast a fused group trains here, per trial: a short measurement that sizes groups.

:func:`group_pace` trains one group of each candidate size K for a few updates on random
data of the trial's shapes (image shape, classes, batch size, dtype, optimizer, network),
through the same training step the runs take (``group.start_run`` and ``GroupRun.update``),
and gives the seconds per trial-update of each K. Whether a group pays depends on the
machine (cores, BLAS, cache sizes, a GPU) and the network: on a 2-core AMD EPYC with
OpenBLAS the course ConvNet took 0.64x a lone trial's time per trial at K = 2 (slower) and
1.28x at K = 8, so the size is measured rather than assumed.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from numsweep.engine.batch_schedules import largest_batch
from numsweep.engine.data import Split
from numsweep.engine.spec import TrialSpec

PACE_UPDATES = 3
"""Updates timed per repeat (after one untimed update that fills the buffers)."""
PACE_REPEATS = 3
"""Repeats of each K, interleaved with the other Ks; the fastest counts (the least noise)."""
PACE_BATCHES = 4
"""Batches of random training images the measurement draws from."""
PACE_BUDGET = 2.5
"""Seconds the measurement plans to take at most: the larger sizes whose timed updates would
go past it are left out (unmeasured, so never chosen)."""


def pace_spec(spec: TrialSpec) -> TrialSpec:
    """``spec`` cut down to what the measurement trains: a few batches of images, no
    validation or evaluation sets to speak of (the shapes of an update are unchanged)."""
    n_train = PACE_BATCHES * largest_batch(spec)
    return dataclasses.replace(spec, n_train=n_train, n_val=1, eval_train=min(
        spec.eval_train, n_train), data_seed=0, seed=0,
        # small steps: random data must not make a trial diverge and leave its group
        eta_max=min(spec.eta_max, 1e-3), eta_min=min(spec.eta_min, 1e-3))


def random_split(spec: TrialSpec, image_shape: Sequence[int], num_classes: int,
                 seed: int = 0) -> Split:
    """Normal random images of ``image_shape`` (H, W, C) and uniform labels, as a split of
    ``spec``'s dtype: the measurement's data (timing does not depend on the values)."""
    rng = np.random.default_rng(seed)
    n_train = PACE_BATCHES * largest_batch(spec)
    dtype = np.dtype(spec.dtype)

    def images(n: int) -> np.ndarray:
        return rng.standard_normal((n, *image_shape)).astype(dtype)

    def labels(n: int) -> np.ndarray:
        return rng.integers(0, num_classes, n).astype(np.int64)

    return Split(images(n_train), labels(n_train), images(1), labels(1), images(1),
                 labels(1), num_classes=num_classes)


def _synchronize(xp: Any) -> None:
    if xp is not np:
        xp.cuda.Device().synchronize()


def group_pace(spec: TrialSpec, image_shape: Sequence[int], num_classes: int,
               sizes: Sequence[int], *, threads: int | None = None,
               updates: int = PACE_UPDATES, repeats: int = PACE_REPEATS,
               budget: float = PACE_BUDGET) -> dict[int, float]:
    """Seconds per trial-update of a fused group of each of ``sizes`` trials of ``spec``
    (its group key: the per-trial values are ``spec``'s, the seeds differ): each group
    trains one untimed update, then ``repeats`` times ``updates`` timed updates, the sizes
    interleaved so that a slow moment of the machine touches them all; the fastest repeat
    counts. A size whose untimed update says that its timed ones would take the measurement
    past ``budget`` seconds (counted from the first size's untimed update on, so that one-time
    costs such as a GPU's kernel compilation do not count) is left out, and so are the larger
    ones (their K absent from the answer); when only the first size is left, its untimed
    update is the answer. ``threads``: the BLAS threads the trials train with
    (``threadpoolctl``; None: as the process is). Every group is held at once (about twice
    the largest's memory); on a GPU the memory they took is handed back to the device at
    the end."""
    from threadpoolctl import threadpool_limits

    from numsweep.engine.backend import _DEVICE_COPIES
    from numsweep.engine.group import GroupRun, start_run

    sizes = sorted({int(k) for k in sizes if int(k) >= 1})
    if not sizes:
        return {}
    base = pace_spec(spec)
    split = random_split(base, image_shape, num_classes)
    copies_before = set(_DEVICE_COPIES)
    runs: dict[int, GroupRun] = {}
    updates, repeats = max(1, updates), max(1, repeats)
    start = math.inf  # the budget counts from the first size's first update on
    planned = 0.0  # the timed updates' seconds, from each size's untimed update
    first: dict[int, float] = {}  # seconds per trial-update of each size's untimed update
    best: dict[int, float] = {}
    try:
        with threadpool_limits(limits=threads):
            for k in sizes:
                specs = [dataclasses.replace(base, seed=i) for i in range(k)]
                run = start_run(specs, split, prepared=None, curves=False)
                t0 = time.perf_counter()
                run.update()  # buffers allocated, kernels compiled: not timed
                _synchronize(run.xp)
                now = time.perf_counter()
                cost = (now - t0) * updates * repeats
                if runs and now - start + planned + cost > budget:
                    break
                start = min(start, now)
                planned += cost
                runs[k] = run
                first[k] = (now - t0) / k
            if len(runs) == 1:  # one size alone decides nothing: its untimed update says it
                return first
            xp = runs[sizes[0]].xp
            best = {k: math.inf for k in runs}
            for _ in range(repeats):
                for k in runs:
                    run = runs[k]
                    if len(run.active) < k:
                        continue
                    t0 = time.perf_counter()
                    for _ in range(updates):
                        run.update()
                    _synchronize(xp)
                    seconds = (time.perf_counter() - t0) / (updates * k)
                    if len(run.active) == k:  # a diverged trial would make it cheaper
                        best[k] = min(best[k], seconds)
    finally:
        xp = next(iter(runs.values())).xp if runs else np
        runs.clear()
        for key in set(_DEVICE_COPIES) - copies_before:  # the random split's device copies
            _DEVICE_COPIES.pop(key, None)
        if xp is not np:  # the memory back to the device, for the processes that train
            xp.get_default_memory_pool().free_all_blocks()
    return {k: s for k, s in best.items() if math.isfinite(s) and s > 0}


def pace_device(spec: TrialSpec) -> str:
    """The name of the device ``spec`` trains on, for the measurement's cache: ``cpu``, or
    the GPU's name."""
    if spec.device == "cpu":
        return "cpu"
    from numsweep.engine.backend import device_module

    xp = device_module(spec.device)
    try:
        props = xp.cuda.runtime.getDeviceProperties(xp.cuda.Device().id)
        name = props.get("name", b"")
        return f"{spec.device}:{name.decode() if isinstance(name, bytes) else name}"
    except Exception:  # an old CuPy without the properties
        return spec.device

