"""Accuracy against training time for every trial, with the Pareto front; the front of a
stage's own objectives with the point its ``best`` stage retrains.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import pairwise
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.transforms import Bbox

from numsweep.analysis.figures import LEGEND_FONTSIZE, new_axes
from numsweep.analysis.formatting import metric_label
from numsweep.analysis.selection import (
    ChartError,
    check_metric,
    complete_trials,
    config_labels,
    sweep_title,
    time_measurements,
    value_scale,
)
from numsweep.pareto import Objective, accuracy_index, choose_point, front_mask


def pareto_data(trials: pd.DataFrame, x: str = "train_seconds", y: str = "test_acc",
                by: Sequence[str] | None = None, *, x_maximize: bool = False,
                y_maximize: bool = True, chosen: int | None = None) -> pd.DataFrame:
    """``x`` (lower is better unless ``x_maximize``) and ``y`` (higher is better unless not
    ``y_maximize``; percent for accuracies) per complete trial; ``on_front`` marks the
    trials no other trial beats in both, ``chosen`` the trial of that id.

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
    data = data.sort_values([x, y], ascending=[not x_maximize, y_maximize is False],
                            ignore_index=True)
    data["on_front"] = front_mask(data[[x, y]].to_numpy(), [x_maximize, y_maximize])
    data["chosen"] = data["trial_id"] == chosen if chosen is not None else False
    data.attrs.update(x=x, y=y, steps=not x_maximize and y_maximize, sweep=sweep_title(done))
    return data


def spec_objectives(spec: Mapping[str, Any], stage: str) -> list[Objective]:
    """A stage's objectives as its sweep's stored spec names them (default val_acc:max)."""
    raw = next((s for s in spec.get("stages", []) if s.get("name") == stage), {})
    texts = raw.get("objectives", spec.get("objectives", ["val_acc:max"]))
    return [Objective.from_text(t) for t in texts]


def spec_pick(spec: Mapping[str, Any], stage: str) -> str:
    """How the point retrained from ``stage``'s front is chosen: the ``pick`` of the first
    later ``best`` stage that draws from it (``accuracy`` when there is none)."""
    stages = list(spec.get("stages", []))
    names = [s.get("name") for s in stages]
    if stage not in names:
        return "accuracy"
    for later in stages[names.index(stage) + 1:]:
        if later.get("sampler") == "best" and stage in (later.get("from") or [stage]):
            return str(later.get("pick", "accuracy"))
    return "accuracy"


def objective_front_data(trials: pd.DataFrame, objectives: Sequence[Objective],
                         pick: str = "accuracy", by: Sequence[str] | None = None
                         ) -> pd.DataFrame:
    """The front of two or more objectives over the complete ``trials`` (a stage's): the
    accuracy-like objective (:func:`numsweep.pareto.accuracy_index`) against the first
    other, with the point ``pick`` chooses over every objective marked ``chosen``."""
    if len(objectives) < 2:
        raise ChartError("a front needs two objectives or more")
    columns = [o.column for o in objectives]
    for c in columns:
        check_metric(trials, c)
    done = complete_trials(trials, *columns)
    point = choose_point(done[columns].astype(float).to_numpy(), objectives, pick)
    chosen = int(done["trial_id"].iloc[point])
    y_at = accuracy_index(objectives)
    x_at = next(i for i in range(len(objectives)) if i != y_at)
    data = pareto_data(done, columns[x_at], columns[y_at], by,
                       x_maximize=objectives[x_at].maximize,
                       y_maximize=objectives[y_at].maximize, chosen=chosen)
    data.attrs.update(pick=pick, objectives=[o.text for o in objectives])
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
    ax.plot(front[x], front[y], color="tab:red", marker="o",
            drawstyle="steps-post" if data.attrs.get("steps", True) else "default",
            label=f"Pareto front ({len(front)})")
    if "chosen" in data and data["chosen"].any():
        point = data[data["chosen"]].iloc[0]
        pick = data.attrs.get("pick")
        ax.scatter([point[x]], [point[y]], marker="*", s=220, color="gold", edgecolor="black",
                   zorder=5, label=f"chosen{f' ({pick})' if pick else ''}: trial "
                                   f"{int(point['trial_id'])}")
    if data[x].min() > 0 and data[x].max() / data[x].min() > 50:
        ax.set_xscale("log")
    shared = "shared_by" in data and bool((data["shared_by"] > 1).any())
    ax.set_xlabel(metric_label(x) + (" (log scale)" if ax.get_xscale() == "log" else "")
                  + ("\n(a fused group's trials share its time evenly)" if shared else ""))
    ax.set_ylabel(metric_label(y))
    sweep = data.attrs.get("sweep", "")
    ax.set_title((f"{sweep}: " if sweep else "") + f"{metric_label(y)} against {metric_label(x)}")
    ax.margins(0.08)
    ax.grid(alpha=0.3)
    if len(front) <= 12:
        _label_points(ax, [(row[x], row[y], row["label"]) for _, row in front.iterrows()],
                      list(zip(front[x], front[y], strict=True)))
    ax.legend(fontsize=LEGEND_FONTSIZE, loc="best")
    return ax


LABEL_OFFSETS = ((5, -12), (5, 6), (-5, -12), (-5, 6), (5, -24), (5, 18), (-5, -24),
                 (-5, 18), (5, -36), (5, 30))
"""Where a point's label may go (points right/up of the point), nearest first."""


def _label_points(ax: Axes, points: list[tuple[float, float, str]],
                  steps: Sequence[tuple[float, float]] = ()) -> None:
    """Write each label beside its point at the first offset where it stays inside the axes
    and overlaps no label already written nor the step line through ``steps`` (with no
    renderer to measure text, the first offset)."""
    try:
        renderer = ax.figure.canvas.get_renderer()  # type: ignore[attr-defined]
        ax.figure.draw_without_rendering()  # the final layout and limits, to measure in
    except AttributeError:
        renderer = None
    placed: list[Bbox] = _step_boxes(ax, steps) if renderer is not None else []
    inside = ax.get_window_extent(renderer) if renderer is not None else None
    for px, py, text in points:
        for dx, dy in LABEL_OFFSETS if renderer is not None else LABEL_OFFSETS[:1]:
            note = ax.annotate(text, (px, py), textcoords="offset points", xytext=(dx, dy),
                               fontsize=9, ha="left" if dx > 0 else "right")
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
                               xytext=LABEL_OFFSETS[0], fontsize=9)
            note.set_in_layout(False)


def _step_boxes(ax: Axes, steps: Sequence[tuple[float, float]]) -> list[Bbox]:
    """The segments of a steps-post line through ``steps`` as boxes in display pixels (two
    pixels wide), for labels to keep off."""
    if len(steps) < 2:
        return []
    pts = ax.transData.transform(np.asarray(steps, dtype=float))
    boxes = []
    for (x0, y0), (x1, y1) in pairwise(pts):
        boxes.append(Bbox([[min(x0, x1), y0 - 2], [max(x0, x1), y0 + 2]]))   # along
        boxes.append(Bbox([[x1 - 2, min(y0, y1)], [x1 + 2, max(y0, y1)]]))   # up
    return boxes
