"""Accuracy against training time for every trial, with the Pareto front.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.transforms import Bbox

from numsweep.analysis.figures import new_axes
from numsweep.analysis.formatting import metric_label
from numsweep.analysis.selection import (
    check_metric,
    complete_trials,
    config_labels,
    time_measurements,
    value_scale,
)


def pareto_data(trials: pd.DataFrame, x: str = "train_seconds", y: str = "test_acc",
                by: Sequence[str] | None = None) -> pd.DataFrame:
    """``x`` (lower is better) and ``y`` (higher is better, percent for accuracies) per
    complete trial; ``on_front`` marks the trials no other trial beats in both.

    A time the trials of a fused group share is one measurement per group: each of its
    trials gets the group's mean share, so they stand on one vertical line and only the
    best of them can be on the front; ``shared_by`` is the trial's group size (1 alone)."""
    check_metric(trials, x)
    check_metric(trials, y)
    done = complete_trials(trials, x, y)
    xs = done[x].astype(float)
    shared_by = pd.Series(1, index=done.index)
    measured = time_measurements(done, x)
    if measured is not None:
        xs = xs.groupby(measured).transform("mean")
        shared_by = pd.to_numeric(done["group_size"], errors="coerce").fillna(1).astype(int)
    labels = config_labels(done, by)
    labels = labels.where(shared_by <= 1,
                          labels + " (group of " + shared_by.astype(str) + ")")
    data = pd.DataFrame({"trial_id": done["trial_id"], "label": labels, x: xs,
                         y: done[y].astype(float) * value_scale(y), "shared_by": shared_by})
    data = data.sort_values([x, y], ascending=[True, False], ignore_index=True)
    best_so_far = data[y].cummax().shift(fill_value=-np.inf)
    data["on_front"] = data[y] > best_so_far
    data.attrs.update(x=x, y=y)
    return data


def draw_pareto(data: pd.DataFrame, ax: Axes | None = None) -> Axes:
    """Every trial as a dot, the Pareto front as a red step line with its trials named."""
    x, y = data.attrs.get("x", "train_seconds"), data.attrs.get("y", "test_acc")
    if ax is None:
        ax = new_axes()
    rest = data[~data["on_front"]]
    front = data[data["on_front"]]
    ax.scatter(rest[x], rest[y], color="tab:blue", alpha=0.5, s=18 if len(data) <= 500 else 5,
               label=f"trials ({len(data)})")
    ax.plot(front[x], front[y], color="tab:red", marker="o", drawstyle="steps-post",
            label=f"Pareto front ({len(front)})")
    if data[x].min() > 0 and data[x].max() / data[x].min() > 50:
        ax.set_xscale("log")
    shared = "shared_by" in data and bool((data["shared_by"] > 1).any())
    ax.set_xlabel(metric_label(x) + (" (log scale)" if ax.get_xscale() == "log" else "")
                  + ("\n(a fused group's trials share its time evenly)" if shared else ""))
    ax.set_ylabel(metric_label(y))
    ax.set_title(f"{metric_label(y)} against {metric_label(x)}")
    ax.margins(0.08)
    ax.grid(alpha=0.3)
    if len(front) <= 12:
        _label_points(ax, [(row[x], row[y], row["label"]) for _, row in front.iterrows()])
    ax.legend(fontsize=8, loc="best")
    return ax


LABEL_OFFSETS = ((5, -12), (5, 6), (-5, -12), (-5, 6), (5, -24), (5, 18), (-5, -24),
                 (-5, 18), (5, -36), (5, 30))
"""Where a point's label may go (points right/up of the point), nearest first."""


def _label_points(ax: Axes, points: list[tuple[float, float, str]]) -> None:
    """Write each label beside its point at the first offset where it stays inside the axes
    and overlaps no label already written (with no renderer to measure text, the first
    offset)."""
    try:
        renderer = ax.figure.canvas.get_renderer()  # type: ignore[attr-defined]
        ax.figure.draw_without_rendering()  # the final layout and limits, to measure in
    except AttributeError:
        renderer = None
    placed: list[Bbox] = []
    inside = ax.get_window_extent(renderer) if renderer is not None else None
    for px, py, text in points:
        for dx, dy in LABEL_OFFSETS if renderer is not None else LABEL_OFFSETS[:1]:
            note = ax.annotate(text, (px, py), textcoords="offset points", xytext=(dx, dy),
                               fontsize=7, ha="left" if dx > 0 else "right")
            note.set_in_layout(False)  # placed in the final layout: must not change it
            if renderer is None:
                break
            box = note.get_window_extent(renderer)
            fits = (inside is not None and box.x0 >= inside.x0 and box.x1 <= inside.x1
                    and box.y0 >= inside.y0 and box.y1 <= inside.y1)
            if fits and not any(box.overlaps(other) for other in placed):
                placed.append(box)
                break
            note.remove()
        else:
            note = ax.annotate(text, (px, py), textcoords="offset points",
                               xytext=LABEL_OFFSETS[0], fontsize=7)
            note.set_in_layout(False)
