"""``optuna``, imported without the ``TqdmWarning: IProgress not found`` that its import of
``tqdm.auto`` prints in Jupyter without ipywidgets: numsweep draws no tqdm bar (its notebook
progress is plain HTML). Import Optuna from here first (``numsweep.sweeps`` does); the
warning filter is restored afterwards."""

from __future__ import annotations

import warnings

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message="IProgress not found")
    import optuna

__all__ = ["optuna"]
