"""How long the analysis takes on a large result database: generate N trials with made-up
results and curves (through Storage), then time load_trials, load_curves and drawing.

    python benchmarks/analysis_load.py --trials 10000 --steps 50 --db /tmp/big.db

The database is generated once and reused when it already holds the sweep. Timings depend on
the machine and its load: run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np

from numsweep.analysis import (
    bar_data,
    curve_data,
    draw_bars,
    draw_curve_panels,
    draw_optimizers,
    draw_pareto,
    importance_data,
    load_curves,
    load_trials,
    optimizer_data,
    pareto_data,
    save,
)
from numsweep.analysis.charts import draw_importance, draw_lambda, lambda_data
from numsweep.storage import CurveRecord, Storage, TrialState

SWEEP = "big"


def generate(storage: Storage, trials: int, steps: int) -> None:
    rng = np.random.default_rng(0)
    sweep = storage.get_or_create_sweep(SWEEP, {"name": SWEEP}, seed=0)
    stage = storage.get_or_create_stage(sweep.id, 0, "random", "random",
                                        {"lam": {"low": 1e-5, "high": 0.1, "log": True}})
    for n in range(trials):
        lam = float(10 ** rng.uniform(-5, -1))
        params = {"model": "mlp", "hidden": [50], "lam": lam, "batch_size": 100,
                  "optimizer": ["sgd", "adam"][n % 2], "dropout": [0.0, 0.5][(n // 2) % 2],
                  "n_train": 5000, "n_s": 100, "cycles": 1, "eps": 0.0}
        tid = storage.start_trial(sweep.id, stage.id, n, params, seed=n)
        acc = 0.45 - 0.02 * (math.log10(lam) + 2.3) ** 2 + rng.normal(0, 0.01)
        curves = [CurveRecord(tid, 4 * k, split, 2.3 - k / steps, 2.4 - k / steps,
                              0.1 + acc * k / steps, 0.1)
                  for k in range(steps) for split in ("train", "val")]
        storage.finish_trial(tid, TrialState.COMPLETE, curves=curves,
                             metrics={"val_acc": acc, "test_acc": acc - 0.01,
                                      "train_seconds": float(rng.uniform(5, 50))})


def timed(label: str, fn):
    t0 = time.perf_counter()
    out = fn()
    print(f"{label:<44s} {time.perf_counter() - t0:7.2f} s")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=10_000)
    parser.add_argument("--steps", type=int, default=50, help="curve steps (x2 splits)")
    parser.add_argument("--db", default="/tmp/numsweep-big.db")
    parser.add_argument("--out", default="/tmp/numsweep-big-charts")
    args = parser.parse_args()
    storage = Storage(f"sqlite:///{args.db}")
    if SWEEP not in {s.name for s in storage.list_sweeps()}:
        timed(f"generate {args.trials} trials x {2 * args.steps} points", lambda: generate(
            storage, args.trials, args.steps))
    out = Path(args.out)
    trials = timed("load_trials", lambda: load_trials(storage, SWEEP))
    curves = timed(f"load_curves ({len(trials)} trials)",
                   lambda: load_curves(storage, trials["trial_id"]))
    print(f"{len(trials)} trials, {len(curves)} curve points")
    timed("bars (best 30 configurations)", lambda: save(draw_bars(
        bar_data(trials, "val_acc", top=30), "val_acc"), out / "bars.png"))
    timed("lambda (every trial)", lambda: save(draw_lambda(lambda_data(trials)),
                                               out / "lambda.png"))
    timed("optimizers (mean curves)", lambda: save(draw_optimizers(optimizer_data(
        trials, curves)), out / "optimizers.png"))
    best = trials.nlargest(5, "val_acc")
    timed("curves (best 5)", lambda: save(draw_curve_panels(curve_data(
        best, load_curves(storage, best["trial_id"]))), out / "curves.png"))
    timed("importance", lambda: save(draw_importance(importance_data(trials)),
                                     out / "importance.png"))
    timed("pareto", lambda: save(draw_pareto(pareto_data(trials)), out / "pareto.png"))


if __name__ == "__main__":
    main()
