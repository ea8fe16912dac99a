"""The ``numsweep`` command: a thin layer over the library.

Exit codes: 0 done; 1 what was asked is wrong or failed (a library error's one-line message,
and click's usage errors: an unknown option, a missing argument, a bad value); 130
interrupted (Ctrl-C, SIGTERM). Anything else is a bug, with its traceback.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shlex
import shutil
import signal
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn, TypeVar

import click
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

# only light modules here: pandas, matplotlib, SQLAlchemy, Optuna and the engine load
# inside the commands that use them, so that --help and quick commands start at once
from numsweep.defaults import DEFAULT_DB_WAIT, DEFAULT_GRACE, DEFAULT_URL, DEVICES, GROUPINGS
from numsweep.errors import NumsweepError
from numsweep.shield import install_sigint_handler

F = TypeVar("F", bound=Callable[..., Any])

console = Console(stderr=True)


USAGE_EXIT_CODE = 1
"""Usage errors exit as every other error of what was asked does (click's own code is 2)."""


class NumsweepCommand(click.Command):
    """A command whose single-valued options may be given once: a second ``--sweep b`` would
    silently replace ``--sweep a`` (click keeps the last), so it is a usage error instead."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if not ctx.resilient_parsing:  # shell completion parses partial command lines
            _, _, order = self.make_parser(ctx).parse_args(args=list(args))
            for param in dict.fromkeys(order):
                given = sum(p is param for p in order)
                if (given > 1 and isinstance(param, click.Option) and not param.multiple
                        and not param.count and not param.is_flag):
                    names = "/".join(param.opts)
                    raise click.BadOptionUsage(
                        param.opts[0], f"{names} was given {given} times; it takes one value",
                        ctx)
        return super().parse_args(ctx, args)


class NumsweepGroup(click.Group):
    """Turns library errors into ``Error: <one line>`` and exit code 1, gives click's usage
    errors the same code; its commands and groups check for repeated single-valued options
    (:class:`NumsweepCommand`)."""

    command_class = NumsweepCommand
    group_class = type  # subgroups are NumsweepGroups too

    def make_context(self, info_name: str | None, args: list[str],
                     parent: click.Context | None = None, **extra: Any) -> click.Context:
        try:
            return super().make_context(info_name, args, parent, **extra)
        except KeyboardInterrupt:  # while the options are read: click would say "Aborted!"
            exit_interrupted("interrupted")
        except click.UsageError as exc:
            exc.exit_code = USAGE_EXIT_CODE
            raise

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt as exc:  # Ctrl-C outside a sweep's own handling
            exit_interrupted(str(exc) or "interrupted")  # no traceback
        except click.UsageError as exc:  # of a subcommand's options, or raised by one
            exc.exit_code = USAGE_EXIT_CODE
            raise
        except NumsweepError as exc:  # a user error; anything else is a bug: traceback
            raise click.ClickException(str(exc).splitlines()[0] if str(exc) else
                                       type(exc).__name__) from None


def db_option(fn: F) -> F:
    return click.option("--db", "db", default=DEFAULT_URL, show_default=True,
                        envvar="NUMSWEEP_DB",
                        help="Result database: a SQLAlchemy URL or a SQLite file path "
                             "(runs.db means sqlite:///runs.db; env NUMSWEEP_DB).")(fn)


def data_option(fn: F) -> F:
    return click.option(
        "--data", "data", default=None, envvar="NUMSWEEP_DATA", metavar="PATH",
        help="Dataset: an .npz, a cifar-10-batches-py folder, the official .tar.gz, or a "
             "Fashion-MNIST idx folder (env NUMSWEEP_DATA). Default: download CIFAR-10 into "
             "the cache.")(fn)


def kept_options(fn: F, stored: bool = False) -> F:
    """--checkpoint-dir and --keep-weights: where checkpoints and kept networks live, and
    which networks are kept (``stored``: defaults to the sweep's stored choice)."""
    fn = click.option("--keep-weights", type=click.Choice(["best", "all", "none"]),
                      default=None if stored else "best",
                      show_default="as the sweep was started" if stored else True,
                      help="Networks of finished trials kept: best (the best trial of each "
                           "stage and every trial of a final stage), all, none.")(fn)
    return click.option("--checkpoint-dir", default=None, metavar="DIR",
                        show_default="as the sweep was started" if stored else
                        "DB.checkpoints beside a SQLite file",
                        help="Folder for checkpoints (a trial resumes from its last one) and "
                             "kept networks; with PostgreSQL a folder every worker can "
                             "reach.")(fn)


def stored_kept_options(fn: F) -> F:
    return kept_options(fn, stored=True)


def checkpoint_dir_option(fn: F) -> F:
    return click.option("--checkpoint-dir", default=None, metavar="DIR",
                        show_default="as the sweep was run",
                        help="Folder of checkpoints and kept networks.")(fn)


def overrides_argument(fn: F) -> F:
    return click.argument("overrides", nargs=-1, metavar="[KEY=VALUE]...")(fn)


def parse_overrides(items: tuple[str, ...]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.UsageError(f"expected KEY=VALUE, got {item!r}")
        out[key.strip()] = value.strip()
    return out


def _download_progress() -> Callable[[int, int | None], None]:
    progress = Progress(TextColumn("downloading CIFAR-10"), BarColumn(), DownloadColumn(),
                        TimeElapsedColumn(), console=console, transient=True)
    task = progress.add_task("download", total=None)

    def update(done: int, total: int | None) -> None:
        if not progress.live.is_started:
            progress.start()
        progress.update(task, completed=done, total=total)
        if total is not None and done >= total:
            progress.stop()

    return update


def prepare_data(source: str | None) -> None:
    """Load (and if needed download) the dataset once up front, so errors come before work;
    kept for the rest of the command (``cached_dataset``)."""
    from numsweep.sweeps.dataset_cache import cached_dataset

    cached_dataset(source, progress=_download_progress())


@click.group(cls=NumsweepGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="numsweep")
def cli() -> None:
    """numsweep: hyperparameter sweeps for small NumPy image classifiers, kept in a database.

    \b
    Example:
        numsweep sweep run examples/lambda-coarse.toml --data cifar10.npz
        numsweep trials --sweep lambda-coarse
        numsweep plot bars --sweep lambda-coarse --metric val_acc -o lam.png
    """


@cli.command()
@overrides_argument
@data_option
@db_option
@click.option("--sweep", "sweep_name", default="train", show_default=True,
              help="Sweep name the run is stored under.")
@click.option("--json", "as_json", is_flag=True, help="Print the result record as JSON.")
@click.option("--force", is_flag=True,
              help="Train a run of more than 10,000,000 updates (up to 1,000,000,000).")
@kept_options
def train(overrides: tuple[str, ...], data: str | None, db: str, sweep_name: str,
          as_json: bool, force: bool, checkpoint_dir: str | None, keep_weights: str) -> None:
    """Train one configuration and store it as a trial.

    \b
    Example:
        numsweep train lam=0.01 n_train=10000 n_val=10000 n_s=500 cycles=1 --json
        numsweep train model=convnet f=4 nf=10 nh=50 lam=0.003 n_s=800 cycles=3
    """
    from numsweep.engine import TrialSpec
    from numsweep.engine.backend import device_module
    from numsweep.storage import Storage
    from numsweep.sweeps.single import train_trial

    spec = TrialSpec.from_mapping(parse_overrides(overrides))
    device_module(spec.device)  # device=cuda: CuPy and a GPU, before a trial is stored
    storage = Storage(db)
    if data is None:  # the download's progress bar before the status line
        prepare_data(data)
    with console.status("training"):
        trained = train_trial(spec, storage, data_source=data, sweep_name=sweep_name,
                              checkpoint_dir=checkpoint_dir, keep_weights=keep_weights,
                              force=force)
    trial_id, result = trained.trial_id, trained.result
    if result is None:
        raise click.ClickException(f"trial {trial_id} failed: {trained.outcome.error}")
    if as_json:
        record = {"trial_id": trial_id, **result.spec.to_dict(), **result.metrics(),
                  "diverged": result.diverged, "message": result.message}
        click.echo(json.dumps(record, indent=2, default=_json_default))
    else:
        click.echo(f"trial {trial_id}: val_acc {result.val_acc:.4f}  test_acc "
                   f"{result.test_acc:.4f}  train_seconds {result.train_seconds:.2f}  "
                   f"updates {result.updates}")
    if result.diverged:
        raise click.ClickException(f"trial {trial_id} failed: {result.message}")
    if trained.unkept:
        raise click.ClickException(f"trial {trial_id}: {trained.unkept}; its result is stored; "
                                   f"`numsweep trial rerun {trial_id}` writes it again")


def _json_default(value: Any) -> Any:
    return str(value)


@cli.command("range-test")
@click.argument("mode", type=click.Choice(["lr", "batch"]))
@overrides_argument
@data_option
@db_option
@click.option("--sweep", "sweep_name", default="range-test", show_default=True,
              help="Sweep name the test is stored under.")
@click.option("--stop-factor", default=4.0, show_default=True,
              type=click.FloatRange(min=1, min_open=True),
              help="Stop when the smoothed loss exceeds this many times its minimum.")
@click.option("--json", "as_json", is_flag=True,
              help="Print the result, with the loss of every update, as JSON.")
def range_test_command(mode: str, overrides: tuple[str, ...], data: str | None, db: str,
                       sweep_name: str, stop_factor: float, as_json: bool) -> None:
    """Learning-rate (lr) or batch-size (batch) range test, stored as a trial.

    lr: the learning rate rises exponentially from eta_min to eta_max over n_updates
    updates (default 200) at batch_size. batch: the batch size rises exponentially from
    b_min to b_max at the constant learning rate eta_max. The curve rows hold each update's
    mini-batch loss, cost and accuracy with split lr_range (step = update) or batch_range
    (step = the batch size of that update); lr holds the learning rate.

    \b
    Example:
        numsweep range-test lr eta_min=1e-5 eta_max=1 n_updates=300 n_train=10000
        numsweep range-test batch b_min=16 b_max=1024 eta_max=0.05 --json
    """
    from numsweep.engine.range_test import range_spec_from
    from numsweep.storage import Storage
    from numsweep.sweeps.range_tests import run_range_test

    spec = range_spec_from(parse_overrides(overrides), mode)
    storage = Storage(db)
    if data is None:  # the download's progress bar before the status line
        prepare_data(data)
    with console.status(f"{mode} range test"):
        stored = run_range_test(spec, mode, storage, data_source=data,
                                sweep_name=sweep_name, stop_factor=stop_factor)
    trial_id, result, metrics = stored.trial_id, stored.result, stored.metrics
    if as_json:
        record = {"trial_id": trial_id, "mode": mode, **result.spec.to_dict(), **metrics,
                  "message": result.message, "values": list(result.values),
                  "losses": list(result.losses), "smoothed": list(result.smoothed)}
        click.echo(json.dumps(record, indent=2, default=_json_default))
        return
    unit = "lr" if mode == "lr" else "batch size"
    click.echo(f"trial {trial_id}: {mode} range test, {result.updates} updates; lowest smoothed "
               f"loss at {unit} {result.best:.4g}, steepest descent at {unit} "
               f"{result.steepest:.4g}" + (f"; {result.message}" if result.message else ""))


@cli.group()
def sweep() -> None:
    """Run and inspect sweeps.

    \b
    Example:
        numsweep sweep run lambda-search --jobs 2 --data cifar10.npz
        numsweep sweep show lambda-search
        numsweep sweep list
    """


def backend_options(fn: F) -> F:
    """--backend, --scheduler, --grace and --db-wait: where trials run, when a trial is lost,
    how long a database that went away is waited for."""
    fn = click.option("--db-wait", default=DEFAULT_DB_WAIT, show_default=True,
                      metavar="SECONDS", type=click.FloatRange(min=0),
                      help="How long to wait for a database that went away (server restart, "
                           "network), retrying, before stopping with an error; results "
                           "finished meanwhile are written when it is back.")(fn)
    fn = click.option("--grace", default=DEFAULT_GRACE, show_default=True, metavar="SECONDS",
                      type=click.FloatRange(min=1),
                      help="A RUNNING trial without a heartbeat for this long is taken for "
                           "lost (its process or machine died) and runs again.")(fn)
    fn = click.option("--scheduler", default=None, envvar="NUMSWEEP_DASK_SCHEDULER",
                      metavar="ADDRESS",
                      help="Dask scheduler for --backend dask, such as tcp://10.0.0.5:8786 "
                           "(env NUMSWEEP_DASK_SCHEDULER).")(fn)
    return click.option("--backend", type=click.Choice(["loky", "dask"]), default="loky",
                        show_default=True,
                        help="loky: --jobs worker processes on this machine; dask: the "
                             "workers of a Dask cluster (needs --scheduler).")(fn)


def device_option(fn: F) -> F:
    return click.option("--device", default=None, type=click.Choice(DEVICES),
                        help="Train on this device: cpu (NumPy) or cuda (CuPy on a GPU; "
                             "pip install 'numsweep[gpu]'). Sets the device parameter of "
                             "the trials this process trains. With cuda --jobs defaults "
                             "to 1 (one process per GPU; CUDA_VISIBLE_DEVICES picks it).")(fn)


def jobs_option(fn: F) -> F:
    fn = click.option("--force", is_flag=True,
                      help="Run --jobs x --threads above the number of cores (up to 8 jobs "
                           "per core and what the memory holds), and trials of more than "
                           "10,000,000 updates (up to 1,000,000,000).")(fn)
    return click.option("--jobs", "-j", default=None, type=click.IntRange(min=1),
                        show_default="number of cores; with dask the cluster's threads",
                        help="Trials run at once by this process.")(fn)


def group_size_option(fn: F) -> F:
    """--group-size and --grouping (sweep run, resume, extend, worker)."""
    fn = click.option("--grouping", "grouping", default=None,
                      type=click.Choice(GROUPINGS),
                      show_default="slots for a stage with a pruner or tpe/gp/cmaes, batch for "
                                   "a fixed list; a stage already planned: as stored",
                      help="How a stage's groups form: slots (each worker trains one slot "
                           "group and refills a slot as soon as its trial ends) or batch "
                           "(a group's trials start together; it ends with its last).")(fn)
    return click.option("--group-size", "group_size", default=None, metavar="K",
                        type=click.IntRange(min=0),
                        show_default="automatic: the fastest per trial as measured on "
                                     "this machine, within the stage's size over --jobs "
                                     "and the free memory",
                        help="Train up to K like-shaped trials of a stage together as one "
                             "fused group, or K slots (0 or 1: one at a time).")(fn)


def stored_threads_option(fn: F) -> F:
    """--threads of commands that continue a stored sweep (resume, worker)."""
    return click.option("--threads", default=None, type=click.IntRange(min=1),
                        show_default="as the sweep was started",
                        help="BLAS threads per trial.")(fn)


def stored_sweep_options(fn: F) -> F:
    """The options of commands that work on a sweep stored in the database (resume, worker)."""
    for option in (db_option, data_option, backend_options, stored_threads_option, jobs_option,
                   stored_kept_options, device_option, group_size_option):
        fn = option(fn)
    return fn


def _print_run(result: Any, db: str) -> None:
    """A line per stage, where the results are and what to run next; exit 1 when no trial
    completed or networks the sweep keeps could not be written (their results are
    stored)."""
    from numsweep.analysis.formatting import count
    from numsweep.engine.checkpoint import WEIGHTS_NOT_KEPT
    from numsweep.storage import shown_url

    name, where = result.name, db_words(db)
    for s in result.summaries:
        best = "" if s.best_val_acc is None else (
            f"; best val_acc {s.best_val_acc:.4f}"
            + ("" if s.best_test_acc is None else f" (test_acc {s.best_test_acc:.4f})")
            + ("" if s.best_trial is None else f", trial {s.best_trial}")
            + (f": {_params_text(s.best_params)}" if s.best_params else ""))
        counts = ", ".join(f"{n} {k.lower()}" for k, n in sorted(s.counts.items()))
        reused = f", {s.reused} reused" if s.reused else ""
        click.echo(f"stage {s.name}: {counts or 'no new trials'}{reused}{best}")
    click.echo(f"results: sweep {name} in {shown_url(result.storage.url)}")
    click.echo(f"next: {command('sweep', 'show', name, *where)}")
    click.echo(f"      {command('report', name, '-o', f'report-{name}/', *where)}")
    failures = result.failures
    if failures.failed:
        console.print(failures.line(), highlight=False, soft_wrap=True)
    if result.none_completed:
        raise click.ClickException(f"no trial of sweep {name!r} completed"
                                   + (f" ({failures.line()})" if failures.failed else ""))
    unkept = result.unkept
    if unkept:
        why = next(p for p in unkept[0].message.split("; ") if p.startswith(WEIGHTS_NOT_KEPT))
        ids = ", ".join(str(t.id) for t in unkept[:10]) + (", ..." if len(unkept) > 10 else "")
        raise click.ClickException(
            f"{count(len(unkept), 'trial')} of sweep {name!r} kept no network ({why}); their "
            f"results are stored; `numsweep trial rerun ID` writes each again (trials {ids})")


def _run_printed(start: Callable[[], Any], db: str) -> None:
    """Run a sweep through the library's pipeline (under its live display), then print how
    it ended; Ctrl-C prints how to continue (exit code 130)."""
    from numsweep.sweeps.pipeline import RunInterrupted

    try:
        result = start()
    except RunInterrupted as exc:
        exit_interrupted(f"{exc.message}; continue with: "
                         f"{command('sweep', 'resume', exc.name, *db_words(db))}")
    _print_run(result, db)


def command(*words: str) -> str:
    """A ``numsweep`` command line to copy into a shell: every word quoted as the shell
    needs it (a sweep named ``my sweep`` or ``a;b`` stays one word)."""
    return " ".join(("numsweep", *(shlex.quote(w) for w in words)))


def db_words(db: str) -> tuple[str, ...]:
    """``--db URL`` for a hint (password masked), nothing for the default database."""
    from numsweep.storage import shown_url

    return () if db == DEFAULT_URL else ("--db", shown_url(db))


def _params_text(params: dict[str, Any]) -> str:
    """``lam=0.007197, cycles=3``: parameters as a user types them."""
    from numsweep.analysis.formatting import format_cell

    return ", ".join(f"{k}={format_cell(v)}" for k, v in params.items())


@sweep.command("run")
@click.argument("spec_file", metavar="SPEC")
@overrides_argument
@jobs_option
@group_size_option
@click.option("--threads", default=1, show_default=True, type=click.IntRange(min=1),
              help="BLAS threads per trial (jobs x threads should not exceed the cores; "
                   "results are reproducible for the same value).")
@click.option("--budget", default=None, metavar="DURATION",
              help="Time budget such as 30m or 1h30m: shrink the sweep to fit the estimate "
                   "and stop proposing trials when it is used up.")
@device_option
@backend_options
@kept_options
@data_option
@db_option
def sweep_run(spec_file: str, overrides: tuple[str, ...], jobs: int | None, force: bool,
              group_size: int | None, grouping: str | None, threads: int,
              budget: str | None, device: str | None,
              backend: str, scheduler: str | None, grace: float, db_wait: float,
              checkpoint_dir: str | None, keep_weights: str, data: str | None,
              db: str) -> None:
    """Run the stages of a sweep spec (a .toml file or a preset name).

    KEY=VALUE fixes a parameter for every stage (and stops searching it), STAGE.KEY=VALUE
    changes a stage key (n_trials, sampler, time_budget, replicates, pruner, ...) or fixes a
    parameter in that stage, space.NAME.KEY=VALUE changes a search range (low, high, grid).
    Ctrl-C stops cleanly (running trials are marked interrupted); `numsweep sweep resume`
    continues, and `numsweep worker` joins from other machines.

    \b
    Example:
        numsweep sweep run examples/lambda-coarse.toml n_train=2000 n_val=1000 cycles=1 \\
            --jobs 2 --db sqlite:///t.db --data cifar10.npz
        numsweep sweep run lambda-search fine.n_trials=20 fine.pruner=median --budget 30m
        numsweep sweep run examples/lambda-coarse.toml --group-size 8
        numsweep sweep run examples/lambda-coarse.toml --device cuda
    """
    from numsweep.sweeps.pipeline import RunOptions, start_sweep

    options = RunOptions(jobs=jobs, threads=threads, backend=backend, scheduler=scheduler,
                         grace=grace, db_wait=db_wait, data=data,
                         checkpoint_dir=checkpoint_dir, keep_weights=keep_weights,
                         device=device, group_size=group_size, grouping=grouping,
                         force=force)
    overrides_given = parse_overrides(overrides)
    _run_printed(lambda: start_sweep(spec_file, overrides_given, db, options, console=console,
                                     budget=budget, download=_download_progress()), db)


@sweep.command("create")
@click.argument("spec_file", metavar="SPEC")
@overrides_argument
@click.option("--threads", default=1, show_default=True, type=click.IntRange(min=1),
              help="BLAS threads per trial for every process that runs the sweep.")
@kept_options
@data_option
@db_option
def sweep_create(spec_file: str, overrides: tuple[str, ...], threads: int,
                 checkpoint_dir: str | None, keep_weights: str, data: str | None,
                 db: str) -> None:
    """Store a sweep in the database without running it, for `numsweep worker` processes
    (on this and other machines) to run together.

    \b
    Example:
        numsweep sweep create lambda-search --db postgresql://me:pw@db-host/sweeps \\
            --data /data/cifar10.npz
        numsweep worker lambda-search --db postgresql://me:pw@db-host/sweeps --jobs 2
    """
    from numsweep.storage import Storage
    from numsweep.sweeps import load_spec
    from numsweep.sweeps.dataset_cache import cached_dataset
    from numsweep.sweeps.runner import create_sweep
    from numsweep.sweeps.spec import check_against_images, resolve_data

    spec = load_spec(spec_file, parse_overrides(overrides))
    data = resolve_data(spec, data)
    storage = Storage(db)
    dataset = cached_dataset(data)  # the fingerprint stored with the sweep reads this copy
    check_against_images(spec, dataset.image_shape, len(dataset.classes))
    create_sweep(spec, storage, data_source=data, threads=threads,
                 checkpoint_dir=checkpoint_dir, keep_weights=keep_weights)
    click.echo(f"created sweep {spec.name} ({len(spec.stages)} stages); run it with: "
               f"{command('worker', spec.name, *db_words(db))}")


def _resume(name: str, jobs: int | None, force: bool, threads: int | None, backend: str,
            scheduler: str | None, grace: float, db_wait: float, data: str | None,
            db: str, checkpoint_dir: str | None, keep_weights: str | None,
            device: str | None, group_size: int | None = None,
            grouping: str | None = None, extend: dict[str, str] | None = None) -> None:
    """``sweep resume``, ``sweep extend`` and ``worker``: one library call, then print."""
    from numsweep.sweeps.pipeline import RunOptions, continue_sweep

    options = RunOptions(jobs=jobs, threads=threads, backend=backend, scheduler=scheduler,
                         grace=grace, db_wait=db_wait, data=data,
                         checkpoint_dir=checkpoint_dir, keep_weights=keep_weights,
                         device=device, group_size=group_size, grouping=grouping,
                         force=force)
    _run_printed(lambda: continue_sweep(name, db, options, console=console, extend=extend,
                                        download=_download_progress()), db)


@sweep.command("resume")
@click.argument("name")
@stored_sweep_options
def sweep_resume(name: str, jobs: int | None, force: bool, group_size: int | None,
                 grouping: str | None,
                 threads: int | None, backend: str, scheduler: str | None, grace: float,
                 db_wait: float, data: str | None, db: str, checkpoint_dir: str | None,
                 keep_weights: str | None, device: str | None) -> None:
    """Continue sweep NAME from the spec stored in the database: run what is left, run again
    the trials that were interrupted or lost (RUNNING without a heartbeat for --grace
    seconds, or whose process on this machine is gone), never a finished trial twice.
    Several resume or worker processes may run at once: they share the work.

    --data defaults to the data the sweep was started with.

    \b
    Example:
        numsweep sweep resume lambda-search --jobs 2
        numsweep sweep resume lambda-search --db sqlite:///t.db --grace 30
    """
    _resume(name, jobs, force, threads, backend, scheduler, grace, db_wait, data, db,
            checkpoint_dir, keep_weights, device, group_size, grouping)


@sweep.command("extend")
@click.argument("name")
@click.argument("additions", nargs=-1, metavar="STAGE.n_trials=+N...")
@stored_sweep_options
def sweep_extend(name: str, additions: tuple[str, ...], jobs: int | None, force: bool,
                 group_size: int | None, grouping: str | None, threads: int | None,
                 backend: str,
                 scheduler: str | None, grace: float, db_wait: float, data: str | None,
                 db: str, checkpoint_dir: str | None, keep_weights: str | None,
                 device: str | None) -> None:
    """Give sampler stages of sweep NAME more trials (also once it finished) and run them as
    `sweep resume` runs: the stored spec and data (other data is refused), proposals that
    know the results of all but the last few configurations, nothing run twice. A stage
    whose results a later stage already used (a best or narrowed stage) is refused.

    \b
    Example:
        numsweep sweep extend conv-pareto search.n_trials=+16
        numsweep sweep extend lambda-search fine.n_trials=24 --jobs 2
    """
    _resume(name, jobs, force, threads, backend, scheduler, grace, db_wait, data, db,
            checkpoint_dir, keep_weights, device, group_size, grouping,
            extend=parse_overrides(additions))


@sweep.command("list")
@db_option
def sweep_list(db: str) -> None:
    """List the sweeps in the database with their trial counts by state.

    \b
    Example:
        numsweep sweep list --db sqlite:///numsweep.db
    """
    from numsweep.storage import Storage

    storage = Storage(db, read_only=True)
    by_sweep = storage.state_counts()
    for record in storage.list_sweeps():
        counts = by_sweep.get(record.name, {})
        shown = ", ".join(f"{n} {k.lower()}" for k, n in sorted(counts.items())) or "no trials"
        click.echo(f"{record.name}\t{shown}\tcreated {record.created_at:%Y-%m-%d %H:%M}")


@sweep.command("show")
@click.argument("name")
@click.option("--top", default=5, show_default=True, type=click.IntRange(min=1),
              help="Best trials to list.")
@db_option
def sweep_show(name: str, top: int, db: str) -> None:
    """A sweep's stages, the ranges each chose and why, counts by state and best trials.

    \b
    Example:
        numsweep sweep show lambda-search --top 3
    """
    from numsweep.analysis.formatting import format_cell
    from numsweep.storage import Storage, describe_space
    from numsweep.sweeps.report import sweep_report

    rep = sweep_report(Storage(db, read_only=True), name, top)
    click.echo(f"sweep {rep.sweep.name} (seed {rep.sweep.seed}, created "
               f"{rep.sweep.created_at:%Y-%m-%d %H:%M})")
    for st in rep.stages:
        counts = ", ".join(f"{n} {k.lower()}" for k, n in sorted(st.counts.items()))
        click.echo(f"stage {st.name} [{st.sampler}]: {counts or 'no trials'}"
                   + (f", reused {len(st.reused)}" if st.reused else ""))
        if st.sampler != "best":  # a best stage searches nothing: its "why" names the trial
            click.echo(f"  space: {describe_space(st.plan.space, st.sampler)}")
        if st.fixed:
            click.echo(f"  fixed: {', '.join(f'{k}={v}' for k, v in st.fixed.items())}")
        if st.objectives and [o.text for o in st.objectives] != ["val_acc:max"]:
            click.echo(f"  objectives: {', '.join(o.text for o in st.objectives)}")
        if st.warm_start:
            click.echo(f"  warm start: {st.warm_start}")
        if st.note:
            click.echo(f"  why: {st.note}")
        click.echo(f"  grouped: {st.grouping}")
        if st.slots:
            click.echo(f"  slots: {st.slots}")
        if st.front:
            click.echo(f"  Pareto front: {len(st.front)} trials: " + ", ".join(
                f"{t.id} ({', '.join(_score(o, t) for o in st.objectives)})"
                for t in st.front))
        if st.best is not None:
            click.echo(f"  best: trial {st.best.id} val_acc {st.best.metrics['val_acc']:.4f} "
                       f"test_acc {st.best.metrics.get('test_acc', math.nan):.4f}")
    click.echo("best trials:")
    for t in rep.best:
        shown = ", ".join(f"{n}={format_cell(t.params.get(n))}" for n in rep.searched)
        where = f" ({t.stage})" if t.stage else ""
        click.echo(f"  trial {t.id}{where} val_acc {t.metrics['val_acc']:.4f} "
                   f"test_acc {t.metrics.get('test_acc', math.nan):.4f} {shown}")


def _score(objective: Any, trial: Any) -> str:
    value = trial.metrics.get(objective.column, math.nan)
    return f"{objective.metric} {value:.4g}"


@sweep.command("presets")
def sweep_presets() -> None:
    """List the sweep specs shipped with numsweep (run one by name).

    \b
    Example:
        numsweep sweep presets
        numsweep sweep run lambda-search --data cifar10.npz
    """
    from numsweep.sweeps.spec import preset_descriptions

    for name, description in preset_descriptions().items():
        click.echo(f"{name}\t{description}")


@sweep.command("gc")
@click.argument("name")
@click.option("--keep-weights", type=click.Choice(["best", "all", "none"]), default=None,
              show_default="as the sweep was run", help="Keep policy to apply.")
@checkpoint_dir_option
@db_option
def sweep_gc(name: str, keep_weights: str | None, checkpoint_dir: str | None, db: str) -> None:
    """Remove the checkpoints of a sweep's finished trials and the kept networks its keep
    policy no longer keeps (e.g. after --keep-weights all, run with --keep-weights best).

    \b
    Example:
        numsweep sweep gc lambda-search
    """
    from numsweep.storage import Storage
    from numsweep.sweeps.kept import collect_garbage

    done = collect_garbage(Storage(db, read_only=True), name, checkpoint_dir, keep_weights)
    click.echo(f"removed {len(done.checkpoints)} checkpoints and {len(done.weights)} kept "
               f"networks ({done.bytes / 1e6:.1f} MB)")


@sweep.command("delete")
@click.argument("name")
@click.option("--yes", is_flag=True, help="Delete without asking.")
@db_option
def sweep_delete(name: str, yes: bool, db: str) -> None:
    """Delete sweep NAME: its stages, trials, curves and Optuna studies from the database,
    and its checkpoints and kept networks from disk, so that NAME can be run again.

    \b
    Example:
        numsweep sweep delete lambda-coarse --yes
    """
    from numsweep.storage import Storage
    from numsweep.sweeps.deletion import delete_sweep, plan_deletion

    storage = Storage(db)
    if not yes:
        what = plan_deletion(storage, name)
        click.confirm(f"delete {what.describe()}?", abort=True)
    done = delete_sweep(storage, name)
    click.echo(f"deleted {done.describe()}")


@cli.command("worker")
@click.argument("name")
@stored_sweep_options
def worker(name: str, jobs: int | None, force: bool, group_size: int | None,
           grouping: str | None,
           threads: int | None, backend: str, scheduler: str | None, grace: float,
           db_wait: float, data: str | None, db: str, checkpoint_dir: str | None,
           keep_weights: str | None, device: str | None) -> None:
    """Join sweep NAME in a shared database (PostgreSQL for several machines) and run its
    trials beside the other processes working on it, until every stage is finished.

    Start one on each machine with the same --db; --data is the dataset's path on this
    machine (default: the path the sweep was created with). Trials of a worker that dies run
    again elsewhere once their heartbeat is --grace seconds old.

    \b
    Example:
        numsweep sweep create lambda-search --db postgresql://me:pw@db-host/sweeps
        numsweep worker lambda-search --db postgresql://me:pw@db-host/sweeps \\
            --data /scratch/cifar10.npz --jobs 4
    """
    _resume(name, jobs, force, threads, backend, scheduler, grace, db_wait, data, db,
            checkpoint_dir, keep_weights, device, group_size, grouping)


@cli.group()
def trial() -> None:
    """Work with one stored trial.

    \b
    Example:
        numsweep trial rerun 12
    """


@trial.command("rerun")
@click.argument("trial_id", type=int)
@data_option
@db_option
def trial_rerun(trial_id: int, data: str | None, db: str) -> None:
    """Train a stored trial again from its parameters and seed and compare the metrics.

    Exits with 1 when a metric differs. The rerun is stored as a trial of the sweep "rerun"
    (`numsweep trials --sweep rerun` lists them; `numsweep sweep delete rerun` removes them).
    The data is the one the trial was trained on (that of `train --data` or of its sweep)
    unless --data names another; a range test stops by its own rule, as it did.

    \b
    Example:
        numsweep trial rerun 12 --db sqlite:///t.db
    """
    from click.core import ParameterSource

    from numsweep.analysis.formatting import format_cell
    from numsweep.storage import Storage
    from numsweep.sweeps.rerun import rerun_trial

    # $NUMSWEEP_DATA only stands in for data the trial did not store; --data always wins
    from_env = click.get_current_context().get_parameter_source("data") \
        is ParameterSource.ENVIRONMENT
    storage = Storage(db, create=False)  # the trial is there already
    with console.status(f"rerunning trial {trial_id}"):
        rerun = rerun_trial(storage, trial_id, data_source=None if from_env else data,
                            default_data=data if from_env else None)
    if rerun.error is not None:
        raise click.ClickException(f"rerun of trial {trial_id} failed (stored as trial "
                                   f"{rerun.trial_id}): {rerun.error}")
    click.echo(f"metric\ttrial {trial_id} (stored)\ttrial {rerun.trial_id} (rerun)")
    for name in rerun.compared:
        click.echo(f"{name}\t{format_cell(rerun.original.metrics.get(name))}\t"
                   f"{format_cell(rerun.metrics.get(name))}")
    diff = rerun.differences()
    if diff:
        raise click.ClickException(f"trial {rerun.trial_id} differs from trial {trial_id} in "
                                   f"{', '.join(diff)}")
    original = rerun.original
    alone = (f" (trained alone; trial {trial_id} trained in fused group {original.group_id} "
             f"of {original.group_size})"
             if original.group_size is not None and original.group_size > 1 else "")
    if rerun.population is not None:
        alone = f" (its pbt population of {rerun.population} trained again)"
    click.echo(f"trial {rerun.trial_id}: same metrics as trial {trial_id}{alone}")
    if rerun.restored is not None:
        click.echo(f"wrote the network trial {trial_id} had not kept: {rerun.restored}")


@trial.command("show")
@click.argument("trial_id", type=int)
@db_option
def trial_show(trial_id: int, db: str) -> None:
    """A stored trial: its sweep, stage, state, parameters and metrics; for a member of a pbt
    stage also its schedule of explored values and its ancestry (the exploit steps that
    made it).

    \b
    Example:
        numsweep trial show 12 --db sqlite:///t.db
    """
    from numsweep.analysis.formatting import format_cell
    from numsweep.storage import Storage
    from numsweep.sweeps.lineage import trial_details

    details = trial_details(Storage(db, create=False), trial_id)
    t = details.trial
    click.echo(f"trial {t.id}: sweep {t.sweep}, stage {t.stage or '-'}, {t.state.value}"
               + (f" ({t.message})" if t.message else ""))
    click.echo("parameters: " + _params_text(dict(t.params)))
    click.echo("metrics: " + ", ".join(f"{k}={format_cell(v)}"
                                       for k, v in sorted(t.metrics.items())))
    history = details.history
    if history is None:
        return
    ids = history.trial_ids
    click.echo(f"pbt member {history.slot} of {len(ids)}; its weights trace back to member "
               f"{history.root} (trial {ids[history.root]}) at update 0")
    click.echo("schedule:")
    click.echo("  update 0: " + _params_text(dict(history.initial)))
    for update, name, value in history.changes:
        click.echo(f"  update {update}: {name}={value:.6g}")
    click.echo("ancestry:" if history.ancestry else "ancestry: never replaced")
    for update, member, source in history.ancestry:
        click.echo(f"  update {update}: member {member} (trial {ids[member]}) copied member "
                   f"{source} (trial {ids[source]})")


@trial.command("weights")
@click.argument("trial_id", type=int)
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False),
              help="Where to write the network (.npz).")
@checkpoint_dir_option
@db_option
def trial_weights(trial_id: int, output: str, checkpoint_dir: str | None, db: str) -> None:
    """Export the kept network of a trial: an .npz of its parameters (numpy.load reads it)
    with a JSON "header" entry naming its spec.

    \b
    Example:
        numsweep trial weights 12 -o model.npz
    """
    from numsweep.storage import Storage
    from numsweep.sweeps.kept import export_weights

    weights = export_weights(Storage(db, read_only=True), trial_id, output, checkpoint_dir)
    shapes = ", ".join(f"{k} {'x'.join(map(str, v.shape))}" for k, v in weights.params.items())
    click.echo(f"wrote {output}: {weights.spec.model} ({shapes})")


@cli.command("evaluate")
@click.argument("target")
@checkpoint_dir_option
@data_option
@db_option
def evaluate_command(target: str, checkpoint_dir: str | None, data: str | None,
                     db: str) -> None:
    """Measure the test accuracy of a kept network again and print it beside the stored one.

    TARGET is a trial id or a weights file (.npz from `numsweep trial weights`). --data
    defaults to the data the trial's sweep ran on. Exits with 1 when they disagree.

    \b
    Example:
        numsweep evaluate 12
        numsweep evaluate model.npz --data cifar10.npz
    """
    from numsweep.sweeps.kept import evaluate

    result = evaluate(target, db, data_source=data, folder=checkpoint_dir)
    what = f"trial {result.trial_id}" if result.trial_id is not None else str(result.weights)
    click.echo(f"{what}: test_acc measured {result.measured:.4f}  stored {result.stored:.4f}")
    if result.differs:
        raise click.ClickException(f"{what}: measured test accuracy {result.measured!r} differs "
                                   f"from the stored {result.stored!r}")


@cli.command()
@click.option("--sweep", "sweeps", multiple=True, metavar="NAME",
              help="Only this sweep; repeat for the trials of several (default: every sweep).")
@click.option("--stage", default=None, help="Only this stage.")
@click.option("--state", default=None, help="Only this state (complete, failed, ...).")
@click.option("--where", "where", multiple=True, metavar="COND",
              help="Parameter or result condition such as lam<0.01 or val_acc>=0.4 "
                   "(repeatable; all must hold).")
@click.option("--sort", "sort_by", default=None, help="Sort by this column (descending).")
@click.option("--asc", is_flag=True, help="Sort ascending instead.")
@click.option("--limit", default=None, type=click.IntRange(min=1), help="At most N rows.")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table",
              show_default=True)
