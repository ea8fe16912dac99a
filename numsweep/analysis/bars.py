"""Bar charts: one result per configuration, mean and ±1 std over seeds, the best bar dark.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from numsweep.analysis.figures import new_axes
from numsweep.analysis.formatting import LOWER_IS_BETTER, PERCENT_METRICS, metric_label
from numsweep.analysis.selection import (
    check_metric,
    complete_trials,
    config_labels,
    time_measurements,
    value_scale,
)


def bar_data(trials: pd.DataFrame, metric: str, by: Sequence[str] | None = None,
             top: int | None = None) -> pd.DataFrame:
    """Mean, standard deviation and count of ``metric`` per configuration, best first.

    Configurations are the distinct values of ``by`` (default: the varying parameters), so
    seed replicates of one configuration form one bar with an error bar. ``within_noise``
    marks configurations whose gap to the best is at most the combined standard deviation
    sqrt(std_best² + std²) of the two (only where at least one of them has several seeds).
    ``top`` keeps the best ``top`` configurations; ``attrs["configs"]`` counts them all.

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
    data = grouped.reset_index().sort_values("mean", ascending=ascending, ignore_index=True)
    spread = data["std"].fillna(0.0)
    gap = (data["mean"] - data["mean"].iloc[0]).abs()
    combined = np.sqrt(spread ** 2 + spread.iloc[0] ** 2)
    data["best"] = (data.index == 0) & (len(data) > 1 or measured is None)
    data["within_noise"] = (~data["best"]) & (combined > 0) & (gap <= combined)
    configs = len(data)
    if top is not None:
        data = data.head(top)
    data.attrs.update(configs=configs, trials=len(done), higher_is_better=not ascending)
    return data


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
    where n > 1; the best bar dark, bars whose gap to it is within noise hatched orange."""
    if ax is None:
        ax = new_axes(max(6.5, 0.55 * len(data) + 2.5), 5.0)
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
    if "shared_by" in data and bool((data["shared_by"] > 1).any()):
        title += "\n(a fused group's time is shared evenly by its trials: one measurement)"
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
        # name the hatched bars: the runner-up when it is one of them, else how many
        if bool(data["within_noise"].iloc[1]):
            gap = abs(data["mean"].iloc[0] - data["mean"].iloc[1])
            note = (f"the best's lead over the runner-up ({_gap_text(gap, metric)}) "
                    "is within the seed noise")
        else:
            note = (f"{n_noisy} hatched configuration{'s' if n_noisy > 1 else ''} within the "
                    "seed noise of the best (the runner-up is not)")
        ax.text(0.5, 1.0, note,
                transform=ax.transAxes, ha="center", va="bottom", fontsize=8,
                color="tab:orange")
    ax.margins(y=0.15)
    return ax


def _gap_text(gap: float, metric: str) -> str:
    if metric in PERCENT_METRICS:
        return f"{gap:.1f} percentage points"
    return f"{gap:.3g}" + (" s" if metric.endswith("_seconds") else "")
