"""Checks made before any work: the data a stored sweep is continued with is the data it was
created with; sizes (data splits, batch sizes, the length of a run, ``--jobs``) fit the data
and the machine; and what a run that failed everywhere reports."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from numsweep.engine import DataError, Dataset, SpecError, TrialSpec
from numsweep.engine.batch_schedules import largest_batch
from numsweep.engine.data import dataset_fingerprint
from numsweep.engine.runplan import planned_updates, resolve_n_s
from numsweep.engine.spec import (
    CYCLIC_SCHEDULES,
    MAX_MEASUREMENTS,
    MAX_UPDATES,
    RunTooLong,
)
from numsweep.errors import NumsweepError
from numsweep.storage import RunSettings, Storage, SweepRecord, TrialState
from numsweep.sweeps.spec import SweepSpec, SweepSpecError

JOBS_PER_CORE_LIMIT = 8
"""``--jobs`` above this many per core is refused even with ``--force``."""
WORKER_MEMORY_BYTES = 150 * 2**20
"""A rough floor on one worker process's memory (Python, NumPy, Optuna, one trial)."""
LONG_RUN_UPDATES = 10**7
"""A run planned longer than this many updates (days on one core) needs ``--force``."""


class DataMismatch(DataError):
    """A stored sweep is continued (resume, worker, rerun) with other data than it was
    created with."""


class TooManyJobs(NumsweepError):
    """``--jobs`` exceeds what the machine can run; :attr:`insist` says whether ``--force``
    would allow it."""

    def __init__(self, message: str, insist: bool) -> None:
        super().__init__(message)
        self.insist = insist


class LongRun(NumsweepError):
    """A run planned longer than :data:`LONG_RUN_UPDATES` without ``--force``."""


def _shown(source: str | None) -> str:
    return "the CIFAR-10 download" if source in (None, "cifar10") else str(source)


def fingerprint_of(source: str | None) -> str:
    """The fingerprint of the data at ``source`` (loaded once per process and source)."""
    from numsweep.sweeps.dataset_cache import cached_dataset

    return dataset_fingerprint(cached_dataset(source))


def check_sweep_data(storage: Storage, sweep: SweepRecord, dataset: Dataset,
                     source: str | None) -> None:
    """Refuse to run ``sweep`` on other data than it was created with (same bytes from
    another path are fine). A sweep stored without a fingerprint (by an older numsweep)
    takes this data's."""
    fingerprint = dataset_fingerprint(dataset)
    stored = sweep.data_fingerprint or storage.claim_data_fingerprint(sweep.id, fingerprint)
    if stored != fingerprint:
        created = (sweep.run or RunSettings()).data
        raise DataMismatch(
            f"sweep {sweep.name!r} was created with other data ({_shown(created)}, fingerprint "
            f"{stored[:12]}) than {_shown(source)} (fingerprint {fingerprint[:12]}); give "
            f"--data the sweep's data, or start a new sweep (name=NEW)")


def check_rerun_data(storage: Storage, sweep_name: str, source: str | None) -> None:
    """Refuse to rerun a trial of ``sweep_name`` on other data than the sweep's."""
    sweep = storage.get_sweep(sweep_name)
    created = (sweep.run or RunSettings()).data
    if sweep.data_fingerprint is None:
        return
    fingerprint = fingerprint_of(source)
    if fingerprint != sweep.data_fingerprint:
        raise DataMismatch(
            f"trials of sweep {sweep_name!r} ran on other data ({_shown(created)}"
            f", fingerprint {sweep.data_fingerprint[:12]}) than {_shown(source)} (fingerprint "
            f"{fingerprint[:12]}); give --data the sweep's data")


def _extreme(spec: SweepSpec, fixed: Mapping[str, Any], name: str, pick: Any = max) -> Any:
    """The largest (``pick=min``: smallest) value a stage can give parameter ``name``
    (fixed, searched or default); None when its values are not all numbers."""
    if name in fixed:
        return fixed[name]
    for p in spec.space.values():
        if name in p.names:
            if p.type == "categorical":
                values = [c[p.names.index(name)] if p.tied else c for c in p.choices]
                numbers = [v for v in values if isinstance(v, (int, float))]
                return pick(numbers) if len(numbers) == len(values) else None
            return p.high if pick is max else p.low
    return getattr(TrialSpec(), name)


