"""``sweep run``, ``sweep resume``, ``sweep extend`` and ``worker`` from their options to a
finished run, one pipeline for all: the spec (from a file or as stored), the device and
``--jobs`` checked, the data loaded, the planner calibrated (and again as each stage starts),
the run under the live progress display, and what the caller prints at the end
(:class:`SweepRunResult`). :func:`start_sweep` and :func:`continue_sweep` differ only in
where the spec comes from."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from numsweep.defaults import DEFAULT_DB_WAIT, DEFAULT_GRACE, DEFAULT_GROUPING
from numsweep.storage import Storage, TrialRecord
from numsweep.sweeps.budget import CostModel, StageCalibrated, calibrate, data_shape
from numsweep.sweeps.events import EventHandler, StageSummary
from numsweep.sweeps.guards import Failures, sweep_failures
from numsweep.sweeps.kept import DEFAULT_KEEP, unkept_networks
from numsweep.sweeps.lifecycle import SweepInterrupted
from numsweep.sweeps.spec import SweepSpec

if TYPE_CHECKING:
    from rich.console import Console

    from numsweep.engine import TrialSpec

Download = Callable[[int, int | None], None]
"""Told the bytes downloaded so far and the total (None: unknown) while data downloads."""


@dataclass(frozen=True)
class RunOptions:
    """The options every command that runs a sweep takes (None: the default, or for a
    stored sweep what it was started with)."""

    jobs: int | None = None  # None: the cores here (one process per GPU), or dask's threads
    threads: int | None = None
    backend: str = "loky"
    scheduler: str | None = None
    grace: float = DEFAULT_GRACE
    db_wait: float = DEFAULT_DB_WAIT
    data: str | None = None
    checkpoint_dir: str | None = None
    keep_weights: str | None = None
    device: str | None = None
    group_size: int | None = None
    grouping: str | None = None  # None: slots for a new sweep, as stored for a stored one
    force: bool = False


@dataclass(frozen=True)
class SweepRunResult:
    """A run that ended (not interrupted): its stages, and what went wrong in them."""

    name: str
    storage: Storage
    summaries: list[StageSummary]
    failures: Failures
    unkept: list[TrialRecord]  # finished trials whose network could not be kept

    @property
    def none_completed(self) -> bool:
        """Trials ended, and none completed or was pruned."""
        ended = sum(n for s in self.summaries for n in s.counts.values())
        good = sum(s.counts.get(k, 0) for s in self.summaries for k in ("COMPLETE", "PRUNED"))
        return bool(ended) and not good


class RunInterrupted(Exception):
    """Ctrl-C or SIGTERM stopped the run of sweep ``name`` (``message`` says what was kept);
    ``sweep resume`` continues it."""

    def __init__(self, name: str, message: str) -> None:
        self.name = name
        self.message = message
        super().__init__(message)


def _on_gpu(spec: SweepSpec) -> bool:
    """Whether a stage of ``spec`` trains on ``device=cuda`` (checked: a one-line error
    without CuPy or a GPU). On a GPU the default --jobs is 1: one process per GPU."""
    from numsweep.engine.backend import device_module

    gpu = any(spec.stage_fixed(stage).get("device") == "cuda" for stage in spec.stages)
    if gpu:
        device_module("cuda")
    return gpu


def _jobs(options: RunOptions, threads: int | None, gpu: bool, console: Console) -> int:
    """--jobs, or by default the cores here (loky; one process per GPU with ``gpu``) or the
    Dask cluster's worker threads; checked against this machine's cores and memory (loky),
    before any work."""
    from numsweep.sweeps.guards import check_jobs, default_jobs

    if options.backend == "dask":
        if options.jobs is not None:
            return options.jobs
        from numsweep.sweeps.executors import dask_slots

        return dask_slots(options.scheduler)
    jobs = options.jobs if options.jobs is not None else default_jobs(gpu)
    warning = check_jobs(jobs, threads or 1, force=options.force)
    if warning:
        console.print(warning, highlight=False)
    return jobs


def _calibrated(storage: Storage, data: str | None, download: Download | None
                ) -> tuple[Any, CostModel]:
    """The dataset, loaded (and if needed downloaded) once up front so that its errors come
    before any work, and the planner calibrated on the database's finished trials."""
    from numsweep.sweeps.dataset_cache import cached_dataset

    dataset = cached_dataset(data, progress=download)
    return dataset, calibrate(storage, data_shape(dataset.x_train, len(dataset.classes),
                                                  len(dataset.x_test)))


