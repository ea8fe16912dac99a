"""Fused trials: time per update and per trial against the group size K, and peak memory.

For each configuration (the course ConvNet f=4 nf=10 nh=50, the wider ConvNet f=4 nf=40
nh=300, the two-layer MLP with 50 hidden units) and each K, one group of K trials (lam
spread over the group) trains ``--updates`` updates on the same CIFAR-10-shaped split; we
report the group's milliseconds per update, per update per trial (the group's time divided
by K) and that against K = 1 (the lone trial, which trains as a group of one). Training
time only: the curves' evaluation is excluded, as in ``train_seconds``.

    python benchmarks/group_speed.py --data ../shared/data/cifar10.npz [--threads 2]
        [--updates 300] [--ks 1,2,4,8,16,32,64] [--configs course,wide,mlp]
    python benchmarks/group_speed.py --memory [--ks 8,32]   # peak memory per group
    python benchmarks/group_speed.py --layouts [--threads 1] [--ks 1,8,32]

With ``--layouts`` the script compares, in one process, the fused networks' ``train_step``
(one update's forward and backward, no optimizer) in the lone trial's layout
(``fuse(..., layout="lone")``: K per-trial products) against what ``fuse`` picks for
K > 1 (the wide ``FusedMLP``, the feature-major ``FusedPatchConvNet``: the layer reading
the shared batch one product for all K), CPU time per update per trial, median of ``--repeats``
alternating runs, and each against a lone trial (K = 1) timed in the same alternation.

Without ``--data`` the images are generated (random, CIFAR-10's shape): the timing is the
same, the accuracies meaningless. With ``--memory`` each K of the course ConvNet trains in a
fresh process and the script prints that process's peak resident memory (``ru_maxrss``)
once the split and the patch matrices are ready and after training: their difference is
what the group adds (weights, gradients, optimizer state, activations and buffers).
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import subprocess
import sys
import time

import numpy as np
from sweep_common import (
    GROUP_CONFIGS,
    cpu_model,
    generated_dataset,
    group_specs,
    print_table_header,
)
from threadpoolctl import threadpool_info, threadpool_limits

from numsweep.engine import Dataset, load_dataset, make_split
from numsweep.engine.build import build_network
from numsweep.engine.group import train_group
from numsweep.engine.inputs import Prepared

MB = 1 << 20


def dataset(path: str | None, n: int) -> Dataset:
    return load_dataset(path) if path else generated_dataset(n)


def blas_threads() -> str:
    return ", ".join(f"{i['internal_api']} {i['num_threads']}" for i in threadpool_info()
                     if i["user_api"] == "blas")


def speed(args: argparse.Namespace) -> None:
    ks = [int(k) for k in args.ks.split(",")]
    data = dataset(args.data, args.n_train + args.n_val)
    split = make_split(data, args.n_train, args.n_val, np.dtype("float32"))
    print(f"machine: {cpu_model()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
          f"NumPy {np.__version__}; threads: {blas_threads()}")
    print(f"data: {args.data or 'generated, CIFAR-10 shaped'}; {args.n_train} training "
          f"images, batch 100, {args.updates} updates per group, float32")
    print()
    print_table_header("configuration", "K", "ms per update (group)", "ms per update per trial",
                       "per trial vs K=1")
    for name in args.configs.split(","):
        label, params = GROUP_CONFIGS[name]
        lone = None
        for k in ks:
            specs = group_specs(params, k, args.updates, args.n_train, args.n_val)
            results = train_group(specs, split)
            ms = 1e3 * sum(r.train_seconds for r in results) / args.updates
            per_trial = ms / k
            lone = per_trial if lone is None and k == 1 else lone
            ratio = f"{lone / per_trial:.2f}x" if lone else "-"
            print(f"| {label} | {k} | {ms:.3f} | {per_trial:.3f} | {ratio} |", flush=True)


def layouts(args: argparse.Namespace) -> None:
    from numsweep.engine.fused import fuse

    ks = [int(k) for k in args.ks.split(",")]
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (args.n_train, 32, 32, 3)).astype(np.float32) / 255
    labels = rng.integers(0, 10, args.n_train)
    print(f"machine: {cpu_model()}, {os.cpu_count()} CPUs, NumPy {np.__version__}; threads: "
          f"{blas_threads()}; batch 100, float32, CPU time, median of {args.repeats}")
    print()
    print_table_header("configuration", "K", "alone, ms per update",
                       "group, lone layout, ms per update per trial", "group, fused layout",
                       "lone layout vs alone", "fused layout vs alone")
    for name in args.configs.split(","):
        label, params = GROUP_CONFIGS[name]
        for k in ks:
            specs = group_specs(params, k, 1, args.n_train, 1)
            nets = [build_network(s, images.shape[1:], 10, np.random.default_rng(i))
                    for i, s in enumerate(specs)]
            x = nets[0].prepare(images)
            # the lone trial timed alongside, so that each ratio compares runs of one moment
            variants = {"alone": fuse(nets[:1], [0.0], [0.0], layout="lone"),
                        "lone": fuse(nets, [0.0] * k, [0.0] * k, layout="lone"),
                        "fused": fuse(nets, [0.0] * k, [0.0] * k)}
            times: dict[str, list[float]] = {v: [] for v in variants}
            for _ in range(args.repeats):
                for v, net in variants.items():
                    kv = net.k
                    updates = max(3, args.updates // kv)
                    batches = np.random.default_rng(1)
                    t0 = time.process_time()
                    for _ in range(updates):
                        idx = batches.integers(0, len(x), 100)
                        net.train_step(x[idx], labels[idx], eps=np.zeros(kv), rngs=None,
                                       scale=np.ones(kv))
                    times[v].append(1e3 * (time.process_time() - t0) / updates / kv)
            med = {v: float(np.median(t)) for v, t in times.items()}
            print(f"| {label} | {k} | {med['alone']:.3f} | {med['lone']:.3f} | "
                  f"{med['fused']:.3f} | {med['alone'] / med['lone']:.2f}x | "
                  f"{med['alone'] / med['fused']:.2f}x |", flush=True)


def memory_child(args: argparse.Namespace, k: int) -> None:
    data = dataset(args.data, args.n_train + args.n_val)
    split = make_split(data, args.n_train, args.n_val, np.dtype("float32"))
    del data
    specs = group_specs(GROUP_CONFIGS["course"][1], k, args.updates, args.n_train, args.n_val)
    net = build_network(specs[0], split.x_train.shape[1:], 10, np.random.default_rng(0))
    prepared = Prepared(net.prepare(split.x_train), split.y_train, net.prepare(split.x_val),
                        split.y_val, net.prepare(split.x_test), split.y_test)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    train_group(specs, split, prepared=prepared)
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(f"| {GROUP_CONFIGS['course'][0]} | {k} | {before / MB:.0f} | {after / MB:.0f} | "
          f"{(after - before) / MB:.0f} |", flush=True)


def memory(args: argparse.Namespace) -> None:
    print(f"machine: {cpu_model()}, {os.cpu_count()} CPUs; {args.n_train} training images, "
          f"float32, {args.updates} updates")
    print()
    print_table_header("configuration", "K", "peak Rss with the inputs prepared, MiB",
                       "peak Rss after training, MiB", "the group adds, MiB")
    for k in args.ks.split(","):
        cmd = [sys.executable, __file__, "--memory-child", k, "--n-train", str(args.n_train),
               "--n-val", str(args.n_val), "--updates", str(args.updates)]
        if args.data:
            cmd += ["--data", args.data]
        subprocess.run(cmd, check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=None, help="dataset (default: generated images)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--updates", type=int, default=300)
    parser.add_argument("--n-train", type=int, default=10000)
    parser.add_argument("--n-val", type=int, default=1000)
    parser.add_argument("--ks", default=None, help="group sizes, e.g. 1,2,4,8")
    parser.add_argument("--configs", default="course,wide,mlp",
                        help=f"comma-separated, of {', '.join(GROUP_CONFIGS)}")
    parser.add_argument("--memory", action="store_true",
                        help="peak memory of the course ConvNet per group size instead")
    parser.add_argument("--memory-child", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--layouts", action="store_true",
                        help="train_step in the lone layout against the fused layout")
    parser.add_argument("--repeats", type=int, default=7, help="--layouts: alternating runs")
    args = parser.parse_args()
    if args.ks is None:
        args.ks = ("8,32" if args.memory else "1,8,32" if args.layouts
                   else "1,2,4,8,16,32,64")
    with threadpool_limits(args.threads):
        if args.memory_child is not None:
            memory_child(args, args.memory_child)
        elif args.memory:
            memory(args)
        elif args.layouts:
            layouts(args)
        else:
            speed(args)


if __name__ == "__main__":
    main()
