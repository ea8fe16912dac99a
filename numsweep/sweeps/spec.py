"""Sweep specs: TOML files with fixed parameters, a search space and stages.

Example::

    name = "lambda-coarse"
    seed = 0

    [fixed]
    hidden = [50]
    cycles = 2

    [space]
    lam = { type = "float", low = 1e-5, high = 1e-1, log = true, grid = 8 }
    momentum = { low = 0.5, high = 0.99, when = { optimizer = ["momentum", "nesterov"] } }
    "f,nf" = { choices = [[2, 3], [4, 10], [8, 40], [16, 160]] }   # tied parameters

    [[stages]]
    name = "coarse"
    sampler = "grid"

    [[stages]]
    name = "fine"
    sampler = "tpe"
    n_trials = 12
    narrow = { top_k = 3, widen = 1 }

    [[stages]]
    name = "final"
    sampler = "best"
    fixed = { n_val = 1000, cycles = 3 }

Every check names the file and the field in a one-line :class:`SweepSpecError`.
"""

from __future__ import annotations

import copy
import itertools
import math
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from numsweep.engine.spec import (
    SpecError,
    TrialSpec,
    coerce,
    conditional_parameters,
    parameter_names,
)
from numsweep.errors import NumsweepError
from numsweep.pareto import PICKS
from numsweep.sweeps.front_pruning import RUNG_METRICS
from numsweep.sweeps.objectives import (
    DEFAULT_OBJECTIVES,
    Objective,
    parse_objectives,
)

SAMPLERS = ("grid", "random", "tpe", "qmc", "gp", "cmaes", "nsga2", "list", "best", "pbt")
"""grid: every grid point once; random, tpe, qmc, gp, cmaes, nsga2: Optuna samplers; list:
only the stage's ``configs``; best: retrain the best configuration of earlier stages; pbt:
population-based training of ``population`` members trained together (``sweeps.pbt``)."""
MULTI_OBJECTIVE_SAMPLERS = ("grid", "random", "tpe", "qmc", "nsga2", "list", "best")
"""The samplers a stage with several objectives can use (tpe in its multi-objective mode)."""
PRUNERS = ("none", "median", "halving", "hyperband", "front")
"""none; Optuna's median, halving (successive halving) and hyperband pruners (one
objective); front: numsweep's own rung rule for any number of objectives (see
``sweeps.front_pruning``)."""
OPTUNA_PRUNERS = ("median", "halving", "hyperband")
HISTORY_SAMPLERS = ("tpe", "gp", "cmaes", "nsga2")
"""Samplers whose proposals depend on earlier results (see ``sync``)."""
DEFAULT_SYNC = 4
PRESET_DIR = Path(__file__).parent / "presets"
DATASETS = {"cifar10": (32, 32, 3), "fashion_mnist": (28, 28, 1)}
MAX_TRIALS = 100_000
"""The most trials one stage may plan (grid points or n_trials, times replicates): checked
on the spec's numbers, before anything is listed or run."""
"""Datasets a spec can name with ``dataset`` and the image shape (H, W, C) of each."""


class SweepSpecError(NumsweepError, ValueError):
    """A sweep spec is invalid; the message names the file and the field."""


@dataclass(frozen=True)
class ParamSpace:
    """One searched entry: a float or int range (linear or log), categorical choices, or a
    tied group (``names`` has several parameters and each choice gives one value per name).

    ``grid`` is the number of grid points for the grid sampler (evenly spaced, in log10 space
    when ``log``). ``when`` makes the entry conditional: it is sampled only when each named
    parameter has one of the listed values (otherwise the parameter keeps its fixed value or
    default).
    """

    name: str
    type: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    grid: int | None = None
    choices: tuple[Any, ...] = ()
    when: Mapping[str, tuple[Any, ...]] = field(default_factory=dict)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self.name.split(","))

    @property
    def tied(self) -> bool:
        return len(self.names) > 1

    @property
    def numeric(self) -> bool:
        return self.type in ("float", "int")

    def grid_values(self) -> list[Any]:
        if self.type == "categorical":
            return list(self.choices)
        if self.grid is None:
            raise SweepSpecError(f"space.{self.name}: a grid stage needs 'grid' (number of points)")
        assert self.low is not None and self.high is not None
        if self.grid == 1:
            values = np.array([self.low if not self.log else math.sqrt(self.low * self.high)])
        elif self.log:
            values = np.logspace(math.log10(self.low), math.log10(self.high), self.grid)
        else:
            values = np.linspace(self.low, self.high, self.grid)
        values = np.clip(values, self.low, self.high)
        if self.type == "int":
            return sorted({round(v) for v in values})
        return [float(v) for v in values]

    def grid_step(self) -> float | None:
        """Distance between grid points (in log10 units when ``log``); None without a grid."""
        if not self.numeric or self.grid is None or self.grid < 2:
            return None
        assert self.low is not None and self.high is not None
        lo, hi = ((math.log10(self.low), math.log10(self.high)) if self.log
                  else (self.low, self.high))
        return (hi - lo) / (self.grid - 1)

    def assign(self, value: Any) -> dict[str, Any]:
        """The parameters this entry sets for one chosen value."""
        if self.tied:
            return dict(zip(self.names, value, strict=True))
        return {self.name: list(value) if isinstance(value, tuple) else value}

    def active(self, params: Mapping[str, Any]) -> bool:
        """Whether the ``when`` condition holds for these (fixed and chosen) parameters."""
        return all(_plain(params.get(k)) in [_plain(v) for v in allowed]
                   for k, allowed in self.when.items())

    def contains(self, value: Any) -> bool:
        if self.type == "categorical":
            return _plain(value) in [_plain(c) for c in self.choices]
        assert self.low is not None and self.high is not None
        tol = 1e-9 * max(abs(self.low), abs(self.high), 1e-300)
        return isinstance(value, (int, float)) and self.low - tol <= value <= self.high + tol

    @classmethod
    def from_dict(cls, name: str, raw: Mapping[str, Any]) -> ParamSpace:
        """An entry as :meth:`to_dict` stores it (a stage's plan)."""
        return cls(name, raw["type"], low=raw.get("low"), high=raw.get("high"),
                   log=bool(raw.get("log", False)), grid=raw.get("grid"),
                   choices=tuple(_tupled(c) for c in raw.get("choices", ())),
                   when={k: tuple(_tupled(v) for v in vs)
                         for k, vs in raw.get("when", {}).items()})

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.type}
        if self.type == "categorical":
            out["choices"] = [_plain(c) for c in self.choices]
        else:
            out.update(low=self.low, high=self.high, log=self.log)
            if self.grid is not None:
                out["grid"] = self.grid
        if self.when:
            out["when"] = {k: [_plain(v) for v in vs] for k, vs in self.when.items()}
        return out


