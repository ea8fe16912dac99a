"""Checkpointing's cost: the time a trial spends writing its checkpoints, against its
training, and the checkpoint's and kept network's size on disk.

Trials like the presets' (``conv-archs``: the course ConvNet f=4 nf=10 nh=50 and the
other architectures of its grid, three cycles of n_s = 800; ``conv-best``'s final trial:
f=[4,8] nf=[40,80] nh=500, five doubling cycles from n_s = 800, flips and translations)
train once without a checkpoint and once with one (written at each of their curve points,
10 per cycle), alternately, ``--repeats`` times each. Reported per configuration: the
median wall time of the run without and with checkpoints and their difference in percent
(noisy on a shared machine); the seconds the writes took (in their background thread,
``checkpoint.CheckpointWriter``) and the seconds the training thread waited for
checkpointing (copying the state out, and any previous write still going: the direct
measure of the overhead) also as a percentage of the run without; the number of writes;
the sizes of the checkpoint and the kept network.

    python benchmarks/checkpoint_overhead.py --data ../shared/data/cifar10.npz [--threads 1]
        [--configs course,archs,best] [--repeats 3] [--dir /tmp] [--best-cycles 1]
    python benchmarks/checkpoint_overhead.py --quick     # short runs on generated images

``--quick`` shortens every run (n_s = 50, one cycle; conv-best's final 2 cycles) and uses
generated images of CIFAR-10's shape: a check that the script runs, not numbers to publish.
``--dir`` is where the checkpoints are written (its file system's fsync decides much of
the cost).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from sweep_common import cpu_model, generated_dataset, print_table_header
from threadpoolctl import threadpool_limits

import numsweep.engine.checkpoint as checkpoint_module
import numsweep.engine.group as group_module
from numsweep.engine import TrialSpec, load_dataset, make_split, train
from numsweep.engine.checkpoint import STATE_SLOTS, CheckpointWriter, state_bytes

COURSE = {"model": "convnet", "nh": 50, "lam": 0.003, "eta_min": 1e-5, "eta_max": 1e-1,
          "n_s": 800, "cycles": 3, "batch_size": 100, "n_val": 1000}
CONFIGS: dict[str, list[tuple[str, dict[str, object]]]] = {
    "course": [("conv-archs f=4 nf=10", {**COURSE, "f": 4, "nf": 10})],
    "archs": [(f"conv-archs f={f} nf={nf}", {**COURSE, "f": f, "nf": nf})
              for f, nf in ((2, 3), (8, 40), (16, 160))],
    "best": [("conv-best final", {"model": "convnet", "f": (4, 8), "nf": (40, 80), "nh": 500,
                                  "flip": 0.5, "translate": 3, "eta_min": 1e-5,
                                  "eta_max": 1e-1, "n_s": 800, "cycle_mult": 2, "cycles": 5,
                                  "batch_size": 100, "n_val": 1000, "lam": 0.003})],
}


class TimedWrites:
    """Counts and times the checkpoint writes (in their background thread) and keeps the
    writers, whose ``blocked_seconds`` is what the training thread waited for them."""

    def __init__(self) -> None:
        self.seconds: list[float] = []
        self.writers: list[CheckpointWriter] = []
        self.original = checkpoint_module.save_state

    def __call__(self, *args: object, **kwargs: object) -> None:
        t0 = time.perf_counter()
        self.original(*args, **kwargs)  # type: ignore[arg-type]
        self.seconds.append(time.perf_counter() - t0)

    def writer(self, *args: object) -> CheckpointWriter:
        w = CheckpointWriter(*args)  # type: ignore[arg-type]
        self.writers.append(w)
        return w

    def __enter__(self) -> TimedWrites:
        checkpoint_module.save_state = self  # type: ignore[assignment]
        group_module.CheckpointWriter = self.writer  # type: ignore[assignment,misc]
        checkpoint_module.CheckpointWriter = self.writer  # type: ignore[assignment,misc]
        return self

    def __exit__(self, *exc: object) -> None:
        checkpoint_module.save_state = self.original
        group_module.CheckpointWriter = CheckpointWriter  # type: ignore[misc]
        checkpoint_module.CheckpointWriter = CheckpointWriter  # type: ignore[misc]


def measure(spec: TrialSpec, split: object, folder: Path, repeats: int) -> dict[str, float]:
    plain, with_ck, writes, blocked, count, size = [], [], [], [], 0, 0
    for r in range(repeats):
        t0 = time.perf_counter()
        train(spec, split)  # type: ignore[arg-type]
        plain.append(time.perf_counter() - t0)
        path = folder / f"bench-{r}.npz"
        weights = folder / f"bench-{r}.weights.npz"
        with TimedWrites() as timed:
            t0 = time.perf_counter()
            result = train(spec, split, checkpoint=path, weights=weights)  # type: ignore[arg-type]
            with_ck.append(time.perf_counter() - t0)
        writes.append(sum(timed.seconds))
        blocked.append(sum(w.blocked_seconds for w in timed.writers))
        count = len(timed.seconds)
        size = path.stat().st_size
        kept = weights.stat().st_size
        path.unlink()
        weights.unlink()
    base = statistics.median(plain)
    return {"plain": base, "with": statistics.median(with_ck),
            "diff_pct": 100 * (statistics.median(with_ck) - base) / base,
            "writes_s": statistics.median(writes),
            "blocked_s": statistics.median(blocked),
            "blocked_pct": 100 * statistics.median(blocked) / base, "count": count,
            "size_mb": size / 1e6, "kept_mb": kept / 1e6,
            "params": result.param_count}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=None, help="CIFAR-10 .npz (default: generated)")
    parser.add_argument("--configs", default="course,archs,best")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--dir", default=None, help="where checkpoints are written")
    parser.add_argument("--quick", action="store_true", help="short runs, generated images")
    parser.add_argument("--best-cycles", type=int, default=None,
                        help="conv-best's final: only its first N doubling cycles (it writes "
                             "10 checkpoints per cycle and later cycles are longer, so fewer "
                             "cycles overstate the share of time checkpointing takes)")
    args = parser.parse_args()
    data = generated_dataset(3000 if args.quick else 50000) if args.quick or not args.data \
        else load_dataset(args.data)
    print(f"# {cpu_model()}, {args.threads} BLAS thread(s), {args.repeats} repeats, "
          f"{'quick, generated images' if args.quick else data.name}")
    print_table_header("trial", "params", "updates", "writes", "run s", "with ckpt s", "diff %",
                       "writing s", "training waited s", "waited %", "checkpoint MB", "kept MB")
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp, threadpool_limits(args.threads):
        for key in args.configs.split(","):
            for name, params in CONFIGS[key]:
                if args.quick:
                    params = {**params, "n_s": 50, "eval_train": 500, "n_val": 500,
                              "cycles": 2 if params.get("cycle_mult") else 1}
                elif args.best_cycles and params.get("cycle_mult"):
                    params = {**params, "cycles": args.best_cycles}
                    name = f"{name} (first {args.best_cycles} of 5 cycles)"
                spec = TrialSpec.from_mapping(params)
                split = make_split(data, spec.n_train, spec.n_val, np.dtype(spec.dtype))
                m = measure(spec, split, Path(tmp), args.repeats)
                updates = train_updates(spec, len(split.y_train))
                print(f"| {name} | {m['params']:,.0f} | {updates:,} | {m['count']} | "
                      f"{m['plain']:.2f} | {m['with']:.2f} | {m['diff_pct']:+.1f} | "
                      f"{m['writes_s']:.3f} | {m['blocked_s']:.3f} | {m['blocked_pct']:.2f} | "
                      f"{m['size_mb']:.2f} | {m['kept_mb']:.2f} |", flush=True)
                kept, ckpt = state_bytes(int(m["params"]), spec.dtype, spec.optimizer)
                print(f"|   (from the parameter count: kept {kept / 1e6:.2f} MB, checkpoint "
                      f"{ckpt / 1e6:.2f} MB = {1 + STATE_SLOTS[spec.optimizer]} copies) "
                      "| | | | | | | | | | | |")


def train_updates(spec: TrialSpec, n_train: int) -> int:
    from numsweep.engine.schedules import make_schedule

    n_s = spec.n_s if spec.n_s is not None else 2 * (n_train // spec.batch_size)
    return make_schedule(spec, n_s, n_train // spec.batch_size).total


if __name__ == "__main__":
    main()
