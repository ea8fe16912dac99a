"""Everything numsweep says to Optuna: search spaces in Optuna's terms (encode, decode,
suggest), samplers, pruners, the study storage, study names, and what a study records about
each trial (so that optuna-dashboard on a numsweep database is a complete viewer).

Only Optuna's public API is used, except what :func:`pruner_state` relies on (documented
there, guarded by ``tests/sweeps/test_optuna_bridge.py``). Optuna's log level is changed only inside
:func:`quiet`, never at import.
"""

from __future__ import annotations

import json
import logging
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import optuna

from numsweep.shield import shielded
from numsweep.storage import (
    SlotRecord,
    StorageError,
    TrialState,
    is_in_memory,
    retry_call,
    shown_url,
)
from numsweep.sweeps.objectives import DEFAULT_OBJECTIVES, Objective, objective_values
from numsweep.sweeps.spec import ParamSpace, SweepSpecError

OBJECTIVE = "val_acc"
"""The metric a study maximises by default (shown by optuna-dashboard as the objective's
name); a stage's ``objective`` or ``objectives`` name others."""
FIXED_PARAMS_KEY = "fixed_params"
TRIAL_ID_ATTR = "ID (numsweep trial)"
"""The user attribute holding numsweep's trial id (what ``numsweep trials`` and ``trial
rerun`` take; Optuna's own number and trial_id are another count). Optuna lists a trial's
user attributes sorted by key, so this one is named to come first (an upper-case letter
before the lower-case names); databases of older versions have ``numsweep_trial_id``."""
OLD_TRIAL_ID_ATTR = "numsweep_trial_id"
CONFIG_KEY = "ns_config"
"""numsweep's own keys (``ns_*``) are trial system attributes, out of the user attributes
that optuna-dashboard lists; older databases have them as user attributes (still read)."""
"""The trial system attribute Optuna's ``enqueue_trial`` uses for preset parameter values."""
METRIC_ATTRS = ("val_acc", "test_acc", "train_acc", "train_seconds", "eval_seconds",
                "param_count", "updates", "val_loss", "cost_seconds")
"""The metrics each trial of a study carries as user attributes (its values are those of its
stage's objectives)."""


@contextmanager
def quiet() -> Iterator[None]:
    """Optuna's INFO lines and experimental warnings off for numsweep's own calls only; the
    caller's log level and warning filters are restored afterwards."""
    logger = logging.getLogger("optuna")
    level = logger.level
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        logger.setLevel(max(level, logging.WARNING))
        try:
            yield
        finally:
            logger.setLevel(level)


# Search spaces in Optuna terms

def encode(value: Any) -> Any:
    """Optuna's categorical values are scalars: lists (``hidden``, tied choices) travel as
    JSON text."""
    if isinstance(value, (list, tuple)):
        return json.dumps([encode(v) for v in value])
    return value


def distribution(p: ParamSpace) -> optuna.distributions.BaseDistribution:
    if p.type == "categorical":
        return optuna.distributions.CategoricalDistribution([encode(c) for c in p.choices])
    assert p.low is not None and p.high is not None
    if p.type == "int":
        return optuna.distributions.IntDistribution(int(p.low), int(p.high), log=p.log)
    return optuna.distributions.FloatDistribution(float(p.low), float(p.high), log=p.log)


def decode(p: ParamSpace, value: Any) -> Any:
    if p.type == "categorical":
        for choice in p.choices:
            if encode(choice) == value:
                return choice
        raise ValueError(f"{p.name}: {value!r} is not one of its choices")
    return int(value) if p.type == "int" else float(value)


def ordered(space: Mapping[str, ParamSpace]) -> list[ParamSpace]:
    """Unconditional entries first, so a condition's parameters are chosen before it."""
    entries = list(space.values())
    return [p for p in entries if not p.when] + [p for p in entries if p.when]


def suggest(trial: optuna.Trial, space: Mapping[str, ParamSpace],
            fixed: Mapping[str, Any]) -> dict[str, Any]:
    """Define-by-run: conditional entries are suggested only when their condition holds."""
    params: dict[str, Any] = {}
    for p in ordered(space):
        if not p.active({**fixed, **params}):
            continue
        if p.type == "categorical":
            value = trial.suggest_categorical(p.name, [encode(c) for c in p.choices])
        elif p.type == "int":
            assert p.low is not None and p.high is not None
            value = trial.suggest_int(p.name, int(p.low), int(p.high), log=p.log)
        else:
            assert p.low is not None and p.high is not None
            value = trial.suggest_float(p.name, float(p.low), float(p.high), log=p.log)
        params.update(p.assign(decode(p, value)))
    return params


