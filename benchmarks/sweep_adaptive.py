"""An adaptive search end to end: numsweep's slots, batch groups and one trial at a time
against Optuna + PyTorch, with and without the halving pruner.

The search: the course ConvNet (f=4, nf=10, nh=50; the spec's defaults otherwise: cyclic
learning rate eta_min 1e-5, plain SGD with L2, batch 100, float32, 10 curve points per cycle)
on 49,000 training images (1,000 validation), 3 cycles of n_s = 800 (4,800 updates), TPE
over lam in [1e-5, 1e-1] and eta_max in [0.01, 0.2] (both log), N trials, on ``--jobs``
processes with one BLAS thread per trial, wall time end to end. Rows (``--only``):

- ``slots``: ``run_sweep(..., grouping="slots")``, automatic size, ``pruner = "halving"``;
- ``batch``: the same with ``grouping="batch"`` (fused groups that wait for their last trial);
- ``alone``: the same with ``group_size=1`` (one trial at a time);
- ``slots-none``: ``slots`` without a pruner;
- ``peer``: what a user would write: Optuna's ``TPESampler`` and ``SuccessiveHalvingPruner``
  set as numsweep's ``halving`` pruner is (``optuna_bridge.make_pruner``: its minimum
  resource, reduction factor and minimum early-stopping rate), ``--jobs`` processes with one
  PyTorch thread each sharing one SQLite study (``create_study(load_if_exists=True)``, each
  calling ``study.optimize`` until ``MaxTrialsCallback`` counts N trials), every trial a
  PyTorch training of the same network, schedule, L2 and initialisation; it reports val_acc
  where numsweep's pruner hears it (the ends of cycles before the last: updates 1,600 and
  3,200) and records the last one at update 4,800 (as numsweep's told trials do); its
  minimum resource is the first report's update (1,600), as numsweep's is
  (``optuna_bridge.FirstRungHalving``); its data loading and ``import torch`` are excluded
  from the time;
- ``peer-none``: the peer without a pruner.

Both prune on the live study at each trial's own rungs (numsweep's slot stages ask the
study as it is when a trial reaches a rung; its batch groups judge on a snapshot taken
when the trial was proposed, a few configurations behind: the stage's ``sync``). They still
need not prune the same number: which trials reach a rung first differs (16 start together
in a slot group, 2 at a time in the peer). The script prints both counts. numsweep's time
includes its curves (the spec's 10 points per cycle on up to 10,000 training and the
validation images); the peer measures only what it reports.

Each numsweep run starts cold (its data loading, sharing and worker start-up counted). Per
run the script prints wall time, trials complete / pruned, group sizes, slot occupancy (slot
rows, from ``Storage.slot_groups``; "n/a" where the storage does not record slot groups) and
the best val_acc, then a Markdown table for RESULTS.md with the machine (CPU model, cores,
BLAS kernel), the date and the command, and the ratios to the slots row of the same seed.
Before ``run_sweep`` has a ``grouping`` parameter, the slots and batch rows both run today's
batch groups and say "grouping not available".

    python benchmarks/sweep_adaptive.py --data ../shared/data/cifar10.npz --trials 32 64 \
        --seeds 0 1 2
    python benchmarks/sweep_adaptive.py --data ../shared/data/cifar10.npz --quick
    python benchmarks/sweep_adaptive.py --data ../shared/data/cifar10.npz --quick \
        --only slots alone --no-torch
"""

from __future__ import annotations

import argparse
import inspect
import multiprocessing
import os
import platform
import statistics
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
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
from sweep_throughput import blas, cold_start

from numsweep.engine import TrialSpec, load_dataset, make_split
from numsweep.storage import TrialState
from numsweep.sweeps import parse_spec, run_sweep

MODEL = {"model": "convnet", "f": 4, "nf": 10, "nh": 50}
SPACE = {"lam": (1e-5, 1e-1), "eta_max": (0.01, 0.2)}  # both searched in log scale
FULL = {"n_train": 49000, "n_val": 1000, "n_s": 800, "cycles": 3}
QUICK = {"n_train": 2000, "n_val": 1000, "n_s": 40, "cycles": 3}
HAS_GROUPING = "grouping" in inspect.signature(run_sweep).parameters


