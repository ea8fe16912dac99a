"""How values, metrics and quantities are written: table cells, labels, axis names.

Shared by the charts, the report and the CLI's tables; accuracies are stored as fractions
and shown in percent.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

METRIC_LABELS = {
    "val_acc": "validation accuracy (%)",
    "test_acc": "test accuracy (%)",
    "train_acc": "training accuracy (%)",
    "train_seconds": "training time (s)",
    "cost_seconds": "training cost per trial (s)",
    "val_loss": "validation loss",
    "eval_seconds": "evaluation time (s)",
    "updates": "updates",
    "param_count": "parameters",
    "epochs": "epochs",
    "best_lr": "learning rate at the lowest loss",
    "steepest_lr": "learning rate of steepest descent",
    "best_batch": "batch size at the lowest loss",
    "steepest_batch": "batch size of steepest descent",
}
PERCENT_METRICS = {"val_acc", "test_acc", "train_acc"}
LOWER_IS_BETTER = {"train_seconds", "cost_seconds", "val_loss", "eval_seconds", "updates",
                   "param_count", "epochs"}
RESULT_COLUMNS = set(METRIC_LABELS)
CURVE_LABELS = {
    "loss": "loss (cross-entropy)",
    "cost": "cost (loss + lam·Σ‖W‖²)",
    "acc": "accuracy (%)",
    "lr": "learning rate",
}
CURVE_QUANTITIES = tuple(CURVE_LABELS)


def metric_label(metric: str) -> str:
    return METRIC_LABELS.get(metric, metric)


def format_value(value: object) -> str:
    """A value in a label: ``none`` for a parameter left unset or not applicable."""
    if value is None or value is pd.NA:
        return "none"
    if isinstance(value, float | np.floating):
        return "none" if math.isnan(value) else f"{value:.4g}"  # NaN: a parameter left unset
    if isinstance(value, tuple | list):
        return "[" + ",".join(str(v) for v in value) + "]"
    return str(value)


def format_cell(value: object) -> str:
    """A table cell: 4 significant digits, whole numbers (counts such as updates) in full."""
    if value is None or value is pd.NA:
        return ""
    if isinstance(value, float | np.floating):
        if math.isnan(value):
            return ""
        return str(int(value)) if value.is_integer() and abs(value) < 1e15 else f"{value:.4g}"
    if isinstance(value, tuple | list):
        return format_value(tuple(value))
    return str(value)


def count(n: int, noun: str) -> str:
    """``1 trial``, ``3 trials``."""
    return f"{n} {noun}" + ("" if n == 1 else "s")
