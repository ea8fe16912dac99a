"""Bar charts: one result per configuration, mean and ±1 std over seeds, the chosen bar dark.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from numsweep.analysis.figures import LEGEND_FONTSIZE, new_axes
from numsweep.analysis.formatting import LOWER_IS_BETTER, PERCENT_METRICS, metric_label
from numsweep.analysis.selection import (
    check_metric,
    chosen_by_validation,
    complete_trials,
    config_labels,
    label_parameters,
    numeric_parameters,
    sweep_title,
    time_measurements,
    value_scale,
)

VERTICAL_LIMIT = 10
"""More bars than this are drawn sideways: one label per row stays readable where slanted
labels under 15 bars would crowd."""


def bar_data(trials: pd.DataFrame, metric: str, by: Sequence[str] | None = None,
             top: int | None = None) -> pd.DataFrame:
    """Mean, standard deviation and count of ``metric`` per configuration.

    Configurations are the distinct values of ``by`` (default: the varying parameters), so
    seed replicates of one configuration form one bar with an error bar. Where the labels
    name numeric parameters only (lam; f and nf), the bars follow the parameters' order,
    else the best come first (``attrs["order"]``: ``"parameter"`` or ``"value"``).

    ``best`` marks the configuration a reader would choose: the best by ``metric``, but by
    the validation accuracy on a chart of the test (or training) accuracy, and none where
    several share the best value (``attrs["tied"]`` counts them; fused trials share their
    training time evenly). ``within_noise`` marks configurations whose gap to the marked one
    is at most the combined standard deviation sqrt(std_best² + std²) of the two (only where
    at least one of them has several seeds). ``top`` keeps the best ``top`` configurations by
    ``metric`` (and the marked one); ``attrs["configs"]`` counts them all.

    A time that the trials of a fused group share (``train_seconds``, ``eval_seconds``) is
    one measurement per group: configurations measured by the same groups are one bar
    (labelled "shared by a group of K"), ``count`` counts measurements, and with a single
    bar left there is no "best". ``shared_by`` is the largest group behind each bar.
    """
    check_metric(trials, metric)
    done = complete_trials(trials, metric)
    labels = config_labels(done, by)
    values = done[metric].astype(float) * value_scale(metric)
    measured = time_measurements(done, metric)
    if measured is None:
        grouped = values.groupby(labels, sort=False).agg(["mean", "std", "count"])
        grouped.index.name = "config"
        grouped["shared_by"] = 1
    else:
        grouped = _shared_bars(done, labels, values, measured)
    ascending = metric in LOWER_IS_BETTER
    data = grouped.reset_index().sort_values("mean", ascending=ascending, kind="stable",
                                             ignore_index=True)
    chooser = chosen_by_validation(done, metric)
    marked, tied = _marked(data, done, labels, metric, chooser)
    if measured is not None and len(data) == 1:
        marked = None  # one measurement of the time: nothing to choose between
    data["best"] = data.index == marked if marked is not None else False
    spread = data["std"].fillna(0.0)
    if marked is not None:
        gap = (data["mean"] - data["mean"].iloc[marked]).abs()
        combined = np.sqrt(spread ** 2 + spread.iloc[marked] ** 2)
        data["within_noise"] = (~data["best"]) & (combined > 0) & (gap <= combined)
    else:
        data["within_noise"] = False
    configs = len(data)
    if top is not None and top < configs:
        kept = list(range(top))
        if marked is not None and marked >= top:
            kept = [*kept[:-1], marked]
        data = data.iloc[kept]
    keys, _ = label_parameters(done, by)
    # bars of shared times join configurations: no parameter value orders them
    order = "parameter" if measured is None and numeric_parameters(done, keys) else "value"
    if order == "parameter":
        first = done[keys].groupby(labels, sort=False).first()
        seen = {label: n for n, label in enumerate(dict.fromkeys(labels))}  # trial order
        columns = {f"_{k}": data["config"].map(first[k]) for k in keys}
        data = data.assign(**columns, _seen=data["config"].map(seen))
        data = data.sort_values([*columns, "_seen"], kind="stable", na_position="last")
        data = data.drop(columns=[*columns, "_seen"])
    data = data.reset_index(drop=True)
    data.attrs.update(configs=configs, trials=len(done), higher_is_better=not ascending,
                      marked_by=chooser if marked is not None else None, tied=tied,
                      order=order, order_by=keys if order == "parameter" else [],
                      sweep=sweep_title(done))
    return data


def _marked(data: pd.DataFrame, done: pd.DataFrame, labels: pd.Series, metric: str,
            chooser: str | None) -> tuple[int | None, int]:
    """The row of ``data`` to mark and how many rows share the best ``chooser`` value
    (where several do, none is marked)."""
    if chooser is None:
        return None, 0
    if chooser == metric:
        rank = data["mean"].to_numpy(dtype=float)
    else:
        means = done[chooser].astype(float).groupby(labels, sort=False).mean()
        rank = data["config"].map(means).to_numpy(dtype=float)
    if not np.isfinite(rank).any():
        return None, 0
    lower = chooser in LOWER_IS_BETTER
    best = np.nanmin(rank) if lower else np.nanmax(rank)
    tied = int(np.isclose(rank, best, rtol=1e-9, atol=0.0).sum())
    if tied > 1:
        return None, tied
    return int(np.nanargmin(rank) if lower else np.nanargmax(rank)), 1


def _shared_bars(done: pd.DataFrame, labels: pd.Series, values: pd.Series,
                 measured: pd.Series) -> pd.DataFrame:
    """One bar per set of measurements: the configurations a group's even shares measure
    together are one bar, its value the mean over its measurements (not its trials)."""
    sizes = pd.to_numeric(done["group_size"], errors="coerce").fillna(1).astype(int)
    per_config: dict[str, frozenset[str]] = {}
    for label, key in zip(labels, measured, strict=True):
        per_config[label] = per_config.get(label, frozenset()) | {key}
    bars: dict[frozenset[str], list[str]] = {}
    for label, keys in per_config.items():
        bars.setdefault(keys, []).append(label)
    rows = []
    for keys, names in bars.items():
        inside = labels.isin(names) & measured.isin(keys)
        by_measurement = values[inside].groupby(measured[inside]).mean()
        shared_by = int(sizes[inside].max())
        name = ", ".join(names) if len(names) <= 2 else \
            f"{names[0]}, ... ({len(names)} configurations)"
        if shared_by > 1:
            name += f" (shared by a group of {shared_by})"
        rows.append({"config": name, "mean": float(by_measurement.mean()),
                     "std": float(by_measurement.std()) if len(by_measurement) > 1
                     else float("nan"),
                     "count": len(by_measurement), "shared_by": shared_by})
    return pd.DataFrame(rows).set_index("config")


def draw_bars(data: pd.DataFrame, metric: str, ax: Axes | None = None) -> Axes:
    """One bar per configuration with its value written on it; error bars (±1 std over seeds)
    where n > 1; the marked bar dark, bars whose gap to it is within noise hatched orange.
    The value axis spans the values (not from 0) so that a 1-point gap shows; more than
    :data:`VERTICAL_LIMIT` bars are drawn sideways."""
    n = len(data)
    sideways = n > VERTICAL_LIMIT
    if ax is None:
        ax = new_axes(8.0, 0.32 * n + 2.2) if sideways else new_axes(max(6.5, 0.6 * n + 2.5),
                                                                      5.0)
    colors = ["tab:blue" if b else ("tab:orange" if w else "lightsteelblue")
              for b, w in zip(data["best"], data["within_noise"], strict=True)]
    errors = data["std"].where(data["count"] > 1).to_numpy(dtype=float)  # NaN: no bar
    has_errors = bool(np.nan_to_num(errors).any())
    style = {"color": colors, "edgecolor": "black", "linewidth": 0.5, "capsize": 4,
             "error_kw": {"elinewidth": 1}}
    positions = range(n)
    if sideways:
        bars = ax.barh(positions, data["mean"], xerr=errors if has_errors else None, **style)
    else:
        bars = ax.bar(positions, data["mean"], yerr=errors if has_errors else None, **style)
    for bar, noisy in zip(bars, data["within_noise"], strict=True):
        if noisy:
            bar.set_hatch("//")
    fmt = "{:.1f}" if metric in PERCENT_METRICS else "{:.3g}"
    sep = " " if sideways else "\n"
    texts = [fmt.format(m) + (f"{sep}n={c}" if c > 1 else "")
             for m, c in zip(data["mean"], data["count"], strict=True)]
    ax.bar_label(bars, labels=texts, padding=2, fontsize=8)
    order_by = data.attrs.get("order_by") or []
    what = (f"configuration (by {', '.join(order_by)})" if data.attrs.get("order") == "parameter"
            else "configuration (best first)")
    if sideways:
        ax.set_yticks(positions, data["config"], fontsize=9)
        ax.invert_yaxis()  # the first configuration on top
        ax.set_xlabel(metric_label(metric))
        ax.set_ylabel(what)
        ax.set_xlim(*_value_limits(data, errors))
    else:
        ax.set_xticks(positions, data["config"], rotation=35, ha="right", fontsize=9)
        ax.set_ylabel(metric_label(metric))
        ax.set_xlabel(what)
        ax.set_ylim(*_value_limits(data, errors))
    shown = n
    total = data.attrs.get("configs", shown)
    higher = data.attrs.get("higher_is_better", True)
    sweep = data.attrs.get("sweep", "")
    title = (f"{sweep}: " if sweep else "") + f"{metric_label(metric)} per configuration"
    if total > shown:
        title += f" ({'best' if higher else 'fastest/smallest'} {shown} of {total})"
    if "shared_by" in data and bool((data["shared_by"] > 1).any()):
        title += "\n(a fused group's time is shared evenly by its trials: one measurement)"
    note = _note(data, metric)
    ax.set_title(title, pad=18 if note else 6)
    marked_by = data.attrs.get("marked_by", metric)
    handles: list[Patch | Line2D] = []
    if data["best"].any():
        name = ("best" if higher else "best (lowest)") if marked_by == metric else \
            f"chosen by\n{metric_label(marked_by).replace(' (%)', '')}"
        handles.append(Patch(facecolor="tab:blue", edgecolor="black", label=name))
    if data["within_noise"].any():
        handles.append(Patch(facecolor="tab:orange", hatch="//", edgecolor="black",
                             label="within noise of it:\ngap ≤ √(std_best² + std²)"))
    if has_errors:
        handles.append(Line2D([], [], color="black", marker="|", linestyle="none",
                              markersize=10, label="±1 std over seeds"))
    if handles:
        ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0),
                  fontsize=LEGEND_FONTSIZE)
    if note:
        ax.text(0.5, 1.0, note, transform=ax.transAxes, ha="center", va="bottom", fontsize=9,
                color="tab:orange" if "noise" in note else "dimgray")
    return ax


def _note(data: pd.DataFrame, metric: str) -> str:
    """One line above the bars: the ties that left none marked, or the bars within noise."""
    tied = data.attrs.get("tied", 0)
    if tied > 1:
        which = "highest" if data.attrs.get("higher_is_better", True) else "lowest"
        by = data.attrs.get("marked_by") or metric
        return f"{tied} configurations share the {which} {metric_label(by)}: none marked"
    n_noisy = int(data["within_noise"].sum())
    if not n_noisy or not data["best"].any():
        return ""
    marked = int(np.flatnonzero(data["best"])[0])
    ascending = not data.attrs.get("higher_is_better", True)
    ranked = data.sort_values("mean", ascending=ascending, kind="stable")
    if ranked.index[0] == marked and len(ranked) > 1 and bool(ranked["within_noise"].iloc[1]):
        gap = abs(ranked["mean"].iloc[0] - ranked["mean"].iloc[1])
        return (f"the best's lead over the runner-up ({_gap_text(gap, metric)}) "
                "is within the seed noise")
    return (f"{n_noisy} hatched configuration{'s' if n_noisy > 1 else ''} within the seed "
            "noise of the marked one")


def _value_limits(data: pd.DataFrame, errors: np.ndarray) -> tuple[float, float]:
    """From 0 where the values spread over much of their size; else around them, so that a
    1-point gap between 37% and 38% is a visible step and not a hair on bars from 0."""
    spread = np.nan_to_num(errors)
    means = data["mean"].to_numpy(dtype=float)
    low, high = float((means - spread).min()), float((means + spread).max())
    span = high - low
    if low > 0 and span < 0.5 * high:
        pad = max(span, 0.02 * high)
        return max(0.0, low - pad), high + 0.35 * pad  # the lowest bar half the highest
    bottom = min(0.0, low)
    return bottom, high + 0.15 * ((high - bottom) or 1.0)


def _gap_text(gap: float, metric: str) -> str:
    if metric in PERCENT_METRICS:
        return f"{gap:.1f} percentage points"
    return f"{gap:.3g}" + (" s" if metric.endswith("_seconds") else "")
