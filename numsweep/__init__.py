"""numsweep: hyperparameter sweeps for small NumPy image classifiers, with a result database.

Packages: ``engine`` (the NumPy training engine), ``sweeps`` (specs, samplers, the runner),
``storage`` (the SQLAlchemy result database), ``analysis`` (DataFrames, charts, reports);
``cli`` wires them into the ``numsweep`` command (``__main__`` is its entry point);
``export`` writes trials to MLflow and TensorBoard; ``errors`` holds
:class:`NumsweepError`; ``shield`` holds Ctrl-C back while a database write runs;
``terminal`` fits tables to a terminal's width (shared by the trials and progress tables).

The notebook API (module ``api``), importable from here::

    import numsweep
    result = numsweep.sweep("examples/lambda-coarse.toml", db="runs.db", data="data.npz")
    trials = numsweep.load_trials("runs.db", "lambda-coarse")
    curves = numsweep.load_curves("runs.db", sweep="lambda-coarse")
    numsweep.charts.draw_lambda(numsweep.charts.lambda_data(trials), ax=ax)
    kept = numsweep.load_weights("model.npz")   # a kept network: .spec, .params, .info
    both = numsweep.load_trials("runs.db", ["lambda-coarse", "lambda-wide"])
    numsweep.export_tensorboard("runs.db", "tb-runs", sweep="lambda-coarse")

Names are imported on first use, so ``import numsweep`` stays light.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "sweep": "numsweep.api",
    "extend": "numsweep.api",
    "as_spec": "numsweep.api",
    "SweepResult": "numsweep.api",
    "load_trials": "numsweep.analysis.queries",
    "load_curves": "numsweep.analysis.queries",
    "load_stages": "numsweep.analysis.queries",
    "load_slot_groups": "numsweep.analysis.queries",
    "load_lineage": "numsweep.analysis.queries",
    "find_trials": "numsweep.analysis.queries",
    "parse_where": "numsweep.analysis.queries",
    "build_report": "numsweep.analysis.report",
    "NumsweepError": "numsweep.errors",
    "Storage": "numsweep.storage",
    "TrialSpec": "numsweep.engine",
    "load_spec": "numsweep.sweeps",
    "load_weights": "numsweep.engine.checkpoint",
    "evaluate_trial": "numsweep.sweeps.kept",
    "export_weights": "numsweep.sweeps.kept",
    "delete_sweep": "numsweep.sweeps.deletion",
    "export_mlflow": "numsweep.export",
    "export_tensorboard": "numsweep.export",
}
_MODULES = {"charts": "numsweep.analysis.charts", "pareto": "numsweep.pareto"}

__all__ = sorted([*_LAZY, *_MODULES, "__version__"])


def __getattr__(name: str) -> Any:
    if name in _MODULES:
        return importlib.import_module(_MODULES[name])
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'numsweep' has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
