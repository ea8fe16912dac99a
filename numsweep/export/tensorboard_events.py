"""TensorBoard export: one run folder of event files per trial, scalars per curve point and
the trial's parameters in TensorBoard's HParams view.

Layout: ``DIR/<sweep>/trial-<id>/events.out.tfevents...``. A run folder is complete once its
``numsweep-trial.json`` is written (last); a later export skips complete folders of trials
that have not changed and writes the others again from scratch.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
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

MARKER = "numsweep-trial.json"
"""Written last into a trial's run folder: the folder is complete."""
STATUS = {"COMPLETE": "STATUS_SUCCESS", "PRUNED": "STATUS_SUCCESS", "FAILED": "STATUS_FAILURE"}
"""A pruned trial stopped early on purpose (its ``state`` hyperparameter says so)."""


def run_folder(out_dir: Path, trial: ExportedTrial) -> Path:
    return out_dir / re.sub(r"[^\w.-]+", "_", trial.sweep) / trial.run_name


def _is_current(folder: Path, trial: ExportedTrial) -> bool:
    try:
        marker = json.loads((folder / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(marker, dict) and marker.get("fingerprint") == trial.fingerprint


def export_tensorboard(db: str | Storage, out_dir: str | Path,
                       sweep: Sweeps = None) -> ExportSummary:
    """Write the finished trials of ``sweep`` (one name, several, or None: every sweep) as
    TensorBoard runs under ``out_dir``: per curve point the scalars ``train/loss``,
    ``val/acc``, ``lr``, ...; the results as ``result/val_acc``, ...; the parameters, the
    stage, the state and the seed as hyperparameters. Trials already there are skipped."""
    require("tensorboard", "tensorboard")
    out = Path(out_dir)
    trials, unfinished = finished_trials(db, sweep)
    todo = [t for t in trials if not _is_current(run_folder(out, t), t)]
    series = curve_series(db, [t.trial_id for t in todo])
    for trial in todo:
        folder = run_folder(out, trial)
        try:
            if folder.exists():  # cut short, or the trial finished anew: write it again
                shutil.rmtree(folder)
            folder.mkdir(parents=True)
            _write_run(folder, trial, series.get(trial.trial_id, []))
            (folder / MARKER).write_text(json.dumps({
                "trial_id": trial.trial_id, "sweep": trial.sweep,
                "fingerprint": trial.fingerprint}), encoding="utf-8")
        except OSError as exc:
            raise ExportError(f"cannot write {folder}: {exc.strerror or exc}") from None
    return ExportSummary(str(out), tuple(t.trial_id for t in todo), len(trials) - len(todo),
                         unfinished)


def _write_run(folder: Path, trial: ExportedTrial,
               points: list[tuple[str, int, float]]) -> None:
    from tensorboard.compat.proto.event_pb2 import Event
    from tensorboard.compat.proto.summary_pb2 import Summary
    from tensorboard.summary.writer.event_file_writer import EventFileWriter

    writer = EventFileWriter(str(folder))
    wall = seconds(trial.finished_at)
    try:
        writer.add_event(Event(wall_time=seconds(trial.started_at), step=0,
                               summary=_session_start(trial)))
        for tag, step, value in points:
            writer.add_event(Event(wall_time=wall, step=step, summary=Summary(
                value=[Summary.Value(tag=tag, simple_value=value)])))
        end = last_step(points)
        writer.add_event(Event(wall_time=wall, step=end, summary=Summary(value=[
            Summary.Value(tag=f"result/{name}", simple_value=value)
            for name, value in trial.metrics.items()])))
        writer.add_event(Event(wall_time=wall, step=end, summary=_session_end(trial)))
    finally:
        writer.close()


def _hparams_value(value: Any) -> Any:
    from google.protobuf import struct_pb2

    if isinstance(value, bool):
        return struct_pb2.Value(bool_value=value)
    if isinstance(value, int | float):
        return struct_pb2.Value(number_value=float(value))
    return struct_pb2.Value(string_value=param_text(value))


def hyperparameters(trial: ExportedTrial) -> dict[str, Any]:
    """The values shown in the HParams view: the parameters, the stage, the state and the
    seed."""
    out: dict[str, Any] = dict(trial.params)
    out["stage"] = trial.stage or ""
    out["state"] = trial.state.lower()
    if trial.seed is not None:
        out["seed"] = trial.seed
    return out


def _hparams_summary(tag: str, data: Any) -> Any:
    from tensorboard.compat.proto.summary_pb2 import Summary
    from tensorboard.plugins.hparams import metadata

    return Summary(value=[Summary.Value(tag=tag, metadata=metadata.create_summary_metadata(data),
                                        tensor=metadata.NULL_TENSOR)])


def _session_start(trial: ExportedTrial) -> Any:
    from tensorboard.plugins.hparams import metadata, plugin_data_pb2

    start = plugin_data_pb2.SessionStartInfo(start_time_secs=seconds(trial.started_at),
                                     group_name=f"{trial.sweep}/{trial.run_name}")
    for name, value in hyperparameters(trial).items():
        start.hparams[name].CopyFrom(_hparams_value(value))
    return _hparams_summary(metadata.SESSION_START_INFO_TAG, plugin_data_pb2.HParamsPluginData(
        session_start_info=start, version=metadata.PLUGIN_DATA_VERSION))


def _session_end(trial: ExportedTrial) -> Any:
    from tensorboard.plugins.hparams import api_pb2, metadata, plugin_data_pb2

    end = plugin_data_pb2.SessionEndInfo(status=getattr(api_pb2, STATUS[trial.state]),
                                 end_time_secs=seconds(trial.finished_at))
    return _hparams_summary(metadata.SESSION_END_INFO_TAG, plugin_data_pb2.HParamsPluginData(
        session_end_info=end, version=metadata.PLUGIN_DATA_VERSION))
