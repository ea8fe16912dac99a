"""Population-based training against fixed-budget searches, end to end, on the course ConvNet.

The network: the patchify ConvNet f=4, nf=10, nh=50 (cyclic learning rate eta_min 1e-5,
plain SGD with L2, batch 100, float32) on 49,000 training images (1,000 validation), 3 cycles
of n_s = 800 (4,800 updates), lam in [1e-5, 1e-1] and eta_max in [0.01, 0.2] (both log).
Rows, for each sweep seed:

- ``pbt``: a numsweep ``pbt`` stage of 16 members (interval 800 updates, quantile 0.25,
  val_acc on the 1,000 validation images), one fused group in one worker;
- ``tpe-halving``: numsweep TPE with the halving pruner, trials added (``extend_sweep``)
  until the updates trained reach the population's (16 x 4,800);
- ``random``: a numsweep random search of 16 trials (the same updates as the population);
- ``ray-pbt``: Ray Tune's ``PopulationBasedTraining`` on the same network in PyTorch
  (``speed.torch_network``, ``speed.cyclic_lr``), 16 members, the same interval, quantile
  and perturbation factors, its checkpoints saved and restored in memory-backed
  dictionaries; its time in exploit steps is the time spent saving and restoring them.
  Run when ``ray[tune]`` is installed (``pip install -e '.[bench]'``), skipped with a line
  otherwise.

Per run: wall time (data loading and worker start counted for numsweep; ``import ray`` and
``ray.init`` excluded for Ray), the updates trained, the best val_acc and that trial's
test_acc, and the exploit share (seconds in exploit steps / wall time). Then a Markdown
table with the machine, the command and the date.

    python benchmarks/pbt.py --data ../shared/data/cifar10.npz --seeds 0 1 2
    python benchmarks/pbt.py --data ../shared/data/cifar10.npz --quick
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
from speed import cyclic_lr, have_torch, torch_network
from sweep_common import (
    Stopwatch,
    cpu_model,
    fresh_storage,
    print_command_and_date,
    print_table_header,
)

from numsweep.engine import TrialSpec, load_dataset, make_split
from numsweep.storage import Storage, TrialState
from numsweep.sweeps import parse_spec, run_sweep
from numsweep.sweeps.extend import extend_sweep

MODEL = {"model": "convnet", "f": 4, "nf": 10, "nh": 50, "eta_min": 1e-5, "batch_size": 100}
SPACE = {"lam": (1e-5, 1e-1), "eta_max": (0.01, 0.2)}  # both log
FULL = {"n_train": 49000, "n_val": 1000, "n_s": 800, "cycles": 3}
QUICK = {"n_train": 1000, "n_val": 500, "n_s": 20, "cycles": 3}
POPULATION = 16
QUANTILE = 0.25
FACTORS = (0.8, 1.2)


def updates_of(size: dict[str, int]) -> int:
    return 2 * size["n_s"] * size["cycles"]


@dataclass(frozen=True)
class Run:
    name: str
    seed: int
    seconds: float
    updates: int
    trials: int
    best_val: float
    best_test: float
    exploit_seconds: float | None

    @property
    def exploit_share(self) -> str:
        if self.exploit_seconds is None:
            return "-"
        return f"{100 * self.exploit_seconds / self.seconds:.2f}%"


def spec_of(name: str, seed: int, size: dict[str, int], stage: dict[str, Any]) -> Any:
    space = {k: {"low": lo, "high": hi, "log": True} for k, (lo, hi) in SPACE.items()}
    return parse_spec({"name": name, "seed": seed, "fixed": {**MODEL, **size}, "space": space,
                       "stages": [{"name": "search", **stage}]}, "<benchmark>")


def summed(storage: Storage, name: str, row: str, seed: int, seconds: float,
           exploit: float | None) -> Run:
    trials = [t for t in storage.get_trials(name)
              if t.state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAILED)]
    done = [t for t in trials if t.state is TrialState.COMPLETE]
    best = max(done, key=lambda t: t.metrics["val_acc"], default=None)
    return Run(row, seed, seconds, int(sum(t.metrics.get("updates", 0) or 0 for t in trials)),
               len(trials), best.metrics["val_acc"] if best else math.nan,
               best.metrics.get("test_acc", math.nan) if best else math.nan, exploit)


def pbt_run(args: argparse.Namespace, seed: int) -> Run:
    name = f"pbt-{seed}"
    interval = updates_of(args.size) // 6  # 5 exploit steps
    spec = spec_of(name, seed, args.size, {"sampler": "pbt", "population": POPULATION,
                                           "interval": interval, "quantile": QUANTILE,
                                           "mutations": {k: list(FACTORS) for k in SPACE}})
    storage = fresh_storage(args.workdir, name)
    with Stopwatch() as clock:
        run_sweep(spec, storage, data_source=args.data, jobs=1)
    [stage] = storage.list_stages(storage.get_sweep(name).id)
    exploit = stage.plan.exploit_seconds or 0.0
    return summed(storage, name, "numsweep pbt", seed, clock.seconds, exploit)


def tpe_run(args: argparse.Namespace, seed: int) -> Run:
    """TPE + halving, extended until its updates reach the population's."""
    name = f"pbt-tpe-{seed}"
    budget = POPULATION * updates_of(args.size)
    spec = spec_of(name, seed, args.size, {"sampler": "tpe", "n_trials": POPULATION,
                                           "pruner": "halving"})
    storage = fresh_storage(args.workdir, name)
    with Stopwatch() as clock:
        run_sweep(spec, storage, data_source=args.data, jobs=args.jobs)
        while True:
            run = summed(storage, name, "", seed, 0.0, None)
            if run.updates >= budget:
                break
            per_trial = run.updates / max(run.trials, 1)
            more = max(1, math.ceil((budget - run.updates) / per_trial))
            extend_sweep(name, storage, {"search.n_trials": f"+{more}"}, data_source=args.data,
                         jobs=args.jobs)
    return summed(storage, name, "numsweep TPE + halving", seed, clock.seconds, None)