@click.option("--wide", is_flag=True,
              help="Show every column (by default a table drops columns to fit the terminal).")
@db_option
def trials(sweeps: tuple[str, ...], stage: str | None, state: str | None, where: tuple[str, ...],
           sort_by: str | None, asc: bool, limit: int | None, fmt: str, wide: bool,
           db: str) -> None:
    """Show stored trials with their parameters and results.

    \b
    Example:
        numsweep trials --sweep lambda-coarse --sort val_acc --format csv
        numsweep trials --sweep lambda-search --where "lam<0.01" --where "val_acc>0.4"
        numsweep trials --sweep lambda-coarse --sweep lambda-fine --sort val_acc
    """
    from numsweep.analysis.queries import find_trials, parse_where

    conditions = parse_where(where)
    frame = find_trials(db, list(sweeps) or None, stage=stage, state=state, where=conditions,
                        sort=sort_by, ascending=asc, limit=limit)
    frame = frame.map(lambda v: json.dumps(list(v)) if isinstance(v, tuple) else v)
    if fmt == "csv":
        click.echo(frame.to_csv(index=False), nl=False)
    elif fmt == "json":
        click.echo(frame.to_json(orient="records", date_format="iso", indent=2))
    else:  # the columns asked about stay in view
        _print_table(frame, wide, [c[0] for c in conditions] + ([sort_by] if sort_by else []))


