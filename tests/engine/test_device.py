"""device=cuda without a GPU: the one-line errors, and the engine's array code checked on a
stand-in for CuPy (``fake_cupy``: NumPy arrays that refuse what CuPy arrays refuse and count
the copies), against the same group trained with NumPy. The real GPU: ``test_gpu.py``."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from numsweep.engine import Split, TrialSpec, load_dataset, make_split, train_group
from numsweep.engine.backend import DeviceError, device_module
from tests.conftest import for_model
from tests.engine import fake_cupy

BASE = {"n_train": 120, "n_val": 40, "batch_size": 20, "n_s": 4, "cycles": 2,
        "curve_points": 2, "eval_train": 60, "f": 4, "nf": 3, "nh": 8, "hidden": (10,),
        "dtype": "float64"}


@pytest.fixture(scope="module")
def split(tiny_npz: Path) -> Split:
    return make_split(load_dataset(tiny_npz), BASE["n_train"], BASE["n_val"],
                      np.dtype("float64"))


@pytest.fixture
def fake_gpu(monkeypatch: pytest.MonkeyPatch) -> fake_cupy.Counts:
    monkeypatch.setitem(sys.modules, "cupy", fake_cupy.FakeCupy(devices=1))
    counts = fake_cupy.Counts()
    monkeypatch.setattr(fake_cupy, "COUNTS", counts)
    return counts


def test_cuda_without_cupy_says_cupy_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "cupy", None)  # import cupy -> ImportError
    with pytest.raises(DeviceError, match=r"^device=cuda needs CuPy, which is not installed "
                                          r"\(pip install 'numsweep\[gpu\]'") as info:
        device_module("cuda")
    assert "\n" not in str(info.value)
    assert device_module("cpu") is np


def test_cuda_without_a_gpu_says_no_gpu(monkeypatch: pytest.MonkeyPatch,
                                        split: Split) -> None:
    monkeypatch.setitem(sys.modules, "cupy", fake_cupy.FakeCupy(devices=0))
    with pytest.raises(DeviceError, match=r"^device=cuda needs a CUDA GPU, and CuPy finds none"):
        device_module("cuda")

    def no_driver() -> int:
        raise RuntimeError("cudaErrorNoDevice: no CUDA-capable device is detected\nmore")

    broken = fake_cupy.FakeCupy()
    broken.cuda.runtime.getDeviceCount = no_driver
    monkeypatch.setitem(sys.modules, "cupy", broken)
    with pytest.raises(DeviceError) as info:
        train_group([TrialSpec.from_mapping(for_model({**BASE, "device": "cuda"}))], split)
    assert str(info.value) == ("device=cuda needs a CUDA GPU, and CuPy finds none "
                               "(cudaErrorNoDevice: no CUDA-capable device is detected)")


CASES = {
    "mlp_adam_svm": {"model": "mlp", "hidden": (10, 6), "optimizer": "adam", "loss": "svm",
                     "schedule": "linear", "eta_max": 0.003, "n_updates": 10},
    "convnet_sgd_smoothing": {"model": "convnet", "eps": 0.1},
    "convnet_multi_nesterov_augment": {"model": "convnet", "f": (4, 8), "nf": (3, 2),
                                       "optimizer": "nesterov", "eta_max": 0.02,
                                       "flip": 0.5, "translate": 1, "cutout": 4,
                                       "aug_copies": 2},
    "mlp_rmsprop_batch_cyclic": {"model": "mlp", "optimizer": "rmsprop_nesterov",
                                 "eta_max": 0.003, "batch_schedule": "cyclic", "b_min": 10,
                                 "b_max": 30},
    "mlp_adadelta_one": {"model": "mlp", "optimizer": "adadelta", "eta_max": 1.0,
                         "schedule": "constant", "n_updates": 10},
}


def _group(case: dict[str, Any], k: int, device: str) -> list[TrialSpec]:
    spec = TrialSpec.from_mapping(for_model({**BASE, "seed": 3, "data_seed": 7, "device": device,
                                   **case}))
    return [spec.replace(seed=3 + i, lam=0.002 * i, eta_max=spec.eta_max * (1 - 0.1 * i))
            for i in range(k)]


@pytest.mark.parametrize("k", [1, 3])
@pytest.mark.parametrize("name", list(CASES))
def test_a_group_on_the_device_trains_as_on_the_cpu(split: Split, fake_gpu: fake_cupy.Counts,
                                                    name: str, k: int) -> None:
    """Same curves (float64 to 1e-10) with every array on the stand-in device; nothing comes
    back per update, a few arrays of K numbers per curve point."""
    cpu = train_group(_group(CASES[name], k, "cpu"), split)
    gpu = train_group(_group(CASES[name], k, "cuda"), split)
    for a, b in zip(cpu, gpu, strict=True):
        assert not b.diverged and b.updates == a.updates and b.epochs == a.epochs
        assert a.spec.replace(device="cuda") == b.spec
        assert [(c.step, c.split, c.lr) for c in a.curves] == [(c.step, c.split, c.lr)
                                                               for c in b.curves]
        for field in ("loss", "cost", "acc"):
            np.testing.assert_allclose([getattr(c, field) for c in b.curves],
                                       [getattr(c, field) for c in a.curves], rtol=1e-10)
        np.testing.assert_allclose([b.val_acc, b.test_acc], [a.val_acc, a.test_acc],
                                   rtol=1e-10)
    updates = gpu[0].updates
    evaluations = len(gpu[0].curves) + 1       # each curve point and split, and the test set
    checkpoints = len({c.step for c in gpu[0].curves})
    # nothing per update (a group of one: the lone loss's three floats); per curve point
    # the divergence marks (2 arrays) and per evaluation 3 arrays of K numbers
    assert fake_gpu.to_host <= 2 * checkpoints + 3 * evaluations
    assert fake_gpu.syncs <= (3 * updates if k == 1 else 0)


def test_device_dropout_is_drawn_on_the_device(split: Split, fake_gpu: fake_cupy.Counts) -> None:
    """With dropout the masks come from the group's device generator: the run differs from
    the CPU's, is reproducible, and trains."""
    case = {"model": "convnet", "dropout": 0.3, "dropout_input": 0.1}
    one = train_group(_group(case, 3, "cuda"), split)
    again = train_group(_group(case, 3, "cuda"), split)
    cpu = train_group(_group(case, 3, "cpu"), split)
    assert [c.loss for c in one[1].curves] == [c.loss for c in again[1].curves]
    assert [c.loss for c in one[1].curves] != [c.loss for c in cpu[1].curves]
    assert one[1].curves[-2].loss < one[1].curves[0].loss