@dataclass(frozen=True)
class Row:
    name: str
    label: str
    engine: str  # numsweep or peer
    pruner: str  # halving or none
    grouping: str | None = None  # run_sweep's grouping (slots, batch), where it has one
    group_size: int | None = None  # None: automatic


ROWS = {r.name: r for r in (
    Row("slots", "numsweep, slots", "numsweep", "halving", grouping="slots"),
    Row("batch", "numsweep, batch groups", "numsweep", "halving", grouping="batch"),
    Row("alone", "numsweep, one at a time", "numsweep", "halving", group_size=1),
    Row("slots-none", "numsweep, slots, no pruner", "numsweep", "none", grouping="slots"),
    Row("peer", "Optuna + PyTorch", "peer", "halving"),
    Row("peer-none", "Optuna + PyTorch, no pruner", "peer", "none"),
)}
BASELINE = {"halving": "slots", "none": "slots-none"}  # what each row's ratio is against


@dataclass(frozen=True)
class Run:
    row: Row
    trials: int
    seed: int
    seconds: float
    complete: int
    pruned: int
    failed: int
    best_val: float
    occupancy: str  # "0.93" or "n/a"
    sizes: str  # the group sizes seen, e.g. "2" or "16 (slots)"


def sweep_spec(name: str, trials: int, seed: int, size: dict[str, int], pruner: str) -> Any:
    fixed = {**MODEL, **size}
    space = {k: {"low": lo, "high": hi, "log": True} for k, (lo, hi) in SPACE.items()}
    return parse_spec({"name": name, "seed": seed, "fixed": fixed, "space": space,
                       "stages": [{"name": "tpe", "sampler": "tpe", "n_trials": trials,
                                   "pruner": pruner}]}, "<benchmark>")


def grouping_note(row: Row) -> str:
    if row.grouping is None or HAS_GROUPING:
        return ""
    return " (grouping not available: today's batch groups)"


def occupancy_of(storage: Any, sweep: str) -> tuple[str, list[int]]:
    """The sweep's slot occupancy (slot-updates trained / (group steps x slots), over every
    slot group), with in brackets the share until the stage ran out of trials
    (``sweeps.occupancy``), and the groups' sizes; "n/a" where none are stored."""
    from numsweep.sweeps.occupancy import stage_occupancy

    groups = storage.slot_groups(sweep=sweep)
    if not sum(g.steps * g.size for g in groups):
        return "n/a", []
    occupancy = stage_occupancy(groups)
    dry = occupancy.until_dry
    return (f"{occupancy.share:.2f}" + (f" ({dry:.2f})" if dry is not None else ""),
            [g.size for g in groups])


def numsweep_run(args: argparse.Namespace, row: Row, trials: int, seed: int) -> Run:
    name = f"adaptive-{row.name}-{trials}-{seed}"
    spec = sweep_spec(name, trials, seed, args.size, row.pruner)
    kwargs: dict[str, Any] = {"jobs": args.jobs}
    if row.group_size is not None:
        kwargs["group_size"] = row.group_size
    if row.grouping is not None and HAS_GROUPING:
        kwargs["grouping"] = row.grouping
    storage = fresh_storage(args.workdir, name)
    cold_start()
    with Stopwatch() as clock:
        run_sweep(spec, storage, data_source=args.data, **kwargs)
    records = storage.get_trials(name)
    occupancy, slot_sizes = ("n/a", [])
    if row.grouping == "slots" and HAS_GROUPING:
        occupancy, slot_sizes = occupancy_of(storage, name)
    if slot_sizes:
        sizes = ", ".join(str(k) for k in sorted(set(slot_sizes))) + " (slots)"
    else:
        sizes = ", ".join(str(k) for k in sorted({r.group_size or 1 for r in records}))
    complete = [r for r in records if r.state is TrialState.COMPLETE]
    return Run(row, trials, seed, clock.seconds, len(complete),
               sum(r.state is TrialState.PRUNED for r in records),
               sum(r.state is TrialState.FAILED for r in records),
               max((r.metrics["val_acc"] for r in complete), default=float("nan")),
               occupancy, sizes)


# -- the peer: Optuna + PyTorch ------------------------------------------------------------


