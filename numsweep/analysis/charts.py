"""Charts. Each has a ``*_data`` function that collects what to draw into a DataFrame and a
``draw_*`` function that draws it and returns the matplotlib Axes; nothing shows a window.

Accuracies are stored as fractions and drawn in percent; every axis names its unit.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import optuna
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator

from numsweep.analysis.queries import META_COLUMNS

METRIC_LABELS = {
    "val_acc": "validation accuracy (%)",
    "test_acc": "test accuracy (%)",
    "train_acc": "training accuracy (%)",
    "train_seconds": "training time (s)",
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
LOWER_IS_BETTER = {"train_seconds", "eval_seconds", "updates", "param_count", "epochs"}
RESULT_COLUMNS = set(METRIC_LABELS)
CURVE_LABELS = {
    "loss": "loss (cross-entropy)",
    "cost": "cost (loss + lam·Σ‖W‖²)",
    "acc": "accuracy (%)",
    "lr": "learning rate",
}
CURVE_QUANTITIES = tuple(CURVE_LABELS)
IMPORTANCE_TRIALS = 1000
MARKERS = ("o", "^", "s", "D", "v", "P", "X")
DASHES = ("-", "--", ":", "-.")


class ChartError(ValueError):
    """What was asked cannot be drawn (unknown metric, nothing selected)."""


# Columns and labels


def metric_columns(trials: pd.DataFrame) -> list[str]:
    """The result columns of a frame from :func:`load_trials`."""
    names = trials.attrs.get("metrics")
    if names is None:
        names = [c for c in trials.columns if c in RESULT_COLUMNS]
    return [c for c in names if c in trials.columns]


def parameter_columns(trials: pd.DataFrame) -> list[str]:
    names = trials.attrs.get("params")
    if names is None:
        skip = set(META_COLUMNS) | set(metric_columns(trials)) | RESULT_COLUMNS
        names = [c for c in trials.columns if c not in skip]
    return [c for c in names if c in trials.columns]


def varying_parameters(trials: pd.DataFrame) -> list[str]:
    """Parameters whose value differs between the selected trials (they label configurations)."""
    return [c for c in parameter_columns(trials) if trials[c].astype(str).nunique() > 1]


def format_value(value: object) -> str:
    if isinstance(value, float | np.floating):
        return "none" if math.isnan(value) else f"{value:.4g}"  # NaN: a parameter left unset
    if isinstance(value, tuple | list):
        return "[" + ",".join(str(v) for v in value) + "]"
    return str(value)


def format_cell(value: object) -> str:
    """A table cell: 4 significant digits, whole numbers (counts such as updates) in full."""
    if value is None:
        return ""
    if isinstance(value, float | np.floating):
        if math.isnan(value):
            return ""
        return str(int(value)) if value.is_integer() and abs(value) < 1e15 else f"{value:.4g}"
    if isinstance(value, tuple | list):
        return format_value(tuple(value))
    return str(value)


def config_labels(trials: pd.DataFrame, keys: Sequence[str] | None = None) -> pd.Series:
    """Readable configuration labels such as ``"f=4, nf=10, nh=50"``.

    By default the labels name the varying parameters; when the trials come from several
    stages, parameters that each stage fixes are named by the stage instead
    (``"final: lam=0.0003"`` rather than every setting the final stage changed).
    """
    if keys is None:
        keys = varying_parameters(trials)
        by_stage = _stage_parameters(trials, keys)
        if by_stage:
            rest = [k for k in keys if k not in by_stage]
            stage = trials["stage"].fillna("").astype(str)
            if not rest:
                return stage.astype(object)
            return (stage + ": " + config_labels(trials, rest)).astype(object)
    keys = list(keys)
    unknown = [k for k in keys if k not in trials.columns]
    if unknown:
        raise ChartError(f"unknown parameter {unknown[0]!r} in --by "
                         f"(parameters: {', '.join(parameter_columns(trials))})")
    if not keys:
        return pd.Series([f"trial {n}" for n in trials["number"]], index=trials.index,
                         dtype=object)
    parts = [trials[k].map(format_value).radd(f"{k}=") for k in keys]
    label = parts[0]
    for part in parts[1:]:
        label = label + ", " + part
    return label.astype(object)


def per_stage_counts(trials: pd.DataFrame, keys: Sequence[str]) -> pd.DataFrame:
    """For every trial, how many distinct values each of ``keys`` takes in its stage."""
    stages = trials.groupby(trials["stage"].fillna(""), sort=False)
    return stages[list(keys)].transform(lambda v: v.astype(str).nunique())


def _stage_parameters(trials: pd.DataFrame, keys: Sequence[str]) -> list[str]:
    """The varying parameters that stay constant within every stage (none for one stage)."""
    if not keys or "stage" not in trials.columns or trials["stage"].nunique(dropna=False) < 2:
        return []
    counts = per_stage_counts(trials, keys)
    return [k for k in keys if counts[k].le(1).all()]


def _unique_labels(trials: pd.DataFrame, keys: Sequence[str] | None) -> pd.Series:
    """Labels per trial; trials that share a configuration get their seed added."""
    labels = config_labels(trials, keys)
    if labels.duplicated(keep=False).any():
        labels = labels + ", seed=" + trials["seed"].astype(str)
    if labels.duplicated(keep=False).any():
        labels = labels + " (#" + trials["number"].astype(str) + ")"
    return labels


def check_metric(trials: pd.DataFrame, metric: str) -> None:
    if trials.empty:
        raise ChartError("no trials selected: nothing to draw")
    known = metric_columns(trials)
    if metric not in known:
        raise ChartError(f"unknown metric {metric!r} (metrics: {', '.join(known)})")


def _complete(trials: pd.DataFrame, *columns: str) -> pd.DataFrame:
    done = trials[trials["state"] == "COMPLETE"]
    for c in columns:
        done = done[np.isfinite(done[c].astype(float))]
    if done.empty:
        raise ChartError("no complete trials with a finite value selected: nothing to draw")
    return done


def _scale(metric: str) -> float:
    return 100.0 if metric in PERCENT_METRICS else 1.0


def metric_label(metric: str) -> str:
    return METRIC_LABELS.get(metric, metric)


def _new_axes(width: float = 7.0, height: float = 4.5) -> Axes:
    _, ax = plt.subplots(figsize=(width, height), layout="constrained")
    return ax


# Bars


def bar_data(trials: pd.DataFrame, metric: str, by: Sequence[str] | None = None,
             top: int | None = None) -> pd.DataFrame:
    """Mean, standard deviation and count of ``metric`` per configuration, best first.

    Configurations are the distinct values of ``by`` (default: the varying parameters), so
    seed replicates of one configuration form one bar with an error bar. ``within_noise``
    marks configurations whose gap to the best is at most the combined standard deviation
    sqrt(std_best² + std²) of the two (only where at least one of them has several seeds).
    ``top`` keeps the best ``top`` configurations; ``attrs["configs"]`` counts them all.
    """
    check_metric(trials, metric)
    done = _complete(trials, metric)
    labels = config_labels(done, by)
    values = done[metric].astype(float) * _scale(metric)
    grouped = values.groupby(labels, sort=False).agg(["mean", "std", "count"])
    grouped.index.name = "config"
    ascending = metric in LOWER_IS_BETTER
    data = grouped.reset_index().sort_values("mean", ascending=ascending, ignore_index=True)
    spread = data["std"].fillna(0.0)
    gap = (data["mean"] - data["mean"].iloc[0]).abs()
    combined = np.sqrt(spread ** 2 + spread.iloc[0] ** 2)
    data["best"] = data.index == 0
    data["within_noise"] = (~data["best"]) & (combined > 0) & (gap <= combined)
    configs = len(data)
    if top is not None:
        data = data.head(top)
    data.attrs.update(configs=configs, trials=len(done), higher_is_better=not ascending)
    return data


def draw_bars(data: pd.DataFrame, metric: str, ax: Axes | None = None) -> Axes:
    """One bar per configuration with its value written on it; error bars (±1 std over seeds)
    where n > 1; the best bar dark, bars whose gap to it is within noise hatched orange."""
    if ax is None:
        ax = _new_axes(max(6.5, 0.55 * len(data) + 2.5), 5.0)
    colors = ["tab:blue" if b else ("tab:orange" if w else "lightsteelblue")
              for b, w in zip(data["best"], data["within_noise"], strict=True)]
    errors = data["std"].where(data["count"] > 1).to_numpy(dtype=float)  # NaN: no bar
    has_errors = bool(np.nan_to_num(errors).any())
    bars = ax.bar(range(len(data)), data["mean"], color=colors, edgecolor="black",
                  linewidth=0.5, yerr=errors if has_errors else None, capsize=4,
                  error_kw={"elinewidth": 1})
    for bar, noisy in zip(bars, data["within_noise"], strict=True):
        if noisy:
            bar.set_hatch("//")
    fmt = "{:.1f}" if metric in PERCENT_METRICS else "{:.3g}"
    texts = [fmt.format(m) + (f"\nn={n}" if n > 1 else "")
             for m, n in zip(data["mean"], data["count"], strict=True)]
    ax.bar_label(bars, labels=texts, padding=2, fontsize=7)
    ax.set_xticks(range(len(data)), data["config"], rotation=35, ha="right", fontsize=8)
    ax.set_ylabel(metric_label(metric))
    ax.set_xlabel("configuration")
    shown = len(data)
    total = data.attrs.get("configs", shown)
    what = "best" if data.attrs.get("higher_is_better", True) else "fastest/smallest"
    title = f"{metric_label(metric)} per configuration"
    if total > shown:
        title += f" ({what} {shown} of {total})"
    ax.set_title(title, pad=16 if data["within_noise"].any() else 6)
    best_name = "best" if data.attrs.get("higher_is_better", True) else "best (lowest)"
    handles = [Patch(facecolor="tab:blue", edgecolor="black", label=best_name)]
    n_noisy = int(data["within_noise"].sum())
    if n_noisy:
        handles.append(Patch(facecolor="tab:orange", hatch="//", edgecolor="black",
                             label="within noise of the best:\n"
                                   "gap ≤ √(std_best² + std²)"))
    if has_errors:
        handles.append(Line2D([], [], color="black", marker="|", linestyle="none",
                              markersize=10, label="±1 std over seeds"))
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    if n_noisy and len(data) > 1:
        gap = abs(data["mean"].iloc[0] - data["mean"].iloc[1])
        ax.text(0.5, 1.0, f"the best's lead over the runner-up ({_gap_text(gap, metric)}) "
                "is within the seed noise",
                transform=ax.transAxes, ha="center", va="bottom", fontsize=8,
                color="tab:orange")
    ax.margins(y=0.15)
    return ax


def _gap_text(gap: float, metric: str) -> str:
    if metric in PERCENT_METRICS:
        return f"{gap:.1f} percentage points"
    return f"{gap:.3g}" + (" s" if metric.endswith("_seconds") else "")


# Curves against update step


def curve_data(trials: pd.DataFrame, curves: pd.DataFrame,
               by: Sequence[str] | None = None) -> pd.DataFrame:
    """The curve points of the selected trials, each labelled by its configuration
    (the parameters that differ between them), accuracy in percent."""
    if trials.empty:
        raise ChartError("no trials selected: nothing to draw")
    labels = _unique_labels(trials, by)
    if len(trials) == 1 and by is None:
        labels = pd.Series([f"trial {trials['number'].iloc[0]}"], index=trials.index)
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
    return data


def _check_quantity(quantity: str) -> None:
    if quantity not in CURVE_LABELS:
        raise ChartError(f"unknown curve quantity {quantity!r} "
                         f"(quantities: {', '.join(CURVE_QUANTITIES)})")


def _lr_style(points: pd.DataFrame) -> str:
    """A step schedule holds each rate until the next curve point: a staircase, not straight
    lines between the (sparse) points."""
    stepwise = "schedule" in points and bool((points["schedule"] == "step").all())
    return "steps-post" if stepwise else "default"


def draw_curves(data: pd.DataFrame, quantity: str = "loss", ax: Axes | None = None) -> Axes:
    """``quantity`` (loss, cost, acc or lr) against update step: one colour per trial,
    training solid, validation dashed (lr: one line per trial)."""
    _check_quantity(quantity)
    if ax is None:
        ax = _new_axes()
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
        color = f"C{i % 10}"
        for split in splits:
            points = data[(data["label"] == label) & (data["split"] == split)]
            if quantity == "lr" and points.empty:
                points = data[data["label"] == label].drop_duplicates("step")
            ax.plot(points["step"], points[quantity], color=color, linestyle=styles[split],
                    label=label if split == splits[0] else None,
                    drawstyle=_lr_style(points) if quantity == "lr" else "default")
    ax.set_xlabel("update step")
    ax.set_ylabel(CURVE_LABELS[quantity])
    title = {"lr": "learning-rate schedule"}.get(quantity, f"{CURVE_LABELS[quantity]}")
    ax.set_title(title + ("" if quantity == "lr" else " vs update step"))
    if quantity in ("loss", "cost") and data.attrs.get("smoothed"):
        ax.set_title(f"{quantity} vs update step (eps > 0: against smoothed targets)",
                     fontsize=10)
    handles, names = ax.get_legend_handles_labels()
    if quantity != "lr" and len(splits) > 1:
        handles += [Line2D([], [], color="gray", linestyle=styles[s]) for s in splits]
        names += [{"train": "training", "val": "validation"}.get(s, s) for s in splits]
    if len(handles) > 1 or shared:
        ax.legend(handles, names, fontsize=8)
    ax.grid(alpha=0.3)
    return ax


def draw_curve_panels(data: pd.DataFrame,
                      quantities: Sequence[str] = CURVE_QUANTITIES) -> list[Axes]:
    """One panel per quantity, side by side in rows of two, the legend in the first;
    returns the Axes in order."""
    for q in quantities:
        _check_quantity(q)
    cols = 1 if len(quantities) == 1 else 2
    rows = math.ceil(len(quantities) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(6.0 * cols, 4.0 * rows), layout="constrained",
                             squeeze=False)
    flat = list(axes.ravel())
    for ax, q in zip(flat, quantities, strict=False):
        draw_curves(data, q, ax)
    for ax in flat[len(quantities):]:
        fig.delaxes(ax)
    # the first panel's legend serves all: repeated in every panel it would cover the curves
    first = flat[0].get_legend()
    names = {t.get_text() for t in first.get_texts()} if first else set()
    for ax in flat[1:len(quantities)]:
        legend = ax.get_legend()
        if legend is not None and {t.get_text() for t in legend.get_texts()} <= names:
            legend.remove()
    return flat[:len(quantities)]


# Lambda search


def lambda_data(trials: pd.DataFrame, metric: str = "val_acc",
                param: str = "lam") -> pd.DataFrame:
    """``param`` and ``metric`` (percent for accuracies) of each complete trial with its stage;
    ``chosen`` marks the best trial. Values <= 0 cannot go on a log axis and are left out
    (``attrs["dropped"]`` counts them)."""
    check_metric(trials, metric)
    if param not in trials.columns:
        raise ChartError(f"unknown parameter {param!r} "
                         f"(parameters: {', '.join(parameter_columns(trials))})")
    done = _complete(trials, metric)
    x = pd.to_numeric(done[param], errors="coerce")
    positive = done[x > 0]
    if positive.empty:
        raise ChartError(f"no trial has a positive {param}: nothing to draw on a log axis")
    data = pd.DataFrame({
        "trial_id": positive["trial_id"], "stage": positive["stage"].fillna("-"),
        param: x[x > 0].astype(float), metric: positive[metric].astype(float) * _scale(metric),
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
        ax = _new_axes()
    for i, stage in enumerate(dict.fromkeys(data["stage"])):
        points = data[data["stage"] == stage].sort_values(param)
        many = len(points) > 50
        grid = not many and points[param].is_unique  # a grid: join its points
        ax.plot(points[param], points[metric], marker=MARKERS[i % len(MARKERS)],
                markersize=3 if many else 7, linestyle="-" if grid and i == 0 else "none",
                linewidth=0.8, alpha=0.4 if many else 0.85, color=f"C{i}",
                label=f"{stage} ({len(points)} trials)")
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
                 + (f" ({dropped} trials with {param} ≤ 0 not shown)" if dropped else ""))
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, which="both")
    ax.margins(y=0.15)
    return ax


# Optimizer comparison


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
    the trials of each (optimizer, dropout) pair; ``n`` counts those trials."""
    _check_quantity(quantity)
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
    data = (points.groupby(["optimizer", "dropout_input", "dropout", "epoch"], as_index=False)
            .agg(value=("value", "mean"), n=("trial_id", "nunique")))
    data.attrs.update(quantity=quantity, split=split)
    return data


