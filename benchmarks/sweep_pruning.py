"""How much time pruning saves on a 32-trial lambda sweep, and whether it still finds the lam.

Runs the same grid of 32 values of log10(lam) in [-5, -1] twice, without a pruner and with
one (median by default), and reports the trials' total time (train + eval seconds), the wall
time, how many trials were pruned, and the best lam of each run with its distance in grid
steps (target: pruning finds a lam within one grid step of the unpruned best).

    python benchmarks/sweep_pruning.py --data ../shared/data/cifar10.npz --cycles 3 --jobs 2
"""

from __future__ import annotations

import argparse
import math

from sweep_common import (
    Stopwatch,
    add_size_arguments,
    fresh_storage,
    lambda_spec,
    machine,
    warm_up,
)

from numsweep.storage import TrialState
from numsweep.sweeps import run_sweep


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_size_arguments(parser)
    parser.add_argument("--trials", type=int, default=32)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--pruner", default="median",
                        choices=["median", "halving", "hyperband"])
    args = parser.parse_args()
    if args.cycles < 2:
        parser.error("pruning acts at the end of a cycle before the last: use --cycles >= 2")
    print(f"machine: {machine()}")
    step = 4 / (args.trials - 1)  # log10 grid step
    runs = {}
    for pruner in ("none", args.pruner):
        storage = fresh_storage(args.workdir, f"pruning-{pruner}")
        warm_up(args.jobs)
        with Stopwatch() as clock:
            run_sweep(lambda_spec(args, "lam", args.trials, {"pruner": pruner}), storage,
                      data_source=args.data, jobs=args.jobs)
        trials = storage.get_trials("lam")
        seconds = sum(t.metrics["train_seconds"] + t.metrics["eval_seconds"] for t in trials)
        complete = [t for t in trials if t.state is TrialState.COMPLETE]
        best = max(complete, key=lambda t: t.metrics["val_acc"])
        pruned = sum(t.state is TrialState.PRUNED for t in trials)
        runs[pruner] = (seconds, clock.seconds, best)
        print(f"pruner {pruner}: {len(trials)} trials, {pruned} pruned; trials' time "
              f"{seconds:.1f} s, wall {clock.seconds:.1f} s; best lam "
              f"{best.params['lam']:.4g} (val_acc {best.metrics['val_acc']:.4f})")
    base, pruned_run = runs["none"], runs[args.pruner]
    distance = abs(math.log10(pruned_run[2].params["lam"]) - math.log10(base[2].params["lam"]))
    print(f"time saved: {100 * (1 - pruned_run[0] / base[0]):.0f}% of trial time, "
          f"{100 * (1 - pruned_run[1] / base[1]):.0f}% of wall time; best lam "
          f"{distance / step:.2f} grid steps from the unpruned best (target <= 1)")


if __name__ == "__main__":
    main()