def entry_values(space: Mapping[str, ParamSpace], params: Mapping[str, Any],
                 fixed: Mapping[str, Any]) -> dict[str, Any]:
    """The Optuna values (entry name -> encoded value) of a configuration's active entries."""
    out: dict[str, Any] = {}
    for p in ordered(space):
        if not p.active({**fixed, **params}):
            continue
        value = [params[n] for n in p.names] if p.tied else params[p.name]
        out[p.name] = encode(value) if p.type == "categorical" else value
    return out


def inside(space: Mapping[str, ParamSpace], params: Mapping[str, Any],
           fixed: Mapping[str, Any]) -> bool:
    for p in ordered(space):
        if not p.active({**fixed, **params}):
            continue
        value = [params.get(n) for n in p.names] if p.tied else params.get(p.name)
        if not p.contains(value):
            return False
    return True


# Samplers, pruners, storage, studies

NSGA2_POPULATION = 50
"""Optuna's default population of NSGA-II, for stages of 150 trials or more; smaller stages
take a third of their trials (at least 4), so that a few generations evolve."""


def nsga2_population(n_trials: int | None) -> int:
    return min(NSGA2_POPULATION, max(4, (n_trials or 3 * NSGA2_POPULATION) // 3))


def make_sampler(sampler: str, seed: int, n_trials: int | None = None,
                 population: int | None = None, liar: bool = False
                 ) -> optuna.samplers.BaseSampler:
    """``liar``: TPE proposes as if running trials had ended badly (``constant_liar``), so
    that proposals made while others run spread out (slot stages)."""
    if sampler == "tpe":
        return optuna.samplers.TPESampler(seed=seed, constant_liar=liar)
    if sampler == "nsga2":
        return optuna.samplers.NSGAIISampler(
            seed=seed, population_size=population or nsga2_population(n_trials))
    if sampler == "qmc":
        return optuna.samplers.QMCSampler(seed=seed, scramble=True)
    if sampler == "gp":
        try:
            import torch  # noqa: F401
        except ImportError:
            raise SweepSpecError("sampler = 'gp' needs PyTorch (pip install torch)") from None
        return optuna.samplers.GPSampler(seed=seed)
    if sampler == "cmaes":
        try:
            import cmaes  # noqa: F401
        except ImportError:
            raise SweepSpecError("sampler = 'cmaes' needs the cmaes package "
                                 "(pip install cmaes)") from None
        return optuna.samplers.CmaEsSampler(seed=seed, warn_independent_sampling=False)
    # random; grid, list and best stages enqueue every configuration, so their sampler is
    # never asked for a value
    return optuna.samplers.RandomSampler(seed=seed)


class FirstRungHalving(optuna.pruners.SuccessiveHalvingPruner):
    """Optuna's asynchronous successive halving (reduction factor 4) whose minimum resource
    is the first step a trial reports at (the end of its first period), where Optuna's
    ``min_resource="auto"`` waits for a completed trial to estimate it: the first trials of
    a stage, which start together in a slot group, are judged at their first rung."""

    def prune(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> bool:
        if self._min_resource is None and trial.intermediate_values:
            self._min_resource = min(trial.intermediate_values)
        return super().prune(study, trial)


def make_pruner(kind: str) -> optuna.pruners.BasePruner:
    if kind == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0)
    if kind == "halving":
        return FirstRungHalving()
    if kind == "hyperband":
        return optuna.pruners.HyperbandPruner()
    return optuna.pruners.NopPruner()


def optuna_storage(url: str, db_wait: float = 0.0) -> optuna.storages.BaseStorage:
    """Optuna's RDB storage on numsweep's own database (its tables have no ``ns_`` prefix),
    so ``optuna-dashboard URL`` shows the studies; in-memory for an in-memory SQLite URL.
    Connections are checked before use (``pool_pre_ping``); opening is retried while the
    database is locked, unreachable, or another process is creating Optuna's tables."""
    if is_in_memory(url):
        return optuna.storages.InMemoryStorage()
    kwargs: dict[str, Any] = {"pool_pre_ping": True}
    if url.startswith("sqlite"):
        kwargs["connect_args"] = {"timeout": 60}

    def open_storage() -> optuna.storages.BaseStorage:
        with quiet(), shielded():
            return optuna.storages.RDBStorage(url, engine_kwargs=dict(kwargs))

    try:
        return retry_call(open_storage, seconds=max(db_wait, 5.0), table_race=True)
    except StorageError:
        raise
    except Exception as exc:
        text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise StorageError(f"cannot open the Optuna study storage on {shown_url(url)}: "
                           f"{text}") from None


def study_name(sweep: str, stage: str) -> str:
    return f"{sweep}/{stage}"


def load_study(storage: optuna.storages.BaseStorage, name: str, sampler: str, seed: int,
               pruner: str, attrs: Mapping[str, Any], description: str,
               objectives: Sequence[Objective] = DEFAULT_OBJECTIVES,
               n_trials: int | None = None, liar: bool = False) -> optuna.Study:
    """The stage's study (created by the first process to get here), with its objectives
    named and the stage's spec, sampler and narrowing note as study user attributes
    (``liar``: see :func:`make_sampler`)."""
    with quiet():
        study = optuna.create_study(storage=storage, study_name=name,
                                    directions=[o.direction for o in objectives],
                                    load_if_exists=True,
                                    sampler=make_sampler(sampler, seed, n_trials,
                                                         liar=liar),
                                    pruner=make_pruner(pruner))
        if [d.name.lower() for d in study.directions] != [o.direction for o in objectives]:
            raise SweepSpecError(f"the Optuna study {name!r} optimises "
                                 f"{len(study.directions)} objective(s) in other directions "
                                 f"than {', '.join(o.text for o in objectives)}; it was "
                                 "created by another spec")
        names = [o.metric for o in objectives]
        if study.metric_names != names:
            _first_wins(lambda: study.set_metric_names(names))
        if sampler == "nsga2":  # the population the study began with, also once extended
            population = study.user_attrs.get("nsga2_population")
            if population is None:
                population = nsga2_population(n_trials)
                _first_wins(lambda: study.set_user_attr("nsga2_population", population))
                population = study.user_attrs.get("nsga2_population", population)
            study.sampler = make_sampler(sampler, seed, population=population)
        have = study.user_attrs
        for key, value in {**attrs, "description": description}.items():
            if have.get(key) != json.loads(json.dumps(value)):
                _first_wins(lambda key=key, value=value:  # type: ignore[misc]
                            study.set_user_attr(key, value))
    return study


def _first_wins(write: Callable[[], None]) -> None:
    """A study attribute that every process sharing the stage writes: when two insert it at
    once, the one that lost the race has nothing left to do."""
    try:
        write()
    except Exception as exc:
        text = f"{exc} {exc.__cause__}".lower()
        if not any(m in text for m in ("unique", "duplicate key", "integrity")):
            raise


def study_id(study: optuna.Study, storage: optuna.storages.BaseStorage) -> int:
    return storage.get_study_id_from_name(study.study_name)


def trial_id_of(study: optuna.Study, storage: optuna.storages.BaseStorage, number: int) -> int:
    return storage.get_trial_id_from_study_id_trial_number(study_id(study, storage), number)


def queued_trial(study: optuna.Study, values: Mapping[str, Any], config: int) -> optuna.Trial:
    """A new trial with these parameter values fixed (``enqueue_trial`` then ``ask``), for
    configuration ``config`` of the stage. Callers hold the stage's proposal turn, so no
    other process asks in between; a queued trial left by a process that died between the
    two calls is for the same configuration and is taken as it is."""
    waiting = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.WAITING,))
    if not any(_config_of(t) == config for t in waiting):
        # enqueue_trial, with the configuration among the system attributes: bookkeeping
        # that optuna-dashboard does not show among the trial's user attributes
        study.add_trial(optuna.trial.create_trial(
            state=optuna.trial.TrialState.WAITING,
            system_attrs={FIXED_PARAMS_KEY: dict(values), CONFIG_KEY: config}))
    while True:
        trial = study.ask()
        running = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
        if any(t.number == trial.number and _config_of(t) == config for t in running):
            return trial
        # never expected: a queued trial of another configuration; it never runs
        trial.set_user_attr("ns_unused", f"queued for configuration {config} too late")
        study.tell(trial, state=optuna.trial.TrialState.FAIL)


