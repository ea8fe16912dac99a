"""Parameter importance: Optuna's fANOVA on a study rebuilt from the stored trials.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.axes import Axes

from numsweep.analysis.figures import new_axes
from numsweep.analysis.formatting import LOWER_IS_BETTER, count, format_value
from numsweep.analysis.selection import (
    ChartError,
    check_metric,
    complete_trials,
    sweep_title,
    varying_parameters,
)

IMPORTANCE_TRIALS = 1000


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
    from numsweep.optuna_quiet import optuna  # heavy: only when importance is asked for

    check_metric(trials, metric)
    done = complete_trials(trials, metric)
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
    data.attrs.update(metric=metric, trials=len(done), of=total, method=method,
                      sweep=sweep_title(done))
    return data.sort_values("importance", ascending=False, ignore_index=True)


def draw_importance(data: pd.DataFrame, ax: Axes | None = None) -> Axes:
    """Horizontal bars of importance (share of the metric's variance), largest on top."""
    metric = data.attrs.get("metric", "val_acc")
    if ax is None:
        ax = new_axes(6.5, max(2.5, 0.45 * len(data) + 1.5))
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
        count(int(used), "trial") if isinstance(used, int) else f"{used} trials"
    sweep = data.attrs.get("sweep", "")
    ax.set_title((f"{sweep}: " if sweep else "") + f"parameter importance for {metric} ({sample})")
    return ax
