"""The population chart of a pbt stage: one line per member (its metric at each curve point
over the updates), each exploit step a link from the member copied to the member replaced
at that update, lines coloured by an explored parameter's value.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.axes import Axes

from numsweep.analysis.figures import LEGEND_FONTSIZE, new_axes
from numsweep.analysis.formatting import metric_label
from numsweep.analysis.selection import ChartError, parameter_columns, value_scale

LINEAGE_METRICS = {"val_acc": "acc", "val_loss": "loss"}
"""The metric of a member's line and the curve column (validation split) it is read from."""


def lineage_points(trials: pd.DataFrame, curves: pd.DataFrame, lineage: pd.DataFrame,
                   metric: str = "val_acc", color: str | None = None) -> pd.DataFrame:
    """One row per curve point of each member (``trial_id``, ``step``, ``metric`` in percent
    for accuracies, ``color``: the member's stored value of the ``color`` parameter, NaN
    without one); ``attrs["links"]``: one row per exploit step (``source_trial_id``,
    ``trial_id``, ``update``, the source's metric there ``source_value`` and the member's
    ``member_value``)."""
    if metric not in LINEAGE_METRICS:
        raise ChartError(f"unknown metric {metric!r} for the lineage chart (one of "
                         f"{', '.join(LINEAGE_METRICS)})")
    if color is not None and color not in trials.columns:
        raise ChartError(f"unknown parameter {color!r} "
                         f"(parameters: {', '.join(parameter_columns(trials))})")
    column = LINEAGE_METRICS[metric]
    scale = value_scale(metric)
    val = curves[(curves["split"] == "val") & curves["trial_id"].isin(trials["trial_id"])]
    colors = (dict(zip(trials["trial_id"], pd.to_numeric(trials[color], errors="coerce"),
                       strict=True)) if color is not None else {})
    points = pd.DataFrame({
        "trial_id": val["trial_id"].astype(int), "step": val["step"].astype(int),
        metric: val[column].astype(float) * scale,
        "color": [float(colors.get(t, np.nan)) for t in val["trial_id"]],
    }).sort_values(["trial_id", "step"], kind="stable").reset_index(drop=True)
    if points.empty:
        raise ChartError("the population's members have no validation curve points: "
                         "nothing to draw")
    links = pd.DataFrame({
        "source_trial_id": lineage["source_trial_id"].astype(int),
        "trial_id": lineage["trial_id"].astype(int),
        "update": lineage["update"].astype(int),
        "source_value": lineage["metric_source"].astype(float) * scale,
        "member_value": lineage["metric_member"].astype(float) * scale,
    }).reset_index(drop=True)
    points.attrs.update(links=links, metric=metric, color=color,
                        members=int(points["trial_id"].nunique()))
    return points


def draw_lineage(data: pd.DataFrame, ax: Axes | None = None) -> Axes:
    """Each member's line over the updates (coloured by ``attrs["color"]``'s value on a log
    scale when it spans more than a decade), each exploit step an arrow from the member
    copied (its metric there) to the member replaced (its own, before the copy)."""
    import matplotlib.pyplot as plt
    from matplotlib.colors import LogNorm, Normalize

    ax = ax if ax is not None else new_axes(8.0, 4.8)
    metric, color = data.attrs["metric"], data.attrs.get("color")
    values = data["color"].to_numpy(dtype=float)
    finite = values[np.isfinite(values)]
    norm = None
    if color is not None and finite.size:
        low, high = float(finite.min()), float(finite.max())
        norm = (LogNorm(low, high) if low > 0 and high > 10 * low
                else Normalize(low, high if high > low else low + 1))
    cmap = plt.get_cmap("viridis")
    for _, member in data.groupby("trial_id", sort=True):
        shade = member["color"].iloc[0]
        line_color = cmap(norm(shade)) if norm is not None and np.isfinite(shade) else "C0"
        ax.plot(member["step"], member[metric], color=line_color, linewidth=1.2, alpha=0.85)
    for link in data.attrs["links"].itertuples():
        if np.isfinite(link.source_value):  # from the member copied to the one replaced
            ax.annotate("", xy=(link.update, link.member_value
                                if np.isfinite(link.member_value) else link.source_value),
                        xytext=(link.update, link.source_value),
                        arrowprops={"arrowstyle": "->", "color": "0.4", "linewidth": 0.8})
    if norm is not None:
        bar = ax.figure.colorbar(plt.cm.ScalarMappable(norm=norm, cmap=cmap), ax=ax)
        bar.set_label(color)
    ax.set_xlabel("update")
    ax.set_ylabel(metric_label(metric))
    links = len(data.attrs["links"])
    ax.set_title(f"population of {data.attrs['members']} members, {links} exploit steps",
                 fontsize=LEGEND_FONTSIZE + 1)
    return ax
