from __future__ import annotations

import pytest

from numsweep.engine.batch_schedules import (
    BatchSampler,
    ConstantBatch,
    CyclicBatch,
    ExponentialBatch,
    LinearBatch,
    make_batch_schedule,
)
from numsweep.engine.runplan import curve_steps
from numsweep.engine.schedules import (
    ConstantLR,
    ExponentialLR,
    ExpRangeCyclicLR,
    GrowingCyclicLR,
    LinearDecayLR,
    StepDecayLR,
    TriangularCyclicLR,
    make_schedule,
)
from numsweep.engine.spec import SpecError, TrialSpec


def test_triangular_cycle_turning_points_are_exact() -> None:
    s = TriangularCyclicLR(eta_min=1e-5, eta_max=1e-1, n_s=500)
    assert s.lr(0) == 1e-5
    assert s.lr(500) == 1e-1
    assert s.lr(1000) == 1e-5
    assert s.lr(1500) == 1e-1
    assert s.lr(2000) == 1e-5
    # A peak that interpolation would round: returned exactly.
    odd = TriangularCyclicLR(eta_min=0.1, eta_max=0.7, n_s=3)
    assert odd.lr(3) == 0.7 and odd.lr(9) == 0.7 and odd.lr(6) == 0.1


def test_triangular_cycle_is_linear_between_turning_points() -> None:
    s = TriangularCyclicLR(eta_min=0.0 + 1e-5, eta_max=1e-5 + 1.0, n_s=4)
    assert [round(s.lr(t) - 1e-5, 12) for t in range(9)] == [0, 0.25, 0.5, 0.75, 1.0, 0.75,
                                                             0.5, 0.25, 0]


def test_eta_max_decays_per_cycle() -> None:
    s = TriangularCyclicLR(eta_min=0.0625, eta_max=1.0625, n_s=10, eta_decay=0.5)
    assert [s.lr(10 + 20 * c) for c in range(4)] == [1.0625, 0.5625, 0.3125, 0.1875]
    assert s.lr(20) == 0.0625 and s.lr(40) == 0.0625
    assert s.lr(25) == pytest.approx(0.0625 + 0.5 * 0.5)


def test_doubling_cycles_turning_points() -> None:
    s = GrowingCyclicLR(eta_min=0.5, eta_max=2.5, n_s=2, cycle_mult=2)
    # Cycles of 4, 8, 16 updates start at 0, 4, 12, 28; peaks at 2, 8, 20.
    assert [s.cycle_start(c) for c in range(4)] == [0, 4, 12, 28]
    assert [s.lr(t) for t in (0, 2, 4, 8, 12, 20, 28)] == [0.5, 2.5, 0.5, 2.5, 0.5, 2.5, 0.5]
    assert s.lr(1) == 1.5 and s.lr(6) == 1.5 and s.lr(10) == 1.5 and s.lr(16) == 1.5
    decayed = GrowingCyclicLR(eta_min=0.5, eta_max=2.5, n_s=2, cycle_mult=2, eta_decay=0.5)
    assert [decayed.lr(t) for t in (2, 8, 20)] == [2.5, 1.5, 1.0]
    assert [GrowingCyclicLR(0.5, 2.5, 2, cycle_mult=1).lr(t) for t in range(12)] == \
        [TriangularCyclicLR(0.5, 2.5, 2).lr(t) for t in range(12)]


def test_exp_range_scales_the_amplitude_by_gamma_per_update() -> None:
    s = ExpRangeCyclicLR(eta_min=0.5, eta_max=4.5, n_s=4, gamma=0.5)
    assert s.lr(0) == 0.5 and s.lr(8) == 0.5
    assert s.lr(4) == 0.5 + 4.0 * 0.5 ** 4
    assert s.lr(2) == 0.5 + 4.0 * 0.5 * 0.5 ** 2
    assert s.lr(12) == 0.5 + 4.0 * 0.5 ** 12
    flat = ExpRangeCyclicLR(eta_min=0.5, eta_max=4.5, n_s=4, gamma=1.0)
    assert [flat.lr(t) for t in range(9)] == [TriangularCyclicLR(0.5, 4.5, 4).lr(t)
                                             for t in range(9)]


