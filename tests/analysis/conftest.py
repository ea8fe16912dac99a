"""A small generated result database: trials written straight through Storage with made-up
results and curves (no training), shaped like the course's experiments."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from numsweep.storage import CurveRecord, Storage, TrialState

BASE = {"model": "mlp", "hidden": [50], "f": 4, "nf": 10, "nh": 50, "lam": 0.0, "eps": 0.0,
        "batch_size": 100, "eta_min": 1e-5, "eta_max": 0.1, "n_s": 100, "cycles": 1,
        "schedule": "cyclic", "optimizer": "sgd", "dropout": 0.0, "n_train": 5000,
        "n_val": 1000}
COARSE_LAMS = [1e-5, 1e-4, 1e-3, 1e-2, 1e-1]
FINE_LAMS = [2e-3, 4e-3, 8e-3]
ARCHS = [(4, 10, 50, 0.60), (2, 20, 50, 0.59), (8, 10, 50, 0.50)]


def _curves(trial_id: int, rng: np.random.Generator, final_acc: float, steps: int = 200,
            points: int = 10, slowness: float = 1.0) -> list[CurveRecord]:
    out = []
    for k in range(points + 1):
        step = steps * k // points
        lr = 1e-5 + (0.1 - 1e-5) * (1 - abs(2 * step / steps - 1))
        progress = 1 - math.exp(-3 * step / steps / slowness)
        for split, shift in (("train", 0.0), ("val", 0.1)):
            loss = 2.3 - 1.0 * progress + shift * progress + rng.normal(0, 0.01)
            acc = 0.1 + (final_acc - 0.1) * progress * (1.05 if split == "train" else 1.0)
            out.append(CurveRecord(trial_id, step, split, loss, loss + 0.05, acc, lr))
    return out


def _trial(storage: Storage, sweep_id: int, stage_id: int | None, number: int,
           params: dict[str, Any], val_acc: float, rng: np.random.Generator,
           seconds: float = 5.0, curves: list[CurveRecord] | None = None,
           state: TrialState = TrialState.COMPLETE, slowness: float = 1.0) -> int:
    tid = storage.start_trial(sweep_id, stage_id, number, {**BASE, **params}, seed=number)
    if state is TrialState.RUNNING:
        return tid
    metrics = {"val_acc": val_acc, "test_acc": val_acc - 0.01, "train_acc": val_acc + 0.05,
               "train_seconds": seconds, "eval_seconds": 0.5, "updates": 200,
               "param_count": 154160}
    if state is TrialState.FAILED:
        metrics = {k: math.nan for k in metrics}
        curves = []
    storage.finish_trial(tid, state, metrics=metrics, message="diverged" if metrics else "",
                         curves=curves if curves is not None else
                         _curves(tid, rng, val_acc, slowness=slowness))
    return tid


def build_db(url: str) -> Storage:
    """Sweeps ``lambda`` (coarse grid + fine stage, one failed and one running trial),
    ``archs`` (ConvNet configurations with seed replicates), ``optimizers`` (sgd/adam with and
    without dropout, two seeds) and ``range`` (learning-rate range tests at two batch sizes, one
    batch-size range test) stored as ``numsweep range-test`` stores them."""
    rng = np.random.default_rng(0)
    storage = Storage(url)
    spec = {"name": "lambda", "seed": 0, "fixed": {"hidden": [50], "cycles": 1}}
    sweep = storage.get_or_create_sweep("lambda", spec, seed=0)
    lam_space = {"lam": {"type": "float", "low": 1e-5, "high": 1e-1, "log": True, "grid": 5}}
    coarse = storage.get_or_create_stage(sweep.id, 0, "coarse", "grid", lam_space,
                                         note="5 values evenly spaced in log10(lam)")
    fine = storage.get_or_create_stage(
        sweep.id, 1, "fine", "tpe",
        {"lam": {"type": "float", "low": 1e-3, "high": 1e-2, "log": True}},
        note="narrowed around the coarse best")
    n = 0
    for lam in COARSE_LAMS:
        acc = 0.45 - 0.02 * (math.log10(lam) + 2.3) ** 2
        _trial(storage, sweep.id, coarse.id, n, {"lam": lam}, acc, rng, seconds=4 + n)
        n += 1
    for lam in FINE_LAMS:
        acc = 0.45 - 0.02 * (math.log10(lam) + 2.3) ** 2 + 0.001
        _trial(storage, sweep.id, fine.id, n, {"lam": lam}, acc, rng, seconds=4 + n)
        n += 1
    _trial(storage, sweep.id, fine.id, n, {"lam": 0.5}, 0.0, rng, state=TrialState.FAILED)
    _trial(storage, sweep.id, fine.id, n + 1, {"lam": 0.05}, 0.0, rng,
           state=TrialState.RUNNING)

    sweep = storage.get_or_create_sweep("archs", {"name": "archs"}, seed=1)
    stage = storage.get_or_create_stage(sweep.id, 0, "grid", "grid",
                                        {"f": {"choices": [2, 4, 8]}})
    n = 0
    for f, nf, nh, acc in ARCHS:
        for seed in range(3):
            noise = 0.01 * (seed - 1)
            _trial(storage, sweep.id, stage.id, n,
                   {"model": "convnet", "f": f, "nf": nf, "nh": nh},
                   acc + noise, rng, seconds=60 / f + seed)
            n += 1

    sweep = storage.get_or_create_sweep("optimizers", {"name": "optimizers"}, seed=2)
    stage = storage.get_or_create_stage(sweep.id, 0, "grid", "grid", {})
    n = 0
    for opt, slow in (("sgd", 1.0), ("adam", 0.5)):
        for dropout in (0.0, 0.5):
            for _ in range(2):
                _trial(storage, sweep.id, stage.id, n, {"optimizer": opt, "dropout": dropout},
                       0.45 + dropout / 20, rng, slowness=slow + dropout)
                n += 1

    sweep = storage.get_or_create_sweep("range", {"name": "range"}, seed=3)
    for n, batch in enumerate((50, 200)):
        tid = storage.start_trial(sweep.id, None, n, {**BASE, "batch_size": batch,
                                                      "schedule": "exponential"}, seed=n)
        lrs = np.logspace(-5, 0, 60)
        best = 0.05 if batch == 50 else 0.2
        loss = 2.3 - 1.2 * np.exp(-((np.log10(lrs) - np.log10(best)) ** 2) / 2)
        loss[lrs > 3 * best] = np.linspace(3, 40, int((lrs > 3 * best).sum()))
        loss += rng.normal(0, 0.05, len(loss))
        points = [CurveRecord(tid, k, "lr_range", float(v), float(v), 0.3, float(lr))
                  for k, (lr, v) in enumerate(zip(lrs, loss, strict=True))]
        storage.finish_trial(tid, TrialState.COMPLETE, curves=points,
                             metrics={"updates": 60, "train_seconds": 2.0, "best_lr": best,
                                      "steepest_lr": best / 10})
    sizes = np.unique(np.logspace(3, 10, 40, base=2).astype(int))
    loss = 2.3 - 0.8 * (1 - np.exp(-sizes / 200)) + rng.normal(0, 0.03, len(sizes))
    tid = storage.start_trial(sweep.id, None, 2, {**BASE, "batch_schedule": "exponential",
                                                  "schedule": "constant"}, seed=2)
    storage.finish_trial(tid, TrialState.COMPLETE, metrics={"best_batch": 512.0},
                         curves=[CurveRecord(tid, int(b), "batch_range", float(v), float(v),
                                             0.3, 0.05) for b, v in zip(sizes, loss,
                                                                        strict=True)])
    return storage


@pytest.fixture(scope="session")
def demo_db(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('analysis') / 'demo.db'}"
    build_db(url).dispose()
    return url