def _terminal_width() -> int | None:
    """The terminal's width (or $COLUMNS); None when output goes to a file or pipe."""
    if sys.stdout.isatty() or "COLUMNS" in os.environ:
        return shutil.get_terminal_size().columns
    return None


def _print_table(frame: Any, wide: bool, asked: Sequence[str] = ()) -> None:
    from numsweep.analysis.tables import trial_table
    from numsweep.engine.spec import TrialSpec

    width = _terminal_width()
    table = trial_table(frame, None if wide else width, asked, TrialSpec().to_dict())
    shown = Table(*table.columns)
    for row in table.rows:
        shown.add_row(*row)
    Console(width=250 if wide or width is None else width).print(shown)
    if table.hidden:
        import textwrap

        note = (f"{len(table.hidden)} columns left out to fit ({', '.join(table.hidden)}); "
                "see all with --wide or --format csv")
        click.echo("\n".join(textwrap.wrap(note, width or 250)))




@cli.group()
def plot() -> None:
    """Draw charts from the database (PNG, SVG or PDF by the file's extension).

    \b
    Example:
        numsweep plot bars --sweep lambda-coarse --metric val_acc -o lam.png
        numsweep plot lambda --sweep lambda -o lambda.svg
        numsweep plot curves --sweep smoothing --trial 12 --trial 13 -o curves.pdf
    """
    from numsweep.analysis import charts

    charts.use_file_backend()


