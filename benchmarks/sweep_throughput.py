"""Whole sweeps grouped, ungrouped and with PyTorch: wall time as a user waits for it.

A grid of 8 (and, with K = 32, a finer grid of 32) lam values of the course ConvNet (f=4,
nf=10, nh=50) and of the two-layer MLP (50 hidden), 3 cycles of n_s 800 (4,800 updates),
49,000 training images, on every core (``--jobs`` = the cores, one BLAS thread per trial):

- numsweep grouped: ``run_sweep(..., group_size=K)`` with K = trials / jobs (one fused group
  per core), end to end (data loading, sharing, worker start-up, the database included);
- numsweep ungrouped: the same sweep with ``group_size=1``;
- PyTorch: the same trials (the same schedule, plain SGD with L2, one trial per core, one
  thread each), its data loading excluded (each worker process loads the split before the
  clock starts), its curve evaluation too (numsweep's is included).

It checks that grouped and ungrouped give the same metrics (float32: to rounding) and prints
a markdown table with the machine (CPU model, cores, BLAS) for RESULTS.md.

    python benchmarks/sweep_throughput.py --data ../shared/data/cifar10.npz
    python benchmarks/sweep_throughput.py --data ../shared/data/cifar10.npz --quick
"""

from __future__ import annotations

import argparse
import os
import time
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import numpy as np
from speed import have_torch, torch_ms_per_update
from sweep_common import Stopwatch, cpu_model, fresh_storage, print_table_header
from threadpoolctl import threadpool_info

from numsweep.engine import TrialSpec, load_dataset, make_split
from numsweep.sweeps import parse_spec, run_sweep

MODELS = {
    "convnet f=4 nf=10 nh=50": {"model": "convnet", "f": 4, "nf": 10, "nh": 50},
    "mlp hidden=50": {"model": "mlp", "hidden": [50]},
}


def sweep_spec(name: str, model: dict[str, Any], trials: int, size: dict[str, Any]) -> Any:
    fixed = {**model, **size, "batch_size": 100, "eta_min": 1e-5, "eta_max": 1e-1,
             "curve_points": 4}
    return parse_spec({"name": name, "seed": 0, "fixed": fixed,
                       "space": {"lam": {"low": 1e-5, "high": 1e-1, "log": True,
                                         "grid": trials}},
                       "stages": [{"name": "grid", "sampler": "grid"}]}, "<benchmark>")


def cold_start() -> None:
    """Forget what an earlier run left in this process (the loaded dataset, the loky
    worker processes), so that every run pays its own data loading and start-up."""
    from joblib.externals.loky import get_reusable_executor

    import numsweep.sweeps.worker as worker
    from numsweep.sweeps.dataset_cache import clear_datasets

    clear_datasets()
    for cached in (worker._split, worker._shared_split, worker._shared_patches):
        cached.cache_clear()
    get_reusable_executor().shutdown(wait=True, kill_workers=True)


def numsweep_run(args: argparse.Namespace, name: str, spec: Any, jobs: int,
                 group_size: int) -> tuple[float, dict[float, float]]:
    storage = fresh_storage(args.workdir, name)
    cold_start()
    with Stopwatch() as clock:
        run_sweep(spec, storage, data_source=args.data, jobs=jobs, group_size=group_size)
    trials = storage.get_trials(spec.name)
    return clock.seconds, {t.params["lam"]: t.metrics["val_acc"] for t in trials}


_SPLIT: Any = None


def _load(data: str, n_train: int | None, n_val: int) -> None:
    global _SPLIT
    _SPLIT = make_split(load_dataset(data), n_train, n_val, np.dtype("float32"))


def _torch_trial(spec: TrialSpec) -> float:
    return torch_ms_per_update(spec, _SPLIT, 1)


def torch_run(args: argparse.Namespace, specs: list[TrialSpec], jobs: int) -> float:
    """Wall seconds of the trials on ``jobs`` processes, their data already loaded."""
    with ProcessPoolExecutor(jobs, initializer=_load,
                             initargs=(args.data, args.size["n_train"],
                                       args.size["n_val"])) as pool:
        list(pool.map(_load_marker, range(jobs)))  # every worker has its split
        with Stopwatch() as clock:
            list(pool.map(_torch_trial, specs))
    return clock.seconds


def _load_marker(_: int) -> bool:
    time.sleep(0.2)  # keeps the worker busy so that each one takes a marker
    return _SPLIT is not None


def blas() -> str:
    found = sorted({f"{i['internal_api']} {i.get('version') or ''}".strip()
                    for i in threadpool_info() if i["user_api"] == "blas"})
    return ", ".join(found) or "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="dataset (.npz, CIFAR-10 folder, ...)")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--grids", default="8,32", help="grid sizes (trials per sweep)")
    parser.add_argument("--quick", action="store_true",
                        help="a tiny setting that checks the script runs (no numbers to keep)")
    parser.add_argument("--no-torch", action="store_true", help="skip PyTorch")
    parser.add_argument("--workdir", default="bench-sweeps", help="folder for the databases")
    args = parser.parse_args()
    args.size = ({"n_train": 500, "n_val": 200, "n_s": 10, "cycles": 1} if args.quick else
                 {"n_train": 49000, "n_val": 1000, "n_s": 800, "cycles": 3})
    grids = [4] if args.quick else [int(g) for g in args.grids.split(",")]
    with_torch = not args.no_torch and have_torch()
    jobs = args.jobs
    rows = []
    for trials in grids:
        for label, model in MODELS.items():
            spec = sweep_spec(f"tp-{trials}", model, trials, args.size)
            k = max(1, -(-trials // jobs))
            grouped, g_metrics = numsweep_run(args, f"grouped-{trials}", spec, jobs, k)
            alone, a_metrics = numsweep_run(args, f"alone-{trials}", spec, jobs, 1)
            worst = max(abs(g_metrics[lam] - a_metrics[lam]) for lam in g_metrics)
            torch_s = float("nan")
            if with_torch:
                lams = sorted(g_metrics)
                specs = [TrialSpec.from_mapping({**spec.stage_fixed(spec.stages[0]),
                                                 "lam": lam}) for lam in lams]
                torch_s = torch_run(args, specs, jobs)
            rows.append((label, trials, k, grouped, alone, torch_s, worst))
            print(f"{label}, {trials} trials: grouped (K={k}) {grouped:.1f} s, ungrouped "
                  f"{alone:.1f} s, PyTorch {torch_s:.1f} s; largest val_acc difference "
                  f"grouped vs ungrouped {worst:.2g}", flush=True)
    size = args.size
    print()
    print(f"Machine: {cpu_model()}, {os.cpu_count()} cores, BLAS {blas()}; --jobs {jobs}, "
          f"1 BLAS thread per trial; n_train {size['n_train']}, {size['cycles']} cycles of "
          f"n_s {size['n_s']} ({2 * size['n_s'] * size['cycles']} updates)"
          + (" (--quick: not for publishing)" if args.quick else ""))
    print()
    print_table_header("model", "trials", "K", "grouped s", "ungrouped s", "PyTorch s",
                       "ungrouped / grouped", "PyTorch / grouped", "max val_acc diff")
    for label, trials, k, grouped, alone, torch_s, worst in rows:
        print(f"| {label} | {trials} | {k} | {grouped:.1f} | {alone:.1f} | {torch_s:.1f} | "
              f"{alone / grouped:.2f}x | {torch_s / grouped:.2f}x | {worst:.2g} |")


if __name__ == "__main__":
    main()