def test_a_diverging_trial_leaves_a_device_group(split: Split,
                                                 fake_gpu: fake_cupy.Counts) -> None:
    spec = TrialSpec.from_mapping(for_model({**BASE, "model": "convnet", "seed": 1, "data_seed": 9,
                                   "optimizer": "adam", "eta_max": 0.003, "device": "cuda"}))
    wild = spec.replace(seed=2, eta_max=1e150, eta_min=1e149)
    group = [spec, wild, spec.replace(seed=3, lam=0.01)]
    results = train_group(group, split)
    cpu = train_group([s.replace(device="cpu") for s in group], split)
    # marked on the device, it leaves at the next curve point, stored as the CPU stores it
    assert results[1].diverged and "diverged" in results[1].message
    assert (results[1].message, results[1].updates, results[1].epochs, results[1].curves) == (
        cpu[1].message, cpu[1].updates, cpu[1].epochs, cpu[1].curves)
    assert results[1].updates % 4 != 0  # between curve points (every 4 updates here)
    for a, b in zip((results[0], results[2]), (cpu[0], cpu[2]), strict=True):
        assert not a.diverged and a.updates == b.updates
        np.testing.assert_allclose([c.loss for c in a.curves], [c.loss for c in b.curves],
                                   rtol=1e-10)


def test_the_data_goes_to_the_device_once_per_process(split: Split,
                                                      fake_gpu: fake_cupy.Counts) -> None:
    """A worker passes the same host arrays (its split, its shared patch matrices) to every
    group: they are copied to the device the first time only."""
    from numsweep.engine import backend
    from numsweep.engine.inputs import Prepared

    backend._DEVICE_COPIES.clear()
    spec = _group(CASES["convnet_sgd_smoothing"], 2, "cuda")
    from numsweep.engine.layers import patchify

    host = Prepared(patchify(split.x_train, 4), split.y_train, patchify(split.x_val, 4),
                    split.y_val, patchify(split.x_test, 4), split.y_test)
    first = train_group(spec, split, prepared=host)
    copies = dict(backend._DEVICE_COPIES)
    assert len(copies) == 6
    second = train_group(spec, split, prepared=host)
    assert len(backend._DEVICE_COPIES) == 6  # the same device arrays, no new copy
    assert all(backend._DEVICE_COPIES[key][1] is copy for key, (_, copy) in copies.items())
    assert [c.loss for c in first[0].curves] == [c.loss for c in second[0].curves]
    cpu = train_group(_group(CASES["convnet_sgd_smoothing"], 2, "cpu"), split)
    np.testing.assert_allclose([c.loss for c in first[1].curves],
                               [c.loss for c in cpu[1].curves], rtol=1e-10)
    backend._DEVICE_COPIES.clear()


def test_what_cannot_run_on_a_gpu_says_so(split: Split) -> None:
    from numsweep.engine.range_test import range_test
    from numsweep.engine.spec import SpecError

    with pytest.raises(SpecError, match=r"^device='cuda' is invalid: expected cpu with "
                                        r"model=convnet3"):
        TrialSpec(model="convnet3", device="cuda")
    with pytest.raises(SpecError, match="for a range test: expected cpu"):
        range_test(TrialSpec.from_mapping(for_model({**BASE, "device": "cuda"})), split)
    with pytest.raises(SpecError, match=r"^device='tpu' is invalid: expected one of cpu, cuda"):
        TrialSpec(device="tpu")
