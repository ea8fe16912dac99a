"""Shared pieces of the benchmarks: the lambda spec at a chosen size, generated CIFAR-10-shaped
data, the fused-group configurations and their specs, Markdown table headers, and timing."""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np

from numsweep.engine import Dataset, TrialSpec
from numsweep.storage import Storage
from numsweep.sweeps import parse_spec
from numsweep.sweeps.executors import make_executor
from numsweep.sweeps.pace_cache import cpu_model


def add_size_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, help="dataset (.npz, CIFAR-10 folder, ...)")
    parser.add_argument("--n-train", type=int, default=10000, help="training images")
    parser.add_argument("--n-val", type=int, default=1000, help="validation images")
    parser.add_argument("--hidden", type=int, default=50, help="hidden units")
    parser.add_argument("--cycles", type=int, default=2, help="cycles per trial")
    parser.add_argument("--n-s", type=int, default=None, help="half-cycle (default: auto)")
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--workdir", default="bench-sweeps", help="folder for the databases")


def lambda_spec(args: argparse.Namespace, name: str, trials: int,
                stage: dict[str, Any] | None = None) -> Any:
    """A grid of ``trials`` values of log10(lam) in [-5, -1] (the course's coarse search)."""
    fixed: dict[str, Any] = {"model": "mlp", "hidden": [args.hidden], "cycles": args.cycles,
                             "n_train": args.n_train, "n_val": args.n_val,
                             "batch_size": args.batch_size, "eta_min": 1e-5, "eta_max": 1e-1}
    if args.n_s is not None:
        fixed["n_s"] = args.n_s
    return parse_spec({"name": name, "seed": 0, "fixed": fixed,
                       "space": {"lam": {"low": 1e-5, "high": 1e-1, "log": True,
                                         "grid": trials}},
                       "stages": [{"name": "grid", "sampler": "grid", **(stage or {})}]},
                      "<benchmark>")


def generated_dataset(n: int, n_test: int = 1000) -> Dataset:
    """``n`` training and ``n_test`` test images of CIFAR-10's shape and their labels, random
    (seeded): the timing is that of real data, the accuracies meaningless."""
    rng = np.random.default_rng(0)
    return Dataset("generated", tuple(str(i) for i in range(10)),
                   rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8),
                   rng.integers(0, 10, n),
                   rng.integers(0, 256, (n_test, 32, 32, 3), dtype=np.uint8),
                   rng.integers(0, 10, n_test))


# the fused-group benchmarks' networks: (label, their TrialSpec fields)
GROUP_CONFIGS: dict[str, tuple[str, dict[str, Any]]] = {
    "course": ("convnet f=4 nf=10 nh=50", {"model": "convnet", "f": 4, "nf": 10, "nh": 50}),
    "wide": ("convnet f=4 nf=40 nh=300", {"model": "convnet", "f": 4, "nf": 40, "nh": 300}),
    "mlp": ("mlp hidden=50", {"model": "mlp", "hidden": (50,)}),
    "conv3": ("convnet3 nf=16 filter_size=3 nh=100",
              {"model": "convnet3", "nf": 16, "filter_size": 3, "nh": 100}),
}


def group_specs(params: dict[str, Any], k: int, updates: int, n_train: int, n_val: int,
                device: str = "cpu") -> list[TrialSpec]:
    """K trials of ``params`` for ``updates`` updates at a constant rate, batch 100, lam
    spread over [1e-5, 1e-1] (log), trial i seeded i."""
    base = TrialSpec(schedule="constant", eta_max=0.01, n_updates=updates, n_train=n_train,
                     n_val=n_val, batch_size=100, curve_points=1, eval_train=n_val,
                     data_seed=0, device=device, **params)
    return [base.replace(lam=float(lam), seed=i)
            for i, lam in enumerate(np.logspace(-5, -1, k))]


def print_table_header(*columns: str) -> None:
    """A Markdown table's header row and its separator."""
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))


def print_command_and_date(started: Any) -> None:
    """The report's first lines: the command as run, and when it started and how long the
    whole script took (``started``: a UTC ``datetime``)."""
    import shlex
    import sys

    print()
    print(f"Command: `python {' '.join(shlex.quote(a) for a in sys.argv)}`")
    print(f"Date: {started:%Y-%m-%d %H:%M} UTC, {(time.time() - started.timestamp()) / 60:.1f} "
          "min for the whole script")


def fresh_storage(workdir: str, name: str) -> Storage:
    folder = Path(workdir)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    return Storage(f"sqlite:///{path}")


def machine() -> str:
    return f"{os.cpu_count()} cores, {cpu_model()}, Python {platform.python_version()}"


def warm_up(jobs: int) -> None:
    """Start the worker processes before timing (the runner reuses them)."""
    if jobs > 1:
        make_executor(jobs).submit(int).result()


class Stopwatch:
    def __enter__(self) -> Stopwatch:
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.seconds = time.perf_counter() - self.start
