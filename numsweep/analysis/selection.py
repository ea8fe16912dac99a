"""Which trials and columns a chart uses: parameter and result columns, configuration labels,
the complete trials, the trials picked by id or as the best by a metric.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from numsweep.analysis.formatting import (
    CURVE_LABELS,
    CURVE_QUANTITIES,
    LOWER_IS_BETTER,
    PERCENT_METRICS,
    RESULT_COLUMNS,
    format_value,
)
from numsweep.analysis.queries import META_COLUMNS
from numsweep.errors import NumsweepError


class ChartError(NumsweepError, ValueError):
    """What was asked cannot be drawn (unknown metric, nothing selected)."""


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
    """Parameters whose value differs between the selected trials (they label configurations).

    ``data_seed`` counts only where it differs from the trial's ``seed`` (its default, which
    trained trials store): like the seed it names no configuration."""
    out = [c for c in parameter_columns(trials) if trials[c].astype(str).nunique() > 1]
    if "data_seed" in out and "seed" in trials:
        data_seed = pd.to_numeric(trials["data_seed"], errors="coerce")
        seed = pd.to_numeric(trials["seed"], errors="coerce")
        if (data_seed.isna() | (data_seed == seed)).all():
            out.remove("data_seed")
    return out


def several_sweeps(trials: pd.DataFrame) -> bool:
    """Whether the trials come from more than one sweep."""
    return "sweep" in trials.columns and trials["sweep"].nunique(dropna=False) > 1


def config_labels(trials: pd.DataFrame, keys: Sequence[str] | None = None) -> pd.Series:
    """Readable configuration labels such as ``"f=4, nf=10, nh=50"``.

    By default the labels name the varying parameters; when the trials come from several
    stages, parameters that each stage fixes are named by the stage instead
    (``"final: lam=0.0003"`` rather than every setting the final stage changed). One trial
    per stage (the best of each) is named by its stage and what differs
    (``"coarse: lam=0.1, cycles=1"``). Trials of several sweeps are labelled by their sweep
    first, then by what varies within that sweep (``"wide: lam=0.003"``; ``"wide"`` alone
    for a sweep of one configuration).
    """
    if several_sweeps(trials):
        sweep = trials["sweep"].astype(str)
        labels = sweep.astype(object)
        for _, in_sweep in trials.groupby(sweep, sort=False):
            if keys is None and not varying_parameters(in_sweep):
                continue  # one configuration: the sweep's name says which
            labels[in_sweep.index] = sweep[in_sweep.index] + ": " + _labels(in_sweep, keys)
        return labels
    return _labels(trials, keys)


def _labels(trials: pd.DataFrame, keys: Sequence[str] | None) -> pd.Series:
    """:func:`config_labels` of the trials of one sweep."""
    if keys is None:
        keys, by_stage = label_parameters(trials)
        if by_stage:
            stage = trials["stage"].fillna("").astype(str)
            if not keys:
                return stage.astype(object)
            return (stage + ": " + _labels(trials, keys)).astype(object)
    keys = list(keys)
    unknown = [k for k in keys if k not in trials.columns]
    if unknown:
        raise ChartError(f"unknown parameter {unknown[0]!r} in --by "
                         f"(parameters: {', '.join(parameter_columns(trials))})")
    if not keys:
        return pd.Series([f"trial {n}" for n in trials["trial_id"]], index=trials.index,
                         dtype=object)
    parts = [trials[k].map(format_value).radd(f"{k}=") for k in keys]
    label = parts[0]
    for part in parts[1:]:
        label = label + ", " + part
    return label.astype(object)


def label_parameters(trials: pd.DataFrame, keys: Sequence[str] | None = None
                     ) -> tuple[list[str], bool]:
    """The parameters :func:`config_labels` names (``keys``, or the varying ones less those
    each stage fixes) and whether the labels start with the stage instead of the others."""
    if keys is not None:
        return list(keys), False
    varying = varying_parameters(trials)
    by_stage = _stage_parameters(trials, varying)
    if by_stage and trials["stage"].notna().all() and trials["stage"].is_unique:
        # one trial per stage: every parameter is constant within its stage, and the stage
        # names alone would hide that lam (or eps) differs; the data seed only lengthens them
        return [k for k in varying if k != "data_seed"], True
    return [k for k in varying if k not in by_stage], bool(by_stage)


def numeric_parameters(trials: pd.DataFrame, keys: Sequence[str]) -> bool:
    """Whether every one of ``keys`` holds plain numbers (bars then follow their order)."""
    if not keys:
        return False
    for k in keys:
        values = trials[k].dropna()
        if values.empty or not all(isinstance(v, int | float | np.integer | np.floating)
                                   and not isinstance(v, bool) for v in values):
            return False
    return True


def sweep_title(frame: pd.DataFrame) -> str:
    """The sweep (or sweeps) the rows come from, for a chart's title: ``"lambda-search"``."""
    if "sweep" not in frame.columns:
        return ""
    names = [str(n) for n in dict.fromkeys(frame["sweep"].dropna())]
    return ", ".join(names)


def chosen_by_validation(trials: pd.DataFrame, metric: str) -> str | None:
    """The metric that picks the trial to mark on a chart of ``metric``: the validation
    accuracy for the other accuracies (marking the best test accuracy would invite choosing
    on the test set), else ``metric`` itself; None when the trials have no validation
    accuracy to choose by."""
    if metric in PERCENT_METRICS and metric != "val_acc":
        if "val_acc" in trials and np.isfinite(trials["val_acc"].astype(float)).any():
            return "val_acc"
        return None
    return metric


