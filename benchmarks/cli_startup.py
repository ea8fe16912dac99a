"""How long the ``numsweep`` command takes to start: whole processes, start to exit.

    python benchmarks/cli_startup.py --runs 11

Times ``numsweep --help``, ``numsweep sweep --help`` and ``numsweep sweep list`` (on an empty
database in a temporary folder), each started ``--runs`` times after one warm-up run, and,
as the yardstick of what every command used to load first, a process that imports the
analysis (pandas, matplotlib), sweeps (Optuna) and storage (SQLAlchemy) packages. Wall
seconds from a monotonic clock around each child, CPU seconds (user + system) from the
operating system's accounting of it (``os.wait4``); min, median and max of each. Quote the
median; a wide spread means a busy machine.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HEAVY = "import numsweep.analysis, numsweep.sweeps, numsweep.storage"


def run_once(argv: list[str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one run of ``argv``, its output thrown away."""
    start = time.monotonic()
    child = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             stdin=subprocess.DEVNULL)
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.monotonic() - start
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} exited with {child.returncode}")
    return wall, usage.ru_utime + usage.ru_stime


def measure(argv: list[str], runs: int) -> tuple[list[float], list[float]]:
    run_once(argv)  # warm-up: the file cache, .pyc files
    walls, cpus = [], []
    for _ in range(runs):
        wall, cpu = run_once(argv)
        walls.append(wall)
        cpus.append(cpu)
    return walls, cpus


def spread(values: list[float]) -> str:
    return (f"{min(values):.3f} / {statistics.median(values):.3f} / {max(values):.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=11, help="timed runs per command")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        db = str(Path(folder) / "empty.db")
        commands = {
            "numsweep --help": [sys.executable, "-m", "numsweep", "--help"],
            "numsweep sweep --help": [sys.executable, "-m", "numsweep", "sweep", "--help"],
            "numsweep sweep list": [sys.executable, "-m", "numsweep", "sweep", "list",
                                    "--db", db],
            "python -c 'import numpy'": [sys.executable, "-c", "import numpy"],
            f"python -c '{HEAVY}'": [sys.executable, "-c", HEAVY],
        }
        print(f"{args.runs} runs each after one warm-up; seconds min / median / max")
        print(f"{'command':<70} {'wall s':>22} {'cpu s':>22}")
        for name, argv in commands.items():
            walls, cpus = measure(argv, args.runs)
            print(f"{name:<70} {spread(walls):>22} {spread(cpus):>22}")


if __name__ == "__main__":
    main()