def random_run(args: argparse.Namespace, seed: int) -> Run:
    name = f"pbt-random-{seed}"
    spec = spec_of(name, seed, args.size, {"sampler": "random", "n_trials": POPULATION})
    storage = fresh_storage(args.workdir, name)
    with Stopwatch() as clock:
        run_sweep(spec, storage, data_source=args.data, jobs=args.jobs)
    return summed(storage, name, "numsweep random", seed, clock.seconds, None)


# -- Ray Tune's PopulationBasedTraining on the same network in PyTorch ------------------


def have_ray() -> bool:
    try:
        import ray.tune  # noqa: F401
    except ImportError:
        return False
    return True


def _accuracy(net: Any, x: Any, y: Any) -> float:
    import torch

    correct = 0
    with torch.no_grad():
        for i in range(0, len(x), 1000):
            correct += int((net(x[i:i + 1000]).argmax(1) == y[i:i + 1000]).sum())
    return correct / len(x)


def ray_run(args: argparse.Namespace, seed: int, data: dict[str, Any]) -> Run:
    """Ray Tune PBT, 16 members of the PyTorch network, one thread each on ``--jobs``
    CPUs; the seconds its trainables spend saving and restoring checkpoints are its exploit
    time."""
    import ray
    from ray import tune
    from ray.tune.schedulers import PopulationBasedTraining

    size = args.size
    total = updates_of(size)
    interval = total // 6
    base = TrialSpec.from_mapping({**MODEL, **size})
    refs = {k: ray.put(v) for k, v in data.items()}

    class Member(tune.Trainable):
        def setup(self, config: dict[str, Any]) -> None:
            import torch

            torch.set_num_threads(1)
            torch.manual_seed(int(config["seed"]))
            self.data = {k: ray.get(v) for k, v in config["refs"].items()}
            x = self.data["x_train"]
            self.net = torch_network(base, tuple(x.shape[1:]))
            self.opt = torch.optim.SGD(self.net.parameters(), lr=base.eta_min)
            self.step_count = 0
            self.rng = np.random.default_rng(int(config["seed"]))
            self.order = torch.from_numpy(self.rng.permutation(len(x)))
            self.exploit = 0.0

        def step(self) -> dict[str, Any]:
            import torch

            x, y = self.data["x_train"], self.data["y_train"]
            spec = TrialSpec.from_mapping({**MODEL, **size, "lam": self.config["lam"],
                                           "eta_max": self.config["eta_max"]})
            weights = [p for n, p in self.net.named_parameters() if n.endswith("weight")]
            loss_fn = torch.nn.CrossEntropyLoss()
            per_epoch = len(x) // base.batch_size
            for _ in range(interval):
                b = self.step_count % per_epoch
                if b == 0 and self.step_count:
                    self.order = torch.from_numpy(self.rng.permutation(len(x)))
                idx = self.order[b * base.batch_size:(b + 1) * base.batch_size]
                for group in self.opt.param_groups:
                    group["lr"] = cyclic_lr(spec, self.step_count)
                self.opt.zero_grad(set_to_none=True)
                loss = loss_fn(self.net(x[idx]), y[idx]) + spec.lam * sum(
                    (w * w).sum() for w in weights)
                loss.backward()
                self.opt.step()
                self.step_count += 1
            out = {"val_acc": _accuracy(self.net, self.data["x_val"], self.data["y_val"]),
                   "updates": self.step_count, "exploit_seconds": self.exploit,
                   "done": self.step_count >= total}
            if out["done"]:
                out["test_acc"] = _accuracy(self.net, self.data["x_test"], self.data["y_test"])
            return out

        def save_checkpoint(self, checkpoint_dir: str) -> dict[str, Any]:
            import torch

            started = time.perf_counter()
            torch.save({"net": self.net.state_dict(), "opt": self.opt.state_dict(),
                        "step": self.step_count}, os.path.join(checkpoint_dir, "state.pt"))
            self.exploit += time.perf_counter() - started
            return None  # type: ignore[return-value]

        def load_checkpoint(self, checkpoint_dir: str) -> None:
            import torch

            started = time.perf_counter()
            state = torch.load(os.path.join(checkpoint_dir, "state.pt"))
            self.net.load_state_dict(state["net"])
            self.opt.load_state_dict(state["opt"])
            self.step_count = state["step"]
            self.exploit += time.perf_counter() - started

    rng = np.random.default_rng(seed)
    pbt = PopulationBasedTraining(
        time_attr="updates", perturbation_interval=interval, quantile_fraction=QUANTILE,
        resample_probability=0.25, perturbation_factors=FACTORS,
        hyperparam_mutations={k: tune.loguniform(lo, hi) for k, (lo, hi) in SPACE.items()})
    space = {"lam": tune.sample_from(lambda _: float(np.exp(rng.uniform(*np.log(SPACE["lam"]))))),
             "eta_max": tune.sample_from(
                 lambda _: float(np.exp(rng.uniform(*np.log(SPACE["eta_max"]))))),
             "seed": tune.sample_from(lambda _: int(rng.integers(2**31))), "refs": refs}
    with Stopwatch() as clock:
        tuner = tune.Tuner(
            tune.with_resources(Member, {"cpu": 1}),
            param_space=space,
            tune_config=tune.TuneConfig(scheduler=pbt, metric="val_acc", mode="max",
                                        num_samples=POPULATION,
                                        max_concurrent_trials=args.jobs),
            run_config=tune.RunConfig(storage_path=os.path.abspath(args.workdir),
                                      name=f"ray-pbt-{seed}", verbose=0))
        grid = tuner.fit()
    results = [r.metrics for r in grid if r.metrics]
    best = max(results, key=lambda m: m.get("val_acc", -1.0), default={})
    return Run("Ray Tune PBT (PyTorch)", seed, clock.seconds,
               int(sum(m.get("updates", 0) for m in results)), len(results),
               float(best.get("val_acc", math.nan)), float(best.get("test_acc", math.nan)),
               float(sum(m.get("exploit_seconds", 0.0) for m in results)))


