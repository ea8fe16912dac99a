"""Charts. Each has a ``*_data`` function that collects what to draw into a DataFrame and a
``draw_*`` function that draws it and returns the matplotlib Axes; nothing shows a window."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.axes import Axes

from numsweep.analysis.queries import META_COLUMNS

METRIC_LABELS = {
    "val_acc": "validation accuracy (%)",
    "test_acc": "test accuracy (%)",
    "train_acc": "training accuracy (%)",
    "train_seconds": "training time (s)",
    "eval_seconds": "evaluation time (s)",
    "updates": "updates",
    "param_count": "parameters",
}
PERCENT_METRICS = {"val_acc", "test_acc", "train_acc"}
RESULT_COLUMNS = set(METRIC_LABELS)


class ChartError(ValueError):
    """What was asked cannot be drawn (unknown metric, nothing selected)."""


def varying_parameters(trials: pd.DataFrame) -> list[str]:
    """Parameters whose value differs between the selected trials (they label configurations)."""
    params = [c for c in trials.columns if c not in META_COLUMNS and c not in RESULT_COLUMNS]
    return [c for c in params if trials[c].astype(str).nunique() > 1]


def format_value(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    if isinstance(value, tuple):
        return "[" + ",".join(str(v) for v in value) + "]"
    return str(value)


def config_labels(trials: pd.DataFrame, keys: Sequence[str] | None = None) -> pd.Series:
    """Readable configuration labels such as ``"f=4, nf=10, nh=50"``."""
    keys = list(keys) if keys is not None else varying_parameters(trials)
    if not keys:
        return pd.Series([f"trial {n}" for n in trials["number"]], index=trials.index)
    return trials.apply(lambda row: ", ".join(f"{k}={format_value(row[k])}" for k in keys),
                        axis=1)


def check_metric(trials: pd.DataFrame, metric: str) -> None:
    if trials.empty:
        raise ChartError("no trials selected: nothing to draw")
    if metric not in trials.columns:
        known = sorted(c for c in trials.columns if c in RESULT_COLUMNS)
        raise ChartError(f"unknown metric {metric!r} (metrics: {', '.join(known)})")


def bar_data(trials: pd.DataFrame, metric: str,
             by: Sequence[str] | None = None) -> pd.DataFrame:
    """Mean, standard deviation and count of ``metric`` per configuration, best first.

    Configurations are the distinct values of ``by`` (default: the varying parameters), so
    seed replicates of one configuration form one bar with an error bar.
    """
    check_metric(trials, metric)
    done = trials[trials["state"] == "COMPLETE"]
    if done.empty:
        raise ChartError("no complete trials selected: nothing to draw")
    labels = config_labels(done, by)
    values = done[metric].astype(float) * (100 if metric in PERCENT_METRICS else 1)
    grouped = values.groupby(labels, sort=False).agg(["mean", "std", "count"])
    grouped.index.name = "config"
    return grouped.reset_index().sort_values("mean", ascending=False, ignore_index=True)


def draw_bars(data: pd.DataFrame, metric: str, ax: Axes | None = None) -> Axes:
    """One bar per configuration with its value written on it; error bars where n > 1."""
    if ax is None:
        _, ax = plt.subplots(figsize=(max(6.0, 0.6 * len(data) + 2), 4.5),
                             layout="constrained")
    errors = data["std"].fillna(0).to_numpy()
    bars = ax.bar(range(len(data)), data["mean"], yerr=errors if errors.any() else None,
                  capsize=4, color="tab:blue")
    fmt = "{:.1f}" if metric in PERCENT_METRICS else "{:.3g}"
    ax.bar_label(bars, labels=[fmt.format(v) for v in data["mean"]], padding=2, fontsize=8)
    ax.set_xticks(range(len(data)), data["config"], rotation=30, ha="right", fontsize=8)
    ax.set_ylabel(METRIC_LABELS.get(metric, metric))
    ax.set_title(f"{METRIC_LABELS.get(metric, metric)} per configuration")
    ax.margins(y=0.12)
    return ax


def save(ax: Axes, path: str | Path) -> Path:
    """Write the figure of ``ax``; the format follows the extension (png, svg, pdf)."""
    path = Path(path)
    suffix = path.suffix.lower().lstrip(".")
    if suffix not in ("png", "svg", "pdf"):
        raise ChartError(f"{path}: unsupported chart format (use .png, .svg or .pdf)")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig = ax.figure
    fig.savefig(path, dpi=150)
    plt.close(fig)
    return path
