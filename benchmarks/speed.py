"""Engine speed: numsweep against PyTorch on the CPU, same data, schedule and threads.

For each configuration both engines train on the same normalised CIFAR-10 split with the same
batch order and the triangular cyclical schedule; we report milliseconds per update, their
ratio, and the share of this machine's float32 matrix-product peak (measured in the same run)
that numsweep reaches. A column gives the update's matrix products alone (same shapes, no
elementwise work, gather, loss or Python around them): what the BLAS allows at best on this
machine and thread count. PyTorch is skipped with a message when it is not installed.

    python benchmarks/speed.py --data ../shared/data/cifar10.npz [--threads 2] [--updates N]
        [--repeat R]

Both engines are limited to the same number of threads (``--threads``): NumPy's BLAS through
threadpoolctl, PyTorch through ``torch.set_num_threads`` (its intra-op OpenMP/MKL pool); the
script prints the thread counts each side actually reports. With ``--repeat R`` each
configuration is trained R times by each engine, alternating, and the fastest run of each is
kept (the least disturbed by other processes).
"""

from __future__ import annotations

import argparse
import itertools
import os
import time
from dataclasses import dataclass

import numpy as np
from sweep_common import cpu_model, print_table_header
from threadpoolctl import threadpool_info, threadpool_limits

from numsweep.engine import TrialSpec, load_dataset, make_split, train
from numsweep.engine.build import build_network
from numsweep.engine.evaluation import evaluate_group
from numsweep.engine.fused import fuse
from numsweep.engine.layers import patchify


@dataclass(frozen=True)
class Config:
    label: str
    spec: TrialSpec