def draw_optimizers(data: pd.DataFrame, ax: Axes | None = None) -> Axes:
    """One line per optimizer (colour) and dropout setting (solid: none, dashed: some); the
    legend sits right of the plot, where ten lines' labels cover no curve."""
    quantity, split = data.attrs.get("quantity", "loss"), data.attrs.get("split", "train")
    if ax is None:
        ax = _new_axes(9.0, 4.5)
    optimizers = sorted(data["optimizer"].unique())
    rates = sorted(data[["dropout_input", "dropout"]].drop_duplicates().itertuples(index=False))
    for i, opt in enumerate(optimizers):
        for j, (rate_input, rate) in enumerate(rates):
            line = data[(data["optimizer"] == opt) & (data["dropout_input"] == rate_input)
                        & (data["dropout"] == rate)]
            if line.empty:
                continue
            n = int(line["n"].max())
            label = f"{opt}, dropout={rate:g}"
            if rate_input:
                label += f", dropout_input={rate_input:g}"
            ax.plot(line["epoch"], line["value"], color=f"C{i}",
                    linestyle=DASHES[j % len(DASHES)],
                    label=label + (f" (mean of {n})" if n > 1 else ""))
    name = {"train": "training", "val": "validation"}.get(split, split)
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel(f"{name} {CURVE_LABELS[quantity]}")
    compared = " with and without dropout" if len(rates) > 1 and not any(rates[0]) else ""
    ax.set_title(f"optimizers: {name} {quantity} per epoch{compared}")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    ax.grid(alpha=0.3)
    return ax


