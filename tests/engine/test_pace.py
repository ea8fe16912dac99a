"""The group-size measurement (``engine.pace``): seconds per trial-update of each group size,
through the engine's own training step, on random data of the trial's shapes."""

from __future__ import annotations

import math
from typing import Any

import pytest
from threadpoolctl import threadpool_info

from numsweep.engine import TrialSpec
from numsweep.engine.pace import group_pace, pace_spec, random_split

TINY = {"n_val": 10, "batch_size": 20, "eval_train": 20}
MODELS = {
    "mlp": TrialSpec(model="mlp", hidden=(8,), **TINY),
    "convnet": TrialSpec(model="convnet", f=4, nf=3, nh=6, **TINY),
    "convnet3": TrialSpec(model="convnet3", nf=2, nh=6, **TINY),
    "adam, dropout, flips": TrialSpec(model="convnet", f=4, nf=3, nh=6, optimizer="adam",
                                      dropout=0.2, flip=0.5, **TINY),
}


@pytest.mark.parametrize("name", list(MODELS))
def test_each_size_gets_positive_finite_seconds(name: str) -> None:
    pace = group_pace(MODELS[name], (8, 8, 3), 10, [1, 2, 4], threads=1, updates=1,
                      repeats=2, budget=600.0)
    assert sorted(pace) == [1, 2, 4]
    assert all(math.isfinite(s) and s > 0 for s in pace.values())


def test_a_time_budget_leaves_the_larger_sizes_out_never_the_lone_trial() -> None:
    pace = group_pace(MODELS["mlp"], (8, 8, 3), 10, [4, 1, 2], threads=1, budget=0.0)
    assert list(pace) == [1]


def test_the_measurement_trains_a_few_batches_of_the_trials_shapes() -> None:
    spec = TrialSpec(model="convnet", f=4, nf=3, nh=6, n_train=45000, batch_size=25,
                     eval_train=10000, n_val=5000, seed=7, dtype="float64")
    small = pace_spec(spec)
    assert (small.n_train, small.batch_size, small.dtype) == (100, 25, "float64")
    assert small.eval_train <= small.n_train
    split = random_split(small, (8, 8, 3), 4)
    assert split.x_train.shape == (100, 8, 8, 3) and split.x_train.dtype == "float64"
    assert set(split.y_train) <= {0, 1, 2, 3} and split.num_classes == 4


def test_the_measurement_leaves_the_process_blas_threads_as_they_were() -> None:
    before = [i["num_threads"] for i in threadpool_info()]
    group_pace(MODELS["mlp"], (8, 8, 3), 10, [1, 2], threads=1, updates=1, repeats=1)
    assert [i["num_threads"] for i in threadpool_info()] == before


def test_on_a_gpu_it_synchronizes_and_hands_the_memory_back(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """With the stand-in for CuPy (``fake_cupy``): the timed updates end at a device
    synchronisation, and the measurement leaves neither device copies nor pooled memory."""
    import sys
    import types

    from numsweep.engine import backend
    from tests.engine import fake_cupy

    fake = fake_cupy.FakeCupy(devices=1)
    calls = {"synchronize": 0, "free_all_blocks": 0}

    def count(name: str) -> Any:
        def call() -> None:
            calls[name] += 1
        return call

    fake.cuda.Device = lambda *_: types.SimpleNamespace(synchronize=count("synchronize"))
    fake.get_default_memory_pool = lambda: types.SimpleNamespace(
        free_bytes=lambda: 0, free_all_blocks=count("free_all_blocks"))
    monkeypatch.setitem(sys.modules, "cupy", fake)
    monkeypatch.setattr(fake_cupy, "COUNTS", fake_cupy.Counts())
    copies = set(backend._DEVICE_COPIES)
    spec = TrialSpec(model="mlp", hidden=(8,), device="cuda", **TINY)
    pace = group_pace(spec, (8, 8, 3), 10, [1, 2], threads=1, updates=1, repeats=2,
                      budget=600.0)
    assert sorted(pace) == [1, 2] and all(s > 0 for s in pace.values())
    assert calls["synchronize"] >= 2 * 2 and calls["free_all_blocks"] == 1
    assert set(backend._DEVICE_COPIES) == copies
