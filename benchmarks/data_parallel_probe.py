"""Does splitting each batch over two Python threads (one BLAS thread each) beat one process?

A probe, not part of the engine: for each configuration it times the engine's training
step (a lone trial's fused network) on batches of 100 in three ways, in the same run: serial
with 1 BLAS thread, serial with 2 BLAS threads, and the batch's two halves in two Python
threads (each with its own copy of the network's buffers, the halves' gradients summed in a
fixed order before one SGD step). Also
prints the CPU time spent outside this process during each configuration (from /proc/stat:
other processes, and the hypervisor's steal time), since the comparison only means something
on a quiet machine.

    python benchmarks/data_parallel_probe.py --data ../shared/data/cifar10.npz --updates 500
"""

from __future__ import annotations

import argparse
import copy
import os
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from numsweep.engine import TrialSpec, load_dataset, make_split
from numsweep.engine.build import build_network
from numsweep.engine.fused import fuse
from numsweep.engine.optimizers import SGD
from numsweep.engine.workspace import Workspace

CONFIGS = {
    "convnet f=4 nf=10 nh=50": TrialSpec(model="convnet", f=4, nf=10, nh=50),
    "convnet f=4 nf=40 nh=300": TrialSpec(model="convnet", f=4, nf=40, nh=300),
    "convnet f=16 nf=160 nh=50": TrialSpec(model="convnet", f=16, nf=160, nh=50),
    "mlp hidden=50": TrialSpec(model="mlp", hidden=(50,)),
}
BATCH = 100


def half_copy(net: Any) -> Any:
    """The same parameters, its own buffers (the fused network allocates them on first
    use)."""
    shard = copy.copy(net)
    shard._ws = Workspace(net.dtype)
    shard._grads = None
    shard._keep_scale = {}
    return shard


def ms_per_update(spec: TrialSpec, x: np.ndarray, y: np.ndarray, split_batch: bool,
                  updates: int, lr: float = 0.01, lam: float = 0.003) -> float:
    rng = np.random.default_rng(0)
    net = fuse([build_network(spec, (32, 32, 3), 10, rng)], [0.0], [0.0])  # a lone trial
    xb = np.empty((BATCH, *x.shape[1:]), x.dtype)
    yb = np.empty(BATCH, np.int64)
    half = BATCH // 2
    halves = [half_copy(net), half_copy(net)] if split_batch else []
    zero = np.zeros(1)
    sgd = SGD(prescaled=True)
    with ThreadPoolExecutor(1) as pool:
        start = time.perf_counter()
        for _ in range(updates):
            idx = rng.integers(0, len(x), BATCH)
            np.take(y, idx, out=yb, mode="clip")
            np.take(x, idx, axis=0, out=xb, mode="clip")
            if split_batch:
                second = pool.submit(halves[1].train_step, xb[half:], yb[half:], eps=zero,
                                     rngs=None, scale=np.array([lr * (BATCH - half) / BATCH]))
                _, grads = halves[0].train_step(xb[:half], yb[:half], eps=zero, rngs=None,
                                                scale=np.array([lr * half / BATCH]))
                _, grads_2 = second.result()
                for k in grads:
                    np.add(grads[k], grads_2[k], out=grads[k])
            else:
                _, grads = net.train_step(xb, yb, eps=zero, rngs=None, scale=np.array([lr]))
            sgd.update(net.params, grads, np.array([lr]), np.array([lam]), net.weight_names)
        return (time.perf_counter() - start) / updates * 1000


def busy_seconds() -> float:
    """CPU seconds every process has used since boot (user + nice + system + ...)."""
    with open("/proc/stat") as f:
        ticks = list(map(int, f.readline().split()[1:]))
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")


def own_seconds() -> float:
    t = os.times()
    return t.user + t.system


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--updates", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=3, help="keep the fastest of N")
    args = parser.parse_args()
    split = make_split(load_dataset(args.data), 49000, 1000, np.float32)
    y = split.y_train.astype(np.int64)
    print("| configuration | serial, 1 BLAS thread | serial, 2 BLAS threads | "
          "2 Python threads x 1 BLAS thread | split vs best serial | "
          "CPU time outside this process |")
    print("|---|---|---|---|---|---|")
    for name, spec in CONFIGS.items():
        x = np.ascontiguousarray(build_network(spec, (32, 32, 3), 10,
                                               np.random.default_rng(0)).prepare(split.x_train))
        updates = args.updates if spec.nh < 300 else max(100, args.updates // 3)
        best: dict[str, float] = {}
        busy, own = busy_seconds(), own_seconds()
        for _ in range(args.repeat):
            for mode, threads, split_batch in (("1", 1, False), ("2", 2, False),
                                               ("split", 1, True)):
                with threadpool_limits(threads):
                    ms = ms_per_update(spec, x, y, split_batch, updates)
                best[mode] = min(best.get(mode, np.inf), ms)
        other = (busy_seconds() - busy) - (own_seconds() - own)
        print(f"| {name} ({updates} updates) | {best['1']:.3f} ms | {best['2']:.3f} ms | "
              f"{best['split']:.3f} ms | {min(best['1'], best['2']) / best['split']:.2f}x | "
              f"{other:.1f} s |", flush=True)


if __name__ == "__main__":
    main()
