"""The automatic group size's measurement (``engine.pace.group_pace``): what it costs and what
it chooses, per configuration, against the time a lone trial's update takes.

For each configuration (``sweep_common.GROUP_CONFIGS``) the measurement runs ``--runs`` times
in this process (a fresh measurement each time, no cache), CIFAR-10's shape, batch 100,
float32, under ``--threads`` BLAS threads; the script prints its wall time, the seconds per
trial-update of each size (the last run) and the size the sweeps would choose
(``grouping.fastest_size``) in each run, so the spread of the choice shows too.

    python benchmarks/group_pace.py [--configs course,mlp,wide,conv3] [--threads 1]
        [--cap 32] [--runs 3] [--device cpu]
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np
from sweep_common import GROUP_CONFIGS, cpu_model, print_table_header

from numsweep.engine import TrialSpec
from numsweep.engine.pace import group_pace
from numsweep.sweeps.grouping import candidate_sizes, fastest_size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", default="course,mlp,wide,conv3")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--cap", type=int, default=32)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    sizes = candidate_sizes(args.cap)
    print(f"machine: {cpu_model()}, {os.cpu_count()} CPUs, Python "
          f"{platform.python_version()}, NumPy {np.__version__}; {args.threads} BLAS "
          f"thread(s); sizes {sizes}; device {args.device}")
    print()
    print_table_header("configuration", "seconds per measurement", "ms per trial-update by K",
                       "chosen K per run")
    for name in args.configs.split(","):
        label, params = GROUP_CONFIGS[name]
        spec = TrialSpec(**params, batch_size=100, device=args.device)
        walls, chosen, pace = [], [], {}
        for _ in range(args.runs):
            t0 = time.perf_counter()
            pace = group_pace(spec, (32, 32, 3), 10, sizes, threads=args.threads)
            walls.append(time.perf_counter() - t0)
            chosen.append(fastest_size(pace, args.cap))
        shown = ", ".join(f"{k}: {s * 1e3:.2f}" for k, s in sorted(pace.items()))
        print(f"| {label} | {min(walls):.2f}-{max(walls):.2f} | {shown} | "
              f"{', '.join(str(k) for k in chosen)} |")


if __name__ == "__main__":
    main()
