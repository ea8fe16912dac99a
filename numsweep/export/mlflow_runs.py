"""MLflow export: each sweep an experiment, each finished trial a run with its parameters,
its results as metrics, its curves as metric history and its stage as a tag.

A run carries the tag ``numsweep.trial_id``; the tag ``numsweep.exported`` is set last, once
everything is logged. A later export skips the runs whose trial has not changed since, and
replaces a run cut short (or of a trial that finished anew) by a new one.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from typing import Any

from numsweep.analysis.queries import Sweeps
from numsweep.export.common import (
    ExportedTrial,
    ExportError,
    ExportSummary,
    curve_series,
    finished_trials,
    last_step,
    param_text,
    require,
    seconds,
)
from numsweep.storage import Storage

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
TRIAL_TAG = "numsweep.trial_id"
EXPORTED_TAG = "numsweep.exported"
STATUS = {"COMPLETE": "FINISHED", "PRUNED": "KILLED", "FAILED": "FAILED"}
BATCH = 1000  # MLflow's log_batch takes at most 1000 metrics (100 params, 100 tags) a call


def tracking_uri(uri: str | None = None) -> str:
    """``uri``, else $MLFLOW_TRACKING_URI, else ``sqlite:///mlflow.db`` in this folder."""
    return uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """MLflow and its database migrations log at INFO on first use: not this command's
    output."""
    loggers = [logging.getLogger(n) for n in ("mlflow", "alembic")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def export_mlflow(db: str | Storage, tracking: str | None = None,
                  sweep: Sweeps = None) -> ExportSummary:
    """Log the finished trials of ``sweep`` (one name, several, or None: every sweep) to the
    MLflow tracking URI ``tracking`` (default: $MLFLOW_TRACKING_URI, else
    ``sqlite:///mlflow.db``): an experiment per sweep named after it, a run ``trial-<id>`` per
    trial. Trials already there are skipped."""
    require("mlflow", "mlflow")
    uri = tracking_uri(tracking)
    trials, unfinished = finished_trials(db, sweep)
    with _quiet():
        from mlflow.exceptions import MlflowException
        from mlflow.tracking import MlflowClient

        try:
            client = MlflowClient(tracking_uri=uri)
            written = _export(client, trials, db)
        except (MlflowException, OSError) as exc:
            text = str(getattr(exc, "message", None) or exc).strip().splitlines()
            raise ExportError(f"MLflow at {uri}: {text[0] if text else type(exc).__name__}"
                              ) from None
    return ExportSummary(uri, tuple(written), len(trials) - len(written), unfinished)


def _export(client: Any, trials: list[ExportedTrial], db: str | Storage) -> list[int]:
    by_sweep: dict[str, list[ExportedTrial]] = {}
    for trial in trials:
        by_sweep.setdefault(trial.sweep, []).append(trial)
    todo: list[tuple[str, ExportedTrial, Any]] = []
    for name, in_sweep in by_sweep.items():
        experiment = _experiment(client, name)
        runs = _runs_by_trial(client, experiment)
        for trial in in_sweep:
            run = runs.get(str(trial.trial_id))
            if run is not None and run.data.tags.get(EXPORTED_TAG) == trial.fingerprint:
                continue
            todo.append((experiment, trial, run))
    series = curve_series(db, [t.trial_id for _, t, _ in todo])
    for experiment, trial, old in todo:
        if old is not None:  # cut short, or the trial finished anew
            client.delete_run(old.info.run_id)
        _log_run(client, experiment, trial, series.get(trial.trial_id, []))
    return [t.trial_id for _, t, _ in todo]


def _experiment(client: Any, name: str) -> str:
    found = client.get_experiment_by_name(name)
    if found is not None:
        return str(found.experiment_id)
    return str(client.create_experiment(name, tags={"numsweep.sweep": name}))


def _runs_by_trial(client: Any, experiment: str) -> dict[str, Any]:
    """The experiment's active runs by their trial id tag (the latest where several)."""
    out: dict[str, Any] = {}
    token = None
    while True:
        page = client.search_runs([experiment], max_results=1000, page_token=token,
                                  order_by=["attributes.start_time ASC"])
        for run in page:
            trial = run.data.tags.get(TRIAL_TAG)
            if trial is not None:
                out[trial] = run
        token = page.token
        if not token:
            return out


def _log_run(client: Any, experiment: str, trial: ExportedTrial,
             points: list[tuple[str, int, float]]) -> None:
    from mlflow.entities import Metric, Param

    tags = {TRIAL_TAG: str(trial.trial_id), "numsweep.sweep": trial.sweep,
            "numsweep.state": trial.state, "numsweep.number": str(trial.number),
            "stage": trial.stage or ""}
    if trial.message:
        tags["numsweep.message"] = trial.message[:5000]
    run = client.create_run(experiment, start_time=int(seconds(trial.started_at) * 1000),
                            tags=tags, run_name=trial.run_name)
    run_id = run.info.run_id
    stamp = int(seconds(trial.finished_at) * 1000)
    params = [Param(name, param_text(value)[:6000]) for name, value in trial.params.items()]
    if trial.seed is not None:
        params.append(Param("seed", str(trial.seed)))
    end = last_step(points)
    metrics = [Metric(tag, value, stamp, step) for tag, step, value in points]
    metrics += [Metric(name, value, stamp, end) for name, value in trial.metrics.items()]
    for start in range(0, len(params), 100):
        client.log_batch(run_id, params=params[start:start + 100])
    for start in range(0, len(metrics), BATCH):
        client.log_batch(run_id, metrics=metrics[start:start + BATCH])
    client.set_tag(run_id, EXPORTED_TAG, trial.fingerprint)  # last: the run is complete
    client.set_terminated(run_id, STATUS[trial.state], end_time=stamp)