def _plain(value: Any) -> Any:
    """Lists and tuples compare equal as lists."""
    return [_plain(v) for v in value] if isinstance(value, (list, tuple)) else value


def _tupled(value: Any) -> Any:
    """JSON lists back as tuples (a choice of ``hidden`` or of tied values)."""
    return tuple(_tupled(v) for v in value) if isinstance(value, list) else value


@dataclass(frozen=True)
class Narrow:
    """Narrow numeric ranges to those spanned by the ``top_k`` best trials of stage
    ``source`` (by the narrowing stage's objective; with several objectives, the trials on
    the source's Pareto front), widened by ``widen`` grid steps of that stage's range."""

    source: str
    top_k: int = 3
    widen: float = 1.0


@dataclass(frozen=True)
class WarmStart:
    """Start a stage from the ``top_k`` best configurations of another sweep (its stage
    ``stage``, or all its stages), in this database or the one at ``db``: they are enqueued
    first."""

    sweep: str
    stage: str | None = None
    top_k: int = 8
    db: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"sweep": self.sweep, "top_k": self.top_k}
        if self.stage is not None:
            out["stage"] = self.stage
        if self.db is not None:
            out["db"] = self.db
        return out

    @property
    def text(self) -> str:
        where = f" in {self.db}" if self.db else ""
        stage = f" stage {self.stage}" if self.stage else ""
        return f"sweep {self.sweep}{stage}{where}, top {self.top_k}"


def searched_names(space: Mapping[str, ParamSpace]) -> list[str]:
    """The parameter names ``space`` searches, in its order (a tied entry searches each of
    its names)."""
    return [n for p in space.values() for n in p.names]


@dataclass(frozen=True)
class StageSpec:
    name: str
    sampler: str
    n_trials: int | None = None
    fixed: Mapping[str, Any] = field(default_factory=dict)
    time_budget: float | None = None
    configs: tuple[Mapping[str, Any], ...] = ()
    replicates: int = 1
    narrow: Narrow | None = None
    reuse: bool = True
    pruner: str = "none"
    source: tuple[str, ...] = ()
    sync: int = DEFAULT_SYNC
    epochs: int | None = None
    objectives: tuple[Objective, ...] | None = None  # None: the sweep's
    pick: str = "accuracy"  # a best stage's choice on a Pareto front (pareto.PICKS)
    warm_start: WarmStart | None = None
    prune_share: float = 0.5  # pruner = "front": the share of a rung that may dominate
    pbt: PBTStage | None = None  # sampler = "pbt": its population and exploit settings

    @property
    def waits_for_results(self) -> bool:
        """Whether configuration k is proposed knowing only the results up to k - ``sync``
        (the lag rule): a sampler that learns from earlier results, or a pruner (its
        snapshot of the study is taken at the proposal)."""
        return self.sampler in HISTORY_SAMPLERS or self.pruner != "none"

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "sampler": self.sampler,
                               "fixed": dict(self.fixed)}
        if self.objectives is not None:
            out["objectives"] = [o.text for o in self.objectives]
        if self.pick != "accuracy":
            out["pick"] = self.pick
        if self.warm_start is not None:
            out["warm_start"] = self.warm_start.to_dict()
        if self.prune_share != 0.5:
            out["prune_share"] = self.prune_share
        if self.epochs is not None:
            out["epochs"] = self.epochs
        if self.n_trials is not None:
            out["n_trials"] = self.n_trials
        if self.time_budget is not None:
            out["time_budget"] = self.time_budget
        if self.configs:
            out["configs"] = [dict(c) for c in self.configs]
        if self.replicates != 1:
            out["replicates"] = self.replicates
        if self.narrow is not None:
            out["narrow"] = {"from": self.narrow.source, "top_k": self.narrow.top_k,
                             "widen": self.narrow.widen}
        if not self.reuse:
            out["reuse"] = False
        if self.pruner != "none":
            out["pruner"] = self.pruner
        if self.source:
            out["from"] = list(self.source)
        if self.sync != DEFAULT_SYNC:
            out["sync"] = self.sync
        if self.pbt is not None:
            out.update(self.pbt.to_dict())
        return out


PBT_METRICS = ("val_acc", "val_loss")
"""What a pbt stage ranks its members by at each exploit step (val_acc higher, val_loss
lower is better)."""
DEFAULT_FACTORS = (0.8, 1.2)
NOT_EXPLORED = ("seed", "data_offset")
"""Per-trial values a pbt stage never explores (a member's own stream and data position)."""


@dataclass(frozen=True)
class PBTStage:
    """A pbt stage's settings: ``population`` members trained together; every ``interval``
    updates the bottom ``quantile`` (by ``metric``, measured on the first ``metric_subset``
    validation images, None: all) copy a member of the top ``quantile`` and perturb its
    explored values: multiplied by one of ``mutations[name]``, or with
    ``resample_probability`` drawn anew from the parameter's range."""

    population: int = 16
    interval: int = 100
    quantile: float = 0.25
    metric: str = "val_acc"
    metric_subset: int | None = None
    mutations: Mapping[str, tuple[float, ...]] = field(default_factory=dict)
    resample_probability: float = 0.25

    def factors(self, name: str) -> tuple[float, ...]:
        return tuple(self.mutations.get(name, DEFAULT_FACTORS))

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"population": self.population, "interval": self.interval,
                               "quantile": self.quantile, "metric": self.metric,
                               "resample_probability": self.resample_probability}
        if self.metric_subset is not None:
            out["metric_subset"] = self.metric_subset
        if self.mutations:
            out["mutations"] = {k: list(v) for k, v in self.mutations.items()}
        return out