def torch_data(source: str, size: dict[str, int]) -> dict[str, Any]:
    import torch

    split = make_split(load_dataset(source), size["n_train"], size["n_val"], np.float32)
    out = {}
    for part in ("train", "val", "test"):
        x = getattr(split, f"x_{part}")
        out[f"x_{part}"] = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
        out[f"y_{part}"] = torch.from_numpy(np.asarray(getattr(split, f"y_{part}"), np.int64))
    return out


def print_report(args: argparse.Namespace, runs: list[Run], started: datetime) -> None:
    import optuna

    size = args.size
    print_command_and_date(started)
    print(f"Machine: {cpu_model()}, {os.cpu_count()} cores, Python {sys.version.split()[0]}, "
          f"NumPy {np.__version__}, Optuna {optuna.__version__}; --jobs {args.jobs}; 1-minute "
          f"load average at the end {os.getloadavg()[0]:.2f}")
    print(f"Network: convnet f=4 nf=10 nh=50, n_train {size['n_train']}, n_val {size['n_val']}, "
          f"{size['cycles']} cycles of n_s {size['n_s']} ({updates_of(size)} updates); "
          f"population {POPULATION}, quantile {QUANTILE}, factors {FACTORS}"
          + (" (--quick: not for publishing)" if args.quick else ""))
    print()
    print_table_header("run", "seed", "wall s", "updates trained", "trials", "best val_acc",
                       "its test_acc", "exploit share")
    for r in runs:
        print(f"| {r.name} | {r.seed} | {r.seconds:.1f} | {r.updates:,} | {r.trials} | "
              f"{r.best_val:.4f} | {r.best_test:.4f} | {r.exploit_share} |")
    seeds = sorted({r.seed for r in runs})
    if len(seeds) < 2:
        return
    print()
    print(f"Mean over the seeds {', '.join(map(str, seeds))}")
    print()
    print_table_header("run", "mean wall s", "mean best val_acc", "mean test_acc")
    for name in dict.fromkeys(r.name for r in runs):
        mine = [r for r in runs if r.name == name]
        print(f"| {name} | {statistics.fmean(r.seconds for r in mine):.1f} | "
              f"{statistics.fmean(r.best_val for r in mine):.4f} | "
              f"{statistics.fmean(r.best_test for r in mine):.4f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="dataset (.npz, CIFAR-10 folder, ...)")
    parser.add_argument("--seeds", type=int, nargs="+", default=None,
                        help="sweep seeds (default 0 1 2; --quick: 0)")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--only", nargs="+", choices=["pbt", "tpe", "random", "ray"],
                        default=None, help="run these rows only")
    parser.add_argument("--quick", action="store_true",
                        help="n_train 1000, n_s 20: checks the script end to end")
    parser.add_argument("--workdir", default="bench-pbt", help="folder for the databases")
    args = parser.parse_args()
    args.size = QUICK if args.quick else FULL
    seeds = args.seeds if args.seeds is not None else ([0] if args.quick else [0, 1, 2])
    rows = args.only or ["pbt", "tpe", "random", "ray"]
    if "ray" in rows and not (have_ray() and have_torch()):
        print("Ray Tune (ray[tune]) or PyTorch is not installed: the Ray Tune PBT row is "
              "skipped (pip install -e '.[bench]')")
        rows = [r for r in rows if r != "ray"]
    load_dataset(args.data)  # into the page cache before any timing
    data = torch_data(args.data, args.size) if "ray" in rows else {}
    if "ray" in rows:
        import ray

        ray.init(num_cpus=args.jobs, include_dashboard=False, log_to_driver=False)
    started = datetime.now(UTC)
    runs = []
    for seed in seeds:
        for row in rows:
            run = {"pbt": pbt_run, "tpe": tpe_run, "random": random_run}[row](args, seed) \
                if row != "ray" else ray_run(args, seed, data)
            runs.append(run)
            print(f"seed {seed}, {run.name}: {run.seconds:.1f} s, {run.updates:,} updates, "
                  f"best val_acc {run.best_val:.4f} (test {run.best_test:.4f}), exploit share "
                  f"{run.exploit_share}", flush=True)
    print_report(args, runs, started)


if __name__ == "__main__":
    main()