# Range tests

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
    _check_quantity(quantity)
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
    labels = dict(zip(chosen["trial_id"], _unique_labels(chosen, by), strict=True))
    if len(chosen) == 1 and by is None:
        labels = {chosen["trial_id"].iloc[0]: f"trial {chosen['number'].iloc[0]}"}
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
    data.attrs.update(quantity=quantity, mode=mode, marks=marks)
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
        ax = _new_axes()
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
    ax.legend(handles, names, fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel(f"{unit} (log scale)")
    ax.set_ylabel(f"mini-batch {CURVE_LABELS[quantity]}")
    ax.set_title(f"{title_unit} range test: {quantity} of each update")
    ax.grid(alpha=0.3, which="both")
    return ax


# Parameter importance


def _distribution(values: pd.Series) -> tuple[Any, list[Any]]:
    from optuna.distributions import (
        CategoricalDistribution,
        FloatDistribution,
        IntDistribution,
    )

    raw = list(values)
    numeric = all(isinstance(v, int | float | np.integer | np.floating)
                  and not isinstance(v, bool) and math.isfinite(float(v)) for v in raw)
    if numeric:
        low, high = float(min(raw)), float(max(raw))
        log = low > 0 and high / low >= 100
        if all(float(v).is_integer() for v in raw):
            ints = [int(v) for v in raw]
            return IntDistribution(int(low), int(high), log=log), ints
        return FloatDistribution(low, high, log=log), [float(v) for v in raw]
    texts = [format_value(v) for v in raw]
    return CategoricalDistribution(sorted(set(texts))), texts


def importance_data(trials: pd.DataFrame, metric: str = "val_acc",
                    params: Sequence[str] | None = None,
                    tied: Sequence[Sequence[str]] = ()) -> pd.DataFrame:
    """Optuna's fANOVA importance (each parameter's share of the variance of ``metric``) of
    each varying parameter, from a study rebuilt from the complete trials (distributions
    inferred from the values: numbers span a range, log-scaled when it covers a factor 100 or
    more; anything else is categorical).

    Each group in ``tied`` (the parameters of one space entry such as "optimizer,eta_max",
    which never vary apart) is scored as one entry, named as in the spec: fANOVA could only
    split its share between them arbitrarily. Above ``IMPORTANCE_TRIALS`` trials a seeded
    random sample of that many is used (``attrs["trials"]`` and ``attrs["of"]`` say so).
    Without scikit-learn, which fANOVA needs, Optuna's PED-ANOVA is used
    (``attrs["method"]``)."""
    check_metric(trials, metric)
    done = _complete(trials, metric)
    total = len(done)
    if total > IMPORTANCE_TRIALS:
        done = done.sample(IMPORTANCE_TRIALS, random_state=0)
    names = list(params) if params is not None else varying_parameters(done)
    unknown = [p for p in names if p not in trials.columns]
    if unknown:
        raise ChartError(f"unknown parameter {unknown[0]!r}")
    names = [p for p in names if done[p].astype(str).nunique() > 1]
    if not names or len(done) < 2:
        raise ChartError("parameter importance needs at least 2 complete trials and a "
                         "parameter that varies between them")
    entries = [[p for p in group if p in names] for group in tied]
    entries = [group for group in entries if len(group) > 1]
    grouped = {p for group in entries for p in group}
    entries += [[p] for p in names if p not in grouped]
    dists, columns = {}, {}
    for group in entries:
        values = (done[group[0]] if len(group) == 1 else
                  done[group].map(format_value).agg(", ".join, axis=1))
        name = ",".join(group)
        dists[name], columns[name] = _distribution(values)
    frozen = [optuna.trial.create_trial(params={p: columns[p][i] for p in dists},
                                        distributions=dists, value=float(v))
              for i, v in enumerate(done[metric])]
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        study = optuna.create_study(
            direction="minimize" if metric in LOWER_IS_BETTER else "maximize")
        study.add_trials(frozen)
        try:
            evaluator: Any = optuna.importance.FanovaImportanceEvaluator(seed=0)
            method = "fANOVA"
        except ImportError:  # fANOVA's random forest comes from scikit-learn
            evaluator, method = optuna.importance.PedAnovaImportanceEvaluator(), "PED-ANOVA"
        scores = optuna.importance.get_param_importances(study, evaluator=evaluator)
    finally:
        optuna.logging.set_verbosity(verbosity)
    data = pd.DataFrame({"param": list(scores), "importance": list(scores.values())})
    data.attrs.update(metric=metric, trials=len(done), of=total, method=method)
    return data.sort_values("importance", ascending=False, ignore_index=True)


def draw_importance(data: pd.DataFrame, ax: Axes | None = None) -> Axes:
    """Horizontal bars of importance (share of the metric's variance), largest on top."""
    metric = data.attrs.get("metric", "val_acc")
    if ax is None:
        ax = _new_axes(6.5, max(2.5, 0.45 * len(data) + 1.5))
    bars = ax.barh(range(len(data)), data["importance"], color="tab:blue")
    ax.bar_label(bars, labels=[f"{v:.2f}" for v in data["importance"]], padding=3, fontsize=8)
    ax.set_yticks(range(len(data)), data["param"])
    ax.invert_yaxis()
    ax.set_xlim(0, 1.1)
    method = data.attrs.get("method", "fANOVA")
    ax.set_xlabel("importance (Optuna fANOVA: share of variance, sums to 1)"
                  if method == "fANOVA" else f"importance (Optuna {method}, sums to 1)")
    used, total = data.attrs.get("trials", "?"), data.attrs.get("of")
    sample = f"a random {used} of {total} trials" if total and total != used else \
        f"{used} trials"
    ax.set_title(f"parameter importance for {metric} ({sample})")
    return ax


# Accuracy against training time


def pareto_data(trials: pd.DataFrame, x: str = "train_seconds", y: str = "test_acc",
                by: Sequence[str] | None = None) -> pd.DataFrame:
    """``x`` (lower is better) and ``y`` (higher is better, percent for accuracies) per
    complete trial; ``on_front`` marks the trials no other trial beats in both."""
    check_metric(trials, x)
    check_metric(trials, y)
    done = _complete(trials, x, y)
    data = pd.DataFrame({"trial_id": done["trial_id"], "label": config_labels(done, by),
                         x: done[x].astype(float), y: done[y].astype(float) * _scale(y)})
    data = data.sort_values([x, y], ascending=[True, False], ignore_index=True)
    best_so_far = data[y].cummax().shift(fill_value=-np.inf)
    data["on_front"] = data[y] > best_so_far
    data.attrs.update(x=x, y=y)
    return data


def draw_pareto(data: pd.DataFrame, ax: Axes | None = None) -> Axes:
    """Every trial as a dot, the Pareto front as a red step line with its trials named."""
    x, y = data.attrs.get("x", "train_seconds"), data.attrs.get("y", "test_acc")
    if ax is None:
        ax = _new_axes()
    rest = data[~data["on_front"]]
    front = data[data["on_front"]]
    ax.scatter(rest[x], rest[y], color="tab:blue", alpha=0.5, s=18 if len(data) <= 500 else 5,
               label=f"trials ({len(data)})")
    ax.plot(front[x], front[y], color="tab:red", marker="o", drawstyle="steps-post",
            label=f"Pareto front ({len(front)})")
    if len(front) <= 12:
        for _, row in front.iterrows():
            ax.annotate(row["label"], (row[x], row[y]), textcoords="offset points",
                        xytext=(5, -12), fontsize=7)
    if data[x].min() > 0 and data[x].max() / data[x].min() > 50:
        ax.set_xscale("log")
    ax.set_xlabel(metric_label(x) + (" (log scale)" if ax.get_xscale() == "log" else ""))
    ax.set_ylabel(metric_label(y))
    ax.set_title(f"{metric_label(y)} against {metric_label(x)}")
    ax.legend(fontsize=8, loc="best")
    ax.margins(0.08)
    ax.grid(alpha=0.3)
    return ax


# Files


def save(ax: Axes | Sequence[Axes], path: str | Path) -> Path:
    """Write the figure of ``ax``; the format follows the extension (png, svg, pdf)."""
    path = Path(path)
    first = ax if isinstance(ax, Axes) else next(iter(ax))
    fig = first.figure
    suffix = path.suffix.lower().lstrip(".")
    if suffix not in ("png", "svg", "pdf"):
        plt.close(fig)
        raise ChartError(f"{path}: unsupported chart format (use .png, .svg or .pdf)")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=150)
    except OSError as exc:
        raise ChartError(f"cannot write {path}: {exc.strerror or exc}") from None
    finally:
        plt.close(fig)
    return path
