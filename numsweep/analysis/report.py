"""A sweep's report: one self-contained HTML page (charts embedded as base64 PNG) and a
Markdown version with the chart files beside it, both drawn straight from the database."""

from __future__ import annotations

import base64
import html
import json
import math
import platform
import re
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.axes import Axes

from numsweep.analysis import charts
from numsweep.analysis.formatting import format_cell
from numsweep.analysis.queries import load_curves, load_stages, load_trials, sweep_names
from numsweep.analysis.selection import ChartError, rank, stage_pool
from numsweep.pareto import Objective, choose_point, front_mask
from numsweep.storage import StagePlan, StageRecord, Storage

PACKAGES = ("numsweep", "numpy", "pandas", "matplotlib", "optuna", "sqlalchemy", "click")
BAR_LIMIT = 20
STAGE_CURVES_LIMIT = 8
"""A stage of at most this many complete trials gets a chart of all their curves overlaid."""


@dataclass(frozen=True)
class Chart:
    title: str
    file: str
    caption: str


@dataclass(frozen=True)
class Report:
    """What :func:`build_report` wrote: the two pages, the chart files, and the charts it
    left out with the reason."""

    html: Path
    markdown: Path
    charts: tuple[Chart, ...]
    skipped: tuple[tuple[str, str], ...] = field(default=())


@dataclass(frozen=True)
class Table:
    columns: list[str]
    rows: list[list[str]]


_cell = format_cell


def _percent(value: Any) -> str:
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) \
        else f"{100 * float(value):.2f}"


def tied_parameters(stages: Sequence[StageRecord]) -> list[list[str]]:
    """The parameter groups of the stages' tied space entries ("optimizer,eta_max")."""
    groups = {tuple(name.split(",")) for st in stages for name in st.plan.space if "," in name}
    return [list(group) for group in sorted(groups)]


def _value(values: pd.Series, metric: str) -> str:
    best = values.min() if metric in charts.LOWER_IS_BETTER else values.max()
    return _percent(best) if metric in charts.PERCENT_METRICS else _cell(float(best))


def _no_trials(plan: StagePlan) -> str:
    return f"no new trials (reuses {len(plan.reused)})" if plan.reused else "no trials"


