from __future__ import annotations

import pytest

from numsweep.engine.schedules import ConstantLR, TriangularCyclicLR


def test_triangular_cycle_turning_points_are_exact() -> None:
    s = TriangularCyclicLR(eta_min=1e-5, eta_max=1e-1, n_s=500)
    assert s.lr(0) == 1e-5
    assert s.lr(500) == 1e-1
    assert s.lr(1000) == 1e-5
    assert s.lr(1500) == 1e-1
    assert s.lr(2000) == 1e-5


def test_triangular_cycle_is_linear_between_turning_points() -> None:
    s = TriangularCyclicLR(eta_min=0.0 + 1e-5, eta_max=1e-5 + 1.0, n_s=4)
    assert [round(s.lr(t) - 1e-5, 12) for t in range(9)] == [0, 0.25, 0.5, 0.75, 1.0, 0.75,
                                                             0.5, 0.25, 0]


def test_constant() -> None:
    assert ConstantLR(0.3).lr(12345) == pytest.approx(0.3)
