"""Sweeps: TOML specs, Optuna samplers, and stages run in parallel worker processes.

- ``spec.py``: the TOML sweep spec, its search space entries (:class:`ParamSpace`), presets.
- ``runner.py``: the stage loop (:class:`SweepRunner`), ``run_sweep``/``resume_sweep``/...
- ``context.py``: the state the loop's job modules below share: settings, plan, its trials.
- ``lifecycle.py``: start lease, what a run opens and checks, Ctrl-C and database errors.
- ``planning.py``: a stage's plan (space, queue, reused trials) stored once for every process.
- ``studies.py``: a stage's Optuna study set up, every Optuna call retried.
- ``proposals.py``: the proposal turn (a lease): configuration k proposed and its slots claimed.
- ``pbt.py``: a ``pbt`` stage: its population claimed, trained as one task, stored.
- ``population.py``: a pbt stage's initial values, member specs and engine settings.
- ``lineage.py``: a pbt member's ancestry and schedule read back (``trial show``), its rerun.
- ``slots.py``: a stage's slots as stored: latest attempts, final or not, counted.
- ``claims.py``: lost and interrupted trials found and claimed again.
- ``submission.py``: claimed trials to the pool in groups, their curve points and outcomes back.
- ``slot_stage.py``: a stage trained in slot groups (a freed slot refilled at once), live pruning.
- ``slot_training.py``: what runs in a worker for a slot group: its feed, never raise.
- ``slot_links.py``: a slot group's feed to the sweep process: a call, files, Dask queues.
- ``telling.py``: outcomes kept by their Optuna trials, configurations told (in order, or at once).
- ``pool.py``: the worker pool, made again after a worker died with the same settings.
- ``events.py``: what a run tells its caller (:class:`TrialEvent`, :class:`StageSummary`).
- ``occupancy.py``: how full a stage's slot groups ran; a group that ended stored and told.
- ``seeds.py``: every seed drawn from the sweep seed (trials, data streams, samplers).
- ``pipeline.py``: ``sweep run``/``resume``/``extend``, ``worker``: options to a finished run.
- ``optuna_bridge.py``: everything said to Optuna: encode/decode/suggest, samplers, pruners,
  the study storage and names, what a study records about each trial.
- ``narrowing.py``: a stage's ranges cut down to where an earlier stage's best trials were.
- ``objectives.py``: what a stage optimises (one metric and direction, or a Pareto front), the
  trial's own cost (``trial_cost_seconds``) and the stored ``val_loss``.
- ``front_pruning.py``: ``pruner = "front"``, the rung rule for any number of objectives.
- ``warm_start.py``: a stage's first configurations from another sweep's best trials.
- ``extend.py``: more trials for a finished sampler stage (``sweep extend``), run as a resume.
- ``liveness.py``: heartbeats and how a lost trial (its process gone) is detected.
- ``data_share.py``: how data reaches worker processes (memory-mapped ``.npy`` files).
- ``executors.py``: where trials run: this process, loky worker processes, a Dask cluster.
- ``grouping.py``: which claimed trials train together as batch groups; the automatic size.
- ``pace_cache.py``: the measured speed of each group size, kept per machine (user cache).
- ``worker.py``: what runs in a worker process: train one trial or group, never raise.
- ``deaths.py``: which trial a dead worker process was running (only that one counts as lost).
- ``interrupts.py``: Ctrl-C or SIGTERM acted on within seconds, running trials marked interrupted.
- ``guards.py``: checks before any work: the sweep's data fingerprint, split sizes, ``--jobs``.
- ``results.py``: a finished trial's outcome stored in the database.
- ``dataset_cache.py``: the datasets a process loaded (once each), data paths as stored.
- ``single.py``: one configuration trained in this process and stored (``numsweep train``).
- ``range_tests.py``: range tests stored as trials (``numsweep range-test``).
- ``rerun.py``: a stored trial trained again and compared (``numsweep trial rerun``).
- ``deletion.py``: a sweep removed from the database and from disk (``sweep delete``).
- ``kept.py``: where checkpoints and kept networks live, the keep policy, gc, evaluate.
- ``budget.py``: the planner's cost model and time estimates, recalibrated as stages start.
- ``progress.py``: the live progress display.
- ``report.py``: what ``numsweep sweep show`` prints.
"""

import numsweep.optuna_quiet  # noqa: F401 (first: Optuna imported quietly in Jupyter)
from numsweep.sweeps.events import StageSummary, TrialEvent
from numsweep.sweeps.lifecycle import SweepInterrupted
from numsweep.sweeps.narrowing import narrow_space
from numsweep.sweeps.rerun import Rerun, rerun_trial
from numsweep.sweeps.runner import create_sweep, resume_sweep, run_sweep
from numsweep.sweeps.seeds import trial_seed
from numsweep.sweeps.single import run_single
from numsweep.sweeps.spec import (
    SweepSpec,
    SweepSpecError,
    load_spec,
    parse_spec,
    preset_names,
    resolve_spec_path,
)

__all__ = [
    "Rerun",
    "StageSummary",
    "SweepInterrupted",
    "SweepSpec",
    "SweepSpecError",
    "TrialEvent",
    "create_sweep",
    "load_spec",
    "narrow_space",
    "parse_spec",
    "preset_names",
    "rerun_trial",
    "resolve_spec_path",
    "resume_sweep",
    "run_single",
    "run_sweep",
    "trial_seed",
]