def _config_of(trial: optuna.trial.FrozenTrial) -> Any:
    """The stage configuration a queued trial is for (a user attribute in databases of
    older numsweep versions)."""
    return trial.system_attrs.get(CONFIG_KEY, trial.user_attrs.get(CONFIG_KEY))


def _internal(trial: optuna.trial.FrozenTrial, key: str, default: Any) -> Any:
    """numsweep's bookkeeping of a trial: a system attribute (a user one before)."""
    return trial.system_attrs.get(key, trial.user_attrs.get(key, default))


def propose(study: optuna.Study, space: Mapping[str, ParamSpace], fixed: Mapping[str, Any],
            queued: Mapping[str, Any] | None, config: int) -> tuple[optuna.Trial, dict[str, Any]]:
    """A new trial of the study for configuration ``config`` and its parameter values: the
    ``queued`` configuration (grid point, listed or best one), else the sampler's proposal."""
    with quiet():
        if queued is not None:
            trial = queued_trial(study, entry_values(space, queued, fixed), config)
        else:
            trial = study.ask()
        return trial, suggest(trial, space, fixed)


def discard(study: optuna.Study, trial: optuna.Trial, why: str) -> None:
    """End a trial that will never run (failed, with the reason as ``ns_unused``)."""
    with quiet():
        trial.set_user_attr("ns_unused", why)
        study.tell(trial, state=optuna.trial.TrialState.FAIL)