def selection_options(fn: F) -> F:
    """--sweep (repeatable), --stage, -o/--output and --db, shared by every chart."""
    fn = db_option(fn)
    fn = click.option("-o", "--output", required=True, type=click.Path(dir_okay=False),
                      help="Output file: .png, .svg or .pdf.")(fn)
    fn = click.option("--stage", default=None, help="Only this stage.")(fn)
    return click.option("--sweep", "sweeps", required=True, multiple=True, metavar="NAME",
                        help="Sweep to draw; repeat to compare sweeps in one chart "
                             "(configurations labelled by sweep).")(fn)


def _names(text: str | None) -> list[str] | None:
    return [p.strip() for p in text.split(",") if p.strip()] if text else None


def _wrote(ax: Any, output: str) -> None:
    from numsweep.analysis import charts

    click.echo(f"wrote {charts.save(ax, output)}")


BY_HELP = "Comma-separated parameters that label a configuration (default: those that vary)."


@plot.command("filters")
@click.argument("target")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False),
              help="Output file: .png, .svg or .pdf.")
@checkpoint_dir_option
@db_option
def plot_filters(target: str, output: str, checkpoint_dir: str | None, db: str) -> None:
    """Draw the first layer's filters of a kept network as images: the ConvNets' f x f x 3
    filters, the MLP's first-layer rows as 32x32x3 (28x28 for Fashion-MNIST) images.

    TARGET is a trial id or a weights file.

    \b
    Example:
        numsweep plot filters 12 -o filters.png
    """
    from numsweep.analysis.filters import draw_filters, filter_data, filter_title
    from numsweep.sweeps.kept import kept_network

    kept = kept_network(target, db, checkpoint_dir)
    weights = kept.weights
    title = (filter_title(weights.spec.model, trial_id=kept.trial_id, sweep=kept.sweep)
             if kept.trial_id is not None else filter_title(weights.spec.model, source=target))
    shape = weights.info.get("image_shape")
    blocks = filter_data(weights.spec.to_dict(), weights.params,
                         tuple(shape) if shape else None)
    _wrote(draw_filters(blocks, title), output)