@dataclass(frozen=True)
class SweepSpec:
    name: str
    seed: int
    fixed: Mapping[str, Any]
    space: Mapping[str, ParamSpace]
    stages: tuple[StageSpec, ...]
    description: str = ""
    origin: str = "<spec>"
    dataset: str | None = None
    epochs: int | None = None
    objectives: tuple[Objective, ...] | None = None  # None: val_acc, maximised

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name, "seed": self.seed, "description": self.description,
            "fixed": dict(self.fixed),
            "space": {k: v.to_dict() for k, v in self.space.items()},
            "stages": [s.to_dict() for s in self.stages],
        }
        if self.objectives is not None:
            out["objectives"] = [o.text for o in self.objectives]
        if self.dataset is not None:
            out["dataset"] = self.dataset
        if self.epochs is not None:
            out["epochs"] = self.epochs
        return out

    def stage_objectives(self, stage: StageSpec) -> tuple[Objective, ...]:
        """What ``stage`` optimises: its own objectives; for a ``best`` stage without its
        own, those of the last stage it picks from; else the sweep's, else val_acc."""
        if stage.objectives is not None:
            return stage.objectives
        names = [s.name for s in self.stages]
        if stage.sampler == "best" and stage.name in names:
            sources = list(stage.source) or names[: names.index(stage.name)]
            if sources:
                return self.stage_objectives(self.stages[names.index(sources[-1])])
        return self.objectives if self.objectives is not None else DEFAULT_OBJECTIVES

    @property
    def searched(self) -> list[str]:
        """The parameter names the space searches, in its order (see :func:`searched_names`)."""
        return searched_names(self.space)

    def stage_fixed(self, stage: StageSpec) -> dict[str, Any]:
        """The fixed parameters of ``stage``; with ``epochs`` (the stage's, else the sweep's)
        also ``n_updates = epochs * floor(n_train / batch_size)``."""
        fixed = {**self.fixed, **stage.fixed}
        epochs = stage.epochs if stage.epochs is not None else self.epochs
        if epochs is not None:
            fixed["n_updates"] = epochs * (fixed["n_train"] // fixed.get("batch_size", 100))
        return fixed

    def with_overrides(self, overrides: Mapping[str, str]) -> SweepSpec:
        """Apply ``key=value``, ``stage.key=value`` and ``space.name.key=value`` overrides.

        ``key`` is ``name``, ``seed``, ``description``, ``dataset``, ``epochs`` or a
        parameter: a parameter becomes fixed in every stage, replacing a stage's own fixed
        value (and is no longer searched). ``stage.key`` (applied after the plain keys, so
        it wins in its stage) sets a stage key (``n_trials``,
        ``sampler``, ``time_budget``, ``replicates``, ``pruner``, ...) or a parameter fixed in
        that stage. Values are TOML literals or plain text.
        """
        raw = self.to_dict()
        # a plain KEY first, so that a STAGE.KEY given beside it wins in that stage
        for key, value in sorted(overrides.items(), key=lambda kv: "." in kv[0]):
            _apply_override(raw, key, value, self.origin)
        return parse_spec(raw, self.origin)


def _literal(text: str) -> Any:
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def _apply_override(raw: dict[str, Any], key: str, value: str, origin: str) -> None:
    def fail(message: str) -> SweepSpecError:
        return SweepSpecError(f"{origin}: override {key}={value}: {message}")

    parts = key.split(".")
    params = set(parameter_names())
    if len(parts) == 1:
        if key in ("name", "description", "dataset"):
            raw[key] = value
        elif key in ("objective", "objectives"):
            raw.pop("objective", None)
            raw.pop("objectives", None)
            raw[key] = _literal(value)
        elif key in ("seed", "epochs"):
            raw[key] = _literal(value)
        elif key in params:
            for entry in list(raw["space"]):
                if key in entry.split(","):
                    if "," in entry:
                        raise fail(f"{key} is tied in space.\"{entry}\"; override each stage "
                                   "or edit the spec")
                    del raw["space"][entry]
            raw["fixed"][key] = value
            for stage in raw["stages"]:  # the command line is what was asked for last
                stage.get("fixed", {}).pop(key, None)
        else:
            raise fail(f"unknown parameter {key!r}")
        return
    if parts[0] == "space" and len(parts) == 3:
        entry = raw["space"].get(parts[1])
        if entry is None:
            raise fail(f"space has no entry {parts[1]!r} (space: {', '.join(raw['space'])})")
        entry[parts[2]] = _literal(value)
        return
    if len(parts) != 2:
        raise fail("expected KEY, STAGE.KEY or space.NAME.KEY")
    stage_name, field_name = parts
    stages = [s for s in raw["stages"] if s.get("name") == stage_name]
    if not stages:
        names = ", ".join(str(s.get("name")) for s in raw["stages"])
        raise fail(f"no stage named {stage_name!r} (stages: {names})")
    stage = stages[0]
    if field_name in params:
        stage.setdefault("fixed", {})[field_name] = value
    elif field_name in ("objective", "objectives"):
        stage.pop("objective", None)
        stage.pop("objectives", None)
        stage[field_name] = _literal(value)
    elif field_name in _STAGE_KEYS and field_name not in ("name", "fixed", "configs"):
        stage[field_name] = _literal(value)
    else:
        raise fail(f"unknown stage key or parameter {field_name!r}")


def preset_names() -> list[str]:
    return sorted(p.stem for p in PRESET_DIR.glob("*.toml"))


def preset_descriptions() -> dict[str, str]:
    """Each shipped preset's name and the description its spec gives, by name."""
    return {name: load_spec(PRESET_DIR / f"{name}.toml").description
            for name in preset_names()}


def resolve_spec_path(name: str | Path) -> Path:
    """A spec file path, or the name of a shipped preset (``numsweep sweep presets``)."""
    path = Path(name)
    if path.exists() or path.suffix == ".toml" or "/" in str(name):
        return path
    preset = PRESET_DIR / f"{name}.toml"
    if preset.exists():
        return preset
    raise SweepSpecError(f"{name}: no such spec file or preset "
                         f"(presets: {', '.join(preset_names()) or 'none'})")


def resolve_data(spec: SweepSpec, data: str | None) -> str | None:
    """The data source for ``spec``: ``data`` itself, or, when the spec names a ``dataset``
    and ``data`` is a folder holding ``<dataset>.npz`` (or a ``<dataset>`` folder), that.

    So one folder serves every preset (``--data ../shared/data`` holds ``cifar10.npz`` and
    ``fashion_mnist.npz``). Without ``data`` only CIFAR-10 can be downloaded.
    """
    if spec.dataset is None:
        return data
    if data is None:
        if spec.dataset == "cifar10":
            return None
        raise SweepSpecError(f"{spec.origin}: dataset={spec.dataset!r} is not downloaded by "
                             f"numsweep: pass --data (a {spec.dataset}.npz, its idx folder, or "
                             f"a folder holding {spec.dataset}.npz)")
    path = Path(data)
    if path.is_dir():
        for candidate in (path / f"{spec.dataset}.npz", path / spec.dataset):
            if candidate.exists():
                return str(candidate)
    return data


def load_spec(path: str | Path, overrides: Mapping[str, str] | None = None) -> SweepSpec:
    """Read and validate a TOML sweep spec (a path or a preset name); apply overrides."""
    path = resolve_spec_path(path)
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise SweepSpecError(f"{path}: no such spec file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SweepSpecError(f"{path}: cannot read ({exc})") from None
    except tomllib.TOMLDecodeError as exc:
        raise SweepSpecError(f"{path}: invalid TOML ({exc})") from None
    spec = parse_spec(raw, str(path))
    return spec.with_overrides(overrides) if overrides else spec


PBT_KEYS = ("population", "interval", "quantile", "metric", "metric_subset", "mutations",
            "resample_probability")
"""The stage keys of a pbt stage (see :class:`PBTStage`)."""
_TOP_KEYS = {"name", "seed", "description", "dataset", "epochs", "fixed", "space", "stages",
             "objective", "objectives"}
_SPACE_KEYS = {"type", "low", "high", "log", "grid", "choices", "when"}
_STAGE_KEYS = {"name", "sampler", "n_trials", "fixed", "time_budget", "configs", "replicates",
               "narrow", "reuse", "pruner", "from", "sync", "epochs", "objective",
               "objectives", "pick", "warm_start", "prune_share", *PBT_KEYS}
_NARROW_KEYS = {"from", "top_k", "widen"}
_WARM_START_KEYS = {"sweep", "stage", "top_k", "db"}


def parse_duration(value: Any, where: str = "duration") -> float:
    """Seconds from a number of seconds or text such as ``90s``, ``30m``, ``1h30m``."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if value > 0 and math.isfinite(value):
            return float(value)
    elif isinstance(value, str):
        text = value.strip().lower()
        parts = re.fullmatch(r"(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s?)?",
                             text)
        if text and parts and any(parts.groups()):
            h, m, s = (float(g) if g else 0.0 for g in parts.groups())
            seconds = 3600 * h + 60 * m + s
            if seconds > 0:
                return seconds
    raise SweepSpecError(f"{where}={value!r} must be a positive duration such as 90, '90s', "
                         "'30m' or '1h30m'")


def parse_spec(raw: Mapping[str, Any], origin: str) -> SweepSpec:
    def fail(message: str) -> SweepSpecError:
        return SweepSpecError(f"{origin}: {message}")

    raw = copy.deepcopy(dict(raw))
    for key in raw:
        if key not in _TOP_KEYS:
            raise fail(f"unknown key {key!r} (expected {', '.join(sorted(_TOP_KEYS))})")
    name = raw.get("name")
    if not isinstance(name, str) or not name:
        raise fail("'name' must be a non-empty string")
    seed = raw.get("seed", 0)
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise fail(f"seed={seed!r} must be a non-negative integer")
    fixed = _check_params(raw.get("fixed", {}), "fixed", fail)
    contexts = _contexts(fixed, raw.get("stages"), fail)
    space = {k: _parse_space(k, v, fail, contexts)
             for k, v in _table(raw.get("space", {}), "space", fail).items()}
    searched = searched_names(space)
    twice = sorted({n for n in searched if searched.count(n) > 1})
    if twice:
        raise fail(f"space: {', '.join(twice)} is searched by more than one entry")
    overlap = set(searched) & set(fixed)
    if overlap:
        raise fail(f"{', '.join(sorted(overlap))} is both fixed and searched")
    for p in space.values():
        for cond in p.when:
            if cond in p.names:
                raise fail(f"space.{p.name}.when: a parameter cannot depend on itself")
            if cond not in searched and cond not in fixed:
                # compared with the default value: allowed, but say so if it can never hold
                default = getattr(TrialSpec(), cond)
                if not p.active({cond: default}):
                    raise fail(f"space.{p.name}.when: {cond} is neither fixed nor searched and "
                               f"its default {default!r} is not in {list(p.when[cond])}, so "
                               f"{p.name} would never be searched")
    try:
        objectives = parse_objectives(raw.get("objective"), raw.get("objectives"), "")
    except ValueError as exc:
        raise fail(str(exc)) from None
    stages_raw = raw.get("stages")
    if not isinstance(stages_raw, list) or not stages_raw:
        raise fail("'stages' must be a non-empty list of [[stages]] tables")
    stages: list[StageSpec] = []
    for i, s in enumerate(stages_raw):
        stages.append(_parse_stage(i, s, space, fixed, stages, fail,
                                   objectives or DEFAULT_OBJECTIVES))
    dataset = raw.get("dataset")
    if dataset is not None and dataset not in DATASETS:
        raise fail(f"dataset={dataset!r} must be one of {', '.join(DATASETS)}")
    epochs = raw.get("epochs")
    if epochs is not None:
        _positive_int(epochs, "epochs", fail)
    spec = SweepSpec(name=name, seed=seed, fixed=fixed, space=space, stages=tuple(stages),
                     description=str(raw.get("description", "")), origin=origin,
                     dataset=dataset, epochs=epochs, objectives=objectives)
    for i, stage in enumerate(spec.stages):
        _check_epochs(spec, stage, fail)
        _check_searched_models(spec, stage, fail)
        warm = stage.warm_start
        if warm is not None and warm.sweep == name and warm.db is None and (
                warm.stage not in [s.name for s in spec.stages[:i]]):
            raise fail(f"stages.{stage.name}.warm_start: from this sweep itself it needs "
                       f"'stage', an earlier stage "
                       f"({', '.join(s.name for s in spec.stages[:i]) or 'there is none'})")
    return spec


def _check_searched_models(spec: SweepSpec, stage: StageSpec, fail: Any) -> None:
    """A searched parameter read only with some models (or update rules, activations,
    schedules) must be read by each one the stage can train: else its trials differ in a
    value the run never reads."""
    if stage.sampler in ("list", "best"):  # configs are checked whole; best searches nothing
        return
    fixed = {**spec.fixed, **stage.fixed}
    default = TrialSpec()
    for p in spec.space.values():
        for name in p.names:
            if name not in conditional_parameters():
                continue
            control, users = conditional_parameters()[name]
            searched = next((q for q in spec.space.values() if control in q.names), None)
            settings = ([c[searched.names.index(control)] if searched.tied else c
                         for c in searched.choices] if searched is not None
                        else [fixed.get(control, getattr(default, control))])
            for setting in settings:
                context = {**fixed, control: setting}
                active = all(_plain(context[k]) in [_plain(v) for v in allowed]
                             for k, allowed in p.when.items() if k in context)
                if active and setting not in users:
                    raise fail(f"space.{p.name}: {name} is searched in stage {stage.name} with "
                               f"{control}={setting}, which does not use it (it applies to "
                               f"{control}={', '.join(users)}); fix {control} or add "
                               f"when = {{ {control} = {list(users)} }}")


def _check_epochs(spec: SweepSpec, stage: StageSpec, fail: Any) -> None:
    """``epochs`` sets n_updates from a fixed n_train and batch_size, for the schedules whose
    length is n_updates."""
    epochs, where = ((stage.epochs, f"stages.{stage.name}.epochs") if stage.epochs is not None
                     else (spec.epochs, "epochs"))
    if epochs is None:
        return
    fixed = {**spec.fixed, **stage.fixed}
    searched = set(spec.searched)
    trial = TrialSpec.from_mapping(fixed)
    if "n_updates" in fixed or "n_updates" in searched:
        raise fail(f"{where}={epochs}: n_updates is set too; give one of them")
    if trial.schedule in ("cyclic", "exp_range") or "schedule" in searched:
        raise fail(f"{where}={epochs}: needs a fixed schedule without cycles (constant, linear, "
                   f"step or exponential), not schedule={trial.schedule}")
    for name in ("n_train", "batch_size", "batch_schedule"):
        if name in searched:
            raise fail(f"{where}={epochs}: {name} is searched; epochs needs it fixed")
    if trial.n_train is None:
        raise fail(f"{where}={epochs}: needs a fixed n_train (updates per epoch are "
                   "floor(n_train / batch_size))")
    if trial.batch_schedule != "constant":
        raise fail(f"{where}={epochs}: needs batch_schedule=constant")
    if trial.n_train < trial.batch_size:
        raise fail(f"{where}={epochs}: n_train={trial.n_train} is below batch_size="
                   f"{trial.batch_size} (no update per epoch)")


def _table(value: Any, where: str, fail: Any) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise fail(f"'{where}' must be a table")
    return value


def _check_params(values: Any, where: str, fail: Any) -> dict[str, Any]:
    values = _table(values, where, fail)
    known = set(parameter_names())
    out: dict[str, Any] = {}
    for key, raw in values.items():
        if key not in known:
            raise fail(f"{where}.{key}: unknown parameter (known: {', '.join(sorted(known))})")
        try:
            value = coerce(key, raw)
        except SpecError as exc:
            raise fail(f"{where}.{exc}") from None
        out[key] = list(value) if isinstance(value, tuple) else value
    try:
        TrialSpec.from_mapping(out)
    except SpecError as exc:
        raise fail(f"{where}.{exc}") from None
    return out


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _contexts(fixed: Mapping[str, Any], stages_raw: Any, fail: Any) -> list[dict[str, Any]]:
    """The fixed parameters a searched value can be trained with: the sweep's, and each
    stage's on top (a value such as f=8 is only valid with model=convnet)."""
    out = [dict(fixed)]
    for stage in stages_raw if isinstance(stages_raw, list) else []:
        if isinstance(stage, Mapping) and stage.get("fixed"):
            try:
                out.append({**fixed, **_check_params(stage["fixed"], "fixed", fail)})
            except SweepSpecError:
                continue  # named when the stage itself is parsed
    return out


def _check_value(mapping: Mapping[str, Any], contexts: Sequence[Mapping[str, Any]],
                 when: Mapping[str, tuple[Any, ...]] | None = None) -> None:
    """Raise the SpecError of ``mapping`` unless some context (with a value of each ``when``
    condition) takes it."""
    conditions = list(itertools.islice(itertools.product(*(when or {}).values()), 50))
    first: SpecError | None = None
    for context in contexts:
        for combo in conditions:
            try:
                TrialSpec.from_mapping({**context, **dict(zip(when or {}, combo, strict=True)),
                                        **mapping})
                return
            except SpecError as exc:
                first = first or exc
    if first is not None:
        raise first


def _parse_space(name: str, raw: Any, fail: Any,
                 contexts: Sequence[Mapping[str, Any]] = ({},)) -> ParamSpace:
    names = [n.strip() for n in name.split(",")]
    for n in names:
        if n not in parameter_names():
            raise fail(f"space.{name}: unknown parameter {n!r}")
    name = ",".join(names)
    raw = _table(raw, f"space.{name}", fail)
    for key in raw:
        if key not in _SPACE_KEYS:
            expected = ", ".join(sorted(_SPACE_KEYS))
            raise fail(f"space.{name}.{key}: unknown key (expected {expected})")
    when = _parse_when(name, raw.get("when", {}), fail, contexts)
    kind = raw.get("type", "categorical" if "choices" in raw or len(names) > 1 else "float")
    if len(names) > 1 and kind != "categorical":
        raise fail(f"space.{name}: tied parameters take 'choices' (one list of "
                   f"{len(names)} values per choice)")
    if kind == "categorical":
        choices = raw.get("choices")
        if not isinstance(choices, Sequence) or isinstance(choices, str) or not choices:
            raise fail(f"space.{name}.choices must be a non-empty list")
        parsed = []
        for choice in choices:
            if len(names) > 1:
                if not isinstance(choice, list) or len(choice) != len(names):
                    raise fail(f"space.{name}.choices: {choice!r} must be a list of "
                               f"{len(names)} values ({', '.join(names)})")
                mapping = dict(zip(names, choice, strict=True))
            else:
                mapping = {name: choice}
            try:
                _check_value(mapping, contexts, when)
            except SpecError as exc:
                raise fail(f"space.{name}.choices: {exc}") from None
            parsed.append(tuple(choice) if isinstance(choice, list) else choice)
        if len({repr(_plain(c)) for c in parsed}) != len(parsed):
            raise fail(f"space.{name}.choices has repeated values")
        return ParamSpace(name, "categorical", choices=tuple(parsed), when=when)
    if kind not in ("float", "int"):
        raise fail(f"space.{name}.type={kind!r} must be float, int or categorical")
    low, high, log = raw.get("low"), raw.get("high"), raw.get("log", False)
    for key, v in (("low", low), ("high", high)):
        if not _is_number(v):
            raise fail(f"space.{name}.{key} must be a finite number")
    if not isinstance(log, bool):
        raise fail(f"space.{name}.log={log!r} must be true or false")
    if low > high:
        raise fail(f"space.{name}: low={low} is above high={high}")
    if log and low <= 0:
        raise fail(f"space.{name}: a log range needs low > 0, got {low}")
    grid = raw.get("grid")
    if grid is not None and (not isinstance(grid, int) or isinstance(grid, bool) or grid < 1):
        raise fail(f"space.{name}.grid={grid!r} must be a positive integer (number of points)")
    if grid is not None and grid > MAX_TRIALS:
        raise fail(f"space.{name}.grid={grid} is more than {MAX_TRIALS:,} points")
    for key, v in (("low", low), ("high", high)):
        try:
            _check_value({name: v}, contexts, when)
        except SpecError as exc:
            raise fail(f"space.{name}.{key}: {exc}") from None
    if kind == "int" and not (float(low).is_integer() and float(high).is_integer()):
        raise fail(f"space.{name}: an int range needs integer low and high")
    if kind == "int":
        low, high = int(low), int(high)
    return ParamSpace(name, kind, low=low, high=high, log=log, grid=grid, when=when)


def _parse_when(name: str, raw: Any, fail: Any,
                contexts: Sequence[Mapping[str, Any]] = ({},)) -> dict[str, tuple[Any, ...]]:
    raw = _table(raw, f"space.{name}.when", fail)
    out: dict[str, tuple[Any, ...]] = {}
    for key, allowed in raw.items():
        if key not in parameter_names():
            raise fail(f"space.{name}.when.{key}: unknown parameter")
        values = allowed if isinstance(allowed, list) else [allowed]
        if not values:
            raise fail(f"space.{name}.when.{key} must list at least one value")
        for v in values:
            try:
                _check_value({key: v}, contexts)
            except SpecError as exc:
                raise fail(f"space.{name}.when.{key}: {exc}") from None
        out[key] = tuple(values)
    return out


def _positive_int(value: Any, where: str, fail: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise fail(f"{where}={value!r} must be a positive integer")
    return value


def _parse_stage(index: int, raw: Any, space: Mapping[str, ParamSpace],
                 fixed: Mapping[str, Any], earlier: Sequence[StageSpec],
                 fail: Any, sweep_objectives: tuple[Objective, ...] = DEFAULT_OBJECTIVES
                 ) -> StageSpec:
    where = f"stages[{index}]"
    raw = _table(raw, where, fail)
    for key in raw:
        if key not in _STAGE_KEYS:
            raise fail(f"{where}.{key}: unknown key (expected {', '.join(sorted(_STAGE_KEYS))})")
    name = raw.get("name", f"stage{index}")
    if not isinstance(name, str) or not name or "." in name:
        raise fail(f"{where}.name={name!r} must be a non-empty string without dots")
    if any(s.name == name for s in earlier):
        raise fail(f"{where}.name={name!r}: stage names must be unique")
    where = f"stages.{name}"
    sampler = raw.get("sampler", "grid")
    if sampler not in SAMPLERS:
        raise fail(f"{where}.sampler={sampler!r} must be one of {', '.join(SAMPLERS)}")
    n_trials = raw.get("n_trials")
    if n_trials is not None:
        _positive_int(n_trials, f"{where}.n_trials", fail)
        if n_trials > MAX_TRIALS:
            raise fail(f"{where}.n_trials={n_trials} is more than {MAX_TRIALS:,} trials")
    stage_fixed = _check_params(raw.get("fixed", {}), f"{where}.fixed", fail)
    searched = set(searched_names(space))
    clash = sorted(set(stage_fixed) & searched)
    if clash and sampler not in ("best", "pbt"):
        raise fail(f"{where}.fixed: {', '.join(clash)} is searched; a stage cannot fix it")
    try:
        TrialSpec.from_mapping({**fixed, **stage_fixed})
    except SpecError as exc:
        raise fail(f"{where}.fixed: {exc}") from None
    time_budget = raw.get("time_budget")
    if time_budget is not None:
        try:
            time_budget = parse_duration(time_budget, f"{where}.time_budget")
        except SweepSpecError as exc:
            raise fail(str(exc)) from None
    configs_raw = raw.get("configs", [])
    if not isinstance(configs_raw, list):
        raise fail(f"{where}.configs must be a list of tables")
    configs = []
    for j, config in enumerate(configs_raw):
        checked = _check_params(config, f"{where}.configs[{j}]", fail)
        extra = sorted(set(checked) - searched)
        if extra:
            raise fail(f"{where}.configs[{j}]: {', '.join(extra)} is not searched (configs "
                       "set searched parameters; fixed ones go in 'fixed')")
        try:
            TrialSpec.from_mapping({**fixed, **stage_fixed, **checked})
        except SpecError as exc:
            raise fail(f"{where}.configs[{j}]: {exc}") from None
        for p in space.values():
            if all(n in checked for n in p.names):
                value = (tuple(checked[n] for n in p.names) if p.tied
                         else checked[p.name])
                if not p.contains(value):
                    raise fail(f"{where}.configs[{j}]: {p.name}={_plain(value)!r} is outside "
                               f"space.{p.name}")
        configs.append(checked)
    replicates = _positive_int(raw.get("replicates", 1), f"{where}.replicates", fail)
    epochs = raw.get("epochs")
    if epochs is not None:
        _positive_int(epochs, f"{where}.epochs", fail)
    sync = _positive_int(raw.get("sync", DEFAULT_SYNC), f"{where}.sync", fail)
    if sampler != "pbt":
        given = [k for k in PBT_KEYS if k in raw]
        if given:
            raise fail(f"{where}.{given[0]}: only a pbt stage (sampler = \"pbt\") takes it")
    pbt = None
    reuse = raw.get("reuse", True)
    if not isinstance(reuse, bool):
        raise fail(f"{where}.reuse={reuse!r} must be true or false")
    pruner = raw.get("pruner", "none")
    if pruner not in PRUNERS:
        raise fail(f"{where}.pruner={pruner!r} must be one of {', '.join(PRUNERS)}")
    if pruner != "none" and replicates > 1:
        raise fail(f"{where}.pruner={pruner!r} needs replicates = 1")
    try:
        objectives = parse_objectives(raw.get("objective"), raw.get("objectives"), f"{where}.")
    except ValueError as exc:
        raise fail(str(exc)) from None
    scored = objectives or sweep_objectives
    if len(scored) > 1 and sampler not in MULTI_OBJECTIVE_SAMPLERS:
        raise fail(f"{where}.sampler={sampler!r} takes one objective; with several "
                   f"({', '.join(o.text for o in scored)}) use one of "
                   f"{', '.join(MULTI_OBJECTIVE_SAMPLERS)}")
    if len(scored) > 1 and pruner in OPTUNA_PRUNERS:
        raise fail(f"{where}.pruner={pruner!r}: Optuna's pruners take one objective; with "
                   "several use pruner = \"front\" (numsweep's rung rule) or \"none\"")
    if pruner == "front":
        unmeasured = [o.metric for o in scored if o.metric not in RUNG_METRICS]
        if unmeasured:
            raise fail(f"{where}.pruner='front' judges a trial at its rungs on "
                       f"{', '.join(RUNG_METRICS)}; {unmeasured[0]} is not measured there")
    pick = raw.get("pick", "accuracy")
    if pick not in PICKS:
        raise fail(f"{where}.pick={pick!r} must be one of {', '.join(PICKS)}")
    prune_share = raw.get("prune_share", 0.5)
    if not _is_number(prune_share) or not 0 <= prune_share < 1:
        raise fail(f"{where}.prune_share={prune_share!r} must be a number in [0, 1)")
    warm_start = _parse_warm_start(raw.get("warm_start"), where, sampler, fail)
    earlier_names = [s.name for s in earlier]
    source_raw = raw.get("from", [])
    source = tuple([source_raw] if isinstance(source_raw, str) else source_raw)
    for s in source:
        if s not in earlier_names:
            raise fail(f"{where}.from={s!r} must name an earlier stage "
                       f"({', '.join(earlier_names) or 'there is none'})")
    narrow = _parse_narrow(raw.get("narrow"), where, earlier, space, fail)

    if sampler == "grid":
        for p in space.values():
            if p.numeric and p.grid is None:
                raise fail(f"{where} is a grid stage but space.{p.name} has no 'grid' "
                           "(number of points)")
        if not space:
            raise fail(f"{where} is a grid stage but the space is empty (an empty grid)")
    elif sampler == "list":
        if not configs and not space:
            configs = [{}]  # nothing searched: one run of the fixed parameters
        elif not configs:
            raise fail(f"{where}.configs must list at least one configuration for "
                       "sampler = 'list'")
    elif sampler == "best":
        if not earlier:
            raise fail(f"{where}: sampler = 'best' needs an earlier stage to take the best "
                       "configuration from")
    elif sampler == "pbt":
        pbt = _parse_pbt(raw, where, space, {**fixed, **stage_fixed}, fail)
        for key, bad in (("n_trials", n_trials), ("pruner", pruner if pruner != "none" else None),
                         ("configs", configs or None), ("narrow", narrow),
                         ("warm_start", warm_start),
                         ("replicates", replicates if replicates != 1 else None)):
            if bad is not None:
                raise fail(f"{where}.{key}: a pbt stage trains its population ('population' "
                           f"members); it takes no {key}")
    else:
        if n_trials is None:
            raise fail(f"{where}.n_trials is required for the {sampler} sampler")
        if not space:
            raise fail(f"{where}: the {sampler} sampler needs a non-empty space")
        if n_trials < len(configs):
            raise fail(f"{where}.n_trials={n_trials} is fewer than its {len(configs)} configs")
    if sampler == "grid" and narrow is not None:
        for p in space.values():
            if p.numeric and p.grid is None:
                raise fail(f"{where}.narrow: space.{p.name} needs 'grid'")
    # the whole grid is listed before n_trials takes the first ones: bound it in any case
    points = grid_size(space) if sampler == "grid" else 0
    if points > MAX_TRIALS:
        raise fail(f"{where}: the grid has {points:,} points, more than {MAX_TRIALS:,}; "
                   f"lower the grid sizes")
    planned = (min(points, n_trials or points) if sampler == "grid"
               else n_trials if n_trials is not None else max(1, len(configs)))
    if planned * replicates > MAX_TRIALS:
        counted = (f"{planned:,} grid points" if sampler == "grid"
                   else f"{planned:,} configurations")
        raise fail(f"{where} plans {planned * replicates:,} trials ({counted}"
                   f"{f' x {replicates} replicates' if replicates > 1 else ''}), more than "
                   f"{MAX_TRIALS:,}; lower the grid sizes or n_trials")
    return StageSpec(name=name, sampler=sampler, n_trials=n_trials, fixed=stage_fixed,
                     time_budget=time_budget, configs=tuple(configs), replicates=replicates,
                     narrow=narrow, reuse=reuse, pruner=pruner, source=source, sync=sync,
                     epochs=epochs, objectives=objectives, pick=pick, warm_start=warm_start,
                     prune_share=float(prune_share), pbt=pbt)


def explored_entries(space: Mapping[str, ParamSpace], stage: StageSpec
                     ) -> dict[str, ParamSpace]:
    """The space entries a pbt stage explores: every entry its own ``fixed`` leaves."""
    return {k: p for k, p in space.items() if not set(p.names) & set(stage.fixed)}


def _parse_pbt(raw: Mapping[str, Any], where: str, space: Mapping[str, ParamSpace],
               fixed: Mapping[str, Any], fail: Any) -> PBTStage:
    from numsweep.engine.group import PER_TRIAL
    from numsweep.engine.runplan import planned_updates

    explorable = [n for n in PER_TRIAL if n not in NOT_EXPLORED]
    explored = {k: p for k, p in space.items() if not set(p.names) & set(fixed)}
    if not explored:
        raise fail(f"{where}: a pbt stage explores the space, and it is empty (or all fixed "
                   "by the stage)")
    for p in explored.values():
        if p.tied or p.name not in explorable:
            raise fail(f"{where}: space.{p.name} cannot be explored by pbt: it explores "
                       f"per-trial values only ({', '.join(explorable)}); fix it in the "
                       f"stage's 'fixed'")
        if p.type != "float":
            raise fail(f"{where}: space.{p.name} must be a float range (low, high) for pbt")
        if p.when:
            raise fail(f"{where}: space.{p.name}: a pbt stage explores every member's value; "
                       "it takes no 'when'")
    population = raw.get("population", 16)
    if not isinstance(population, int) or isinstance(population, bool) or population < 2:
        raise fail(f"{where}.population={population!r} must be an integer of at least 2")
    if population > MAX_TRIALS:
        raise fail(f"{where}.population={population} is more than {MAX_TRIALS:,} trials")
    if "interval" not in raw:
        raise fail(f"{where}.interval is required for a pbt stage (updates between "
                   "exploit steps)")
    interval = _positive_int(raw["interval"], f"{where}.interval", fail)
    trial = TrialSpec.from_mapping(dict(fixed))
    if trial.n_train is not None:
        updates = planned_updates(trial, trial.n_train)
        if interval >= updates:
            raise fail(f"{where}.interval={interval} must be below the run's {updates} "
                       "updates (else no exploit step happens)")
    quantile = raw.get("quantile", 0.25)
    if not _is_number(quantile) or not 0 < quantile <= 0.5:
        raise fail(f"{where}.quantile={quantile!r} must be a number in (0, 0.5]")
    metric = raw.get("metric", "val_acc")
    if metric not in PBT_METRICS:
        raise fail(f"{where}.metric={metric!r} must be one of {', '.join(PBT_METRICS)}")
    subset = raw.get("metric_subset")
    if subset is not None:
        _positive_int(subset, f"{where}.metric_subset", fail)
        if subset > trial.n_val:
            raise fail(f"{where}.metric_subset={subset} is more than n_val={trial.n_val} "
                       "validation images")
    resample = raw.get("resample_probability", 0.25)
    if not _is_number(resample) or not 0 <= resample <= 1:
        raise fail(f"{where}.resample_probability={resample!r} must be a number in [0, 1]")
    mutations_raw = _table(raw.get("mutations", {}), f"{where}.mutations", fail)
    mutations: dict[str, tuple[float, ...]] = {}
    for name, factors in mutations_raw.items():
        if name not in explored:
            raise fail(f"{where}.mutations.{name}: not explored by this stage (explored: "
                       f"{', '.join(explored)})")
        if (not isinstance(factors, list) or not factors
                or not all(_is_number(f) and f > 0 for f in factors)):
            raise fail(f"{where}.mutations.{name}={factors!r} must be a non-empty list of "
                       "positive factors such as [0.8, 1.2]")
        mutations[name] = tuple(float(f) for f in factors)
    if len({mutations.get(name, DEFAULT_FACTORS) for name in explored}) > 1:
        raise fail(f"{where}.mutations: every explored parameter is perturbed by the same "
                   f"factors (the engine's rule); give one list for each of "
                   f"{', '.join(explored)}")
    return PBTStage(population=population, interval=interval, quantile=float(quantile),
                    metric=metric, metric_subset=subset, mutations=mutations,
                    resample_probability=float(resample))


def _parse_warm_start(raw: Any, where: str, sampler: str, fail: Any) -> WarmStart | None:
    if raw is None:
        return None
    if isinstance(raw, str):
        raw = {"sweep": raw}
    raw = _table(raw, f"{where}.warm_start", fail)
    for key in raw:
        if key not in _WARM_START_KEYS:
            raise fail(f"{where}.warm_start.{key}: unknown key (expected "
                       f"{', '.join(sorted(_WARM_START_KEYS))})")
    if sampler in ("grid", "list", "best"):
        raise fail(f"{where}.warm_start: a {sampler} stage runs a fixed list; warm start "
                   "needs a sampler stage (random, tpe, qmc, gp, cmaes, nsga2)")
    sweep = raw.get("sweep")
    if not isinstance(sweep, str) or not sweep:
        raise fail(f"{where}.warm_start.sweep must name a sweep")
    stage = raw.get("stage")
    if stage is not None and (not isinstance(stage, str) or not stage):
        raise fail(f"{where}.warm_start.stage must name a stage of sweep {sweep!r}")
    top_k = _positive_int(raw.get("top_k", 8), f"{where}.warm_start.top_k", fail)
    db = raw.get("db")
    if db is not None and (not isinstance(db, str) or not db):
        raise fail(f"{where}.warm_start.db must be a database URL or SQLite path")
    return WarmStart(sweep=sweep, stage=stage, top_k=top_k, db=db)


def _parse_narrow(raw: Any, where: str, earlier: Sequence[StageSpec],
                  space: Mapping[str, ParamSpace], fail: Any) -> Narrow | None:
    if raw is None or raw is False:
        return None
    if not earlier:
        raise fail(f"{where}.narrow needs an earlier stage to narrow from")
    if raw is True:
        raw = {}
    raw = _table(raw, f"{where}.narrow", fail)
    for key in raw:
        if key not in _NARROW_KEYS:
            raise fail(f"{where}.narrow.{key}: unknown key (expected "
                       f"{', '.join(sorted(_NARROW_KEYS))})")
    source = raw.get("from", earlier[-1].name)
    if source not in [s.name for s in earlier]:
        raise fail(f"{where}.narrow.from={source!r} must name an earlier stage")
    top_k = _positive_int(raw.get("top_k", 3), f"{where}.narrow.top_k", fail)
    widen = raw.get("widen", 1)
    if not _is_number(widen) or widen < 0:
        raise fail(f"{where}.narrow.widen={widen!r} must be a number of grid steps >= 0")
    if not any(p.numeric for p in space.values()):
        raise fail(f"{where}.narrow: the space has no float or int range to narrow")
    return Narrow(source=source, top_k=top_k, widen=float(widen))


def grid_size(space: Mapping[str, ParamSpace]) -> int:
    """An upper bound on a grid stage's points, from the entries' sizes alone (no point is
    made): the product of each entry's grid size or number of choices."""
    return math.prod((p.grid or 1) if p.numeric else max(1, len(p.choices))
                     for p in space.values())


def grid_points(space: Mapping[str, ParamSpace], fixed: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every grid point once, in a fixed order: the cartesian product of the entries' grid
    values, leaving out conditional entries whose condition does not hold."""
    entries = list(space.values())
    base = [p for p in entries if not p.when]
    conditional = [p for p in entries if p.when]
    points: list[dict[str, Any]] = []
    seen: set[str] = set()
    for combo in itertools.product(*[p.grid_values() for p in base]):
        point: dict[str, Any] = {}
        for p, v in zip(base, combo, strict=True):
            point.update(p.assign(v))
        active = [p for p in conditional if p.active({**fixed, **point})]
        for extra in itertools.product(*[p.grid_values() for p in active]):
            full = dict(point)
            for p, v in zip(active, extra, strict=True):
                full.update(p.assign(v))
            key = repr(sorted(full.items()))
            if key not in seen:
                seen.add(key)
                points.append(full)
    return points


def check_against_images(spec: SweepSpec, image_shape: tuple[int, int, int],
                         num_classes: int) -> None:
    """Build each model shape the spec can produce on these images; a shape that does not fit
    (such as an f that does not divide the image size) is a one-line error naming the field."""
    from numsweep.engine.build import build_network
    from numsweep.engine.sizing import check_augmentation, check_network_memory

    other = [k for k, v in DATASETS.items() if v == tuple(image_shape) and k != spec.dataset]
    if spec.dataset is not None and other:  # images of your own are fine; the other set is not
        raise SweepSpecError(
            f"{spec.origin}: dataset={spec.dataset!r} but the data holds {other[0]} images; "
            f"pass --data with {spec.dataset} (or a folder holding {spec.dataset}.npz)")
    shape_params = ("model", "f", "nf", "nh", "filter_size", "conv_stride", "conv_pad",
                    "translate", "cutout")
    entries = [p for p in spec.space.values()
               if any(n in shape_params for n in p.names)
               and (p.type == "categorical" or (p.type == "int" and p.high is not None
                                                 and p.low is not None
                                                 and p.high - p.low <= 64))]
    values = [p.choices if p.type == "categorical" else
              tuple(range(int(p.low or 0), int(p.high or 0) + 1)) for p in entries]
    rng = np.random.default_rng(0)
    checked: set[str] = set()
    for stage in spec.stages:
        fixed = spec.stage_fixed(stage)
        for combo in itertools.islice(itertools.product(*values), 500):
            params = dict(fixed)
            for p, v in zip(entries, combo, strict=True):
                if p.active(params):
                    params.update(p.assign(v))
            try:
                trial = TrialSpec.from_mapping(params)
            except SpecError:
                continue
            key = repr(sorted((k, getattr(trial, k)) for k in shape_params))
            if key in checked:
                continue
            checked.add(key)
            try:
                check_augmentation(trial, image_shape)
                check_network_memory(trial, image_shape, num_classes)
                build_network(trial, image_shape, num_classes, rng)
            except ValueError as exc:
                named = re.match(r"(\w+)=", str(exc))
                bad = [p.name for p in entries if named and named.group(1) in p.names]
                field_name = (f"space.{bad[0]}" if bad else
                              f"stages.{stage.name}.fixed" if stage.fixed else "fixed")
                raise SweepSpecError(f"{spec.origin}: {field_name}: {exc}") from None