def trials_before(study: optuna.Study, number: int) -> tuple[optuna.trial.FrozenTrial, ...]:
    """The study's trials before trial ``number`` (a pruning snapshot's history); a trial
    not yet told appears without the intermediate values its running trial reported so far
    (:func:`report_running`), so that no pruning decision depends on how far it had got."""
    trials = tuple(t for t in study.get_trials(deepcopy=True) if t.number < number)
    for t in trials:
        if not t.state.is_finished():
            t.intermediate_values = {}
    return trials


def pruner_state(trial: optuna.trial.FrozenTrial) -> dict[str, Any]:
    """What a pruner recorded about a trial (its system attributes, such as the rungs
    SuccessiveHalving and Hyperband complete), to copy from a worker's snapshot study into
    the main one; without the queued values Optuna keeps there too.

    The one place numsweep relies on Optuna behaviour outside its public API: that pruners
    keep their state in trial system attributes and that ``enqueue_trial`` keeps its values
    under :data:`FIXED_PARAMS_KEY`. ``tests/sweeps/test_optuna_bridge.py`` fails loudly when
    an Optuna release changes either.
    """
    return {k: v for k, v in trial.system_attrs.items()
            if not k.startswith((FIXED_PARAMS_KEY, "ns_"))}


def add_reused(study: optuna.Study, space: Mapping[str, ParamSpace], fixed: Mapping[str, Any],
               reused: Sequence[Any],
               objectives: Sequence[Objective] = DEFAULT_OBJECTIVES) -> None:
    """Add the stage's reused trials (numsweep trial records) to the study as complete."""
    with quiet():
        have = {t.user_attrs.get(TRIAL_ID_ATTR) if t.user_attrs.get("reused") else
                t.user_attrs.get("ns_trial_id")  # written by older numsweep versions
                for t in study.get_trials(deepcopy=False)}
        distributions = {k: distribution(p) for k, p in space.items()}
        for t in reused:
            if t.id in have:
                continue
            values = entry_values(space, t.params, fixed)
            for k, v in values.items():  # inside up to rounding: clip for Optuna's check
                if space[k].numeric:
                    values[k] = min(max(v, space[k].low), space[k].high)
            scores = objective_values(t.metrics, objectives)
            if scores is None:
                continue  # reused trials are chosen with every objective measured
            study.add_trial(optuna.trial.create_trial(
                params=values, distributions={k: distributions[k] for k in values},
                values=list(scores),
                # numsweep's id first, as for every trial: the dashboard lists them in order
                user_attrs={**trial_user_attrs(t.id, t.metrics, {
                                **{k: v for k, v in t.params.items() if k in fixed},
                                "seed": t.seed}), "reused": True}))


# What a study records about each trial

def trial_user_attrs(trial_id: int, metrics: Mapping[str, float],
                     params: Mapping[str, Any], extra: Mapping[str, Any] | None = None
                     ) -> dict[str, Any]:
    """The user attributes of a trial in its Optuna study (what optuna-dashboard shows
    beside its searched parameters): numsweep's trial id, its metrics and the parameters
    given (``param_NAME``; the caller passes the fixed ones). Add a key here to show it in
    the dashboard."""
    out: dict[str, Any] = {TRIAL_ID_ATTR: trial_id}
    for name in METRIC_ATTRS:
        value = metrics.get(name)
        if value is not None and np.isfinite(value):
            out[name] = int(value) if name in ("param_count", "updates") else float(value)
    out.update({f"param_{k}": _json_value(v) for k, v in params.items()})
    out.update(extra or {})
    return out


