"""Shared pieces of the sweep benchmarks: the lambda spec at a chosen size, and timing."""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path
from typing import Any

from numsweep.storage import Storage
from numsweep.sweeps import parse_spec
from numsweep.sweeps.executors import make_executor


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


def fresh_storage(workdir: str, name: str) -> Storage:
    folder = Path(workdir)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    return Storage(f"sqlite:///{path}")


def cpu_model() -> str:
    """The CPU's model name (``platform.processor()`` is empty on many Linux machines)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


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
