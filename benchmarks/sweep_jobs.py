"""Sweep throughput with --jobs 1 and --jobs 2 on the same trials, and the database's share of
the time.

Runs the same grid of lam values (same seed, so the same trials) with one and with two worker
processes and reports trials per hour and the speed-up; checks the metrics are identical. With
two jobs it also measures the main process's time in the database (numsweep's storage calls,
timed around each call) and everything it does outside waiting for workers (storage, Optuna's
RDB study, sampling), as a share of the trials' own time (train + eval seconds).

    python benchmarks/sweep_jobs.py --data ../shared/data/cifar10.npz --trials 8
    python benchmarks/sweep_jobs.py --data tiny.npz --n-train 400 --n-val 100 --trials 4
"""

from __future__ import annotations

import argparse
import functools
import time
from typing import Any

import optuna
from sweep_common import (
    Stopwatch,
    add_size_arguments,
    fresh_storage,
    lambda_spec,
    machine,
    warm_up,
)

import numsweep.sweeps.submission as submission
from numsweep.storage import Storage
from numsweep.sweeps import run_sweep

OPTUNA_METHODS = ("ask", "tell", "enqueue_trial", "add_trial", "get_trials")
STORAGE_METHODS = ("get_or_create_sweep", "get_or_create_stage", "list_sweeps", "count_trials",
                   "next_trial_number", "start_trial", "finish_trial", "get_trials",
                   "get_sweep", "list_stages", "get_stage", "merge_stage_space",
                   "claim_slots", "claim_again", "stage_slots", "heartbeat", "interrupt_trials")


class TimedStorage(Storage):
    """Storage that adds up the seconds spent in each public call."""

    seconds = 0.0

    def __getattribute__(self, name: str) -> Any:
        attr = super().__getattribute__(name)
        if name in STORAGE_METHODS and callable(attr):
            @functools.wraps(attr)
            def timed(*args: Any, **kwargs: Any) -> Any:
                t0 = time.perf_counter()
                try:
                    return attr(*args, **kwargs)
                finally:
                    TimedStorage.seconds += time.perf_counter() - t0
            return timed
        return attr


def timed(fn: Any, total: list[float]) -> Any:
    """``fn`` that adds its seconds to ``total[0]``."""

    def call(*args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            total[0] += time.perf_counter() - t0

    return call


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_size_arguments(parser)
    parser.add_argument("--trials", type=int, default=8, help="grid points (trials)")
    args = parser.parse_args()
    print(f"machine: {machine()}")
    results = {}
    for jobs in (1, 2):
        name = f"throughput-j{jobs}"
        base = fresh_storage(args.workdir, name)
        storage = TimedStorage(base.url)
        TimedStorage.seconds = 0.0
        waited = [0.0]
        original_wait = submission.wait
        submission.wait = timed(original_wait, waited)
        in_optuna = [0.0]
        originals = {m: getattr(optuna.Study, m) for m in OPTUNA_METHODS}
        for m, fn in originals.items():
            setattr(optuna.Study, m, timed(fn, in_optuna))
        created = optuna.create_study
        optuna.create_study = timed(created, in_optuna)  # type: ignore[assignment]
        warm_up(jobs)
        try:
            with Stopwatch() as clock:
                run_sweep(lambda_spec(args, "lam", args.trials), storage,
                          data_source=args.data, jobs=jobs)
        finally:
            submission.wait = original_wait
            for m, fn in originals.items():
                setattr(optuna.Study, m, fn)
            optuna.create_study = created  # type: ignore[assignment]
        trials = storage.get_trials("lam")
        trial_seconds = sum(t.metrics["train_seconds"] + t.metrics["eval_seconds"]
                            for t in trials)
        results[jobs] = {
            "wall": clock.seconds, "per_hour": len(trials) / clock.seconds * 3600,
            "db": TimedStorage.seconds, "busy": clock.seconds - waited[0],
            "optuna": in_optuna[0],
            "trial_seconds": trial_seconds,
            "metrics": [(t.params["lam"], t.metrics["val_acc"], t.metrics["test_acc"])
                        for t in trials]}
        r = results[jobs]
        print(f"--jobs {jobs}: {len(trials)} trials in {r['wall']:.1f} s wall = "
              f"{r['per_hour']:.0f} trials/hour; trials' own time {trial_seconds:.1f} s")
    one, two = results[1], results[2]
    print(f"speed-up with 2 jobs: {two['per_hour'] / one['per_hour']:.2f}x (target >= 1.8)")
    print(f"same metrics with --jobs 1 and 2: {one['metrics'] == two['metrics']}")
    db_total = two["db"] + two["optuna"]
    print(f"--jobs 2: database time {db_total:.2f} s = "
          f"{100 * db_total / two['trial_seconds']:.2f}% of trial time (target < 1%): numsweep's "
          f"tables {two['db']:.2f} s, Optuna's study (RDB storage, sampling included) "
          f"{two['optuna']:.2f} s; main "
          f"process busy outside waiting (database, Optuna study, sampling, data sharing) "
          f"{two['busy']:.2f} s = {100 * two['busy'] / two['trial_seconds']:.2f}%")


if __name__ == "__main__":
    main()