def _json_value(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return [_json_value(v) for v in value]
    if isinstance(value, float) and not np.isfinite(value):
        return str(value)
    return value


def curve_values(reports: Sequence[tuple[int, float]],
                 curve: Sequence[tuple[int, float]]) -> dict[int, float]:
    """The intermediate values of a trial: the pruner's (or recorder's) reports at the ends
    of cycles, and the validation accuracy at every other curve point (so that the dashboard
    draws the learning curve; pruners compare only at the ends of cycles, as before)."""
    out = {int(step): float(value) for step, value in curve if np.isfinite(value)}
    out.update({int(step): float(value) for step, value in reports})
    return dict(sorted(out.items()))


def report_running(storage: optuna.storages.BaseStorage, name: str, number: int,
                   values: Sequence[tuple[int, float]]) -> None:
    """Trial ``number`` of study ``name`` is running and measured the validation accuracy
    ``values`` (step, val_acc): its intermediate values, so that optuna-dashboard draws a
    running trial's learning curve. These are the values :func:`tell` writes at the end
    (every finite curve point; the pruner's reports are the same measurements), written
    through the storage, which overwrites a step, rather than ``Trial.report``, which
    refuses a step reported twice; pruning is decided in the worker and never reads them
    (:func:`trials_before`). A trial told meanwhile is left as it is."""
    with quiet():
        trial_id = storage.get_trial_id_from_study_id_trial_number(
            storage.get_study_id_from_name(name), number)
        try:
            for step, value in values:
                if np.isfinite(value):
                    storage.set_trial_intermediate_value(trial_id, int(step), float(value))
        except optuna.exceptions.UpdateFinishedTrialError:
            pass


def keep_outcome(study: optuna.Study, storage: optuna.storages.BaseStorage, number: int,
                 attrs: Mapping[str, Any], reports: Sequence[tuple[int, float]],
                 system_attrs: Mapping[str, Any]) -> None:
    """Write what a finished numsweep trial tells about Optuna trial ``number``: its user
    attributes now; its end-of-cycle reports and its pruner's system attributes are kept as
    user attributes until the study is told, in order, by whichever process gets there (so a
    pruning snapshot never depends on worker timing)."""
    trial_id = trial_id_of(study, storage, number)
    kept = dict(system_attrs)
    try:
        with quiet():
            for key, value in attrs.items():
                storage.set_trial_user_attr(trial_id, key, value)
            if reports:
                storage.set_trial_system_attr(trial_id, "ns_reports",
                                              [list(r) for r in reports])
            if kept:
                storage.set_trial_system_attr(trial_id, "ns_system_attrs", kept)
    except optuna.exceptions.UpdateFinishedTrialError:
        pass


def tell(study: optuna.Study, storage: optuna.storages.BaseStorage,
         records: Sequence[SlotRecord], curve: Sequence[tuple[int, float]] = (),
         values: Sequence[float] | None = None) -> None:
    """Tell the study how a configuration's trials ended: ``values``, the mean of each
    objective over its complete trials (None: none complete with every objective measured).
    A configuration run once gets its learning curve (``curve``: step, validation accuracy)
    as intermediate values (one objective only: Optuna keeps none for several)."""
    number = records[0].study_trial
    if number is None:
        return
    trial_id = trial_id_of(study, storage, number)
    frozen = storage.get_trial(trial_id)
    if frozen.state.is_finished():
        return  # another process told it
    states = {s.state for s in records}
    try:
        with quiet():
            storage.set_trial_system_attr(trial_id, "ns_trial_ids",
                                          [s.trial_id for s in records])
            if len(records) == 1 and len(study.directions) == 1:
                steps = curve_values(_internal(frozen, "ns_reports", []), curve)
                for step, value in steps.items():
                    # set_trial_intermediate_value overwrites: a value an earlier attempt
                    # reported while it ran (report_running) becomes the final run's
                    if frozen.intermediate_values.get(step) != value:
                        storage.set_trial_intermediate_value(trial_id, step, value)
                for key, value in _internal(frozen, "ns_system_attrs", {}).items():
                    storage.set_trial_system_attr(trial_id, key, value)
            if values is not None:
                study.tell(number, [float(v) for v in values], skip_if_finished=True)
            elif TrialState.PRUNED in states:
                study.tell(number, state=optuna.trial.TrialState.PRUNED, skip_if_finished=True)
            else:
                study.tell(number, state=optuna.trial.TrialState.FAIL, skip_if_finished=True)
    except optuna.exceptions.UpdateFinishedTrialError:
        pass  # another process told it meanwhile
