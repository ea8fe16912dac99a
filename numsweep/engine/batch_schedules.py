"""Batch-size schedules: objects with ``size(step)``, the mini-batch size of update ``step``.

``BatchSampler`` draws the batches: it walks through a random permutation of the training
set and draws a fresh permutation when the next batch would not fit in what is left (the
remainder of that pass is skipped), so a constant batch size gives the usual epochs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from numsweep.engine.spec import TrialSpec


class BatchSchedule(Protocol):
    def size(self, step: int) -> int: ...


@dataclass(frozen=True)
class ConstantBatch:
    batch_size: int

    def size(self, step: int) -> int:
        return self.batch_size


@dataclass(frozen=True)
class CyclicBatch:
    """Triangular cycles between b_min and b_max with half-cycle length ``n_s``.

    b(t) = round(b_min + (b_max - b_min) * tri(t)), tri rising from 0 at t = 2 l n_s to 1 at
    (2 l + 1) n_s and back: in phase with the triangular learning-rate cycle of the same n_s.
    """

    b_min: int
    b_max: int
    n_s: int

    def size(self, step: int) -> int:
        phase = step % (2 * self.n_s)
        rise = phase if phase <= self.n_s else 2 * self.n_s - phase
        return self.b_min + round((self.b_max - self.b_min) * rise / self.n_s)


def _progress(step: int, total: int) -> float:
    """How far update ``step`` is through a run of ``total`` updates: 0 at the first, 1 at
    the last, clamped outside."""
    last = total - 1
    return 0.0 if last <= 0 else min(max(step / last, 0.0), 1.0)


@dataclass(frozen=True)
class LinearBatch:
    """b_min at update 0 growing linearly to b_max at update ``total - 1``."""

    b_min: int
    b_max: int
    total: int

    def size(self, step: int) -> int:
        return self.b_min + round((self.b_max - self.b_min) * _progress(step, self.total))


@dataclass(frozen=True)
class ExponentialBatch:
    """b_min at update 0 to b_max at update ``total - 1``, evenly spaced in log(b).

    The batch-size range test's sweep: b(t) = round(b_min * (b_max / b_min)**(t / (T - 1))).
    """

    b_min: int
    b_max: int
    total: int

    def size(self, step: int) -> int:
        t = _progress(step, self.total)
        return round(self.b_min * math.exp(math.log(self.b_max / self.b_min) * t))


def make_batch_schedule(spec: TrialSpec, n_s: int, total: int) -> BatchSchedule:
    """The batch-size schedule of ``spec`` for a run of ``total`` updates."""
    name = spec.batch_schedule
    if name == "constant":
        return ConstantBatch(spec.batch_size)
    if name == "cyclic":
        return CyclicBatch(spec.b_min, spec.b_max, n_s)
    if name == "linear":
        return LinearBatch(spec.b_min, spec.b_max, total)
    if name == "exponential":
        return ExponentialBatch(spec.b_min, spec.b_max, total)
    raise ValueError(f"unknown batch_schedule {name!r}")


def largest_batch(spec: TrialSpec) -> int:
    return spec.batch_size if spec.batch_schedule == "constant" else spec.b_max


class BatchSampler:
    """Indices of successive mini-batches drawn without replacement from ``n`` samples."""

    def __init__(self, n: int, rng: np.random.Generator) -> None:
        self.n = n
        self.rng = rng
        self.order = rng.permutation(n)
        self.cursor = 0
        self.drawn = 0

    def next(self, size: int) -> np.ndarray:
        """The indices of the next batch of ``size`` samples (size <= n)."""
        if self.cursor + size > self.n:
            self.order = self.rng.permutation(self.n)
            self.cursor = 0
        idx = self.order[self.cursor:self.cursor + size]
        self.cursor += size
        self.drawn += size
        return idx

    @property
    def epochs(self) -> float:
        """Samples drawn so far divided by the number of samples."""
        return self.drawn / self.n