def _largest(spec: SweepSpec, fixed: Mapping[str, Any], name: str) -> Any:
    return _extreme(spec, fixed, name, max)


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_data_sizes(spec: SweepSpec, dataset: Dataset, *, force: bool = False) -> None:
    """Every stage's ``n_train + n_val`` fits the training images, its batches fit
    ``n_train``, and its longest run fits :func:`check_run_length` (``force``: a long run is
    allowed), checked before a trial is stored (a stage asking for more would only store
    failed trials)."""
    total = len(dataset.x_train)
    for stage in spec.stages:
        fixed = spec.stage_fixed(stage)
        n_train, n_val = _largest(spec, fixed, "n_train"), _largest(spec, fixed, "n_val")
        if not _number(n_val):
            continue
        needed = n_val + (n_train if _number(n_train) else 1)
        if needed > total:
            shown = "n_train + " if _number(n_train) else ""
            raise SweepSpecError(
                f"{spec.origin}: stages.{stage.name}: {shown}n_val = "
                f"{'' if not shown else f'{n_train} + '}{n_val} exceeds the {total} training "
                f"images of {dataset.name}")
        _check_stage_run(spec, stage, fixed, total, force)


def _check_stage_run(spec: SweepSpec, stage: Any, fixed: Mapping[str, Any], total: int,
                     force: bool) -> None:
    """The stage's smallest training set against its largest batch, and its longest run:
    the largest lengths with the smallest batch (a combination that is no valid trial is
    not checked: its trials are refused one by one)."""
    where = f"{spec.origin}: stages.{stage.name}"
    low, n_val = _extreme(spec, fixed, "n_train", min), _largest(spec, fixed, "n_val")
    n_train = low if _number(low) else total - n_val if low is None and _number(n_val) else None
    batch = {name: _extreme(spec, fixed, name, min) for name in ("batch_size", "b_min", "b_max")}
    longest = dict(fixed)
    for name in ("n_s", "cycles", "cycle_mult", "n_updates", "curve_points", "n_train"):
        value = _largest(spec, fixed, name)
        if _number(value):
            longest[name] = value
    for name, value in batch.items():
        if _number(value):
            longest[name] = value
    try:
        trial = TrialSpec.from_mapping(longest)
    except RunTooLong as exc:
        raise SweepSpecError(f"{where}: {exc}") from None
    except SpecError:
        return
    if n_train is not None and n_train >= 1:
        smallest_batch = largest_batch(trial)
        if smallest_batch > n_train:
            name = "batch_size" if trial.batch_schedule == "constant" else "b_max"
            raise SweepSpecError(f"{where}: {name}={smallest_batch} exceeds n_train={n_train}"
                                 " (a batch is drawn from the training images)")
    n_longest = trial.n_train if trial.n_train is not None else total - trial.n_val
    try:
        check_run_length(trial, max(1, n_longest), force=force)
    except NumsweepError as exc:
        raise SweepSpecError(f"{where}: {exc}") from None


def check_trial_data(spec: TrialSpec, dataset: Dataset) -> int:
    """``spec``'s training and validation images fit the data and its batches fit its
    training images, before a trial is stored; returns its ``n_train``."""
    total = len(dataset.x_train)
    n_train = spec.n_train if spec.n_train is not None else total - spec.n_val
    if spec.n_train is None and n_train < 1:
        raise DataError(f"n_val={spec.n_val} leaves none of the {total} training images of "
                        f"{dataset.name} for training (set n_val below {total})")
    if n_train + spec.n_val > total:
        raise DataError(f"n_train={n_train} + n_val={spec.n_val} exceeds the {total} training "
                        f"images of {dataset.name}")
    if largest_batch(spec) > n_train:
        name = "batch_size" if spec.batch_schedule == "constant" else "b_max"
        raise DataError(f"{name}={largest_batch(spec)} exceeds n_train={n_train} (a batch is "
                        f"drawn from the training images)")
    return n_train


