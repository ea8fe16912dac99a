"""The engine against another checkout of numsweep, side by side: training time per update per
trial of the same configurations, alternating rounds, one process per tree and round.

    python benchmarks/engine_side_by_side.py --base /path/to/other/checkout [--rounds 3]
        [--threads 1] [--updates 200]

Each round runs a child process per tree (this checkout, then ``--base``, the order swapped
every round) with ``PYTHONPATH`` set to that tree; the child trains every configuration
through the public API only (``numsweep.engine.train_group`` for a group, or K lone
``train`` calls where that tree cannot group the model), on generated CIFAR-10-shaped data,
float32 unless the configuration says otherwise, and reports the summed ``train_seconds``
(training only, the curves' evaluation excluded) per update per trial, and the process's CPU
time over the whole call (evaluation included; less disturbed than wall time by other
processes on a shared machine, with one BLAS thread). The table keeps each tree's fastest
round (the least disturbed by other processes) and their ratio, this tree's time over the
base's: below 1 is faster.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

CONFIGS: dict[str, dict[str, Any]] = {
    "convnet f=4 nf=10 nh=50": {"model": "convnet", "f": 4, "nf": 10, "nh": 50},
    "convnet f=4 nf=40 nh=300": {"model": "convnet", "f": 4, "nf": 40, "nh": 300},
    "convnet f=(2,4) nf=(5,10) nh=50": {"model": "convnet", "f": (2, 4), "nf": (5, 10),
                                        "nh": 50},
    "mlp hidden=50": {"model": "mlp", "hidden": (50,)},
    "mlp hidden=(100,50)": {"model": "mlp", "hidden": (100, 50)},
    "convnet3 nf=8 3x3 nh=50": {"model": "convnet3", "nf": 8, "filter_size": 3, "nh": 50},
    "convnet f=4 nf=10 nh=50, adam": {"model": "convnet", "f": 4, "nf": 10, "nh": 50,
                                      "optimizer": "adam", "eta_max": 0.001},
    "convnet f=4 nf=10 nh=50, float64": {"model": "convnet", "f": 4, "nf": 10, "nh": 50,
                                         "dtype": "float64"},
    "mlp hidden=50, flip+translate": {"model": "mlp", "hidden": (50,), "flip": 0.5,
                                      "translate": 2},
}
KS = {"convnet3 nf=8 3x3 nh=50": (1, 8), "convnet f=4 nf=10 nh=50": (1, 2, 8)}
UPDATES_SCALE = {"convnet3 nf=8 3x3 nh=50": 0.25}  # a slow network: fewer updates


def child(updates: int, threads: int, n_train: int) -> None:
    import numpy as np
    from threadpoolctl import threadpool_limits

    from numsweep.engine import Dataset, TrialSpec, groupable, make_split, train, train_group

    rng = np.random.default_rng(0)
    data = Dataset("generated", tuple(str(i) for i in range(10)),
                   rng.integers(0, 256, (n_train + 1000, 32, 32, 3), dtype=np.uint8),
                   rng.integers(0, 10, n_train + 1000),
                   rng.integers(0, 256, (1000, 32, 32, 3), dtype=np.uint8),
                   rng.integers(0, 10, 1000))
    out: dict[str, tuple[float, float]] = {}
    with threadpool_limits(threads):
        for label, params in CONFIGS.items():
            n = max(10, int(updates * UPDATES_SCALE.get(label, 1.0)))
            dtype = params.get("dtype", "float32")
            split = make_split(data, n_train, 1000, np.dtype(dtype))
            for k in KS.get(label, (1, 8)):
                base = TrialSpec(**{"schedule": "constant", "eta_max": 0.01, "n_updates": n,
                                    "n_train": n_train, "n_val": 1000, "batch_size": 100,
                                    "curve_points": 1, "eval_train": 1000, "data_seed": 0,
                                    **params})
                specs = [base.replace(lam=float(lam), seed=i)
                         for i, lam in enumerate(np.logspace(-5, -1, k))]
                cpu = time.process_time()
                results = (train_group(specs, split) if groupable(specs[0])
                           else [train(s, split) for s in specs])
                cpu = time.process_time() - cpu
                wall = sum(r.train_seconds for r in results)
                out[f"{label} | {k}"] = (1e3 * wall / n / k, 1e3 * cpu / n / k)
    print(json.dumps(out))


def run_tree(tree: Path, args: argparse.Namespace) -> dict[str, list[float]]:
    env = {**os.environ, "PYTHONPATH": str(tree), "OMP_NUM_THREADS": str(args.threads),
           "OPENBLAS_NUM_THREADS": str(args.threads)}
    done = subprocess.run([sys.executable, __file__, "--child", "--updates", str(args.updates),
                           "--threads", str(args.threads), "--n-train", str(args.n_train)],
                          env=env, cwd=tree, check=True, capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", help="the other checkout (a folder holding numsweep/)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--updates", type=int, default=200)
    parser.add_argument("--n-train", type=int, default=10000)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.updates, args.threads, args.n_train)
        return
    if not args.base:
        parser.error("--base is required")
    here, base = Path(__file__).resolve().parents[1], Path(args.base).resolve()
    best: dict[Path, dict[str, list[float]]] = {here: {}, base: {}}
    for r in range(args.rounds):
        for tree in ((here, base) if r % 2 == 0 else (base, here)):
            for key, ms in run_tree(tree, args).items():
                old = best[tree].get(key, [float("inf")] * 2)
                best[tree][key] = [min(a, b) for a, b in zip(ms, old, strict=True)]
        print(f"round {r + 1} of {args.rounds} done", file=sys.stderr, flush=True)
    from sweep_common import cpu_model
    print(f"machine: {cpu_model()}, {os.cpu_count()} CPUs, Python "
          f"{platform.python_version()}; {args.threads} BLAS thread(s), {args.updates} "
          f"updates, {args.n_train} generated training images, batch 100; fastest of "
          f"{args.rounds} alternating rounds")
    print(f"this tree: {here}; base: {base}")
    print()
    print("| configuration | K | base, ms per update per trial | this tree | this / base | "
          "base, CPU ms | this tree, CPU ms | this / base, CPU |")
    print("|---|---|---|---|---|---|---|---|")
    for key, (new, new_cpu) in best[here].items():
        old, old_cpu = best[base][key]
        print(f"| {key} | {old:.3f} | {new:.3f} | {new / old:.3f} | {old_cpu:.3f} | "
              f"{new_cpu:.3f} | {new_cpu / old_cpu:.3f} |")


if __name__ == "__main__":
    main()
