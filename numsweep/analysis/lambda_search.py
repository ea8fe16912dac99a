"""The lambda search chart: a result against lam on a log axis, one marker per stage.
"""

from __future__ import annotations

import pandas as pd
from matplotlib.axes import Axes

from numsweep.analysis.figures import MARKERS, new_axes
from numsweep.analysis.formatting import LOWER_IS_BETTER, PERCENT_METRICS, count, metric_label
from numsweep.analysis.selection import (
    ChartError,
    check_metric,
    complete_trials,
    parameter_columns,
    several_sweeps,
    value_scale,
)


def lambda_data(trials: pd.DataFrame, metric: str = "val_acc",
                param: str = "lam") -> pd.DataFrame:
    """``param`` and ``metric`` (percent for accuracies) of each complete trial with its stage;
    ``chosen`` marks the best trial. Trials of several sweeps have the stage named
    ``"sweep: stage"`` (one marker each). Values <= 0 cannot go on a log axis and are left out
    (``attrs["dropped"]`` counts them)."""
    check_metric(trials, metric)
    if param not in trials.columns:
        raise ChartError(f"unknown parameter {param!r} "
                         f"(parameters: {', '.join(parameter_columns(trials))})")
    done = complete_trials(trials, metric)
    x = pd.to_numeric(done[param], errors="coerce")
    positive = done[x > 0]
    if positive.empty:
        raise ChartError(f"no trial has a positive {param}: nothing to draw on a log axis")
    stage = positive["stage"].fillna("-").astype(str)
    if several_sweeps(done):  # named as in the other charts, even where one is left out
        stage = positive["sweep"].astype(str) + ": " + stage
    data = pd.DataFrame({
        "trial_id": positive["trial_id"], "stage": stage,
        param: x[x > 0].astype(float), metric: positive[metric].astype(float) * value_scale(metric),
    }).reset_index(drop=True)
    best = data[metric].idxmin() if metric in LOWER_IS_BETTER else data[metric].idxmax()
    data["chosen"] = data.index == best
    data.attrs.update(param=param, metric=metric, dropped=len(done) - len(positive))
    return data


def draw_lambda(data: pd.DataFrame, ax: Axes | None = None) -> Axes:
    """The metric against ``param`` on a log axis, one marker per stage, the chosen value
    starred and written out."""
    param, metric = data.attrs.get("param", "lam"), data.attrs.get("metric", "val_acc")
    if ax is None:
        ax = new_axes()
    for i, stage in enumerate(dict.fromkeys(data["stage"])):
        points = data[data["stage"] == stage].sort_values(param)
        many = len(points) > 50
        grid = not many and points[param].is_unique  # a grid: join its points
        ax.plot(points[param], points[metric], marker=MARKERS[i % len(MARKERS)],
                markersize=3 if many else 7, linestyle="-" if grid and i == 0 else "none",
                linewidth=0.8, alpha=0.4 if many else 0.85, color=f"C{i}",
                label=f"{stage} ({count(len(points), 'trial')})")
    chosen = data[data["chosen"]].iloc[0]
    ax.plot(chosen[param], chosen[metric], marker="*", markersize=18, color="gold",
            markeredgecolor="black", linestyle="none",
            label=f"chosen {param}={chosen[param]:.3g}")
    ax.axvline(chosen[param], color="gray", linestyle=":", linewidth=1)
    fmt = "{:.1f}%" if metric in PERCENT_METRICS else "{:.3g}"
    ax.annotate(f"{param}={chosen[param]:.3g}\n{fmt.format(chosen[metric])}",
                (chosen[param], chosen[metric]), textcoords="offset points", xytext=(10, -28),
                fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel(f"{param} (log scale)")
    ax.set_ylabel(metric_label(metric))
    dropped = data.attrs.get("dropped", 0)
    ax.set_title(f"{metric_label(metric)} against {param}"
                 + (f" ({count(dropped, 'trial')} with {param} ≤ 0 not shown)" if dropped else ""))
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # off the points
    ax.grid(alpha=0.3, which="both")
    ax.margins(y=0.15)
    return ax
