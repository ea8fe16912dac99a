"""Learning-rate schedules: objects with ``lr(step)`` for the update number ``step`` (from 0).

Every schedule returns its turning-point values exactly (``eta_min`` at the start of a
cycle, the cycle's peak at its middle, and so on), not a value rounded by interpolation.
:func:`make_schedule` builds the schedule a :class:`~numsweep.engine.spec.TrialSpec` asks for,
with its total number of updates and the update steps at which its periods (cycles, or
epochs for the schedules without cycles) end.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Protocol

from numsweep.engine.spec import TrialSpec


class Schedule(Protocol):
    def lr(self, step: int) -> float: ...


def _triangle(eta_min: float, peak: float, rise: int, half: int) -> float:
    """eta_min + (peak - eta_min) * rise / half, exact at both ends."""
    if rise == 0:
        return eta_min
    if rise == half:
        return peak
    return eta_min + (peak - eta_min) * rise / half


@dataclass(frozen=True)
class ConstantLR:
    eta: float

    def lr(self, step: int) -> float:
        return self.eta


@dataclass(frozen=True)
class TriangularCyclicLR:
    """Smith's triangular policy with half-cycle length ``n_s``.

    eta rises linearly from eta_min at t = 2 l n_s to the peak p_l at t = (2 l + 1) n_s and
    falls back to eta_min at t = 2 (l + 1) n_s. The peak of cycle l (from 0) is
    p_l = eta_min + (eta_max - eta_min) * eta_decay**l, so ``eta_decay=1`` keeps eta_max.
    """

    eta_min: float
    eta_max: float
    n_s: int
    eta_decay: float = 1.0

    def peak(self, cycle: int) -> float:
        if cycle == 0 or self.eta_decay == 1.0:
            return self.eta_max
        return self.eta_min + (self.eta_max - self.eta_min) * self.eta_decay ** cycle

    def lr(self, step: int) -> float:
        cycle, phase = divmod(step, 2 * self.n_s)
        rise = phase if phase <= self.n_s else 2 * self.n_s - phase
        return _triangle(self.eta_min, self.peak(cycle), rise, self.n_s)


@dataclass(frozen=True)
class GrowingCyclicLR:
    """Triangular cycles whose length is multiplied by ``cycle_mult`` after every cycle.

    Cycle l (from 0) has half-length n_s * cycle_mult**l, so with ``cycle_mult=2`` the cycles
    take 2 n_s, 4 n_s, 8 n_s, ... updates and cycle l starts at 2 n_s (2**l - 1). Its peak is
    eta_min + (eta_max - eta_min) * eta_decay**l, as in :class:`TriangularCyclicLR`.
    """

    eta_min: float
    eta_max: float
    n_s: int
    cycle_mult: int = 2
    eta_decay: float = 1.0

    def cycle_start(self, cycle: int) -> int:
        """The update at which cycle ``cycle`` starts (the total length of the ones before)."""
        m = self.cycle_mult
        return 2 * self.n_s * (cycle if m == 1 else (m ** cycle - 1) // (m - 1))

    def locate(self, step: int) -> tuple[int, int, int]:
        """(cycle, update within that cycle, half-length of that cycle)."""
        if self.cycle_mult == 1:
            cycle, phase = divmod(step, 2 * self.n_s)
            return cycle, phase, self.n_s
        cycle = 0
        while self.cycle_start(cycle + 1) <= step:
            cycle += 1
        return cycle, step - self.cycle_start(cycle), self.n_s * self.cycle_mult ** cycle

    def lr(self, step: int) -> float:
        cycle, phase, half = self.locate(step)
        rise = phase if phase <= half else 2 * half - phase
        peak = self.eta_max if cycle == 0 or self.eta_decay == 1.0 else \
            self.eta_min + (self.eta_max - self.eta_min) * self.eta_decay ** cycle
        return _triangle(self.eta_min, peak, rise, half)


@dataclass(frozen=True)
class ExpRangeCyclicLR:
    """Smith's ``exp_range`` policy: the triangular cycle with its amplitude scaled by gamma**t.

    lr(t) = eta_min + (eta_max - eta_min) * tri(t) * gamma**t, where tri rises from 0 at
    t = 2 l n_s to 1 at (2 l + 1) n_s and falls back to 0 (Smith 2017, eq. in section 3.1).
    """

    eta_min: float
    eta_max: float
    n_s: int
    gamma: float

    def lr(self, step: int) -> float:
        phase = step % (2 * self.n_s)
        rise = phase if phase <= self.n_s else 2 * self.n_s - phase
        if rise == 0:
            return self.eta_min
        if rise == self.n_s and self.gamma == 1.0:
            return self.eta_max
        return self.eta_min + (self.eta_max - self.eta_min) * (rise / self.n_s) \
            * self.gamma ** step


@dataclass(frozen=True)
class LinearDecayLR:
    """eta_start at update 0, falling linearly to eta_end at update ``total`` (and after)."""

    eta_start: float
    eta_end: float
    total: int

    def lr(self, step: int) -> float:
        if step <= 0:
            return self.eta_start
        if step >= self.total:
            return self.eta_end
        return self.eta_start + (self.eta_end - self.eta_start) * step / self.total


@dataclass(frozen=True)
class StepDecayLR:
    """eta, multiplied by ``factor`` after every ``step_size`` updates."""

    eta: float
    factor: float
    step_size: int

    def lr(self, step: int) -> float:
        drops = step // self.step_size
        return self.eta if drops == 0 else self.eta * self.factor ** drops


@dataclass(frozen=True)
class ExponentialLR:
    """eta_start at update 0 to eta_end at update ``total - 1``, evenly spaced in log(eta).

    The learning-rate range test's sweep: lr(t) = eta_start * (eta_end/eta_start)**(t/(T-1)).
    """

    eta_start: float
    eta_end: float
    total: int

    def lr(self, step: int) -> float:
        last = self.total - 1
        if step <= 0 or last <= 0:
            return self.eta_start
        if step >= last:
            return self.eta_end
        return self.eta_start * math.exp(math.log(self.eta_end / self.eta_start) * step / last)


@dataclass(frozen=True)
class Plan:
    """A schedule with its length: ``total`` updates, split into periods ending at ``ends``.

    Periods are the cycles of the cyclic schedules and epochs (``epoch_len`` updates) for
    the others; curves are measured ``curve_points`` times per period.
    """

    schedule: Schedule
    total: int
    ends: tuple[int, ...]


CYCLIC = ("cyclic", "exp_range")


def cyclic_total(n_s: int, cycles: int, cycle_mult: int) -> int:
    """Updates in ``cycles`` cycles whose half-lengths are n_s, n_s m, n_s m^2, ..."""
    return sum(2 * n_s * cycle_mult ** c for c in range(cycles))


def make_schedule(spec: TrialSpec, n_s: int, epoch_len: int) -> Plan:
    """The learning-rate schedule of ``spec``, with its total number of updates.

    ``n_s`` is the resolved half-cycle length and ``epoch_len`` the number of updates in one
    epoch. The cyclic schedules run ``cycles`` cycles; the others run ``n_updates`` updates
    (unset: ``2 * n_s * cycles``, the length of the default cyclic run).
    """
    name = spec.schedule
    if name in CYCLIC:
        mult = spec.cycle_mult if name == "cyclic" else 1
        ends = tuple(itertools.accumulate(2 * n_s * mult ** c for c in range(spec.cycles)))
        total = ends[-1]
        if name == "exp_range":
            schedule: Schedule = ExpRangeCyclicLR(spec.eta_min, spec.eta_max, n_s, spec.gamma)
        elif spec.cycle_mult == 1:
            schedule = TriangularCyclicLR(spec.eta_min, spec.eta_max, n_s, spec.eta_decay)
        else:
            schedule = GrowingCyclicLR(spec.eta_min, spec.eta_max, n_s, spec.cycle_mult,
                                       spec.eta_decay)
        return Plan(schedule, total, ends)
    total = spec.n_updates if spec.n_updates is not None else 2 * n_s * spec.cycles
    if name == "constant":
        schedule = ConstantLR(spec.eta_max)
    elif name == "linear":
        schedule = LinearDecayLR(spec.eta_max, spec.eta_min, total)
    elif name == "step":
        assert spec.step_size is not None  # TrialSpec checks this
        schedule = StepDecayLR(spec.eta_max, spec.eta_decay, spec.step_size)
    elif name == "exponential":
        schedule = ExponentialLR(spec.eta_min, spec.eta_max, total)
    else:
        raise ValueError(f"unknown schedule {name!r}")
    epoch_len = max(1, epoch_len)
    ends = (*range(epoch_len, total, epoch_len), total)
    return Plan(schedule, total, ends)
