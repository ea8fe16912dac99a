from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from numsweep.engine import DataError, TrialSpec, load_dataset, make_split, train


def test_mlp_learns_tiny_data(tiny_npz: Path) -> None:
    data = load_dataset(tiny_npz)
    result = train(TrialSpec(lam=0.001, n_train=500, n_val=100, batch_size=50, cycles=2,
                             eta_max=0.05), data)
    assert result.val_acc > 0.5
    assert result.updates == 2 * 2 * 20
    assert result.spec.n_s == 20
    steps = sorted({c.step for c in result.curves})
    assert steps[0] == 0 and steps[-1] == result.updates
    assert {c.split for c in result.curves} == {"train", "val"}


def test_convnet_overfits_a_small_training_set(tiny_npz: Path) -> None:
    data = load_dataset(tiny_npz)
    spec = TrialSpec(model="convnet", f=4, nf=8, nh=32, n_train=100, n_val=100, batch_size=20,
                     n_s=100, cycles=2, eta_max=0.05)
    assert train(spec, data).train_acc == 1.0


def test_same_seed_same_result(tiny_npz: Path) -> None:
    data = load_dataset(tiny_npz)
    spec = TrialSpec(n_train=300, n_val=100, batch_size=50, cycles=1, seed=7)
    a, b = train(spec, data), train(spec, data)
    assert a.val_acc == b.val_acc
    assert [c.loss for c in a.curves] == [c.loss for c in b.curves]


def test_diverging_run_stops_and_says_so(tiny_npz: Path) -> None:
    data = load_dataset(tiny_npz)
    result = train(TrialSpec(n_train=300, n_val=100, batch_size=50, cycles=1, eta_min=1e3,
                             eta_max=1e4, schedule="constant"), data)
    assert result.diverged
    assert "diverged" in result.message
    assert result.updates < 2 * 6
    assert np.isnan(result.val_acc)


def test_split_normalises_with_training_statistics(tiny_npz: Path) -> None:
    split = make_split(load_dataset(tiny_npz), 400, 100)
    flat = split.x_train.reshape(400, -1)
    np.testing.assert_allclose(flat.mean(axis=0), 0, atol=1e-4)
    np.testing.assert_allclose(flat.std(axis=0), 1, atol=1e-3)
    assert len(split.x_val) == 100 and len(split.x_test) == 200


def test_split_larger_than_data_is_an_error(tiny_npz: Path) -> None:
    with pytest.raises(DataError, match="exceeds the 600 training images"):
        make_split(load_dataset(tiny_npz), 550, 100)