def software_versions() -> dict[str, str]:
    out = {"python": platform.python_version(), "platform": platform.platform()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def _tables(trials: pd.DataFrame, stages: list[Any], metric: str, top: int
            ) -> list[tuple[str, Table]]:
    varying = charts.varying_parameters(trials)
    counts = trials.groupby(["stage", "state"], dropna=False).size()
    stage_rows = []
    reused = {st.name: st.plan.reused for st in stages}
    for st in stages:
        states = ", ".join(f"{n} {s.lower()}" for (name, s), n in counts.items()
                           if name == st.name)
        if st.plan.reused:
            states += ("; " if states else "") + f"{len(st.plan.reused)} reused"
        done = stage_pool(trials, st.name, st.plan.reused)
        best = "" if done.empty or metric not in done else (
            f"{_value(done[metric], metric)} (trial {rank(done, metric)['trial_id'].iloc[0]})")
        stage_rows.append([str(st.index), st.name, st.sampler, st.plan.describe(st.sampler),
                           st.note, states or _no_trials(st.plan), best])
    out = [("Stages and the ranges they searched",
            Table(["#", "stage", "sampler", "searched", "note", "trials",
                   f"best {charts.metric_label(metric)}"], stage_rows))]
    results = [c for c in ("train_acc", "val_acc", "test_acc", "train_seconds") if c in trials]
    names = [st.name for st in stages] + ([None] if trials["stage"].isna().any() else [])
    for name in names:
        if name is None:
            done = trials[trials["stage"].isna() & (trials["state"] == "COMPLETE")]
        else:
            done = stage_pool(trials, name, reused.get(name, ()))
        if done.empty or metric not in done:
            continue
        best = rank(done, metric).head(top)
        rows = [[str(r["trial_id"]) + ("" if name is None or r["stage"] == name
                                       else f" (reused from {r['stage']})"),
                 *[_cell(r[p]) for p in varying],
                 *[_percent(r[c]) if c in charts.PERCENT_METRICS else _cell(r[c])
                   for c in results]] for _, r in best.iterrows()]
        heads = [charts.metric_label(c) for c in results]
        which = "the trials without a stage" if name is None else f"stage {name}"
        out.append((f"Best trials of {which} (by {metric})",
                    Table(["trial id", *varying, *heads], rows)))
    failed = trials[trials["state"].isin(["FAILED", "PRUNED"])]
    if not failed.empty:
        out.append(("Failed and pruned trials",
                    Table(["trial id", "stage", "state", *varying, "message"],
                          [[str(r["trial_id"]), _cell(r["stage"]), r["state"].lower(),
                            *[_cell(r[p]) for p in varying], r["message"]]
                           for _, r in failed.iterrows()])))
    return out


def searched_parameters(done: pd.DataFrame, varying: list[str]) -> list[str]:
    """The varying parameters that vary within a stage. A value each stage fixes for itself
    (modular-nets' lam per network) is a setting: a lam chart or an importance of it would
    suggest a search that never happened."""
    if not varying:
        return []
    counts = charts.per_stage_counts(done, varying)
    return [p for p in varying if counts[p].gt(1).any()]


def trials_of_stages_varying(done: pd.DataFrame, params: list[str]) -> pd.DataFrame:
    """The trials of the stages in which at least one of ``params`` varies."""
    varies = charts.per_stage_counts(done, params).gt(1).any(axis=1)
    stage = done["stage"].fillna("")
    return done[stage.isin(stage[varies])]


def stage_searched(stages: Sequence[StageRecord]) -> list[str]:
    """The parameters the sweep's searching stages search (their stored spaces; a ``best``
    stage retrains, it searches nothing)."""
    names = [n for st in stages if st.sampler != "best" for entry in st.plan.space
             for n in entry.split(",")]
    return list(dict.fromkeys(names))


def sweep_importance_data(trials: pd.DataFrame, stages: Sequence[StageRecord],
                          metric: str = "val_acc",
                          params: Sequence[str] | None = None) -> pd.DataFrame:
    """:func:`charts.importance_data` over what the sweep searched: the parameters of the
    stages' spaces that vary within a stage, on the trials of the stages that vary them.
    A value that only differs between stages (a stage's data seed, a final stage's cycles)
    is a setting, not a search. ``params`` names them instead. Without stored spaces (trials
    of ``numsweep train``) every varying parameter counts."""
    done = trials[trials["state"] == "COMPLETE"]
    if params is None and stage_searched(stages) and not done.empty:
        varying = charts.varying_parameters(done)
        params = [p for p in searched_parameters(done, varying) if p in stage_searched(stages)]
        if params:
            trials = trials_of_stages_varying(done, params)
    return charts.importance_data(trials, metric, params, tied_parameters(stages))


def _multi_objective_stages(trials: pd.DataFrame, stages: list[Any],
                            spec: Mapping[str, Any]) -> list[tuple[str, list[Objective], str]]:
    """(stage, its objectives, the pick of the best stage after it) for every stage with two
    objectives or more that has trials."""
    out = []
    for st in stages:
        objectives = charts.spec_objectives(spec, st.name)
        if len(objectives) > 1 and st.sampler != "best" and (trials["stage"] == st.name).any():
            out.append((st.name, objectives, charts.spec_pick(spec, st.name)))
    return out


def _front_tables(trials: pd.DataFrame, stages: list[Any], spec: Mapping[str, Any]
                  ) -> list[tuple[str, Table]]:
    """The trials on the Pareto front of each stage with several objectives, the chosen one
    marked."""
    out = []
    for stage, objectives, pick in _multi_objective_stages(trials, stages, spec):
        done = trials[(trials["stage"] == stage) & (trials["state"] == "COMPLETE")]
        columns = [o.column for o in objectives]
        if any(c not in done for c in columns):
            continue
        done = done[np.isfinite(done[columns].astype(float)).all(axis=1)]
        if done.empty:
            continue
        values = done[columns].astype(float).to_numpy()
        on = front_mask(values, [o.maximize for o in objectives])
        chosen = int(done["trial_id"].iloc[choose_point(values, objectives, pick)])
        varying = charts.varying_parameters(done)
        rows = [[str(r["trial_id"]) + (" (chosen)" if r["trial_id"] == chosen else ""),
                 *[_cell(r[p]) for p in varying],
                 *[_percent(r[c]) if c in charts.PERCENT_METRICS else _cell(r[c])
                   for c in columns]]
                for (_, r), keep in zip(done.iterrows(), on, strict=True) if keep]
        out.append((f"Pareto front of stage {stage} ({', '.join(o.text for o in objectives)}; "
                    f"chosen: pick = {pick})",
                    Table(["trial id", *varying, *[charts.metric_label(c) for c in columns]],
                          rows)))
    return out


def _chart_plan(trials: pd.DataFrame, stages: list[Any], db: Storage, metric: str,
                spec: Mapping[str, Any] | None = None
                ) -> list[tuple[str, str, str, Callable[[], Axes | list[Axes]]]]:
    """(title, file stem, caption, draw) for every chart that fits this sweep."""
    done = trials[trials["state"] == "COMPLETE"]
    varying = charts.varying_parameters(done) if not done.empty else []
    searched = searched_parameters(done, varying)
    plan: list[tuple[str, str, str, Callable[[], Axes | list[Axes]]]] = []
    spec = spec or {}
    ranked = metric in trials
    for m in dict.fromkeys((metric, "test_acc", "train_seconds")):
        if m in trials and ranked:
            plan.append((f"{charts.metric_label(m)} per configuration", f"bars-{m}",
                         f"Mean over seeds per configuration (best {BAR_LIMIT} shown), error "
                         "bars ±1 std where a configuration ran several seeds.",
                         lambda m=m: charts.draw_bars(
                             charts.bar_data(trials, m, top=BAR_LIMIT), m)))
    if "lam" in searched and ranked:
        plan.append((f"{charts.metric_label(metric)} against lam", "lambda",
                     "Each trial's lam on a log axis, one marker per stage; the star is the "
                     "chosen (best) lam.",
                     lambda: charts.draw_lambda(charts.lambda_data(trials, metric))))
    if not done.empty and ranked:
        best_ids = []
        reused = {st.name: st.plan.reused for st in stages}
        stage_of = done["stage"].fillna("")  # "": trials without a stage (numsweep train)
        for stage in dict.fromkeys(stage_of):
            in_stage = (done[stage_of == stage] if not stage
                        else stage_pool(done, stage, reused.get(stage, ())))
            if not in_stage[metric].astype(float).notna().any():
                continue
            best_ids.append(int(rank(in_stage, metric)["trial_id"].iloc[0]))
        chosen = done[done["trial_id"].isin(best_ids[:4])]

        def curves() -> list[Axes]:
            # labelled by stage and the values the sweep searches ("fine: lam=0.003 (trial 14)")
            data = charts.curve_data(chosen, load_curves(db, chosen["trial_id"]),
                                     searched or None, by_stage=chosen["stage"].notna().any())
            return charts.draw_curve_panels(data)

        plan.append(("Learning curves of the best trial of each stage", "curves",
                     "Loss, cost and accuracy on the training (solid) and validation (dashed) "
                     "sets against update step, and the learning-rate schedule.", curves))
        for stage in dict.fromkeys(done["stage"].dropna()):
            in_stage = done[done["stage"] == stage]
            if not 2 <= len(in_stage) <= STAGE_CURVES_LIMIT:
                continue
            plan.append((f"Learning curves of every trial of stage {stage}",
                         "curves-" + re.sub(r"[^\w.-]+", "_", str(stage)),
                         "Accuracy and loss on the training (solid) and validation (dashed) "
                         "sets against update step, one colour per trial.",
                         lambda in_stage=in_stage: charts.draw_curve_panels(
                             charts.curve_data(in_stage, load_curves(db, in_stage["trial_id"])),
                             ("acc", "loss"))))
    compared = {"optimizer", "dropout"} & set(searched)
    if compared:
        # only the stages that compare them: other stages' networks would enter the means
        comparing = trials_of_stages_varying(done, sorted(compared))
        plan.append(("Optimizers with and without dropout", "optimizers",
                     "Training loss per epoch (step · batch_size / n_train), mean over the "
                     "trials of each optimizer and dropout rate, in the stages that vary them.",
                     lambda: charts.draw_optimizers(charts.optimizer_data(
                         comparing, load_curves(db, comparing["trial_id"])))))
    for mode, unit in (("lr", "learning rate"), ("batch", "batch size")):
        if f"best_{mode}" in done:
            tests = done[done[f"best_{mode}"].notna()]
            plan.append((f"{unit.capitalize()} range test", f"range-test-{mode}",
                         f"Mini-batch loss of each update against the {unit} (faint) and its "
                         "smoothed value, with the suggested values marked.",
                         lambda tests=tests, mode=mode: charts.draw_range_test(
                             charts.range_test_data(tests, load_curves(db, tests["trial_id"]),
                                                    mode=mode))))
    # a stage searching two or more space entries; parameters tied in one entry ("f,nf")
    # vary together and explain nothing apart
    independent = any(len(st.plan.space) >= 2 for st in stages)
    # the searching stages' trials only: a final retraining, longer, would count as a sample
    searching = trials_of_stages_varying(done, searched) if searched else done.iloc[:0]
    if independent and len(searching) >= 3 and ranked:
        plan.append((f"Parameter importance for {metric}", "importance",
                     "Optuna's importance evaluator on a study rebuilt from the complete "
                     "trials of the stages that search, over the parameters they search.",
                     lambda: charts.draw_importance(
                         sweep_importance_data(trials, stages, metric))))
    for stage, objectives, pick in _multi_objective_stages(trials, stages, spec):
        in_stage = trials[trials["stage"] == stage]
        shown = ", ".join(o.text for o in objectives)
        plan.append((f"Pareto front of stage {stage} ({shown})",
                     "front-" + re.sub(r"[^\w.-]+", "_", stage),
                     f"Every complete trial of stage {stage}; the red line joins the trials no "
                     f"other beats in both objectives drawn, the star is the point chosen "
                     f"(pick = {pick}) over all its objectives ({shown}); training time is "
                     "the trial's own cost (cost_seconds).",
                     lambda in_stage=in_stage, objectives=objectives, pick=pick:
                     charts.draw_pareto(charts.objective_front_data(in_stage, objectives,
                                                                    pick))))
    if {"train_seconds", "test_acc"} <= set(trials.columns):
        plan.append(("Test accuracy against training time", "pareto",
                     "Every complete trial; the red line joins the trials no other trial "
                     "beats in both accuracy and time.",
                     lambda: charts.draw_pareto(charts.pareto_data(trials))))
    return plan


def _draw_charts(plan: Sequence[tuple[str, str, str, Callable[[], Axes | list[Axes]]]],
                 out: Path) -> tuple[list[Chart], list[tuple[str, str]]]:
    """Draw every planned chart into ``out``: the charts made, and those left out and why."""
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ChartError(f"cannot create {out}: {exc.strerror or exc}") from None
    made: list[Chart] = []
    skipped: list[tuple[str, str]] = []
    for title, stem, caption, draw in plan:
        try:
            charts.save(draw(), out / f"{stem}.png")
        except ChartError as exc:
            skipped.append((title, str(exc)))
            continue
        made.append(Chart(title, f"{stem}.png", caption))
    return made, skipped


def build_report(db: str | Storage, sweep: str | Sequence[str], out_dir: str | Path, *,
                 metric: str = "val_acc", top: int = 5) -> Report:
    """Write ``report.html``, ``report.md`` and the charts' PNG files into ``out_dir``.

    ``sweep`` is one sweep's name, or several names for a comparison report: the sweeps'
    best trials side by side with only the parameters and settings that differ, and charts
    of all their trials labelled by sweep."""
    storage = db if isinstance(db, Storage) else Storage(db, read_only=True)
    names = sweep_names(sweep) or []
    if len(names) > 1:
        return _build_comparison(storage, names, Path(out_dir), metric, top)
    sweep = names[0]
    record, stages = load_stages(storage, sweep)
    trials = load_trials(storage, sweep)
    if trials.empty:
        raise ChartError(f"sweep {sweep!r} has no trials: nothing to report")
    if metric != "val_acc" or "val_acc" in trials:  # trials without val_acc: range tests
        charts.check_metric(trials, metric)
    out = Path(out_dir)
    made, skipped = _draw_charts(_chart_plan(trials, stages, storage, metric, record.spec), out)
    tables = _tables(trials, stages, metric, top) + _front_tables(trials, stages, record.spec)
    counts = trials["state"].str.lower().value_counts()
    summary = {
        "sweep": record.name,
        "database": storage.shown_url,  # never the password
        "created": f"{record.created_at:%Y-%m-%d %H:%M}",
        "seed": str(record.seed),
        "trials": f"{len(trials)} ({', '.join(f'{n} {s}' for s, n in counts.items())})",
        "report written": f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
    }
    run = {} if record.run is None else {
        "data": record.run.data, "threads": record.run.threads,
        "checkpoint_dir": record.run.checkpoint_dir, "keep_weights": record.run.keep_weights}
    settings = {k: v if isinstance(v, str) else json.dumps(v)
                for k, v in {**record.spec, **run}.items()
                if k not in ("stages", "name") and v not in ("", None)}
    versions = software_versions()
    html_path = out / "report.html"
    html_path.write_text(_html(record.name, summary, made, skipped, tables, settings, versions,
                               out), encoding="utf-8")
    md_path = out / "report.md"
    md_path.write_text(_markdown(record.name, summary, made, skipped, tables, settings,
                                 versions), encoding="utf-8")
    return Report(html_path, md_path, tuple(made), tuple(skipped))


# Comparing sweeps

RESULTS = ("train_acc", "val_acc", "test_acc", "train_seconds")


def _result_text(value: Any, column: str) -> str:
    return _percent(value) if column in charts.PERCENT_METRICS else _cell(value)


def best_of_each_sweep(trials: pd.DataFrame, metric: str) -> pd.DataFrame:
    """The best complete trial of each sweep by ``metric``, in the sweeps' order (a sweep
    without one is left out)."""
    done = trials[(trials["state"] == "COMPLETE")]
    done = done[done[metric].astype(float).notna()] if metric in done else done.iloc[:0]
    return charts.best_trials(done, metric, 1, per_sweep=True) if not done.empty else done


def differing_parameters(trials: pd.DataFrame) -> list[str]:
    """The parameters whose values are not the same in every row (unset counts as a value)."""
    return [c for c in charts.parameter_columns(trials)
            if trials[c].map(_cell).nunique() > 1]


def differing_settings(specs: dict[str, dict[str, Any]]) -> list[list[str]]:
    """Rows (setting, value in each sweep) of the spec settings that differ between the
    sweeps: top-level keys, and one level down for tables such as ``fixed``."""
    flat: dict[str, dict[str, str]] = {}
    for name, spec in specs.items():
        for key, value in spec.items():
            if key in ("name", "stages"):
                continue
            items = value.items() if isinstance(value, dict) else [(None, value)]
            for sub, v in items:
                label = key if sub is None else f"{key}.{sub}"
                flat.setdefault(label, {})[name] = v if isinstance(v, str) else json.dumps(v)
    return [[label, *[values.get(name, "") for name in specs]]
            for label, values in flat.items()
            if len({values.get(name, "") for name in specs}) > 1]


def _comparison_tables(trials: pd.DataFrame, names: list[str], stages: dict[str, list[Any]],
                       specs: dict[str, dict[str, Any]], metric: str, top: int
                       ) -> list[tuple[str, Table]]:
    best = best_of_each_sweep(trials, metric)
    by_sweep = {row["sweep"]: row for _, row in best.iterrows()}
    params = differing_parameters(best) if len(best) > 1 else []
    rows = [["trial id", *[str(by_sweep[n]["trial_id"]) if n in by_sweep else "no complete "
                           "trial" for n in names]],
            ["stage", *[_cell(by_sweep[n]["stage"]) if n in by_sweep else "" for n in names]]]
    rows += [[p, *[_cell(by_sweep[n][p]) if n in by_sweep else "" for n in names]]
             for p in params]
    rows += [[charts.metric_label(c), *[_result_text(by_sweep[n][c], c) if n in by_sweep
                                        else "" for n in names]]
             for c in dict.fromkeys((metric, *RESULTS)) if c in trials]
    out = [(f"Best trial of each sweep (by {metric}; parameters that differ)",
            Table(["", *names], rows))]
    settings = differing_settings(specs)
    if settings:
        out.append(("Settings that differ between the sweeps", Table(["setting", *names],
                                                                     settings)))
    stage_rows = []
    for name in names:
        in_sweep = trials[trials["sweep"] == name]
        for st in stages[name]:
            in_stage = in_sweep[in_sweep["stage"] == st.name]
            done = in_stage[in_stage["state"] == "COMPLETE"]
            value = "" if done.empty or metric not in done else _value(done[metric], metric)
            stage_rows.append([name, st.name, st.sampler, st.plan.describe(st.sampler),
                               str(len(in_stage)), value])
    if stage_rows:
        out.append(("Stages and the ranges they searched",
                    Table(["sweep", "stage", "sampler", "searched", "trials",
                           f"best {charts.metric_label(metric)}"], stage_rows)))
    for name in names:
        done = trials[(trials["sweep"] == name) & (trials["state"] == "COMPLETE")]
        if done.empty or metric not in done:
            continue
        ranked = done.sort_values(metric, ascending=metric in charts.LOWER_IS_BETTER).head(top)
        varying = charts.varying_parameters(done)
        results = [c for c in RESULTS if c in done]
        out.append((f"Best trials of sweep {name} (by {metric})",
                    Table(["trial id", "stage", *varying,
                           *[charts.metric_label(c) for c in results]],
                          [[str(r["trial_id"]), _cell(r["stage"]),
                            *[_cell(r[p]) for p in varying],
                            *[_result_text(r[c], c) for c in results]]
                           for _, r in ranked.iterrows()])))
    return out


def _comparison_plan(trials: pd.DataFrame, db: Storage, metric: str
                     ) -> list[tuple[str, str, str, Callable[[], Axes | list[Axes]]]]:
    """(title, file stem, caption, draw) for the charts of a comparison of sweeps."""
    plan: list[tuple[str, str, str, Callable[[], Axes | list[Axes]]]] = []
    if metric not in trials:
        return plan
    done = trials[trials["state"] == "COMPLETE"]
    for m in dict.fromkeys((metric, "test_acc", "train_seconds")):
        if m in trials:
            plan.append((f"{charts.metric_label(m)} per configuration", f"bars-{m}",
                         f"Mean over seeds per configuration of every sweep (best {BAR_LIMIT} "
                         "shown), labelled by sweep.",
                         lambda m=m: charts.draw_bars(
                             charts.bar_data(trials, m, top=BAR_LIMIT), m)))
    best = best_of_each_sweep(trials, metric)
    if not best.empty:
        shown = differing_parameters(best) if len(best) > 1 else []
        plan.append(("Learning curves of the best trial of each sweep", "curves",
                     "Loss, cost and accuracy on the training (solid) and validation (dashed) "
                     "sets against update step, and the learning-rate schedule, one colour "
                     "per sweep.",
                     lambda: charts.draw_curve_panels(charts.curve_data(
                         best, load_curves(db, best["trial_id"]), shown[:3] or None))))
    varying = charts.varying_parameters(done) if not done.empty else []
    if "lam" in searched_parameters(done, varying):
        plan.append((f"{charts.metric_label(metric)} against lam", "lambda",
                     "Each trial's lam on a log axis, one marker per sweep and stage; the star "
                     "is the best lam over all the sweeps.",
                     lambda: charts.draw_lambda(charts.lambda_data(trials, metric))))
    if {"train_seconds", "test_acc"} <= set(trials.columns):
        plan.append(("Test accuracy against training time", "pareto",
                     "Every complete trial of every sweep; the red line joins the trials no "
                     "other trial beats in both accuracy and time.",
                     lambda: charts.draw_pareto(charts.pareto_data(trials))))
    return plan


def _build_comparison(storage: Storage, names: list[str], out: Path, metric: str,
                      top: int) -> Report:
    records = {}
    stages = {}
    for name in names:
        records[name], stages[name] = load_stages(storage, name)
    trials = load_trials(storage, names)
    if trials.empty:
        raise ChartError(f"sweeps {', '.join(names)} have no trials: nothing to report")
    empty = [n for n in names if not (trials["sweep"] == n).any()]
    if metric != "val_acc" or "val_acc" in trials:
        charts.check_metric(trials, metric)
    made, skipped = _draw_charts(_comparison_plan(trials, storage, metric), out)
    tables = _comparison_tables(trials, names, stages, {n: records[n].spec for n in names},
                                metric, top)
    counts = {n: trials.loc[trials["sweep"] == n, "state"].str.lower().value_counts()
              for n in names}
    tables.insert(0, ("Sweeps", Table(
        ["sweep", "created", "seed", "trials"],
        [[n, f"{records[n].created_at:%Y-%m-%d %H:%M}", str(records[n].seed),
          f"{counts[n].sum()} ({', '.join(f'{k} {s}' for s, k in counts[n].items())})"
          if counts[n].sum() else "no trials"] for n in names])))
    summary = {
        "sweeps": ", ".join(names),
        "database": storage.url,
        "trials": str(len(trials)) + (f" (none in {', '.join(empty)})" if empty else ""),
        "report written": f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
    }
    versions = software_versions()
    title = "Sweeps " + ", ".join(names) + " compared"
    html_path = out / "report.html"
    html_path.write_text(_html(title, summary, made, skipped, tables, {}, versions, out,
                               heading=title), encoding="utf-8")
    md_path = out / "report.md"
    md_path.write_text(_markdown(title, summary, made, skipped, tables, {}, versions,
                                 heading=title), encoding="utf-8")
    return Report(html_path, md_path, tuple(made), tuple(skipped))


# Rendering

CSS = """
body { font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; color: #222;
       padding: 0 1em; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; vertical-align: top; }
th { background: #f3f3f3; }
figure { margin: 1.5em 0; }
figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { color: #555; font-size: 0.9em; }
code { background: #f6f6f6; padding: 0 0.2em; }
"""

IMAGE_CHECK = """
window.addEventListener("load", function () {
  var images = document.images, loaded = 0;
  for (var i = 0; i < images.length; i++) {
    if (images[i].complete && images[i].naturalWidth > 0) { loaded++; }
  }
  document.body.setAttribute("data-images-loaded", loaded + "/" + images.length);
});
"""


def _html_table(table: Table) -> str:
    body = "".join("<tr>" + "".join(f"<td>{html.escape(v)}</td>" for v in row) + "</tr>"
                   for row in table.rows)
    if not any(table.columns):
        return f"<table><tbody>{body}</tbody></table>"
    head = "".join(f"<th>{html.escape(c)}</th>" for c in table.columns)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _pairs(items: dict[str, str]) -> Table:
    return Table(["", ""], [[k, v] for k, v in items.items()])


def _html(name: str, summary: dict[str, str], made: list[Chart],
          skipped: list[tuple[str, str]], tables: list[tuple[str, Table]],
          settings: dict[str, str], versions: dict[str, str], out: Path,
          heading: str | None = None) -> str:
    e = html.escape
    parts = [f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
             f"<title>numsweep report: {e(name)}</title><style>{CSS}</style>"
             f"<script>{IMAGE_CHECK}</script></head><body>",
             f"<h1>{e(heading or f'Sweep {name}')}</h1>", _html_table(_pairs(summary))]
    for title, table in tables:
        parts += [f"<h2>{e(title)}</h2>", _html_table(table)]
    parts.append("<h2>Charts</h2>")
    for chart in made:
        data = base64.b64encode((out / chart.file).read_bytes()).decode("ascii")
        parts.append(f"<figure><h3>{e(chart.title)}</h3>"
                     f"<img alt=\"{e(chart.title)}\" src=\"data:image/png;base64,{data}\">"
                     f"<figcaption>{e(chart.caption)}</figcaption></figure>")
    if skipped:
        parts.append("<p>Charts left out: " + "; ".join(
            f"{e(t)} ({e(why)})" for t, why in skipped) + "</p>")
    if settings:
        parts += ["<h2>Settings</h2>", _html_table(Table(["setting", "value"],
                                                         [[k, v] for k, v in settings.items()]))]
    parts += ["<h2>Software</h2>", _html_table(Table(["package", "version"],
                                                     [[k, v] for k, v in versions.items()])),
              "</body></html>"]
    return "\n".join(parts)


MD_SPECIAL = re.compile(r"([\\`*_\[\]|#!])")


def _md_escape(text: str) -> str:
    """``text`` shown as it is in Markdown: what report.html escapes (``<``, ``>``, ``&``:
    Markdown passes HTML through) as entities, Markdown's own marks backslashed, one line."""
    return MD_SPECIAL.sub(r"\\\1", html.escape(text, quote=False)).replace("\n", " ")


def _md_table(table: Table) -> str:
    lines = ["| " + " | ".join(_md_escape(c) or " " for c in table.columns) + " |",
             "|" + "---|" * len(table.columns)]
    lines += ["| " + " | ".join(_md_escape(v) for v in row) + " |" for row in table.rows]
    return "\n".join(lines)


def _markdown(name: str, summary: dict[str, str], made: list[Chart],
              skipped: list[tuple[str, str]], tables: list[tuple[str, Table]],
              settings: dict[str, str], versions: dict[str, str],
              heading: str | None = None) -> str:
    e = _md_escape
    parts = [f"# {e(heading) if heading else f'Sweep {e(name)}'}", "",
             _md_table(Table(["", ""], [[k, v] for k, v in summary.items()])), ""]
    for title, table in tables:
        parts += [f"## {e(title)}", "", _md_table(table), ""]
    parts += ["## Charts", ""]
    for chart in made:
        parts += [f"### {e(chart.title)}", "",
                  f"![{e(chart.title)}]({urllib.parse.quote(chart.file)})", "",
                  e(chart.caption), ""]
    if skipped:
        parts += ["Charts left out: " + "; ".join(f"{e(t)} ({e(why)})" for t, why in skipped),
                  ""]
    if settings:
        parts += ["## Settings", "", _md_table(Table(["setting", "value"],
                                                     [[k, v] for k, v in settings.items()])),
                  ""]
    parts += ["## Software", "", _md_table(Table(["package", "version"],
                                                 [[k, v] for k, v in versions.items()])), ""]
    return "\n".join(parts)