@plot.command("bars")
@selection_options
@click.option("--metric", default="test_acc", show_default=True,
              help="Result to draw (val_acc, test_acc, train_seconds, ...).")
@click.option("--by", default=None, help=BY_HELP)
@click.option("--top", default=30, show_default=True, type=click.IntRange(min=1),
              help="Draw the best N configurations.")
def plot_bars(sweeps: tuple[str, ...], stage: str | None, output: str, db: str, metric: str,
              by: str | None, top: int) -> None:
    """Bar chart of one result per configuration: mean and ±1 std over seeds, the best bar
    dark (on a test-accuracy chart the one chosen by validation accuracy; none where several
    share the best value), bars within noise of it hatched; in the order of the parameters
    where they are numbers (lam), else best first.

    \b
    Example:
        numsweep plot bars --sweep conv-archs --metric test_acc -o acc.png
        numsweep plot bars --sweep conv-archs --metric train_seconds --by f,nf -o time.png
        numsweep plot bars --sweep lambda-coarse --sweep lambda-wide -o compare.png
    """
    from numsweep.analysis import charts
    from numsweep.analysis.plots import bars_chart

    data = bars_chart(db, sweeps, stage, metric, _names(by), top=top)
    _wrote(charts.draw_bars(data, metric), output)


@plot.command("curves")
@selection_options
@click.option("--trial", "trial_ids", multiple=True, type=int, metavar="ID",
              help="Trial id (as `numsweep trials` shows it); repeat to overlay. "
                   "Default: the best trials by --metric.")
