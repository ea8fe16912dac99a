"""Peak memory of one training run, stage by stage (Linux).

Loads the data, makes the float32 split, prepares the network's inputs (the patch matrices
of the patchify ConvNet) and trains one spec, printing after each stage the process's
resident memory (Rss, Pss and anonymous from /proc/self/smaps_rollup) and its peak so far
(``ru_maxrss``), next to the
sizes of the arrays involved. With ``--shared`` the split and the prepared inputs are first
saved as ``.npy`` files in /dev/shm and trained from ``mmap_mode="r"`` views, as a sweep
worker does: the run then reads the shared pages instead of holding a private copy (its
Rss counts the shared pages it touched; anonymous is the memory of its own).

    python benchmarks/memory.py --data ../shared/data/cifar10.npz
    python benchmarks/memory.py --data ../shared/data/cifar10.npz --shared model=mlp
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import tempfile
from pathlib import Path

import numpy as np

from numsweep.engine import Split, TrialSpec, load_dataset, make_split, train
from numsweep.engine.build import build_network
from numsweep.engine.inputs import Prepared

MB = 1 << 20
FIELDS = ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test")


def rollup() -> dict[str, int]:
    """Rss, Pss and anonymous bytes (memory of this process's own, not file pages such as
    memory-mapped /dev/shm files) of this process; zeros where smaps_rollup is missing."""
    out = {"Rss": 0, "Pss": 0, "Anonymous": 0}
    try:
        lines = Path("/proc/self/smaps_rollup").read_text().splitlines()
    except OSError:
        return out
    for line in lines:
        key, _, rest = line.partition(":")
        if key in out:
            out[key] = int(rest.split()[0]) * 1024
    return out


def report(stage: str) -> None:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
    mem = rollup()
    print(f"{stage:34s} Rss {mem['Rss'] / MB:7.0f} MiB  Pss {mem['Pss'] / MB:7.0f} MiB  "
          f"anonymous {mem['Anonymous'] / MB:6.0f} MiB  "
          f"peak Rss (ru_maxrss) {peak / MB:7.0f} MiB")


def nbytes(*arrays: np.ndarray) -> str:
    return f"{sum(a.nbytes for a in arrays) / MB:.0f} MiB"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/data/cifar10.npz")
    parser.add_argument("--shared", action="store_true",
                        help="train from memory-mapped .npy files in /dev/shm, as a sweep "
                             "worker does")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                        help="spec parameters (default: the course's ConvNet f=4 nf=10 nh=50, "
                             "3 cycles of n_s 800 on 49,000 images)")
    args = parser.parse_args()
    values: dict[str, object] = {"model": "convnet", "f": 4, "nf": 10, "nh": 50, "lam": 0.003,
                                 "n_s": 800, "cycles": 3, "n_train": 49000, "n_val": 1000,
                                 "batch_size": 100}
    values.update(dict(item.split("=", 1) for item in args.overrides))
    spec = TrialSpec.from_mapping(values)
    print(f"spec: {' '.join(f'{k}={v}' for k, v in values.items())}"
          f"{' (shared, memory-mapped)' if args.shared else ''}")
    report("start")
    data = load_dataset(args.data)
    report(f"dataset loaded (uint8, {nbytes(data.x_train, data.x_test)})")
    split = make_split(data, spec.n_train, spec.n_val, np.dtype(spec.dtype))
    del data
    report(f"split made ({spec.dtype}, {nbytes(split.x_train, split.x_val, split.x_test)})")
    net = build_network(spec, split.x_train.shape[1:], split.num_classes,
                        np.random.default_rng(0))
    prepared = Prepared(net.prepare(split.x_train), split.y_train, net.prepare(split.x_val),
                        split.y_val, net.prepare(split.x_test), split.y_test)
    size = nbytes(prepared.x_train, prepared.x_val, prepared.x_test)
    report(f"inputs prepared ({size})")
    folder = None
    if args.shared:
        base = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None
        folder = Path(tempfile.mkdtemp(prefix="numsweep-memory-", dir=base))
        for name in FIELDS:
            np.save(folder / f"split.{name}.npy", getattr(split, name))
            if name.startswith("x"):
                np.save(folder / f"prepared.{name}.npy", getattr(prepared, name))
        del split, prepared
        split = Split(**{name: np.load(folder / f"split.{name}.npy", mmap_mode="r")
                         for name in FIELDS}, num_classes=10)
        prepared = Prepared(*(np.load(folder / f"prepared.{name}.npy", mmap_mode="r")
                              if name.startswith("x") else getattr(split, name)
                              for name in FIELDS))
        report("reopened as memory maps")
    try:
        result = train(spec, split, prepared=prepared)
        report(f"trained ({result.updates} updates)")
    finally:
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)
    print(f"test accuracy {result.test_acc:.4f}; network parameters "
          f"{result.param_count * np.dtype(spec.dtype).itemsize / MB:.2f} MiB")


if __name__ == "__main__":
    main()
