"""Learning curves: loss, cost, accuracy and learning rate against update step, per trial.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.lines import Line2D

from numsweep.analysis.figures import DASHES, LEGEND_FONTSIZE, new_axes
from numsweep.analysis.formatting import CURVE_LABELS, CURVE_QUANTITIES
from numsweep.analysis.selection import (
    ChartError,
    check_quantity,
    config_labels,
    several_sweeps,
    sweep_title,
    unique_labels,
    varying_parameters,
)

TRIAL_COLORS = tuple(f"C{i}" for i in range(10) if i != 7)
"""One colour per trial; not C7, grey, the colour of a key (training solid, validation dashed)."""


def curve_data(trials: pd.DataFrame, curves: pd.DataFrame,
               by: Sequence[str] | None = None, *, by_stage: bool = False) -> pd.DataFrame:
    """The curve points of the selected trials, each labelled by its configuration
    (the parameters that differ between them), accuracy in percent.

    ``by_stage`` labels each trial by its stage, the values of ``by`` (default: those that
    differ) and its id (``"fine: lam=0.003 (trial 14)"``), for the best trial of each stage.
    Trials of several sweeps are labelled by their sweep first (``"wide: lam=0.003"``);
    trials of several stages, one per stage, by the stage and what differs
    (``"coarse: lam=0.1, cycles=1"``), not by the stage alone."""
    if trials.empty:
        raise ChartError("no trials selected: nothing to draw")
    labels = unique_labels(trials, by)
    if len(trials) == 1 and by is None:
        labels = pd.Series([f"trial {trials['trial_id'].iloc[0]}"], index=trials.index)
    if by_stage:
        keys = list(by) if by is not None else varying_parameters(trials)
        ids = "trial " + trials["trial_id"].astype(str)
        values = (config_labels(trials, keys) + " (" + ids + ")") if keys else ids
        labels = (trials["stage"].fillna("no stage").astype(str) + ": " + values).astype(object)
        if several_sweeps(trials):
            labels = (trials["sweep"].astype(str) + ": " + labels).astype(object)
    data = curves[curves["trial_id"].isin(trials["trial_id"])].copy()
    if data.empty:
        raise ChartError("the selected trials have no curve points")
    data["label"] = data["trial_id"].map(dict(zip(trials["trial_id"], labels, strict=True)))
    data["acc"] = data["acc"] * 100
    if "schedule" in trials:
        data["schedule"] = data["trial_id"].map(dict(zip(trials["trial_id"],
                                                         trials["schedule"], strict=True)))
    order = {tid: n for n, tid in enumerate(trials["trial_id"])}
    data["order"] = data["trial_id"].map(order)
    data = data.sort_values(["order", "split", "step"], kind="stable").reset_index(drop=True)
    data.attrs["smoothed"] = "eps" in trials and bool((trials["eps"].astype(float) > 0).any())
    data.attrs["sweep"] = sweep_title(trials)
    return data


def _lr_style(points: pd.DataFrame) -> str:
    """A step schedule holds each rate until the next curve point: a staircase, not straight
    lines between the (sparse) points."""
    stepwise = "schedule" in points and bool((points["schedule"] == "step").all())
    return "steps-post" if stepwise else "default"


def draw_curves(data: pd.DataFrame, quantity: str = "loss", ax: Axes | None = None, *,
                name_sweep: bool = True) -> Axes:
    """``quantity`` (loss, cost, acc or lr) against update step: one colour per trial,
    training solid, validation dashed (lr: one line per trial). The title names the sweep
    unless ``name_sweep`` is false (the panels name it once above them)."""
    check_quantity(quantity)
    if ax is None:
        ax = new_axes()
    splits = ["train"] if quantity == "lr" else sorted(data["split"].unique(),
                                                      key=lambda s: (s != "train", s))
    styles = {s: DASHES[i % len(DASHES)] for i, s in enumerate(splits)}
    labels = list(dict.fromkeys(data["label"]))
    shared = False
    if quantity == "lr" and len(labels) > 1:
        schedules = {tuple(data[(data["label"] == label) & (data["split"] == "train")]
                           [["step", "lr"]].itertuples(index=False)) for label in labels}
        if len(schedules) == 1:  # the same schedule: one line, not several on top of another
            first = data[(data["label"] == labels[0]) & (data["split"] == "train")]
            ax.plot(first["step"], first["lr"], color="black",
                    label=f"every trial ({len(labels)})", drawstyle=_lr_style(first))
            labels, shared = [], True
    for i, label in enumerate(labels):
        color = TRIAL_COLORS[i % len(TRIAL_COLORS)]
        for split in splits:
            points = data[(data["label"] == label) & (data["split"] == split)]
            if quantity == "lr" and points.empty:
                points = data[data["label"] == label].drop_duplicates("step")
            ax.plot(points["step"], points[quantity], color=color, linestyle=styles[split],
                    label=label if split == splits[0] else None,
                    drawstyle=_lr_style(points) if quantity == "lr" else "default")
    if quantity == "lr":
        ax.set_ylim(bottom=0)  # a constant rate reads as one, not as a scale of 1e-6 steps
    ax.set_xlabel("update step")
    ax.set_ylabel(CURVE_LABELS[quantity])
    sweep = data.attrs.get("sweep", "") if name_sweep else ""
    prefix = f"{sweep}: " if sweep else ""
    title = {"lr": "learning-rate schedule"}.get(quantity, f"{CURVE_LABELS[quantity]}")
    ax.set_title(prefix + title + ("" if quantity == "lr" else " vs update step"))
    if quantity in ("loss", "cost") and data.attrs.get("smoothed"):
        ax.set_title(f"{prefix}{quantity} vs update step (eps > 0: against smoothed targets)",
                     fontsize=10)
    handles, names = ax.get_legend_handles_labels()
    if quantity != "lr" and len(splits) > 1:
        handles += [Line2D([], [], color="black", linestyle=styles[s]) for s in splits]
        names += [{"train": "training", "val": "validation"}.get(s, s) for s in splits]
    if len(handles) > 1 or shared:
        ax.legend(handles, names, fontsize=LEGEND_FONTSIZE)
    ax.grid(alpha=0.3)
    return ax


def draw_curve_panels(data: pd.DataFrame,
                      quantities: Sequence[str] = CURVE_QUANTITIES) -> list[Axes]:
    """One panel per quantity, side by side in rows of two, the legend in the first;
    returns the Axes in order."""
    for q in quantities:
        check_quantity(q)
    cols = 1 if len(quantities) == 1 else 2
    rows = math.ceil(len(quantities) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(6.0 * cols, 4.0 * rows), layout="constrained",
                             squeeze=False)
    flat = list(axes.ravel())
    for ax, q in zip(flat, quantities, strict=False):
        draw_curves(data, q, ax, name_sweep=False)
    sweep = data.attrs.get("sweep", "")
    if sweep:
        fig.suptitle(f"sweep {sweep}", fontsize=12)
    for ax in flat[len(quantities):]:
        fig.delaxes(ax)
    # one legend for all panels, below them: long labels inside a panel would cover its
    # curves and, beside it, push the panels apart
    first = flat[0].get_legend()
    if first is not None and len(quantities) > 1:
        handles, names = first.legend_handles, [t.get_text() for t in first.get_texts()]
        for ax in flat[:len(quantities)]:
            legend = ax.get_legend()
            if legend is not None and {t.get_text() for t in legend.get_texts()} <= set(names):
                legend.remove()
        entry = 0.9 + 0.08 * max(len(n) for n in names)  # inches at fontsize 10
        fig.legend(handles, names, loc="outside lower center", fontsize=LEGEND_FONTSIZE,
                   ncols=max(1, min(len(names), int(6.0 * cols / entry))))
    return flat[:len(quantities)]
