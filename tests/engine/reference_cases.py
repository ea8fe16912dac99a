"""The engine's reference numbers: the cases, how each is run, and how its numbers are read.

``python -m tests.engine.reference_cases`` writes ``reference_values.json`` beside this file
(run it only to record numbers on purpose, never to make a failing test pass);
``test_reference_values.py`` runs every case again and compares.

Each case is a group of specs trained by :func:`numsweep.engine.train_group` (a lone trial
as a group of one), a lone :func:`numsweep.engine.train`, or a range test, on the small
generated images of ``tests/conftest.py``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from numsweep.engine import TrialSpec, load_dataset, make_split, train, train_group
from numsweep.engine.range_test import range_test
from tests.conftest import write_images_npz

REFERENCE_FILE = Path(__file__).with_name("reference_values.json")

BASE: dict[str, Any] = {"n_train": 120, "n_val": 40, "batch_size": 20, "n_s": 4, "cycles": 2,
                        "curve_points": 2, "eval_train": 60}
SHAPES: dict[str, dict[str, Any]] = {
    "mlp": {"model": "mlp", "hidden": (10,)},
    "mlp2": {"model": "mlp", "hidden": (12, 8)},
    "convnet": {"model": "convnet", "f": 4, "nf": 3, "nh": 8},
    "convnet_multi": {"model": "convnet", "f": (2, 4), "nf": (2, 3), "nh": 8},
    "convnet3": {"model": "convnet3", "nf": 3, "filter_size": 3, "nh": 8},
}
OPTIMIZERS = ("sgd", "momentum", "nesterov", "adagrad", "rmsprop", "rmsprop_nesterov",
              "adadelta", "adam")
SCHEDULES: dict[str, dict[str, Any]] = {
    "cyclic": {"schedule": "cyclic", "eta_decay": 0.8},
    "constant": {"schedule": "constant", "n_updates": 12},
    "exp_range": {"schedule": "exp_range", "gamma": 0.98},
    "linear": {"schedule": "linear", "n_updates": 12},
    "step": {"schedule": "step", "n_updates": 12, "step_size": 4, "eta_decay": 0.7},
    "exponential": {"schedule": "exponential", "n_updates": 12},
}
BATCH_SCHEDULES = ("cyclic", "linear", "exponential")
TRAIN_RATES = {"sgd": 0.1, "momentum": 0.05, "nesterov": 0.05, "adagrad": 0.05,
               "rmsprop": 0.005, "rmsprop_nesterov": 0.005, "adadelta": 1.0, "adam": 0.005}


def _spec(shape: str, **values: Any) -> TrialSpec:
    return TrialSpec(**{**BASE, **SHAPES[shape], **values})


def _group(spec: TrialSpec, k: int) -> list[TrialSpec]:
    """k specs of one group: per-trial values spread, the first one ``spec`` itself."""
    out = [spec]
    for i in range(1, k):
        changes: dict[str, Any] = {"seed": spec.seed + 10 * i, "lam": 0.003 * i,
                                   "eta_max": spec.eta_max * (1 - 0.25 * i),
                                   "dropout": 0.1 * i}
        if spec.loss == "softmax":
            changes["eps"] = 0.05 * i
        if spec.optimizer in ("momentum", "nesterov", "rmsprop_nesterov"):
            changes["momentum"] = 0.9 - 0.2 * i
        if spec.optimizer == "adam":
            changes["beta1"] = 0.9 - 0.05 * i
        out.append(spec.replace(data_seed=spec.seed, **changes))
    return out


def cases() -> dict[str, dict[str, Any]]:
    """name -> {"kind": "group" | "train" | "range", "specs": [...], "mode": ...}."""
    out: dict[str, dict[str, Any]] = {}
    for dtype in ("float64", "float32"):
        for shape in SHAPES:
            for k in (1, 3):
                spec = _spec(shape, lam=0.01, eta_max=0.1, dropout=0.0, dtype=dtype, seed=1)
                if shape == "convnet3" and k == 3:
                    continue  # convnet3 trains alone (not groupable) in the engine measured
                out[f"{shape}-k{k}-{dtype}"] = {"kind": "group" if shape != "convnet3"
                                                else "train", "specs": _group(spec, k)}
    for opt in OPTIMIZERS:
        for shape in ("mlp", "convnet3"):
            spec = _spec(shape, optimizer=opt, eta_max=TRAIN_RATES[opt], lam=0.005,
                         dtype="float64", seed=2)
            out[f"{shape}-{opt}"] = {"kind": "train", "specs": [spec]}
        spec = _spec("convnet", optimizer=opt, eta_max=TRAIN_RATES[opt], lam=0.005,
                     dtype="float64", seed=2)
        out[f"convnet-{opt}-k3"] = {"kind": "group", "specs": _group(spec, 3)}
    for name, values in SCHEDULES.items():
        for shape in ("mlp", "convnet", "convnet3"):
            spec = _spec(shape, lam=0.002, dtype="float64", seed=3, **values)
            out[f"{shape}-schedule-{name}"] = {"kind": "train", "specs": [spec]}
    for name in BATCH_SCHEDULES:
        spec = _spec("mlp", batch_schedule=name, b_min=10, b_max=40, schedule="constant",
                     n_updates=10, dtype="float64", seed=4)
        out[f"mlp-batch-{name}"] = {"kind": "train", "specs": [spec]}
    for shape in ("mlp", "convnet", "convnet3"):
        spec = _spec(shape, loss="svm", lam=0.001, eta_max=0.02, dtype="float64", seed=5)
        out[f"{shape}-svm"] = {"kind": "train", "specs": [spec]}
        spec = _spec(shape, flip=0.5, translate=2, cutout=4, dropout=0.2, dropout_input=0.1,
                     eps=0.1, activation="leaky_relu", leaky_slope=0.05, init="he",
                     dtype="float64", seed=6, data_seed=9)
        out[f"{shape}-augment"] = {"kind": "train", "specs": [spec]}
    spec = _spec("mlp", hidden=(10,), activation="leaky_relu", loss="svm", dtype="float64",
                 seed=7, eta_max=0.02)
    out["mlp-svm-k3"] = {"kind": "group", "specs": _group(spec, 3)}
    for mode in ("lr", "batch"):
        for shape in ("mlp", "convnet", "convnet3"):
            spec = _spec(shape, dtype="float64", seed=8, schedule="constant", n_updates=30,
                         eta_min=1e-4, eta_max=1.0 if mode == "lr" else 0.05, b_min=10,
                         b_max=60)
            out[f"{shape}-range-{mode}"] = {"kind": "range", "specs": [spec], "mode": mode}
    return out


def dataset(folder: Path) -> Any:
    return load_dataset(write_images_npz(folder / "reference.npz", seed=0))


def run_case(case: dict[str, Any], data: Any) -> list[dict[str, Any]]:
    """The numbers of a case: one record per spec (metrics and every curve value)."""
    specs: list[TrialSpec] = case["specs"]
    split = make_split(data, specs[0].n_train, specs[0].n_val, np.dtype(specs[0].dtype))
    if case["kind"] == "range":
        r = range_test(specs[0], split, case["mode"])
        return [{"values": list(r.values), "losses": list(r.losses), "costs": list(r.costs),
                 "accs": list(r.accs), "best": r.best, "steepest": r.steepest,
                 "updates": r.updates, "param_count": r.param_count}]
    results = (train_group(specs, split) if case["kind"] == "group"
               else [train(spec, split) for spec in specs])
    return [{"val_acc": r.val_acc, "test_acc": r.test_acc, "train_acc": r.train_acc,
             "updates": r.updates, "param_count": r.param_count, "epochs": r.epochs,
             "diverged": r.diverged,
             "curves": [[p.step, p.split, p.loss, p.cost, p.acc, p.lr] for p in r.curves]}
            for r in results]


def main(folder: str) -> None:
    data = dataset(Path(folder))
    values = {name: run_case(case, data) for name, case in cases().items()}
    REFERENCE_FILE.write_text(json.dumps(values, indent=0, sort_keys=True) + "\n")
    print(f"{len(values)} cases written to {REFERENCE_FILE}")


if __name__ == "__main__":
    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        main(sys.argv[1] if len(sys.argv) > 1 else tmp)