def start_sweep(spec_file: str, overrides: Mapping[str, str], db: str, options: RunOptions,
                *, console: Console, budget: str | None = None,
                download: Download | None = None) -> SweepRunResult:
    """Run the stages of a sweep spec (a .toml file or a preset name, with ``KEY=VALUE``
    ``overrides``) stored in ``db``; ``budget`` (such as ``30m``) shrinks it to fit the
    estimate (the planner's lines printed on ``console``) and stops proposing when used up.
    Raises :class:`RunInterrupted` on Ctrl-C."""
    from numsweep.sweeps.budget import plan
    from numsweep.sweeps.guards import check_data_sizes
    from numsweep.sweeps.runner import run_sweep
    from numsweep.sweeps.spec import check_against_images, load_spec, parse_duration, resolve_data

    fixed = dict(overrides)
    if options.device is not None:
        fixed["device"] = options.device
    spec = load_spec(spec_file, fixed)
    gpu = _on_gpu(spec)  # device=cuda: CuPy and a GPU, before the sweep or a trial is stored
    data = resolve_data(spec, options.data)
    threads = options.threads if options.threads is not None else 1
    jobs = _jobs(options, threads, gpu, console)
    storage = Storage(db, db_wait=options.db_wait)
    dataset, model = _calibrated(storage, data, download)
    check_against_images(spec, dataset.image_shape, len(dataset.classes))  # before any output
    seconds = parse_duration(budget, "--budget") if budget else None
    check_data_sizes(spec, dataset, force=options.force)
    if seconds is not None:
        planned = plan(spec, seconds, model, jobs)
        spec = planned.spec
        for line in planned.lines:
            console.print(line)
    final_spec = spec

    def run(on_event: EventHandler, estimate: Callable[[TrialSpec], float]
            ) -> list[StageSummary]:
        return run_sweep(final_spec, storage, data_source=data, jobs=jobs, threads=threads,
                         on_event=on_event, estimate=estimate, time_budget=seconds,
                         backend=options.backend, scheduler=options.scheduler,
                         grace=options.grace, checkpoint_dir=options.checkpoint_dir,
                         keep_weights=options.keep_weights or DEFAULT_KEEP,
                         group_size=options.group_size, force=options.force,
                         grouping=options.grouping or DEFAULT_GROUPING)

    return _displayed(storage, jobs, spec.name, model, console, run)


def continue_sweep(name: str, db: str, options: RunOptions, *, console: Console,
                   extend: Mapping[str, str] | None = None,
                   download: Download | None = None) -> SweepRunResult:
    """Continue sweep ``name`` stored in ``db`` beside any other processes working on it
    (``sweep resume``, ``worker``), first giving stages the trials of ``extend``
    (``STAGE.n_trials=+N``, ``sweep extend``). Raises :class:`RunInterrupted` on Ctrl-C."""
    from numsweep.engine.backend import device_module
    from numsweep.sweeps.extend import extend_sweep, parse_extension
    from numsweep.sweeps.runner import resume_sweep, stored_spec
    from numsweep.sweeps.spec import resolve_data

    if options.device is not None:
        device_module(options.device)
    storage = Storage(db, db_wait=options.db_wait, create=False)  # the sweep is there already
    spec, stored_data, stored_threads = stored_spec(storage, name)
    gpu = _on_gpu(spec.with_overrides({"device": options.device}) if options.device else spec)
    data = resolve_data(spec, options.data) if options.data else stored_data
    jobs = _jobs(options, options.threads or stored_threads, gpu, console)
    if extend is not None:
        parse_extension(spec, extend)  # a mistake is reported before the data loads
    _, model = _calibrated(storage, data, download)

    def run(on_event: EventHandler, estimate: Callable[[TrialSpec], float]
            ) -> list[StageSummary]:
        kwargs: dict[str, Any] = dict(
            data_source=data, jobs=jobs, threads=options.threads, on_event=on_event,
            estimate=estimate, backend=options.backend, scheduler=options.scheduler,
            grace=options.grace, checkpoint_dir=options.checkpoint_dir,
            keep_weights=options.keep_weights, device=options.device,
            group_size=options.group_size, force=options.force,
            grouping=options.grouping)
        if extend is not None:
            return extend_sweep(name, storage, extend, **kwargs)
        return resume_sweep(name, storage, **kwargs)

    return _displayed(storage, jobs, spec.name, model, console, run)


@contextmanager
def _interrupted_as(name: str) -> Iterator[None]:
    try:
        yield
    except SweepInterrupted as exc:
        raise RunInterrupted(name, str(exc)) from None
    except KeyboardInterrupt:  # before the sweep started its trials, or as it ended
        raise RunInterrupted(name, f"sweep {name!r} interrupted") from None


def _displayed(storage: Storage, jobs: int, name: str, model: CostModel, console: Console,
               run: Callable[[EventHandler, Callable[[TrialSpec], float]], list[StageSummary]]
               ) -> SweepRunResult:
    """Run under the live progress display, the planner recalibrated as each stage starts."""
    from numsweep.sweeps.interrupts import InterruptGuard
    from numsweep.sweeps.progress import SweepProgress

    display = SweepProgress(console, jobs)
    estimate = StageCalibrated(storage, model)

    def on_event(event: Any) -> None:
        estimate.on_event(event)  # recalibrated on the trials finished so far
        display(event)

    with _interrupted_as(name), InterruptGuard(), display:
        summaries = run(on_event, estimate.seconds)
    return SweepRunResult(name, storage, summaries, sweep_failures(storage, name),
                          unkept_networks(storage, name))