@click.option("--best", default=1, show_default=True, type=click.IntRange(min=1),
              help="Without --trial: overlay the best N trials.")
@click.option("--metric", default="val_acc", show_default=True,
              help="Result that ranks trials for --best.")
@click.option("--show", default="loss,cost,acc,lr", show_default=True,
              help="Comma-separated panels: loss, cost, acc, lr (the learning-rate schedule).")
@click.option("--by", default=None, help=BY_HELP)
def plot_curves(sweeps: tuple[str, ...], stage: str | None, output: str, db: str,
                trial_ids: tuple[int, ...], best: int, metric: str, show: str,
                by: str | None) -> None:
    """Training and validation loss, cost and accuracy against update step, and the
    learning-rate schedule, for one or several trials overlaid.

    With several --sweep the best N of each sweep are overlaid (or the --trial ids, from any
    of them), labelled by sweep.

    \b
    Example:
        numsweep plot curves --sweep lambda-coarse -o best.png
        numsweep plot curves --sweep smoothing --trial 12 --trial 13 --show loss,acc -o ls.png
        numsweep plot curves --sweep lambda-coarse --sweep lambda-wide --best 2 -o both.png
    """
    from numsweep.analysis import charts
    from numsweep.analysis.plots import curves_chart

    data = curves_chart(db, sweeps, stage, trial_ids, best, metric, _names(by))
    _wrote(charts.draw_curve_panels(data, _names(show) or list(charts.CURVE_QUANTITIES)),
           output)