def per_stage_counts(trials: pd.DataFrame, keys: Sequence[str]) -> pd.DataFrame:
    """For every trial, how many distinct values each of ``keys`` takes in its stage (the
    stage of its sweep, where the trials come from several)."""
    groups = [trials["stage"].fillna("")]
    if several_sweeps(trials):
        groups.insert(0, trials["sweep"].astype(str))
    stages = trials.groupby(groups, sort=False)
    return stages[list(keys)].transform(lambda v: v.astype(str).nunique())


def _stage_parameters(trials: pd.DataFrame, keys: Sequence[str]) -> list[str]:
    """The varying parameters that stay constant within every stage (none for one stage)."""
    if not keys or "stage" not in trials.columns or trials["stage"].nunique(dropna=False) < 2:
        return []
    counts = per_stage_counts(trials, keys)
    return [k for k in keys if counts[k].le(1).all()]


def unique_labels(trials: pd.DataFrame, keys: Sequence[str] | None) -> pd.Series:
    """Labels per trial; trials that share a configuration get their seed added."""
    labels = config_labels(trials, keys)
    if labels.duplicated(keep=False).any():
        labels = labels + ", seed=" + trials["seed"].astype(str)
    if labels.duplicated(keep=False).any():
        labels = labels + " (trial " + trials["trial_id"].astype(str) + ")"
    return labels


def check_metric(trials: pd.DataFrame, metric: str) -> None:
    if trials.empty:
        raise ChartError("no trials selected: nothing to draw")
    known = metric_columns(trials)
    if metric not in known:
        raise ChartError(f"unknown metric {metric!r} (metrics: {', '.join(known)})")


def check_quantity(quantity: str) -> None:
    if quantity not in CURVE_LABELS:
        raise ChartError(f"unknown curve quantity {quantity!r} "
                         f"(quantities: {', '.join(CURVE_QUANTITIES)})")


def complete_trials(trials: pd.DataFrame, *columns: str) -> pd.DataFrame:
    done = trials[trials["state"] == "COMPLETE"]
    for c in columns:
        done = done[np.isfinite(done[c].astype(float))]
    if done.empty:
        raise ChartError("no complete trials with a finite value selected: nothing to draw")
    return done


SHARED_TIMES = ("train_seconds", "eval_seconds")
"""Times a trial of a fused group stores as its even share of the group's time."""


def time_measurements(done: pd.DataFrame, metric: str) -> pd.Series | None:
    """For a time the trials of a fused group share (:data:`SHARED_TIMES`), which
    measurement each row is: ``"group <id>"`` for the trials of one group of two or more
    (one measurement, split evenly), ``"trial <id>"`` for a trial trained alone. None for
    another metric or when no selected trial trained in a group."""
    if metric not in SHARED_TIMES or "group_size" not in done or "group_id" not in done:
        return None
    size = pd.to_numeric(done["group_size"], errors="coerce").fillna(1)
    grouped = size > 1
    if not grouped.any():
        return None
    gid = done["group_id"].astype(object)
    keys = [f"group {g}" if shared else f"trial {t}"
            for g, t, shared in zip(gid, done["trial_id"], grouped, strict=True)]
    return pd.Series(keys, index=done.index, dtype=object)


def value_scale(metric: str) -> float:
    return 100.0 if metric in PERCENT_METRICS else 1.0


def select_trials(trials: pd.DataFrame, trial_ids: Sequence[int],
                  sweep: str | Sequence[str] = "") -> pd.DataFrame:
    """The rows of ``trials`` with these database ids; an id not among them is an error
    (naming ``sweep``, one sweep's name or several)."""
    missing = sorted(set(int(i) for i in trial_ids) - set(int(i) for i in trials["trial_id"]))
    if missing:
        names = [sweep] if isinstance(sweep, str) else list(dict.fromkeys(sweep))
        names = [n for n in names if n]
        where = (f" in sweep {names[0]!r}" if len(names) == 1 else
                 " in sweeps " + ", ".join(repr(n) for n in names) if names else "")
        raise ChartError(f"no trial with id {missing[0]}{where}")
    return trials[trials["trial_id"].isin([int(i) for i in trial_ids])]


def stage_pool(trials: pd.DataFrame, stage: str, reused: Sequence[int] = ()) -> pd.DataFrame:
    """The complete trials a stage's best is chosen from: its own and the earlier trials it
    reuses (they are in its study and count as its trials), as ``sweep show`` and the run's
    summary choose."""
    mine = (trials["stage"] == stage) | trials["trial_id"].isin([int(i) for i in reused])
    return trials[mine.fillna(False) & (trials["state"] == "COMPLETE")]


def rank(trials: pd.DataFrame, metric: str) -> pd.DataFrame:
    """``trials`` best first by ``metric`` (lowest first for times and counts), ties to the
    lowest id: the one rule for "best" of the runner, ``sweep show`` and the report."""
    return trials.sort_values([metric, "trial_id"],
                              ascending=[metric in LOWER_IS_BETTER, True], na_position="last")


def best_trials(trials: pd.DataFrame, metric: str, n: int = 1, *,
                per_sweep: bool = False) -> pd.DataFrame:
    """The ``n`` complete trials best by ``metric`` (lowest first for times and counts);
    ``per_sweep``: the best ``n`` of each sweep, sweep by sweep."""
    check_metric(trials, metric)
    done = trials[trials["state"] == "COMPLETE"]
    ranked = done.sort_values(metric, ascending=metric in LOWER_IS_BETTER, na_position="last")
    if per_sweep and several_sweeps(done):
        order = list(dict.fromkeys(trials["sweep"]))
        return pd.concat([ranked[ranked["sweep"] == name].head(n) for name in order])
    return ranked.head(n)