def test_decays_and_exponential() -> None:
    lin = LinearDecayLR(eta_start=0.3, eta_end=0.1, total=4)
    assert [lin.lr(t) for t in (0, 4, 9)] == [0.3, 0.1, 0.1]
    assert lin.lr(2) == pytest.approx(0.2)
    step = StepDecayLR(eta=0.8, factor=0.5, step_size=3)
    assert [step.lr(t) for t in range(10)] == [0.8] * 3 + [0.4] * 3 + [0.2] * 3 + [0.1]
    exp = ExponentialLR(eta_start=1e-4, eta_end=1.0, total=5)
    assert exp.lr(0) == 1e-4 and exp.lr(4) == 1.0
    assert [exp.lr(t) for t in (1, 2, 3)] == pytest.approx([1e-3, 1e-2, 1e-1])
    assert ConstantLR(0.3).lr(12345) == 0.3


def test_make_schedule_lengths_and_periods() -> None:
    plan = make_schedule(TrialSpec(cycles=3), n_s=5, epoch_len=4)
    assert plan.total == 30 and plan.ends == (10, 20, 30)
    doubling = make_schedule(TrialSpec(cycles=3, cycle_mult=2), n_s=5, epoch_len=4)
    assert doubling.total == 10 + 20 + 40 and doubling.ends == (10, 30, 70)
    assert isinstance(doubling.schedule, GrowingCyclicLR)
    exp_range = make_schedule(TrialSpec(schedule="exp_range", gamma=0.99, cycles=2), 5, 4)
    assert exp_range.total == 20 and isinstance(exp_range.schedule, ExpRangeCyclicLR)
    linear = make_schedule(TrialSpec(schedule="linear", n_updates=10), n_s=5, epoch_len=4)
    assert linear.total == 10 and linear.ends == (4, 8, 10)
    assert linear.schedule.lr(10) == TrialSpec().eta_min
    # Unset n_updates: the update count of the default cyclic run.
    const = make_schedule(TrialSpec(schedule="constant", cycles=2), n_s=5, epoch_len=5)
    assert const.total == 20 and const.ends == (5, 10, 15, 20)
    step = make_schedule(TrialSpec(schedule="step", step_size=3, eta_decay=0.1), 5, 4)
    assert step.schedule.lr(3) == pytest.approx(0.01)


def test_curve_steps_per_period() -> None:
    assert curve_steps((10, 20), 2) == (5, 10, 15, 20)
    assert curve_steps((10, 30, 70), 2) == (5, 10, 20, 30, 50, 70)
    assert curve_steps((3,), 10) == (1, 2, 3)
    assert curve_steps((1000,), 3) == (333, 667, 1000)


@pytest.mark.parametrize(("values", "message"), [
    ({"schedule": "step"}, "step_size=None is invalid"),
    ({"schedule": "step", "step_size": 10}, "eta_decay=1.0 is invalid: expected below 1"),
    ({"cycle_mult": 2, "schedule": "linear"}, "cycle_mult=2 is invalid"),
    ({"n_updates": 100}, "n_updates=100 is invalid: expected unset with schedule=cyclic"),
    ({"gamma": 0.9}, "gamma=0.9 is invalid"),
    ({"eta_decay": 0}, "eta_decay=0.0 is invalid"),
    ({"b_min": 64, "b_max": 32}, "b_max=32 is invalid: expected at least b_min=64"),
    ({"batch_schedule": "huge"}, "batch_schedule='huge' is invalid"),
])
def test_schedule_parameters_are_checked(values: dict[str, object], message: str) -> None:
    with pytest.raises(SpecError, match=message):
        TrialSpec.from_mapping(values)


def test_batch_schedules_turning_points() -> None:
    assert ConstantBatch(100).size(7) == 100
    cyc = CyclicBatch(b_min=32, b_max=256, n_s=4)
    assert [cyc.size(t) for t in range(9)] == [32, 88, 144, 200, 256, 200, 144, 88, 32]
    lin = LinearBatch(b_min=10, b_max=20, total=11)
    assert [lin.size(t) for t in (0, 5, 10, 50)] == [10, 15, 20, 20]
    exp = ExponentialBatch(b_min=8, b_max=512, total=7)
    assert [exp.size(t) for t in range(7)] == [8, 16, 32, 64, 128, 256, 512]
    spec = TrialSpec(batch_schedule="cyclic", b_min=16, b_max=64)
    assert make_batch_schedule(spec, n_s=10, total=40).size(10) == 64


def test_batch_sampler_reshuffles_when_a_batch_does_not_fit() -> None:
    import numpy as np

    sampler = BatchSampler(10, np.random.default_rng(0))
    first = sampler.order.copy()
    a, b = sampler.next(4), sampler.next(4)
    np.testing.assert_array_equal(np.concatenate([a, b]), first[:8])
    c = sampler.next(4)  # 2 left: a fresh permutation
    assert not np.array_equal(sampler.order, first)
    np.testing.assert_array_equal(c, sampler.order[:4])
    assert sampler.epochs == 1.2