@plot.command("lambda")
@selection_options
@click.option("--metric", default="val_acc", show_default=True, help="Result on the y axis.")
@click.option("--param", default="lam", show_default=True, help="Parameter on the log x axis.")
def plot_lambda(sweeps: tuple[str, ...], stage: str | None, output: str, db: str, metric: str,
                param: str) -> None:
    """lam against validation accuracy on a log axis: one marker per stage (coarse, fine),
    the chosen lam starred.

    \b
    Example:
        numsweep plot lambda --sweep lambda -o lambda.png
    """
    from numsweep.analysis import charts
    from numsweep.analysis.plots import lambda_chart

    _wrote(charts.draw_lambda(lambda_chart(db, sweeps, stage, metric, param)), output)


@plot.command("optimizers")
@selection_options
@click.option("--show", "quantity", default="loss", show_default=True,
              type=click.Choice(["loss", "cost", "acc"]), help="Quantity on the y axis.")
@click.option("--split", default="train", show_default=True, type=click.Choice(["train", "val"]))
def plot_optimizers(sweeps: tuple[str, ...], stage: str | None, output: str, db: str, quantity: str,
                    split: str) -> None:
    """Training loss against epoch, one line per optimizer, solid without dropout and dashed
    with it (mean over the trials, e.g. seeds, of each pair).

    \b
    Example:
        numsweep plot optimizers --sweep optimizers -o optimizers.png
    """
    from numsweep.analysis import charts
    from numsweep.analysis.plots import optimizers_chart

    _wrote(charts.draw_optimizers(optimizers_chart(db, sweeps, stage, quantity, split)), output)


@plot.command("range-test")
@selection_options
@click.option("--trial", "trial_ids", multiple=True, type=int, metavar="ID",
              help="Trial id; repeat to overlay (default: every range test in the sweep).")
@click.option("--mode", default=None, type=click.Choice(["lr", "batch"]),
              help="Learning-rate or batch-size tests (default: the kind the sweep holds).")
@click.option("--show", "quantity", default="loss", show_default=True,
              type=click.Choice(["loss", "cost", "acc"]), help="Quantity on the y axis.")
@click.option("--by", default=None, help=BY_HELP)
def plot_range_test(sweeps: tuple[str, ...], stage: str | None, output: str, db: str,
                    trial_ids: tuple[int, ...], mode: str | None, quantity: str,
                    by: str | None) -> None:
    """Range-test curves (from `numsweep range-test`): loss of each update against the
    learning rate or the batch size on a log axis, smoothed, with the suggestions marked.

    \b
    Example:
        numsweep range-test lr eta_min=1e-5 eta_max=1 batch_size=50
        numsweep range-test lr eta_min=1e-5 eta_max=1 batch_size=200
        numsweep plot range-test --sweep range-test -o lr-range.png
    """
    from numsweep.analysis import charts
    from numsweep.analysis.plots import range_test_chart

    data = range_test_chart(db, sweeps, stage, trial_ids, quantity, mode, _names(by))
    _wrote(charts.draw_range_test(data), output)


@plot.command("importance")
@selection_options
@click.option("--metric", default="val_acc", show_default=True, help="Result to explain.")
@click.option("--params", default=None,
              help="Comma-separated parameters (default: those the sweep's stages search).")
def plot_importance(sweeps: tuple[str, ...], stage: str | None, output: str, db: str, metric: str,
                    params: str | None) -> None:
    """Parameter importance from Optuna (fANOVA) on a study rebuilt from the trials.

    \b
    Example:
        numsweep plot importance --sweep random-search --metric val_acc -o importance.png
    """
    from numsweep.analysis import charts
    from numsweep.analysis.plots import importance_chart

    _wrote(charts.draw_importance(importance_chart(db, sweeps, stage, metric, _names(params))),
           output)


@plot.command("lineage")
@click.option("--sweep", "sweep_name", required=True, metavar="NAME",
              help="Sweep whose pbt stage to draw.")
@click.option("--stage", default=None, help="The pbt stage (when the sweep has several).")
@click.option("--color", default=None, metavar="PARAM",
              help="Colour each member's line by its value of this parameter.")
@click.option("--metric", default=None, type=click.Choice(["val_acc", "val_loss"]),
              help="The members' metric (default: the stage's own).")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False),
              help="Output file: .png, .svg or .pdf.")
@db_option
def plot_lineage(sweep_name: str, stage: str | None, color: str | None, metric: str | None,
                 output: str, db: str) -> None:
    """A pbt stage's population over the updates: one line per member (its metric at each
    curve point), each exploit step an arrow from the member copied to the member replaced.

    \b
    Example:
        numsweep plot lineage --sweep pbt-lambda --color lam -o lineage.png
    """
    from numsweep.analysis import charts
    from numsweep.analysis.plots import lineage_data

    _wrote(charts.draw_lineage(lineage_data(db, sweep_name, stage, color, metric)), output)


@plot.command("pareto")
@selection_options
@click.option("--x", "x_metric", default="train_seconds", show_default=True,
              help="Cost on the x axis (lower is better).")
@click.option("--y", "y_metric", default="test_acc", show_default=True,
              help="Result on the y axis (higher is better).")
@click.option("--by", default=None, help=BY_HELP)
@click.option("--objectives", "objective_texts", default=None, metavar="M:DIR,M:DIR",
              help="The front of these objectives instead (e.g. val_acc:max,train_seconds:min; "
                   "time is the trial's own cost), with the chosen point starred.")
@click.option("--pick", default="accuracy", show_default=True,
              type=click.Choice(["accuracy", "knee"]),
              help="With --objectives: the point a best stage would choose.")
