"""Learning-rate schedules: objects with ``lr(step)`` for the update number ``step`` (from 0)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ConstantLR:
    eta: float

    def lr(self, step: int) -> float:
        return self.eta


@dataclass(frozen=True)
class TriangularCyclicLR:
    """Smith's triangular policy with half-cycle length ``n_s``.

    eta rises linearly from eta_min at t = 2 l n_s to eta_max at t = (2 l + 1) n_s and falls
    back to eta_min at t = 2 (l + 1) n_s.
    """

    eta_min: float
    eta_max: float
    n_s: int

    def lr(self, step: int) -> float:
        phase = step % (2 * self.n_s)
        rise = phase if phase <= self.n_s else 2 * self.n_s - phase
        return self.eta_min + (self.eta_max - self.eta_min) * rise / self.n_s
