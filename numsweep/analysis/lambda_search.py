"""The lambda search chart: a result against lam on a log axis, one marker per stage.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.axes import Axes

from numsweep.analysis.figures import LEGEND_FONTSIZE, MARKERS, new_axes
from numsweep.analysis.formatting import LOWER_IS_BETTER, PERCENT_METRICS, count, metric_label
from numsweep.analysis.selection import (
    ChartError,
    check_metric,
    chosen_by_validation,
    complete_trials,
    parameter_columns,
    several_sweeps,
    sweep_title,
    value_scale,
)


def lambda_data(trials: pd.DataFrame, metric: str = "val_acc",
                param: str = "lam") -> pd.DataFrame:
    """``param`` and ``metric`` (percent for accuracies) of each complete trial with its stage;
    ``chosen`` marks the best trial by ``metric``, or by the validation accuracy when
    ``metric`` is the test or training accuracy (``attrs["chosen_by"]``). Trials of several
    sweeps have the stage named ``"sweep: stage"`` (one marker each). Values <= 0 cannot go
    on a log axis and are left out (``attrs["dropped"]`` counts them)."""
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
    chooser = chosen_by_validation(positive, metric)
    data["chosen"] = False
    if chooser is not None:
        rank = positive[chooser].astype(float).to_numpy()
        if np.isfinite(rank).any():
            best = np.nanargmin(rank) if chooser in LOWER_IS_BETTER else np.nanargmax(rank)
            data.loc[int(best), "chosen"] = True
    data.attrs.update(param=param, metric=metric, dropped=len(done) - len(positive),
                      chosen_by=chooser, sweep=sweep_title(positive))
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
    if data["chosen"].any():
        _mark_choice(ax, data, param, metric, data.attrs.get("chosen_by") or metric)
    ax.set_xscale("log")
    ax.set_xlabel(f"{param} (log scale)")
    ax.set_ylabel(metric_label(metric))
    dropped = data.attrs.get("dropped", 0)
    sweep = data.attrs.get("sweep", "")
    ax.set_title((f"{sweep}: " if sweep else "") + f"{metric_label(metric)} against {param}"
                 + (f" ({count(dropped, 'trial')} with {param} ≤ 0 not shown)" if dropped else ""))
    ax.legend(fontsize=LEGEND_FONTSIZE, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.grid(alpha=0.3, which="both")
    ax.margins(y=0.15)
    return ax


def _mark_choice(ax: Axes, data: pd.DataFrame, param: str, metric: str, chosen_by: str) -> None:
    """A gold star behind the chosen trial's own marker (which stays visible: the final
    stage's retraining often is the chosen trial) and its value written on the side of the
    axes with room, so that the text stays inside them and off the legend beside them."""
    chosen = data[data["chosen"]].iloc[0]
    by = "" if chosen_by == metric else f" by {metric_label(chosen_by).replace(' (%)', '')}"
    ax.plot(chosen[param], chosen[metric], marker="*", markersize=20, color="gold",
            markeredgecolor="black", linestyle="none", zorder=1.9,  # lines are at 2
            label=f"chosen{by + ':' if by else ''} {param}={chosen[param]:.3g}")
    ax.axvline(chosen[param], color="gray", linestyle=":", linewidth=1, zorder=1)
    logs = np.log10(data[param].to_numpy(dtype=float))
    span = float(logs.max() - logs.min()) or 1.0
    right = (np.log10(chosen[param]) - logs.min()) / span > 0.5
    values = data[metric].to_numpy(dtype=float)
    vspan = float(values.max() - values.min()) or 1.0
    low = (chosen[metric] - values.min()) / vspan < 0.3
    fmt = "{:.1f}%" if metric in PERCENT_METRICS else "{:.3g}"
    ax.annotate(f"{param}={chosen[param]:.3g}\n{fmt.format(chosen[metric])}",
                (chosen[param], chosen[metric]), textcoords="offset points",
                xytext=(-12 if right else 12, 14 if low else -14),
                ha="right" if right else "left", va="bottom" if low else "top", fontsize=9)