def halving_settings(first_report: int) -> dict[str, Any]:
    """numsweep's ``halving`` pruner's settings, read from the pruner it makes (Optuna's
    private attributes: the pruner has no public getters); its minimum resource is the
    first step a trial reports at (``optuna_bridge.FirstRungHalving``): ``first_report``."""
    from numsweep.sweeps.optuna_bridge import make_pruner

    pruner = make_pruner("halving")
    return {"min_resource": getattr(pruner, "_min_resource", None) or first_report,
            "reduction_factor": pruner._reduction_factor,  # type: ignore[attr-defined]
            "min_early_stopping_rate": pruner._min_early_stopping_rate,  # type: ignore[attr-defined]
            "bootstrap_count": pruner._bootstrap_count}  # type: ignore[attr-defined]


def peer_pruner(kind: str, first_report: int) -> Any:
    import optuna

    if kind == "halving":
        return optuna.pruners.SuccessiveHalvingPruner(**halving_settings(first_report))
    return optuna.pruners.NopPruner()


def peer_storage(url: str) -> Any:
    import optuna

    # two processes write one SQLite file: wait for its lock instead of failing at once
    return optuna.storages.RDBStorage(url, engine_kwargs={"connect_args": {"timeout": 60}})


def _accuracy(net: Any, x: Any, y: Any) -> float:
    import torch

    correct = 0
    with torch.no_grad():
        for i in range(0, len(x), 1000):
            correct += int((net(x[i:i + 1000]).argmax(1) == y[i:i + 1000]).sum())
    return correct / len(x)


def torch_trial(spec: TrialSpec, data: dict[str, Any], trial: Any) -> float:
    """Train ``spec`` in PyTorch as numsweep does (N(0, 1/fan_in) weights, zero biases, the
    cyclical rate, SGD with lam ||W||^2 on the weights, a new permutation every epoch),
    reporting val_acc to ``trial`` at the end of every cycle before the last; the final
    val_acc."""
    import optuna
    import torch

    torch.manual_seed(spec.seed)
    x, y = data["x_train"], data["y_train"]
    net = torch_network(spec, tuple(x.shape[1:]))
    weights = [p for name, p in net.named_parameters() if name.endswith("weight")]
    with torch.no_grad():
        for p in weights:
            fan_in = p[0].numel()
            p.normal_(0.0, fan_in ** -0.5)
        for name, p in net.named_parameters():
            if name.endswith("bias"):
                p.zero_()
    opt = torch.optim.SGD(net.parameters(), lr=spec.eta_min)
    loss_fn = torch.nn.CrossEntropyLoss()
    n_s = spec.n_s or 1
    total = 2 * n_s * spec.cycles
    rng = np.random.default_rng(spec.seed)
    n, batch = len(x), spec.batch_size
    per_epoch = n // batch
    order = torch.from_numpy(rng.permutation(n))
    for step in range(total):
        b = step % per_epoch
        if b == 0 and step:
            order = torch.from_numpy(rng.permutation(n))
        idx = order[b * batch:(b + 1) * batch]
        for group in opt.param_groups:
            group["lr"] = cyclic_lr(spec, step)
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(net(x[idx]), y[idx]) + spec.lam * sum((w * w).sum() for w in weights)
        loss.backward()
        opt.step()
        done = step + 1
        if done % (2 * n_s) == 0 and done < total:
            trial.report(_accuracy(net, data["x_val"], data["y_val"]), done)
            if trial.should_prune():
                raise optuna.TrialPruned()
    val_acc = _accuracy(net, data["x_val"], data["y_val"])
    trial.report(val_acc, total)
    trial.set_user_attr("test_acc", _accuracy(net, data["x_test"], data["y_test"]))
    return val_acc


def _peer_worker(index: int, settings: dict[str, Any], ready: Any, start: Any) -> None:
    """One of the peer's processes: load the split, say so, wait for the start, optimise."""
    import optuna
    import torch

    torch.set_num_threads(1)
    split = make_split(load_dataset(settings["data"]), settings["size"]["n_train"],
                       settings["size"]["n_val"], np.dtype("float32"))
    data = {"x_train": split.x_train, "y_train": split.y_train, "x_val": split.x_val,
            "y_val": split.y_val, "x_test": split.x_test, "y_test": split.y_test}
    data = {k: torch.from_numpy(np.ascontiguousarray(v.transpose(0, 3, 1, 2) if v.ndim == 4
                                                     else v)) for k, v in data.items()}
    base = TrialSpec(**MODEL, **settings["size"], batch_size=100)
    seed, trials = settings["seed"], settings["trials"]
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    ready.put(index)
    start.wait()
    study = optuna.load_study(study_name=settings["study"],
                              storage=peer_storage(settings["url"]),
                              sampler=optuna.samplers.TPESampler(seed=1000 * seed + index),
                              pruner=peer_pruner(settings["pruner"],
                                                 2 * settings["size"]["n_s"]))

    def objective(trial: optuna.Trial) -> float:
        params = {k: trial.suggest_float(k, lo, hi, log=True) for k, (lo, hi) in SPACE.items()}
        spec = base.replace(**params, seed=100_000 * seed + trial.number)
        return torch_trial(spec, data, trial)

    # every state counts, running trials included: the processes stop at N trials in all
    study.optimize(objective, n_trials=trials,
                   callbacks=[optuna.study.MaxTrialsCallback(trials, states=None)])


