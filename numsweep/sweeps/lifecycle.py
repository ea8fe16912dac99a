"""A sweep process from start to end: the sweep's start lease (:func:`starting`), what it
opens to run the stages and checks before any work (:func:`opened`), and how it ends on
Ctrl-C or SIGTERM (running trials marked INTERRUPTED, :class:`SweepInterrupted`) or on a
database error (finished results kept, running trials stopped)."""

from __future__ import annotations

import shlex
from collections.abc import Iterator
from contextlib import contextmanager, suppress

from numsweep.storage import (
    Storage,
    StorageError,
    StorageGone,
    StorageUnavailable,
    SweepRecord,
)
from numsweep.sweeps.context import InFlight, ProcessSettings, SweepContext
from numsweep.sweeps.data_share import DataShare
from numsweep.sweeps.guards import check_data_sizes, check_sweep_data
from numsweep.sweeps.interrupts import acting_on_interrupt, mark_interrupted
from numsweep.sweeps.live import Message, open_channel
from numsweep.sweeps.liveness import Heartbeat, heartbeat_interval, is_gone
from numsweep.sweeps.optuna_bridge import optuna_storage
from numsweep.sweeps.pool import WorkerPool
from numsweep.sweeps.results import keep_unsaved, write_unsaved
from numsweep.sweeps.spec import SweepSpecError, check_against_images
from numsweep.sweeps.submission import take_points
from numsweep.sweeps.warm_start import check_source

START_LEASE_SECONDS = 10 * 365 * 86400.0
"""How long a ``sweep run`` holds its sweep's start lease (see :func:`starting`): while it
runs, given back at its end; one killed, interrupted or stopped by a database error keeps
it until a process of its machine sees it gone (``sweep resume`` and ``worker`` continue
the sweep in any case)."""


class SweepInterrupted(Exception):
    """Ctrl-C (SIGINT) or SIGTERM stopped the sweep: the running trials are marked
    INTERRUPTED, the finished ones stay; ``numsweep sweep resume`` continues."""

    def __init__(self, sweep: str, interrupted: int, finished: int) -> None:
        self.sweep = sweep
        self.interrupted = interrupted
        self.finished = finished
        super().__init__(f"sweep {sweep!r} interrupted: {interrupted} running trials marked "
                         f"interrupted, {finished} finished trials kept")


@contextmanager
def starting(storage: Storage, name: str, holder: str) -> Iterator[None]:
    """Hold sweep ``name``'s start lease while it is started (``sweep run``: while it runs;
    ``sweep create``: while it is stored): a second process that starts the same sweep
    meanwhile is refused (it would run the same configurations again beside the first). A
    holder that was a process of this machine that is gone (killed) is taken over."""
    lease = f"start:{name}"[:200]
    if not storage.take_lease(lease, holder, START_LEASE_SECONDS):
        other = storage.lease_holder(lease)
        if not ((other is None or is_gone(other)) and storage.take_lease(
                lease, holder, START_LEASE_SECONDS, taking_from=other)):
            other = storage.lease_holder(lease) or "another process"
            raise SweepSpecError(
                f"sweep {name!r} in {storage.shown_url} is being started by {other} (another "
                f"`numsweep sweep run` or `sweep create`); join it with `numsweep worker "
                f"{name}`, or run this one under another name (name=NEW)")
    try:
        yield
    except (StorageError, KeyboardInterrupt, SweepInterrupted):
        # kept: giving it back could wait for the database (or a lock) when the process is
        # to end at once; a holder that is gone is taken over
        raise
    except BaseException:
        with suppress(StorageError):
            storage.give_back_lease(lease, holder)
        raise
    storage.give_back_lease(lease, holder)


def _refuse_run_again(settings: ProcessSettings, storage: Storage) -> None:
    """``sweep run`` of a sweep that has trials already is refused (resume continues it);
    one that was created and never run gets this run's settings."""
    spec = settings.spec
    existing = [s for s in storage.list_sweeps() if s.name == spec.name]
    if settings.resume or not existing:
        return
    count = storage.count_trials(existing[0].id)
    if count:
        raise SweepSpecError(
            f"sweep {spec.name!r} already has {count} trials "
            f"in {storage.shown_url}; continue it with `numsweep sweep resume "
            f"{shlex.quote(spec.name)}`, run it under another name (name=NEW), or start "
            f"over after `numsweep sweep delete {shlex.quote(spec.name)}`")
    if (existing[0].spec, existing[0].run) != (settings.stored(), settings.run_record()):
        storage.set_sweep_spec(existing[0].id, settings.stored(),  # created, never run
                               run=settings.run_record())


