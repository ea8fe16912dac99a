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