def configs(updates: int | None) -> list[Config]:
    base = {"lam": 0.003, "n_train": 49000, "n_val": 1000, "batch_size": 100, "n_s": 800,
            "cycles": 3, "curve_points": 1}
    out = [
        Config("convnet f=4 nf=10 nh=50, 3 cycles of n_s 800 (full run)",
               TrialSpec(model="convnet", f=4, nf=10, nh=50, **base)),
        Config("convnet f=4 nf=40 nh=300, 1 cycle of n_s 250",
               TrialSpec(model="convnet", f=4, nf=40, nh=300, **{**base, "cycles": 1,
                                                                 "n_s": 250})),
        Config("convnet f=16 nf=160 nh=50, 1 cycle of n_s 400",
               TrialSpec(model="convnet", f=16, nf=160, nh=50, **{**base, "cycles": 1,
                                                                  "n_s": 400})),
        Config("mlp hidden=50, 3 cycles of n_s 800",
               TrialSpec(model="mlp", hidden=(50,), **{**base, "lam": 0.01})),
    ]
    if updates:
        out = [Config(c.label.split(",")[0] + f", capped at {updates} updates",
                      c.spec.replace(n_s=max(1, updates // 2), cycles=1)) for c in out]
    return out


def torch_threads() -> str:
    """What PyTorch reports for its intra-op pool and MKL (after set_num_threads)."""
    import torch

    info = torch.__config__.parallel_info()
    mkl = next((line.split(":")[1].strip() for line in info.splitlines()
                if "mkl_get_max_threads" in line), "?")
    return f"intra-op {torch.get_num_threads()}, MKL {mkl}"


def numpy_threads() -> str:
    return ", ".join(f"{i['internal_api']} {i['num_threads']}" for i in threadpool_info()
                     if i["user_api"] == "blas")


def flops_per_update(spec: TrialSpec, image_shape: tuple[int, int, int], k: int = 10) -> float:
    """Multiply-adds x 2 of forward and backward (the first layer needs no input gradient)."""
    n = spec.batch_size
    h, w, c = image_shape
    if spec.model == "convnet":
        n_p, d = (h // spec.f) * (w // spec.f), spec.f * spec.f * c
        conv = 2 * n * n_p * d * spec.nf
        fc = 2 * n * (n_p * spec.nf * spec.nh + spec.nh * k)
        return 2 * conv + 3 * fc
    dims = (h * w * c, *spec.hidden, k)
    layers = [2 * n * a * b for a, b in itertools.pairwise(dims)]
    return 2 * layers[0] + 3 * sum(layers[1:])


def update_products(spec: TrialSpec, image_shape: tuple[int, int, int], k: int = 10
                    ) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """The matrix products of one update (the fused network's ``train_step``), as (a, b,
    out) triples of the same shapes and memory layouts, filled with random float32 values."""
    rng = np.random.default_rng(0)
    n = spec.batch_size

    def arr(*shape: int) -> np.ndarray:
        return rng.standard_normal(shape, dtype=np.float32)

    def prod(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return a, b, np.empty((a.shape[0], b.shape[1]), np.float32)

    h, w, c = image_shape
    if spec.model == "convnet":
        n_p, d = (h // spec.f) * (w // spec.f), spec.f * spec.f * c
        p, f_, s = arr(n * n_p, d), arr(d, spec.nf), arr(n, n_p * spec.nf)
        w1, hid, w2, out = arr(n_p * spec.nf, spec.nh), arr(n, spec.nh), arr(spec.nh, k), arr(n, k)
        ones = np.ones(n * n_p, np.float32)
        return [prod(p, f_), prod(s, w1), prod(hid, w2),                       # forward
                prod(hid.T, out), prod(ones[None, :n], out), prod(out, w2.T),  # W2, b2, dh
                prod(ones[None, :n], hid), prod(s.T, hid), prod(hid, w1.T),    # b1, W1, ds
                prod(p.T, s.reshape(n * n_p, spec.nf)),                        # F
                prod(ones[None], s.reshape(n * n_p, spec.nf))]                 # bF
    dims = (h * w * c, *spec.hidden, k)
    acts = [arr(n, dim) for dim in dims]
    weights = [arr(a, b) for a, b in itertools.pairwise(dims)]
    ones = np.ones((1, n), np.float32)
    out = [prod(a, wt) for a, wt in zip(acts, weights, strict=False)]
    for i in range(len(weights) - 1, -1, -1):
        out += [prod(acts[i].T, acts[i + 1]), prod(ones, acts[i + 1])]
        if i:
            out.append(prod(acts[i + 1], weights[i].T))
    return out


def products_ms(spec: TrialSpec, image_shape: tuple[int, int, int], repeats: int = 200) -> float:
    """Milliseconds per update of the update's matrix products alone (no elementwise work,
    gather, loss or Python around them): a floor for the engine at this BLAS and thread count.
    Best of 5 rounds of ``repeats`` updates."""
    products = update_products(spec, image_shape)

    def run() -> None:
        for _ in range(repeats):
            for a, b, out in products:
                np.matmul(a, b, out=out)

    run()
    return min(_timed(run) for _ in range(5)) / repeats * 1000


def matmul_peak(threads: int, size: int = 2048, repeats: int = 10) -> float:
    """Measured float32 GFLOP/s of a large square matrix product."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((size, size), dtype=np.float32)
    b = rng.standard_normal((size, size), dtype=np.float32)
    with threadpool_limits(threads):
        a @ b
        best = min(_timed(lambda: a @ b) for _ in range(repeats))
    return 2 * size**3 / best / 1e9


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def have_torch() -> bool:
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def torch_network(spec: TrialSpec, shape: tuple[int, int, int], k: int = 10):
    """The PyTorch version of the spec's patchify ConvNet or one-hidden-layer MLP, for
    images of ``shape`` (channels, height, width), in PyTorch's default initialisation."""
    import torch

    c, h, w = shape
    if spec.model == "convnet":
        n_p = (h // spec.f) * (w // spec.f)
        return torch.nn.Sequential(
            torch.nn.Conv2d(c, spec.nf, spec.f, stride=spec.f), torch.nn.ReLU(),
            torch.nn.Flatten(), torch.nn.Linear(n_p * spec.nf, spec.nh), torch.nn.ReLU(),
            torch.nn.Linear(spec.nh, k))
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(c * h * w, spec.hidden[0]),
                               torch.nn.ReLU(), torch.nn.Linear(spec.hidden[0], k))


def cyclic_lr(spec: TrialSpec, step: int) -> float:
    """The triangular cyclical learning rate of update ``step`` (0-based)."""
    n_s = spec.n_s or 1
    phase = step % (2 * n_s)
    rise = phase if phase <= n_s else 2 * n_s - phase
    return spec.eta_min + (spec.eta_max - spec.eta_min) * rise / n_s


def torch_ms_per_update(spec: TrialSpec, split, threads: int) -> float:
    import torch

    torch.set_num_threads(threads)
    torch.manual_seed(spec.seed)
    x = torch.from_numpy(np.ascontiguousarray(split.x_train.transpose(0, 3, 1, 2)))
    y = torch.from_numpy(split.y_train)
    net = torch_network(spec, tuple(x.shape[1:]))
    weights = [p for name, p in net.named_parameters() if name.endswith("weight")]
    opt = torch.optim.SGD(net.parameters(), lr=spec.eta_min)
    n_s = spec.n_s or 1
    total = 2 * n_s * spec.cycles
    rng = np.random.default_rng(spec.seed)
    n = len(x)
    per_epoch = n // spec.batch_size
    order = torch.from_numpy(rng.permutation(n))
    loss_fn = torch.nn.CrossEntropyLoss()
    t0 = time.perf_counter()
    for step in range(total):
        b = step % per_epoch
        if b == 0 and step:
            order = torch.from_numpy(rng.permutation(n))
        idx = order[b * spec.batch_size:(b + 1) * spec.batch_size]
        for group in opt.param_groups:
            group["lr"] = cyclic_lr(spec, step)
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(net(x[idx]), y[idx]) + spec.lam * sum((wt * wt).sum() for wt in weights)
        loss.backward()
        opt.step()
    return (time.perf_counter() - t0) / total * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/data/cifar10.npz")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--updates", type=int, default=None,
                        help="cap every run at this many updates (for a quick check)")
    parser.add_argument("--repeat", type=int, default=1,
                        help="train each configuration this many times per engine, keep the "
                             "fastest")
    args = parser.parse_args()

    data = load_dataset(args.data)
    split = make_split(data, 49000, 1000, np.float32)
    blas = {(i["internal_api"], i.get("architecture")) for i in threadpool_info()
            if i["user_api"] == "blas"}
    peak = matmul_peak(args.threads)
    torch_ok = have_torch()
    if torch_ok:
        import torch

        torch.set_num_threads(args.threads)
    print(f"machine: {cpu_model()}, {os.cpu_count()} CPUs, "
          f"1-minute load average before the run {os.getloadavg()[0]:.2f} (well above 0: "
          f"the machine is shared, do not record the timings), BLAS {sorted(blas)}, float32 "
          f"matmul peak {peak:.0f} GFLOP/s ({args.threads} threads)")
    with threadpool_limits(args.threads):
        print(f"threads: numsweep (NumPy BLAS) {numpy_threads()}; PyTorch "
              f"{torch_threads() if torch_ok else 'not installed: PyTorch column skipped'}")
        net = fuse([build_network(TrialSpec(model="convnet", f=4), (32, 32, 3), 10,
                                  np.random.default_rng(0))], [0.0], [0.0])  # a lone trial
        patch_s = min(_timed(lambda: patchify(split.x_train, 4)) for _ in range(3))
        prepared_test = net.prepare(split.x_test)
        zero = np.zeros(1)
        eval_s = min(_timed(lambda: evaluate_group(net, prepared_test, split.y_test, zero,
                                                   zero)) for _ in range(3))
        print(f"patch matrices of 49,000 images (f=4): {patch_s:.3f} s; "
              f"evaluating 10,000 test images (f=4 nf=10 nh=50): {eval_s:.3f} s")

        rows = []
        for cfg in configs(args.updates):
            best, torch_ms = None, None
            for _ in range(args.repeat):
                result = train(cfg.spec, split)
                if best is None or result.train_seconds < best.train_seconds:
                    best = result
                if torch_ok:
                    ms = torch_ms_per_update(cfg.spec, split, args.threads)
                    torch_ms = ms if torch_ms is None else min(torch_ms, ms)
            assert best is not None
            ms = best.train_seconds / best.updates * 1000
            gflops = flops_per_update(cfg.spec, (32, 32, 3)) / (ms / 1000) / 1e9
            floor = products_ms(cfg.spec, (32, 32, 3))
            rows.append((cfg.label, best.updates, best.train_seconds, ms, floor, torch_ms,
                         gflops, best.test_acc))
    print()
    print_table_header("configuration", "updates", "numsweep s", "numsweep ms/update",
                       "its matrix products alone, ms/update", "PyTorch ms/update", "speed-up",
                       "share of matmul peak", "numsweep test acc")
    for label, updates, seconds, ms, floor, torch_ms, gflops, acc in rows:
        ratio = f"{torch_ms / ms:.1f}x" if torch_ms else "n/a"
        tms = f"{torch_ms:.2f}" if torch_ms else "n/a"
        print(f"| {label} | {updates} | {seconds:.2f} | {ms:.3f} | {floor:.3f} | {tms} | "
              f"{ratio} | {gflops / peak:.0%} | {acc:.4f} |")


if __name__ == "__main__":
    main()
