"""On a real GPU (CuPy): a small group gives the CPU's curves to float32 tolerance, a
diverging trial leaves a GPU group, and ``numsweep train device=cuda`` runs end to end.
Marked ``gpu``; skipped where CuPy or a GPU is missing (``pytest -m gpu`` runs only these)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from numsweep.engine import Split, TrialSpec, load_dataset, make_split, train_group
from numsweep.engine.backend import DeviceError, device_module
from tests.conftest import for_model

pytestmark = pytest.mark.gpu

try:
    device_module("cuda")
    GPU = ""
except DeviceError as exc:
    GPU = str(exc)

needs_gpu = pytest.mark.skipif(bool(GPU), reason=GPU)

BASE = {"n_train": 120, "n_val": 40, "batch_size": 20, "n_s": 4, "cycles": 2,
        "curve_points": 2, "eval_train": 60, "f": 4, "nf": 3, "nh": 8, "hidden": (10,),
        "dtype": "float32", "seed": 3, "data_seed": 7}


@pytest.fixture(scope="module")
def split(tiny_npz: Path) -> Split:
    return make_split(load_dataset(tiny_npz), BASE["n_train"], BASE["n_val"],
                      np.dtype("float32"))


def _group(device: str, **case: object) -> list[TrialSpec]:
    spec = TrialSpec.from_mapping(for_model({**BASE, "device": device, **case}))
    return [spec.replace(seed=3 + i, lam=0.002 * i, eta_max=spec.eta_max * (1 - 0.1 * i))
            for i in range(4)]


@needs_gpu
@pytest.mark.parametrize("case", [{"model": "convnet"}, {"model": "convnet", "f": (4, 8),
                                  "nf": (3, 2), "optimizer": "adam", "eta_max": 0.003},
                                  {"model": "mlp", "hidden": (10, 6), "loss": "svm",
                                   "optimizer": "nesterov", "eta_max": 0.02},
                                  {"model": "convnet", "flip": 0.5, "translate": 1}])
def test_a_gpu_group_gives_the_cpu_curves(split: Split, case: dict) -> None:
    cpu = train_group(_group("cpu", **case), split)
    gpu = train_group(_group("cuda", **case), split)
    for a, b in zip(cpu, gpu, strict=True):
        assert b.updates == a.updates and not b.diverged
        np.testing.assert_allclose([c.loss for c in b.curves], [c.loss for c in a.curves],
                                   rtol=1e-4)
        np.testing.assert_allclose([c.acc for c in b.curves], [c.acc for c in a.curves],
                                   atol=0.03)


@needs_gpu
def test_a_diverging_trial_leaves_a_gpu_group(split: Split) -> None:
    spec = TrialSpec.from_mapping(for_model({**BASE, "model": "convnet", "optimizer": "adam",
                                   "eta_max": 0.003, "device": "cuda"}))
    wild = spec.replace(seed=9, eta_max=1e30, eta_min=1e29)
    results = train_group([spec, wild, spec.replace(seed=4)], split)
    assert results[1].diverged and "diverged" in results[1].message
    assert not results[0].diverged and not results[2].diverged
    alone = train_group([spec.replace(device="cpu")], split)[0]
    np.testing.assert_allclose([c.loss for c in results[0].curves],
                               [c.loss for c in alone.curves], rtol=1e-4)


@needs_gpu
def test_numsweep_train_on_the_gpu(tmp_path: Path, tiny_npz: Path) -> None:
    from click.testing import CliRunner

    from numsweep.cli import cli

    result = CliRunner().invoke(cli, ["train", "device=cuda", "model=convnet", "n_train=400",
                                      "n_val=100", "batch_size=50", "cycles=1", "--json",
                                      "--db", f"sqlite:///{tmp_path / 'g.db'}", "--data",
                                      str(tiny_npz)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    record = json.loads(result.output)
    assert record["device"] == "cuda" and record["val_acc"] > 0
