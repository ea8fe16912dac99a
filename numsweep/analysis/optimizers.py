"""The optimizer comparison: training loss per epoch, one line per optimizer and dropout.
"""

from __future__ import annotations

import pandas as pd
from matplotlib.axes import Axes
from matplotlib.ticker import MaxNLocator

from numsweep.analysis.figures import DASHES, LEGEND_FONTSIZE, new_axes
from numsweep.analysis.formatting import CURVE_LABELS
from numsweep.analysis.selection import ChartError, check_quantity, several_sweeps, sweep_title


def _epochs(trials: pd.DataFrame, curves: pd.DataFrame) -> pd.Series:
    missing = [c for c in ("batch_size", "n_train") if c not in trials.columns]
    if missing:
        raise ChartError(f"trials lack {missing[0]!r}: cannot convert update steps to epochs")
    per = trials.set_index("trial_id")
    per_step = per["batch_size"].astype(float) / per["n_train"].astype(float)
    return curves["step"] * curves["trial_id"].map(per_step)


def optimizer_data(trials: pd.DataFrame, curves: pd.DataFrame, quantity: str = "loss",
                   split: str = "train") -> pd.DataFrame:
    """``quantity`` of ``split`` against epoch (step · batch_size / n_train), averaged over
    the trials of each (optimizer, dropout) pair (of each sweep, where the trials come from
    several: column ``sweep``); ``n`` counts those trials."""
    check_quantity(quantity)
    for c in ("optimizer", "dropout"):
        if c not in trials.columns:
            raise ChartError(f"trials lack the parameter {c!r}: cannot compare optimizers")
    done = trials[trials["state"] == "COMPLETE"]
    if done.empty:
        raise ChartError("no complete trials selected: nothing to draw")
    points = curves[curves["trial_id"].isin(done["trial_id"]) & (curves["split"] == split)]
    if points.empty:
        raise ChartError(f"the selected trials have no {split!r} curve points")
    points = points.assign(epoch=_epochs(done, points).round(6))
    per = done.set_index("trial_id")
    dropout_input = (per["dropout_input"].astype(float).fillna(0.0)
                     if "dropout_input" in per.columns else pd.Series(0.0, index=per.index))
    points = points.assign(optimizer=points["trial_id"].map(per["optimizer"]),
                           dropout_input=points["trial_id"].map(dropout_input),
                           dropout=points["trial_id"].map(per["dropout"]).astype(float))
    value = points[quantity] * (100 if quantity == "acc" else 1)
    points = points.assign(value=value)
    keys = ["optimizer", "dropout_input", "dropout", "epoch"]
    if several_sweeps(done):
        points = points.assign(sweep=points["trial_id"].map(per["sweep"]).astype(str))
        keys.insert(0, "sweep")
    data = (points.groupby(keys, as_index=False)
            .agg(value=("value", "mean"), n=("trial_id", "nunique")))
    data.attrs.update(quantity=quantity, split=split, sweep=sweep_title(trials))
    return data


def draw_optimizers(data: pd.DataFrame, ax: Axes | None = None) -> Axes:
    """One line per optimizer (colour) and dropout setting (solid: none, dashed: some); the
    legend sits right of the plot, where ten lines' labels cover no curve."""
    quantity, split = data.attrs.get("quantity", "loss"), data.attrs.get("split", "train")
    if ax is None:
        ax = new_axes(9.0, 4.5)
    sweeps = list(dict.fromkeys(data["sweep"])) if "sweep" in data else [None]
    optimizers = sorted(data["optimizer"].unique())
    rates = sorted(data[["dropout_input", "dropout"]].drop_duplicates().itertuples(index=False))
    lines = [(sw, opt) for sw in sweeps for opt in optimizers]
    for i, (sw, opt) in enumerate(lines):
        for j, (rate_input, rate) in enumerate(rates):
            line = data[(data["optimizer"] == opt) & (data["dropout_input"] == rate_input)
                        & (data["dropout"] == rate)]
            if sw is not None:
                line = line[line["sweep"] == sw]
            if line.empty:
                continue
            n = int(line["n"].max())
            label = ("" if sw is None else f"{sw}: ") + f"{opt}, dropout={rate:g}"
            if rate_input:
                label += f", dropout_input={rate_input:g}"
            ax.plot(line["epoch"], line["value"], color=f"C{i % 10}",
                    linestyle=DASHES[j % len(DASHES)],
                    label=label + (f" (mean of {n})" if n > 1 else ""))
    name = {"train": "training", "val": "validation"}.get(split, split)
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel(f"{name} {CURVE_LABELS[quantity]}")
    compared = " with and without dropout" if len(rates) > 1 and not any(rates[0]) else ""
    sweep = data.attrs.get("sweep", "")
    ax.set_title((f"{sweep}: " if sweep else "") + f"{name} {quantity} per epoch{compared}")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=LEGEND_FONTSIZE)
    ax.grid(alpha=0.3)
    return ax
