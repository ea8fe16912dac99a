"""Checks made before any work: the data a stored sweep is continued with is the data it was
created with; sizes (data splits, ``--jobs``) fit the data and the machine; and what a run
that failed everywhere reports."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from numsweep.engine import DataError, Dataset, TrialSpec
from numsweep.engine.data import dataset_fingerprint
from numsweep.errors import NumsweepError
from numsweep.storage import Storage, SweepRecord, TrialState
from numsweep.sweeps.spec import SweepSpec, SweepSpecError

JOBS_PER_CORE_LIMIT = 8
"""``--jobs`` above this many per core is refused even with ``--force``."""
WORKER_MEMORY_BYTES = 150 * 2**20
"""A rough floor on one worker process's memory (Python, NumPy, Optuna, one trial)."""


class DataMismatch(DataError):
    """A stored sweep is continued (resume, worker, rerun) with other data than it was
    created with."""


class TooManyJobs(NumsweepError):
    """``--jobs`` exceeds what the machine can run; :attr:`insist` says whether ``--force``
    would allow it."""

    def __init__(self, message: str, insist: bool) -> None:
        super().__init__(message)
        self.insist = insist


def _shown(source: str | None) -> str:
    return "the CIFAR-10 download" if source in (None, "cifar10") else str(source)


def fingerprint_of(source: str | None) -> str:
    """The fingerprint of the data at ``source`` (loaded once per process and source)."""
    from numsweep.sweeps.worker import cached_dataset

    return dataset_fingerprint(cached_dataset(source))


def check_sweep_data(storage: Storage, sweep: SweepRecord, dataset: Dataset,
                     source: str | None) -> None:
    """Refuse to run ``sweep`` on other data than it was created with (same bytes from
    another path are fine). A sweep stored without a fingerprint (by an older numsweep)
    takes this data's."""
    fingerprint = dataset_fingerprint(dataset)
    stored = sweep.data_fingerprint or storage.claim_data_fingerprint(sweep.id, fingerprint)
    if stored != fingerprint:
        created = sweep.spec.get("data")
        raise DataMismatch(
            f"sweep {sweep.name!r} was created with other data ({_shown(created)}, fingerprint "
            f"{stored[:12]}) than {_shown(source)} (fingerprint {fingerprint[:12]}); give "
            f"--data the sweep's data, or start a new sweep (name=NEW)")


def check_rerun_data(storage: Storage, sweep_name: str, source: str | None) -> None:
    """Refuse to rerun a trial of ``sweep_name`` on other data than the sweep's."""
    sweep = storage.get_sweep(sweep_name)
    if sweep.data_fingerprint is None:
        return
    fingerprint = fingerprint_of(source)
    if fingerprint != sweep.data_fingerprint:
        raise DataMismatch(
            f"trials of sweep {sweep_name!r} ran on other data ({_shown(sweep.spec.get('data'))}"
            f", fingerprint {sweep.data_fingerprint[:12]}) than {_shown(source)} (fingerprint "
            f"{fingerprint[:12]}); give --data the sweep's data")


def _largest(spec: SweepSpec, fixed: Mapping[str, Any], name: str) -> Any:
    """The largest value a stage can give parameter ``name`` (fixed, searched or default)."""
    if name in fixed:
        return fixed[name]
    for p in spec.space.values():
        if name in p.names:
            if p.type == "categorical":
                values = [c[p.names.index(name)] if p.tied else c for c in p.choices]
                numbers = [v for v in values if isinstance(v, (int, float))]
                return max(numbers) if len(numbers) == len(values) else None
            return p.high
    return getattr(TrialSpec(), name)


def check_data_sizes(spec: SweepSpec, dataset: Dataset) -> None:
    """Every stage's ``n_train + n_val`` fits the training images, checked before a trial is
    stored (a stage asking for more would only store failed trials)."""
    total = len(dataset.x_train)
    for stage in spec.stages:
        fixed = spec.stage_fixed(stage)
        n_train, n_val = _largest(spec, fixed, "n_train"), _largest(spec, fixed, "n_val")
        if not isinstance(n_val, (int, float)):
            continue
        needed = n_val + (n_train if isinstance(n_train, (int, float)) else 1)
        if needed > total:
            shown = "n_train + " if isinstance(n_train, (int, float)) else ""
            raise SweepSpecError(
                f"{spec.origin}: stages.{stage.name}: {shown}n_val = "
                f"{'' if not shown else f'{n_train} + '}{n_val} exceeds the {total} training "
                f"images of {dataset.name}")


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
    processes than the memory holds)."""
    cores = cores or os.cpu_count() or 1
    memory = memory if memory is not None else total_memory()
    if memory is not None and jobs * WORKER_MEMORY_BYTES > memory:
        raise TooManyJobs(f"--jobs {jobs} worker processes need at least "
                          f"{jobs * WORKER_MEMORY_BYTES / 2**30:.1f} GB, more than this "
                          f"machine's {memory / 2**30:.1f} GB", insist=False)
    if jobs > JOBS_PER_CORE_LIMIT * cores:
        raise TooManyJobs(f"--jobs {jobs} is more than {JOBS_PER_CORE_LIMIT} per core on this "
                          f"{cores}-core machine", insist=False)
    if jobs * threads <= cores:
        return ""
    what = f"--jobs {jobs}" + (f" x --threads {threads}" if threads > 1 else "")
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