def plot_pareto(sweeps: tuple[str, ...], stage: str | None, output: str, db: str, x_metric: str,
                y_metric: str, by: str | None, objective_texts: str | None,
                pick: str) -> None:
    """Accuracy against training time for every trial, with the Pareto front; with
    --objectives, the front of those objectives and the point --pick chooses.

    \b
    Example:
        numsweep plot pareto --sweep conv-archs -o pareto.png
        numsweep plot pareto --sweep conv-pareto --stage search \\
            --objectives val_acc:max,train_seconds:min --pick knee -o front.png
    """
    from numsweep.analysis import charts
    from numsweep.analysis.plots import pareto_chart
    from numsweep.sweeps.objectives import parse_objective

    objectives = None
    if objective_texts is not None:
        try:
            objectives = [parse_objective(t, "--objectives") for t in objective_texts.split(",")]
        except ValueError as exc:
            raise charts.ChartError(str(exc)) from None
    _wrote(charts.draw_pareto(pareto_chart(db, sweeps, stage, x_metric, y_metric, _names(by),
                                           objectives, pick)), output)


@cli.command()
@click.argument("names", nargs=-1, required=True, metavar="NAME...")
@click.option("-o", "--output", "out_dir", required=True, type=click.Path(file_okay=False),
              help="Folder for report.html, report.md and the chart files.")
@click.option("--metric", default="val_acc", show_default=True,
              help="Result that ranks the trials.")
@click.option("--top", default=5, show_default=True, type=click.IntRange(min=1),
              help="Best trials listed per stage.")
@db_option
def report(names: tuple[str, ...], out_dir: str, metric: str, top: int, db: str) -> None:
    """Write a sweep's report: a self-contained HTML page (charts embedded) and a Markdown
    version with the chart files beside it, with the best trials per stage, the ranges each
    stage searched, the settings and the software versions.

    With several NAMEs: a comparison of the sweeps, their best trials side by side with the
    parameters and settings that differ, and charts of all their trials labelled by sweep.

    \b
    Example:
        numsweep report lambda-coarse -o report/
        numsweep report lambda-coarse lambda-wide -o compare/
    """
    from numsweep.analysis import charts
    from numsweep.analysis.formatting import count
    from numsweep.analysis.report import build_report

    charts.use_file_backend()
    written = build_report(db, list(names), out_dir, metric=metric, top=top)
    click.echo(f"wrote {written.html} and {written.markdown} "
               f"({count(len(written.charts), 'chart')})")
    for title, why in written.skipped:
        click.echo(f"left out {title}: {why}")


@cli.group("export")
def export_group() -> None:
    """Export finished trials to MLflow or TensorBoard (again: only what is not there yet).

    \b
    Example:
        numsweep export mlflow --tracking-uri sqlite:///mlflow.db --sweep lambda-coarse
        numsweep export tensorboard tb-runs/ --sweep lambda-coarse
    """


def export_sweeps_option(fn: F) -> F:
    return click.option("--sweep", "sweeps", multiple=True, metavar="NAME",
                        help="Only this sweep; repeat for several (default: every sweep).")(fn)


@export_group.command("mlflow")
@click.option("--tracking-uri", default=None, envvar="MLFLOW_TRACKING_URI", metavar="URI",
              show_default="sqlite:///mlflow.db",
              help="MLflow tracking URI to log to, such as sqlite:///mlflow.db "
                   "(env MLFLOW_TRACKING_URI).")
@export_sweeps_option
@db_option
def export_mlflow_command(tracking_uri: str | None, sweeps: tuple[str, ...], db: str) -> None:
    """Log finished trials to MLflow: each sweep an experiment, each trial a run with its
    parameters, its results as metrics, its curves as metric history (train/loss, val/acc,
    lr, ...) and its stage as a tag. Needs pip install 'numsweep[mlflow]'.

    \b
    Example:
        numsweep export mlflow --sweep lambda-coarse
        mlflow ui --backend-store-uri sqlite:///mlflow.db
    """
    from numsweep.export import export_mlflow

    with console.status("exporting to MLflow"):
        summary = export_mlflow(db, tracking_uri, list(sweeps) or None)
    click.echo(summary.text())


@export_group.command("tensorboard")
@click.argument("out_dir", metavar="DIR", type=click.Path(file_okay=False))
@export_sweeps_option
@db_option
def export_tensorboard_command(out_dir: str, sweeps: tuple[str, ...], db: str) -> None:
    """Write finished trials as TensorBoard runs under DIR (DIR/SWEEP/trial-ID): a scalar per
    curve point (train/loss, val/acc, lr, ...), the results (result/val_acc, ...) and the
    parameters in the HParams view. Needs pip install 'numsweep[tensorboard]'.

    \b
    Example:
        numsweep export tensorboard tb-runs/ --sweep lambda-coarse
        tensorboard --logdir tb-runs/
    """
    from numsweep.export import export_tensorboard

    summary = export_tensorboard(db, out_dir, list(sweeps) or None)
    click.echo(summary.text())


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
@click.option("--check", "names", multiple=True, metavar="NAME",
              help="Run only this check (repeatable); default: all.")
def gradcheck(as_json: bool, names: tuple[str, ...]) -> None:
    """Check every layer, loss and network gradient against float64 centered differences.

    Prints the largest relative error of each check; exits with 1 when any exceeds 1e-7.

    \b
    Example:
        numsweep gradcheck
        numsweep gradcheck --json --check conv --check convnet3
    """
    from numsweep.engine.gradcheck import TOL, run_checks

    results = run_checks(list(names) or None)
    if as_json:
        click.echo(json.dumps([r.to_dict() for r in results], indent=2))
    else:
        table = Table("check", "what", "entries", "max rel error", "result")
        for r in results:
            table.add_row(r.name, r.what, str(r.entries), f"{r.max_rel_error:.2e}",
                          "ok" if r.passed else "[bold red]FAIL[/]")
        Console(width=_terminal_width() or 250).print(table)  # $COLUMNS too, when piped
    failed = [r.name for r in results if not r.passed]
    if failed:
        raise click.ClickException(f"{len(failed)} of {len(results)} gradient checks exceed "
                                   f"{TOL:g}: {', '.join(failed)}")
    if not as_json:
        click.echo(f"all {len(results)} gradient checks within {TOL:g}")


def exit_interrupted(message: str) -> NoReturn:
    """Print ``message`` and exit with code 130; further Ctrl-C is ignored while the process
    shuts down (its worker processes and their semaphores are cleaned up on the way)."""
    from numsweep.sweeps.interrupts import acting_on_interrupt

    acting_on_interrupt()
    with contextlib.suppress(ValueError):  # not the main thread
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    console.print(message, highlight=False, soft_wrap=True)
    sys.exit(130)


EVERYTHING = ("numsweep.storage", "numsweep.engine", "numsweep.sweeps", "numsweep.analysis")
QUICK = {("sweep", "list"): ("numsweep.storage",)}
"""The libraries a command needs that it loads before its Ctrl-C handling: by default every
package (pandas, matplotlib, Optuna, SQLAlchemy); ``--help`` and these commands less."""


def preload(args: Sequence[str]) -> None:
    """Import what the command in ``args`` needs now, while a Ctrl-C still ends the process
    at once (``numsweep.__main__``): one that cuts an import short would leave a half-made
    module behind, and the command would fail on it with a traceback."""
    import importlib

    words = [a for a in args if not a.startswith("-")]
    if not words or {"--help", "-h", "--version"} & set(args):
        return
    for name in QUICK.get(tuple(words[:2]), EVERYTHING):
        importlib.import_module(name)


def main() -> None:
    preload(sys.argv[1:])
    install_sigint_handler()  # Ctrl-C waits for the database work under way
    try:
        cli(prog_name="numsweep")
    finally:  # a Ctrl-C while the interpreter shuts down does not change the exit code
        signal.signal(signal.SIGINT, signal.SIG_IGN)


if __name__ == "__main__":
    sys.exit(main())