def peer_run(args: argparse.Namespace, row: Row, trials: int, seed: int) -> Run:
    import optuna

    name = f"adaptive-{row.name}-{trials}-{seed}"
    folder = Path(args.workdir)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.db"
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    url = f"sqlite:///{path}"
    settings = {"data": args.data, "size": args.size, "seed": seed, "trials": trials,
                "study": name, "url": url, "pruner": row.pruner}
    ctx = multiprocessing.get_context("spawn")
    ready, start = ctx.Queue(), ctx.Event()
    workers = [ctx.Process(target=_peer_worker, args=(i, settings, ready, start))
               for i in range(args.jobs)]
    for w in workers:
        w.start()
    for _ in workers:
        ready.get()  # every process has its data and PyTorch loaded
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with Stopwatch() as clock:
        optuna.create_study(study_name=name, storage=peer_storage(url), direction="maximize",
                            load_if_exists=True)
        start.set()
        for w in workers:
            w.join()
    if any(w.exitcode for w in workers):
        raise SystemExit(f"{row.label}: a peer process failed (exit codes "
                         f"{[w.exitcode for w in workers]})")
    study = optuna.load_study(study_name=name, storage=peer_storage(url))
    states = [t.state for t in study.trials]
    complete = [t for t in study.trials if t.state is optuna.trial.TrialState.COMPLETE]
    return Run(row, trials, seed, clock.seconds, len(complete),
               states.count(optuna.trial.TrialState.PRUNED),
               states.count(optuna.trial.TrialState.FAIL),
               max((t.value for t in complete), default=float("nan")), "n/a",
               f"{args.jobs} processes")


# -- the report ----------------------------------------------------------------------------


def ratio(runs: list[Run], run: Run) -> float | None:
    base = next((r for r in runs if r.row.name == BASELINE[run.row.pruner]
                 and r.trials == run.trials and r.seed == run.seed), None)
    return run.seconds / base.seconds if base is not None and base is not run else None


def versions() -> str:
    import optuna

    out = f"Python {platform.python_version()}, NumPy {np.__version__}, Optuna {optuna.__version__}"
    if have_torch():
        import torch

        out += f", PyTorch {torch.__version__}"
    return out


