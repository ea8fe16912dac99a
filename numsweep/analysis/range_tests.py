"""Range-test charts: each update's loss against the learning rate or the batch size.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.lines import Line2D

from numsweep.analysis.figures import LEGEND_FONTSIZE, new_axes
from numsweep.analysis.formatting import CURVE_LABELS
from numsweep.analysis.selection import ChartError, check_quantity, sweep_title, unique_labels

RANGE_SPLITS = {"lr": "lr_range", "batch": "batch_range"}
RANGE_SMOOTHING = 0.98


def _smooth(values: np.ndarray, beta: float = RANGE_SMOOTHING) -> np.ndarray:
    """Bias-corrected exponential moving average (as the range test itself smooths)."""
    out = np.empty(len(values))
    avg = 0.0
    for i, v in enumerate(values):
        avg = beta * avg + (1 - beta) * v
        out[i] = avg / (1 - beta ** (i + 1))
    return out


def range_test_data(trials: pd.DataFrame, curves: pd.DataFrame, quantity: str = "loss",
                    mode: str | None = None, by: Sequence[str] | None = None) -> pd.DataFrame:
    """Range-test curves: ``quantity`` of every update against the learning rate (``lr`` mode,
    split ``lr_range``) or the batch size (``batch`` mode, split ``batch_range``, where the
    step holds the batch size), with its smoothed value; one line per trial labelled by what
    differs between the trials. ``mode`` None takes the one the trials have.

    ``attrs["marks"]`` holds per label the stored ``best_<mode>`` and ``steepest_<mode>``
    (lowest smoothed loss and steepest descent) when the trials have them.
    """
    check_quantity(quantity)
    if quantity == "lr":
        raise ChartError("a range test draws loss, cost or acc against lr or batch size")
    if trials.empty:
        raise ChartError("no trials selected: nothing to draw")
    if mode is not None and mode not in RANGE_SPLITS:
        raise ChartError(f"unknown range-test mode {mode!r} (modes: lr, batch)")
    points = curves[curves["trial_id"].isin(trials["trial_id"])]
    found = [m for m, split in RANGE_SPLITS.items() if (points["split"] == split).any()]
    if mode is None:
        if len(found) > 1:
            raise ChartError("the selection holds both lr and batch range tests: "
                             "choose mode lr or batch")
        if not found:
            raise ChartError("the selected trials have no range-test curves "
                             "(run `numsweep range-test lr` or `numsweep range-test batch`)")
        mode = found[0]
    points = points[points["split"] == RANGE_SPLITS[mode]]
    x = points["lr"] if mode == "lr" else points["step"].astype(float)
    points = points.assign(x=x)
    points = points[np.isfinite(points["x"]) & (points["x"] > 0)]
    if points.empty:
        raise ChartError(f"the selected trials have no {mode} range-test curves")
    chosen = trials[trials["trial_id"].isin(points["trial_id"])]
    labels = dict(zip(chosen["trial_id"], unique_labels(chosen, by), strict=True))
    if len(chosen) == 1 and by is None:
        labels = {chosen["trial_id"].iloc[0]: f"trial {chosen['trial_id'].iloc[0]}"}
    frames = []
    for trial_id, line in points.groupby("trial_id", sort=False):
        value = line[quantity].to_numpy(dtype=float) * (100 if quantity == "acc" else 1)
        finite = np.isfinite(value)
        frames.append(pd.DataFrame({
            "trial_id": trial_id, "label": labels[trial_id], "x": line["x"].to_numpy()[finite],
            "value": value[finite], "smoothed": _smooth(value[finite])}))
    data = pd.concat(frames, ignore_index=True)
    marks = {}
    for _, row in chosen.iterrows():
        found_marks = {k: float(row[f"{k}_{mode}"]) for k in ("best", "steepest")
                       if f"{k}_{mode}" in chosen and np.isfinite(float(row[f"{k}_{mode}"]))}
        marks[labels[row["trial_id"]]] = found_marks
    data.attrs.update(quantity=quantity, mode=mode, marks=marks, sweep=sweep_title(trials))
    return data


def draw_range_test(data: pd.DataFrame, ax: Axes | None = None) -> Axes:
    """Each update's ``quantity`` (faint) and its smoothed value against the learning rate or
    batch size on a log axis, one colour per trial; the stored suggestions marked (circle:
    lowest smoothed loss, triangle: steepest descent). A loss axis is cut at twice the highest
    starting value so the blow-up at the end does not flatten the rest."""
    quantity, mode = data.attrs.get("quantity", "loss"), data.attrs.get("mode", "lr")
    marks = data.attrs.get("marks", {})
    unit = "learning rate" if mode == "lr" else "batch size"
    title_unit = "learning-rate" if mode == "lr" else "batch-size"
    if ax is None:
        ax = new_axes()
    starts = []
    for i, (label, line) in enumerate(data.groupby("label", sort=False)):
        color = f"C{i % 10}"
        ax.plot(line["x"], line["value"], color=color, alpha=0.25, linewidth=0.8)
        ax.plot(line["x"], line["smoothed"], color=color, label=f"{label} (smoothed)")
        xs = line["x"].to_numpy()
        for kind, marker in (("best", "o"), ("steepest", "v")):
            if kind in marks.get(label, {}):
                at = int(np.argmin(np.abs(np.log(xs) - math.log(marks[label][kind]))))
                ax.plot(xs[at], line["smoothed"].iloc[at], marker=marker, markersize=8,
                        color=color, markeredgecolor="black", linestyle="none")
        starts.append(float(line["smoothed"].iloc[0]))
    if quantity != "acc" and starts:
        low = float(data["smoothed"].min())
        top = 2.0 * max(starts)
        if float(data["value"].max()) > top:
            ax.set_ylim(max(0.0, low - 0.05 * (top - low)), top)
    handles, names = ax.get_legend_handles_labels()
    for kind, marker, name in (("best", "o", f"lowest smoothed {quantity}"),
                               ("steepest", "v", "steepest descent")):
        if any(kind in m for m in marks.values()):
            handles.append(Line2D([], [], marker=marker, color="gray", markeredgecolor="black",
                                  linestyle="none"))
            names.append(name)
    ax.legend(handles, names, fontsize=LEGEND_FONTSIZE)
    ax.set_xscale("log")
    ax.set_xlabel(f"{unit} (log scale)")
    ax.set_ylabel(f"mini-batch {CURVE_LABELS[quantity]}")
    sweep = data.attrs.get("sweep", "")
    ax.set_title((f"{sweep}: " if sweep else "")
                 + f"{title_unit} range test: {quantity} of each update")
    ax.grid(alpha=0.3, which="both")
    return ax
