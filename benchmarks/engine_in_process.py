"""The engine against another checkout of numsweep in ONE process: each configuration trained
by both engines in alternating runs, so that both see the same moment of a shared machine.

    python benchmarks/engine_in_process.py --base /path/to/other/checkout [--rounds 8]
        [--updates 150] [--cases course:1:float32:sgd,mlp:8:float32:sgd,...]

The other checkout's ``numsweep`` package is copied to a temporary folder as
``numsweep_base`` (its absolute imports renamed), so both import side by side; each run is
``train_group`` of K trials (lam spread, batch 100, a constant rate, generated
CIFAR-10-shaped data, one BLAS thread) and reports the summed ``train_seconds`` per update
per trial. The table gives each engine's median over the rounds and the ratios (this
checkout over the base: below 1 is faster) of the medians and of the minimums.
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

CONFIGS: dict[str, dict[str, Any]] = {
    "course": {"model": "convnet", "f": 4, "nf": 10, "nh": 50},
    "wide": {"model": "convnet", "f": 4, "nf": 40, "nh": 300},
    "multi": {"model": "convnet", "f": (2, 4), "nf": (5, 10), "nh": 50},
    "mlp": {"model": "mlp", "hidden": (50,)},
    "mlp2": {"model": "mlp", "hidden": (100, 50)},
    "conv3": {"model": "convnet3", "nf": 8, "filter_size": 3, "nh": 50},
}
DEFAULT_CASES = ("course:1:float32:sgd,course:2:float32:sgd,course:8:float32:sgd,"
                 "wide:1:float32:sgd,wide:8:float32:sgd,multi:1:float32:sgd,"
                 "multi:8:float32:sgd,mlp:1:float32:sgd,mlp:8:float32:sgd,"
                 "mlp2:1:float32:sgd,mlp2:8:float32:sgd,course:1:float32:adam,"
                 "course:8:float32:adam,course:1:float64:sgd,course:8:float64:sgd")
N_TRAIN = 10000


def renamed_copy(base: Path, folder: Path) -> None:
    """``base/numsweep`` as ``folder/numsweep_base``, its imports of numsweep renamed."""
    target = folder / "numsweep_base"
    shutil.copytree(base / "numsweep", target, ignore=shutil.ignore_patterns("__pycache__"))
    for path in target.rglob("*.py"):
        text = path.read_text()
        text = re.sub(r"\bnumsweep\.", "numsweep_base.", text)
        text = re.sub(r"^(\s*)(import|from) numsweep\b", r"\1\2 numsweep_base", text,
                      flags=re.M)
        path.write_text(text)


def group_of(engine: Any, arrays: tuple[np.ndarray, ...], config: str, k: int, dtype: str,
             rule: str, updates: int) -> tuple[Any, list[Any]]:
    data = engine.Dataset("generated", tuple(str(i) for i in range(10)), *arrays)
    split = engine.make_split(data, N_TRAIN, 1000, np.dtype(dtype))
    base = engine.TrialSpec(**CONFIGS[config], schedule="constant", eta_max=0.01,
                            n_updates=updates, n_train=N_TRAIN, n_val=1000, batch_size=100,
                            curve_points=1, eval_train=1000, data_seed=0, dtype=dtype,
                            optimizer=rule)
    return split, [base.replace(lam=float(lam), seed=i)
                   for i, lam in enumerate(np.logspace(-5, -1, k))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", required=True, help="the other checkout")
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--updates", type=int, default=150)
    parser.add_argument("--cases", default=DEFAULT_CASES,
                        help="config:K:dtype:rule, comma-separated")
    args = parser.parse_args()
    here = Path(__file__).resolve().parents[1]
    with tempfile.TemporaryDirectory() as tmp:
        renamed_copy(Path(args.base).resolve(), Path(tmp))
        sys.path[:0] = [tmp, str(here)]
        import numsweep_base.engine as old

        import numsweep.engine as new

        rng = np.random.default_rng(0)
        arrays = (rng.integers(0, 256, (N_TRAIN + 1000, 32, 32, 3), dtype=np.uint8),
                  rng.integers(0, 10, N_TRAIN + 1000),
                  rng.integers(0, 256, (1000, 32, 32, 3), dtype=np.uint8),
                  rng.integers(0, 10, 1000))
        print(f"{args.rounds} alternating rounds in one process, {args.updates} updates, "
              f"1 BLAS thread; this checkout: {here}; base: {args.base}")
        print()
        print("| configuration | K | dtype | rule | base ms per update per trial (median) | "
              "this checkout | this / base (medians) | this / base (minimums) |")
        print("|---|---|---|---|---|---|---|---|")
        engines = {"base": old, "this": new}
        with threadpool_limits(1):
            for case in args.cases.split(","):
                config, k, dtype, rule = case.split(":")
                runs = {name: group_of(e, arrays, config, int(k), dtype, rule, args.updates)
                        for name, e in engines.items()}
                times: dict[str, list[float]] = {"base": [], "this": []}
                for r in range(args.rounds):
                    for name in (("base", "this") if r % 2 == 0 else ("this", "base")):
                        split, specs = runs[name]
                        results = engines[name].train_group(specs, split)
                        times[name].append(1e3 * sum(x.train_seconds for x in results)
                                           / args.updates / int(k))
                old_ms, new_ms = np.median(times["base"]), np.median(times["this"])
                print(f"| {config} | {k} | {dtype} | {rule} | {old_ms:.3f} | {new_ms:.3f} | "
                      f"{new_ms / old_ms:.3f} | "
                      f"{min(times['this']) / min(times['base']):.3f} |", flush=True)


if __name__ == "__main__":
    main()
