from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest

from numsweep.engine import SpecError, TrialSpec, load_dataset, make_split
from numsweep.engine.range_test import DEFAULT_UPDATES, range_spec_from, range_test

BASE = {"n_train": 300, "n_val": 100, "hidden": 16, "batch_size": 50}


def test_lr_range_test_sweeps_exponentially_and_records_every_update(tiny_npz: Path) -> None:
    spec = range_spec_from({**BASE, "eta_min": 1e-4, "eta_max": 1e-1, "n_updates": 31}, "lr")
    assert spec.schedule == "exponential" and spec.batch_schedule == "constant"
    result = range_test(spec, load_dataset(tiny_npz), "lr")
    assert result.updates == 31 and not result.stopped_early and result.message == ""
    assert result.lrs[0] == 1e-4 and result.lrs[-1] == 1e-1
    assert result.lrs[10] == pytest.approx(1e-3) and result.lrs[20] == pytest.approx(1e-2)
    assert set(result.batch_sizes) == {50}
    assert result.values == result.lrs
    assert len(result.losses) == len(result.costs) == len(result.accs) == 31
    assert all(math.isfinite(v) for v in result.smoothed)
    assert result.smoothed[-1] < result.smoothed[0]  # the easy tiny data is learnt
    assert 1e-4 <= result.steepest <= 1e-1 and result.best in result.lrs
    assert result.spec.n_updates == 31 and result.param_count > 0
    again = range_test(spec, load_dataset(tiny_npz), "lr")
    assert again.losses == result.losses


def test_lr_range_test_stops_when_the_loss_blows_up(tiny_npz: Path) -> None:
    data = load_dataset(tiny_npz)
    shuffled = dataclasses.replace(
        data, y_train=np.random.default_rng(0).permutation(data.y_train))
    spec = range_spec_from({**BASE, "eta_min": 1e-3, "eta_max": 1e4}, "lr")
    assert spec.n_updates == DEFAULT_UPDATES
    result = range_test(spec, shuffled, "lr")
    assert result.stopped_early and result.updates < DEFAULT_UPDATES
    assert (f"stopped after {result.updates} updates" in result.message
            or "diverged" in result.message)  # the same count as `updates`, not one less
    assert result.best < result.lrs[-1]


def test_batch_range_test_sweeps_batch_sizes_at_a_constant_lr(tiny_npz: Path) -> None:
    spec = range_spec_from({**BASE, "b_min": 4, "b_max": 256, "eta_max": 0.02,
                            "n_updates": 7}, "batch")
    assert spec.schedule == "constant" and spec.batch_schedule == "exponential"
    result = range_test(spec, make_split(load_dataset(tiny_npz), 300, 100), "batch")
    assert result.batch_sizes == (4, 8, 16, 32, 64, 128, 256)
    assert set(result.lrs) == {0.02}
    assert result.values == (4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0)
    assert result.best in result.values


def test_range_test_errors(tiny_npz: Path) -> None:
    with pytest.raises(SpecError, match="schedule='cyclic' is invalid: the lr range test runs"):
        range_spec_from({"schedule": "cyclic"}, "lr")
    with pytest.raises(ValueError, match="unknown range-test mode 'size'"):
        range_spec_from({}, "size")
    spec = range_spec_from({**BASE, "b_max": 400}, "batch")
    with pytest.raises(ValueError, match="b_max=400 exceeds n_train=300"):
        range_test(spec, load_dataset(tiny_npz), "batch")
    with pytest.raises(ValueError, match="stop_factor"):
        range_test(TrialSpec(**{**BASE, "hidden": (16,)}), load_dataset(tiny_npz), "lr",
                   stop_factor=1.0)


def test_range_test_keeps_the_two_streams_apart(tiny_npz: Path) -> None:
    """Batches come from the data stream (``data_seed``), the initial weights and dropout
    from the trial's own (``seed``), as in every other run: the first update's loss is that
    of the network ``seed`` builds on the first batch ``data_seed`` draws."""
    from numsweep.engine.batch_schedules import BatchSampler
    from numsweep.engine.build import build_network
    from numsweep.engine.streams import data_rng, trial_rng

    spec = range_spec_from({**BASE, "n_updates": 3, "dtype": "float64", "seed": 3,
                            "data_seed": 7}, "lr")
    split = make_split(load_dataset(tiny_npz), spec.n_train, spec.n_val, np.dtype("float64"))
    result = range_test(spec, split, "lr")
    net = build_network(spec, split.x_train.shape[1:], split.num_classes, trial_rng(spec))
    idx = BatchSampler(len(split.y_train), data_rng(7)).next(spec.batch_size)
    loss, _, _ = net.loss(net.prepare(split.x_train[idx]), split.y_train[idx], lam=0.0,
                          eps=spec.eps, rng=None)
    assert result.losses[0] == pytest.approx(loss, rel=1e-12)
    other_data = range_test(spec.replace(data_seed=8), split, "lr")
    other_init = range_test(spec.replace(seed=4), split, "lr")
    assert other_data.losses[0] != result.losses[0] != other_init.losses[0]


def test_a_batch_range_test_needs_no_half_cycle(tiny_npz: Path) -> None:
    """Its lengths do not depend on ``n_s``: a ``batch_size`` (unused) larger than the
    training set, which resolves n_s to 0, is no error (a run that uses n_s refuses it)."""
    spec = range_spec_from({"n_train": 80, "n_val": 40, "hidden": 16, "batch_size": 100,
                            "b_min": 10, "b_max": 60, "n_updates": 5}, "batch")
    result = range_test(spec, load_dataset(tiny_npz), "batch")
    assert result.updates == 5 and result.batch_sizes[0] == 10 and result.batch_sizes[-1] == 60
    from numsweep.engine import train

    cyclic = TrialSpec(n_train=80, n_val=40, hidden=(16,), batch_size=100, b_min=10, b_max=60,
                       batch_schedule="cyclic")
    with pytest.raises(ValueError, match="n_s resolves to 0"):
        train(cyclic, load_dataset(tiny_npz))
