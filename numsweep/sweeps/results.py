"""A finished trial's outcome stored in the database (:func:`record_outcome`), or kept on
this machine while the database stays away (:func:`keep_unsaved`, :func:`write_unsaved`)."""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from numsweep.storage import CurveRecord, Storage, StorageError, TrialState
from numsweep.sweeps.objectives import objective_metrics
from numsweep.sweeps.worker import TrialOutcome

UNSAVED_ENV = "NUMSWEEP_UNSAVED"
"""Folder for results that could not be written (default ~/.cache/numsweep/unsaved)."""
FORMAT = "numsweep-unsaved-1"


class UnsavedResultWarning(UserWarning):
    """A kept result file could not be read (damaged, or not numsweep's); it was skipped."""


def record_outcome(storage: Storage, outcome: TrialOutcome) -> TrialState | None:
    """Store how a trial ended; None when it was taken for lost meanwhile (not stored)."""
    return _store(storage, _outcome_record(outcome))


def _outcome_record(outcome: TrialOutcome) -> dict[str, Any]:
    """What the database keeps of an outcome, as plain JSON-able values."""
    record: dict[str, Any] = {"format": FORMAT, "trial_id": outcome.trial_id,
                              "worker": outcome.worker,
                              "group": list(outcome.group) if outcome.group else None}
    result = outcome.result
    if result is None:
        return {**record, "state": TrialState.FAILED.value, "message": outcome.error,
                "traceback": outcome.traceback, "metrics": None, "curves": [], "params": None}
    state = (TrialState.FAILED if result.diverged
             else TrialState.PRUNED if result.stopped else TrialState.COMPLETE)
    curves = [[c.step, c.split, c.loss, c.cost, c.acc, c.lr] for c in result.curves]
    metrics = {**result.metrics(), **objective_metrics(result)}
    return {**record, "state": state.value, "message": result.message, "traceback": "",
            "metrics": metrics, "curves": curves, "params": result.spec.to_dict()}


def _store(storage: Storage, record: Mapping[str, Any]) -> TrialState | None:
    trial_id = int(record["trial_id"])
    state = TrialState(record["state"])
    curves = [CurveRecord(trial_id, int(step), str(split), float(loss), float(cost),
                          float(acc), float(lr))
              for step, split, loss, cost, acc, lr in record["curves"]]
    metrics = record["metrics"]
    group = record["group"]
    kept = storage.finish_trial(
        trial_id, state, curves=curves, message=str(record["message"]),
        traceback=str(record["traceback"]), worker=str(record["worker"]),
        metrics={str(k): float(v) for k, v in metrics.items()} if metrics is not None else None,
        params=dict(record["params"]) if record["params"] is not None else None,
        group=(int(group[0]), int(group[1])) if group else None)
    return state if kept else None


# Results finished while the database stayed away longer than --db-wait

def unsaved_folder(storage: Storage) -> Path:
    """Where this machine keeps the unwritten results of ``storage``'s database (keyed by
    what the database is, not how its URL is spelt)."""
    base = Path(os.environ.get(UNSAVED_ENV) or Path.home() / ".cache" / "numsweep" / "unsaved")
    return base / hashlib.sha256(storage.identity.encode()).hexdigest()[:16]


def keep_unsaved(storage: Storage, outcomes: Iterable[TrialOutcome]) -> tuple[int, Path]:
    """Save outcomes the database could not take (JSON, one file a trial), for
    :func:`write_unsaved` later."""
    folder = unsaved_folder(storage)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "database.txt").write_text(storage.identity + "\n")  # for a person looking
    count = 0
    for outcome in outcomes:
        part = folder / f"{outcome.trial_id}.json.part"
        part.write_text(json.dumps(_outcome_record(outcome)))
        part.replace(folder / f"{outcome.trial_id}.json")
        count += 1
    return count, folder


def write_unsaved(storage: Storage) -> int:
    """Write the results this machine kept while the database was away (trials that still
    wait for them); returns how many were stored. Files that cannot be read as kept results
    (damaged, or not numsweep's: nothing in them runs) are renamed ``*.unreadable`` and named
    in one :class:`UnsavedResultWarning`."""
    folder = unsaved_folder(storage)
    stored = 0
    skipped: list[str] = []
    for path in sorted(folder.iterdir()) if folder.is_dir() else []:
        if path.suffix in (".part", ".unreadable") or path.name == "database.txt":
            continue
        record = _read_record(path)
        try:
            if record is not None:
                stored += _store(storage, record) is not None
        except StorageError as exc:
            if "no trial with id" not in str(exc):
                raise
        except (KeyError, TypeError, ValueError, IndexError, AttributeError):
            record = None
        if record is None:  # set aside, so that it is named once
            skipped.append(path.name)
            path.replace(path.with_name(path.name + ".unreadable"))
            continue
        path.unlink()
    if skipped:
        names = ", ".join(skipped[:3]) + (f" and {len(skipped) - 3} more" if len(skipped) > 3
                                          else "")
        warnings.warn(f"{len(skipped)} kept result file(s) in {folder} skipped, not readable "
                      f"as numsweep results ({names}): renamed *.unreadable",
                      UnsavedResultWarning, stacklevel=2)
    return stored


def _read_record(path: Path) -> dict[str, Any] | None:
    """The record in a kept result file; None for anything else (never run as code)."""
    if path.suffix != ".json" or not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        return None
    return record