def _check_sources(settings: ProcessSettings, storage: Storage) -> None:
    """A missing warm-start source fails before anything is stored."""
    spec = settings.spec
    for stage in spec.stages:
        if stage.warm_start is not None and not (
                stage.warm_start.sweep == spec.name and stage.warm_start.db is None):
            try:
                check_source(stage.warm_start, storage)
            except SweepSpecError as exc:
                raise SweepSpecError(f"{spec.origin}: stages.{stage.name}.{exc}") from None


@contextmanager
def opened(settings: ProcessSettings, storage: Storage, trials: InFlight
           ) -> Iterator[SweepContext]:
    """The worker pool, the shared data, the heartbeat, the live channel, Optuna's storage
    and the sweep's record, checked and opened for the stages to run; closed at the end.
    Ctrl-C or SIGTERM, or a database error, end the running ``trials`` as the module
    docstring says."""
    spec = settings.spec
    _refuse_run_again(settings, storage)
    pool = WorkerPool(settings.jobs, settings.backend, settings.scheduler)
    data = DataShare(settings.data_source, pool.jobs if pool.local else 1)
    heart = Heartbeat(storage, heartbeat_interval(settings.grace))
    ctx: SweepContext | None = None
    sweep: SweepRecord | None = None

    def handle(messages: list[Message]) -> None:  # points of a trial run in this process
        if ctx is not None:
            take_points(ctx, messages)

    try:
        live = open_channel(pool.executor, data.make_folder if pool.local else None, handle)
        check_against_images(spec, data.dataset.image_shape, len(data.dataset.classes))
        check_data_sizes(spec, data.dataset, force=settings.force)
        _check_sources(settings, storage)
        ostorage = optuna_storage(storage.engine_url, storage.db_wait)
        sweep = storage.get_or_create_sweep(spec.name, settings.stored(), spec.seed,
                                            run=settings.run_record())
        check_sweep_data(storage, sweep, data.dataset, settings.data_source)
        write_unsaved(storage)  # results kept here when the database last went away
        heart.start()
        ctx = SweepContext(settings, storage, trials, pool, data, heart, live, ostorage, sweep)
        yield ctx
    except StorageUnavailable as exc:
        raise _keep_finished(storage, trials, exc) from None
    except StorageGone as exc:  # results of the running trials have nowhere to go
        running = len(trials.running) + len(trials.pending)
        pool.shutdown(wait=False, kill_workers=True)  # not waiting for their ends
        raise StorageGone(f"{exc}; sweep {spec.name!r} stopped (finished trials stored "
                          f"in it by this process: {trials.finished}, running trials "
                          f"dropped: {running})") from None
    except StorageError as exc:  # a full disk, a database that refuses writes, ...
        _stop_running(storage, pool, heart, trials, sweep, settings.name,
                      f"stopped: {exc}; `numsweep sweep resume {shlex.quote(spec.name)}` "
                      f"runs it again")
        raise
    except KeyboardInterrupt:
        acting_on_interrupt()  # from here on no re-raised interrupt cuts this short
        if ctx is not None:
            with suppress(Exception):  # the points measured so far, while the trials run
                take_points(ctx, ctx.live.take())
        ids = trials.ids()
        pool.shutdown(wait=False, kill_workers=True)
        count = mark_interrupted(
            storage, heart,
            ids, f"interrupted (Ctrl-C or SIGTERM) in {settings.name}; `numsweep sweep "
                 f"resume {spec.name}` runs it again",
            sweep_id=sweep.id if sweep is not None else None, worker=settings.name)
        raise SweepInterrupted(spec.name, count, trials.finished) from None
    finally:
        heart.stop()
        if not pool.local:
            pool.shutdown(wait=False)
        data.close()


def _stop_running(storage: Storage, pool: WorkerPool, heart: Heartbeat, trials: InFlight,
                  sweep: SweepRecord | None, worker: str, message: str) -> None:
    """The sweep stops on a database error: its workers end and its running trials are
    marked INTERRUPTED with ``message`` where the database still takes that write (else
    the next resume takes them for lost: this process is gone)."""
    ids = trials.ids()
    pool.shutdown(wait=False, kill_workers=True)
    heart.stop()
    with suppress(StorageError):
        storage.interrupt_trials_promptly(
            ids, message, sweep_id=sweep.id if sweep is not None else None, worker=worker)


def _keep_finished(storage: Storage, trials: InFlight,
                   exc: StorageUnavailable) -> StorageUnavailable:
    """The database stayed away past --db-wait: keep the results that finished on this
    machine (written by the next process here to run the sweep) and say where."""
    done = trials.unsaved + [f.result() for f in trials.running
                             if f.done() and f.exception() is None]
    if not done:
        return exc
    count, folder = keep_unsaved(storage, done)
    return StorageUnavailable(f"{exc}; {count} finished trial results kept in {folder} "
                              f"(the next `numsweep sweep resume` or `numsweep worker` "
                              f"here writes them)")