def print_report(args: argparse.Namespace, runs: list[Run], started: datetime) -> None:
    size = args.size
    print_command_and_date(started)
    print(f"Machine: {cpu_model()}, {os.cpu_count()} cores, BLAS {blas()}, {versions()}; "
          f"--jobs {args.jobs}, 1 BLAS / PyTorch thread per trial; 1-minute load average at "
          f"the end {os.getloadavg()[0]:.2f}")
    print(f"Search: convnet f=4 nf=10 nh=50, n_train {size['n_train']}, n_val {size['n_val']}, "
          f"{size['cycles']} cycles of n_s {size['n_s']} "
          f"({2 * size['n_s'] * size['cycles']} updates), TPE over lam and eta_max (log); "
          f"halving pruner {halving_settings(2 * size['n_s'])}, reports at updates "
          f"{', '.join(str(2 * size['n_s'] * c) for c in range(1, size['cycles']))}"
          + ("; grouping not available in this checkout: slots and batch rows both ran "
             "today's batch groups" if not HAS_GROUPING else "")
          + (" (--quick: not for publishing)" if args.quick else ""))
    print()
    print_table_header("trials", "seed", "run", "wall s", "complete / pruned", "group sizes",
                       "slot occupancy (until out of trials)", "best val_acc",
                       "wall / slots (same pruner)")
    for run in runs:
        r = ratio(runs, run)
        failed = f" ({run.failed} failed)" if run.failed else ""
        print(f"| {run.trials} | {run.seed} | {run.row.label}{grouping_note(run.row)} | "
              f"{run.seconds:.1f} | {run.complete} / {run.pruned}{failed} | {run.sizes} | "
              f"{run.occupancy} | {run.best_val:.4f} | "
              f"{f'{r:.2f}x' if r is not None else '-'} |")
    seeds = sorted({r.seed for r in runs})
    if len(seeds) < 2:
        return
    print()
    print(f"Over the seeds {', '.join(map(str, seeds))}: mean wall time, and the median "
          "(lowest-highest) of the per-seed ratios to the slots row of the same pruner")
    print()
    print_table_header("trials", "run", "mean wall s", "mean pruned", "wall / slots")
    for trials in sorted({r.trials for r in runs}):
        for row in ROWS.values():
            mine = [r for r in runs if r.trials == trials and r.row is row]
            if not mine:
                continue
            ratios = [x for x in (ratio(runs, r) for r in mine) if x is not None]
            shown = (f"{statistics.median(ratios):.2f}x ({min(ratios):.2f}-{max(ratios):.2f})"
                     if ratios else "-")
            print(f"| {trials} | {row.label}{grouping_note(row)} | "
                  f"{statistics.fmean(r.seconds for r in mine):.1f} | "
                  f"{statistics.fmean(r.pruned for r in mine):.1f} | {shown} |")


def warm_up(data: str) -> None:
    """What only the first run would pay otherwise: the dataset file into the page cache and
    this process's imports of Optuna and the sweep worker (every run still starts its own
    worker processes and loads its own data)."""
    import optuna  # noqa: F401

    import numsweep.sweeps.worker  # noqa: F401

    load_dataset(data)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="dataset (.npz, CIFAR-10 folder, ...)")
    parser.add_argument("--trials", type=int, nargs="+", default=None,
                        help="trials per search (default 32 64; --quick: 8)")
    parser.add_argument("--seeds", type=int, nargs="+", default=None,
                        help="sweep seeds (default 0 1 2; --quick: 0)")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--only", nargs="+", choices=list(ROWS), default=None,
                        help="run these rows only")
    parser.add_argument("--no-torch", action="store_true", help="skip the Optuna + PyTorch rows")
    parser.add_argument("--quick", action="store_true",
                        help="n_train 2000, 8 trials, n_s 40: checks the script end to end")
    parser.add_argument("--workdir", default="bench-sweeps", help="folder for the databases")
    args = parser.parse_args()
    args.size = QUICK if args.quick else FULL
    trial_counts = args.trials or ([8] if args.quick else [32, 64])
    seeds = args.seeds if args.seeds is not None else ([0] if args.quick else [0, 1, 2])
    rows = [ROWS[name] for name in (args.only or ROWS)]
    if args.no_torch or not have_torch():
        if not args.no_torch:
            print("PyTorch is not installed: the Optuna + PyTorch rows are skipped")
        rows = [r for r in rows if r.engine != "peer"]
    if not HAS_GROUPING and any(r.grouping for r in rows):
        print("grouping not available: run_sweep has no grouping parameter in this checkout; "
              "the slots and batch rows both run today's batch groups")
    warm_up(args.data)
    started = datetime.now(UTC)
    runs: list[Run] = []
    for trials in trial_counts:
        for seed in seeds:
            pruned: dict[str, int] = {}
            for row in rows:
                run = (numsweep_run if row.engine == "numsweep" else peer_run)(
                    args, row, trials, seed)
                runs.append(run)
                if row.pruner == "halving":
                    pruned[row.label] = run.pruned
                print(f"{trials} trials, seed {seed}, {row.label}{grouping_note(row)}: "
                      f"{run.seconds:.1f} s, {run.complete} complete, {run.pruned} pruned"
                      + (f", {run.failed} failed" if run.failed else "")
                      + f"; group sizes {run.sizes}; slot occupancy {run.occupancy}; "
                      f"best val_acc {run.best_val:.4f}", flush=True)
            if len(pruned) > 1:
                print(f"  pruned of {trials} with the halving pruner: "
                      + ", ".join(f"{label} {n}" for label, n in pruned.items()), flush=True)
    print_report(args, runs, started)


if __name__ == "__main__":
    main()