def check_run_length(spec: TrialSpec, n_train: int, *, force: bool = False) -> None:
    """The run of ``spec`` on ``n_train`` images: more than :data:`MAX_UPDATES` updates or
    :data:`MAX_MEASUREMENTS` curve measurements are refused; more than
    :data:`LONG_RUN_UPDATES` updates need ``force``."""
    n_s = resolve_n_s(spec, n_train)
    updates = planned_updates(spec, n_train)
    resolved = "" if spec.n_s is not None else f" (n_s={n_s} from n_train={n_train})"
    if updates > MAX_UPDATES:
        raise RunTooLong(f"the run plans more than {MAX_UPDATES:,} updates{resolved}, the most "
                         f"a run may have")
    if spec.schedule not in CYCLIC_SCHEDULES:
        per_epoch = max(1, n_train // spec.batch_size)
        measurements = -(-updates // per_epoch) * spec.curve_points
        if measurements > MAX_MEASUREMENTS:
            raise RunTooLong(
                f"the run plans {measurements:,} curve measurements ({spec.curve_points} per "
                f"epoch of {per_epoch} updates), more than {MAX_MEASUREMENTS:,}; lower "
                "curve_points or n_updates")
    if updates > LONG_RUN_UPDATES and not force:
        raise LongRun(f"the run plans {updates:,} updates{resolved}, more than "
                      f"{LONG_RUN_UPDATES:,} (days of training); pass --force to run it "
                      "(force=True in Python)")


def total_memory() -> int | None:
    """This machine's memory in bytes, or None where the system does not say."""
    try:
        return int(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None


def default_jobs(gpu: bool = False) -> int:
    """Trials run at once when nothing says: the cores here, or one process per GPU
    (``gpu``); the command line's ``--jobs`` and ``numsweep.sweep(jobs=None)`` alike."""
    return 1 if gpu else os.cpu_count() or 1


def check_jobs(jobs: int, threads: int, *, force: bool, cores: int | None = None,
               memory: int | None = None) -> str:
    """Check ``--jobs`` (worker processes on this machine) against its cores and memory.

    Returns a warning ("" if none) when ``jobs x threads`` exceed the cores but ``force``
    insists; raises :class:`TooManyJobs` when it exceeds them without ``force``, and always
    when it is absurd (more than :data:`JOBS_PER_CORE_LIMIT` per core, or more worker
    processes than the memory holds; threads count as jobs do)."""
    cores = cores or os.cpu_count() or 1
    memory = memory if memory is not None else total_memory()
    if memory is not None and jobs * WORKER_MEMORY_BYTES > memory:
        raise TooManyJobs(f"--jobs {jobs} worker processes need at least "
                          f"{jobs * WORKER_MEMORY_BYTES / 2**30:.1f} GB, more than this "
                          f"machine's {memory / 2**30:.1f} GB", insist=False)
    what = f"--jobs {jobs}" + (f" x --threads {threads}" if threads > 1 else "")
    if jobs * threads > JOBS_PER_CORE_LIMIT * cores:
        raise TooManyJobs(f"{what} is more than {JOBS_PER_CORE_LIMIT} per core on this "
                          f"{cores}-core machine", insist=False)
    if jobs * threads <= cores:
        return ""
    if not force:
        raise TooManyJobs(f"{what} exceed the {cores} cores (trials would slow each other "
                          f"down); pass --force to run anyway", insist=True)
    return f"warning: {what} exceed the {cores} cores"


@dataclass(frozen=True)
class Failures:
    """How the trials of a sweep ended badly: how many failed, and the commonest reason."""

    failed: int
    finished: int
    common: str
    common_count: int

    def line(self) -> str:
        if not self.failed:
            return ""
        return (f"{self.failed} of {self.finished} finished trials failed; most common reason "
                f"({self.common_count}x): {self.common}")


def sweep_failures(storage: Storage, name: str) -> Failures:
    """The failed trials of sweep ``name`` and their most common message (first line)."""
    rows = storage.get_trial_rows(name).trials
    finished = [r for r in rows if r[4] in (TrialState.COMPLETE, TrialState.PRUNED,
                                             TrialState.FAILED)]
    failed = [r for r in finished if r[4] is TrialState.FAILED]
    reasons = Counter((str(r[9] or "").strip().splitlines() or ["no message"])[0]
                      for r in failed)
    common, count = reasons.most_common(1)[0] if reasons else ("", 0)
    return Failures(len(failed), len(finished), common, count)


def single_trial_sweep(storage: Storage, name: str) -> SweepRecord:
    """The sweep that single trials (``train``, ``range-test``, ``trial rerun``) are stored
    under, made when missing; a planned sweep of that name is refused, so that its plan,
    data fingerprint and counts never take a trial from outside them."""
    sweep = storage.get_or_create_sweep(name, {"name": name, "single": True}, 0)
    if not sweep.spec.get("single"):
        raise SweepSpecError(
            f"sweep {name!r} in {storage.shown_url} is a planned sweep (`numsweep sweep run`); "
            f"a single trial is not added to it: store it under another name (--sweep NEW)")
    return sweep
