"""``numsweep sweep delete``: a sweep gone from the database (its stages, trials, curves and
Optuna studies) and from disk (its checkpoints and kept networks), so that its name can be
run again from the start."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from numsweep.storage import Storage, StorageError, TrialState
from numsweep.sweeps.kept import _safe, sweep_policy

BUSY_SECONDS = 60.0
"""A RUNNING trial whose heartbeat is younger than this has a live process: no delete."""


@dataclass(frozen=True)
class SweepDeletion:
    """What deleting a sweep removes (``files`` bytes in ``folder``, which may not exist)."""

    name: str
    trials: int
    stages: tuple[str, ...]
    folder: Path
    bytes: int

    def describe(self) -> str:
        files = (f"{self.folder} ({self.bytes / 1e6:.1f} MB of checkpoints and kept networks)"
                 if self.folder.exists() else "no checkpoint folder")
        stages = f"{len(self.stages)} stages and their Optuna studies, " if self.stages else ""
        return f"sweep {self.name!r}: {self.trials} trials, {stages}{files}"


def _storage(db: str | Storage) -> Storage:
    return db if isinstance(db, Storage) else Storage(str(db))


def plan_deletion(db: str | Storage, name: str) -> SweepDeletion:
    """What :func:`delete_sweep` would remove; an error when a process still runs trials of
    the sweep (a heartbeat in the last :data:`BUSY_SECONDS`)."""
    storage = _storage(db)
    record = storage.get_sweep(name)
    trials = storage.get_trials(name)
    fresh = datetime.now(UTC).replace(tzinfo=None) - timedelta(seconds=BUSY_SECONDS)
    alive = [t for t in trials if t.state is TrialState.RUNNING
             and t.heartbeat_at is not None and t.heartbeat_at > fresh]
    if alive:
        raise StorageError(f"sweep {name!r} has {len(alive)} trials running (heartbeat within "
                           f"{BUSY_SECONDS:.0f} s, e.g. trial {alive[0].id}); stop its "
                           "processes (Ctrl-C) before deleting it")
    _, root = sweep_policy(storage, name)
    folder = root / _safe(name)
    size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) \
        if folder.is_dir() else 0
    stages = tuple(st.name for st in storage.list_stages(record.id))
    return SweepDeletion(name, len(trials), stages, folder, size)


def delete_sweep(db: str | Storage, name: str) -> SweepDeletion:
    """Remove sweep ``name`` (``db``: a Storage, URL or SQLite file): its Optuna studies,
    then its rows in one transaction, then its checkpoint folder (``<checkpoint
    dir>/<sweep>/``: checkpoints and kept networks). Returns what was removed."""
    storage = _storage(db)
    plan = plan_deletion(storage, name)
    if plan.stages:
        import optuna

        from numsweep.sweeps.optuna_bridge import optuna_storage, quiet, study_name

        ostorage = optuna_storage(storage.engine_url, storage.db_wait)
        known = set(optuna.get_all_study_names(ostorage))
        with quiet():
            for stage in plan.stages:
                if study_name(name, stage) in known:
                    optuna.delete_study(study_name=study_name(name, stage), storage=ostorage)
    storage.delete_sweep(storage.get_sweep(name).id)
    if plan.folder.is_dir():
        shutil.rmtree(plan.folder)
    return plan
