"""Sweep specs: TOML files with fixed parameters, a search space and stages.

Example::

    name = "lambda-coarse"
    seed = 0

    [fixed]
    hidden = [50]
    cycles = 2

    [space]
    lam = { type = "float", low = 1e-5, high = 1e-1, log = true, grid = 8 }

    [[stages]]
    name = "coarse"
    sampler = "grid"
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from numsweep.engine.spec import SpecError, TrialSpec, coerce, parameter_names

SAMPLERS = ("grid", "random", "tpe")


class SweepSpecError(ValueError):
    """A sweep spec is invalid; the message names the file and the field."""


@dataclass(frozen=True)
class ParamSpace:
    """One searched parameter: a float or int range (linear or log), or categorical choices.

    ``grid`` is the number of grid points for the grid sampler (evenly spaced, in log10 space
    when ``log``); ``choices`` are the values of a categorical parameter.
    """

    name: str
    type: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    grid: int | None = None
    choices: tuple[Any, ...] = ()

    def grid_values(self) -> list[Any]:
        if self.type == "categorical":
            return list(self.choices)
        if self.grid is None:
            raise SweepSpecError(f"space.{self.name}: a grid stage needs 'grid' (number of points)")
        assert self.low is not None and self.high is not None
        if self.log:
            values = np.logspace(math.log10(self.low), math.log10(self.high), self.grid)
        else:
            values = np.linspace(self.low, self.high, self.grid)
        values = np.clip(values, self.low, self.high)
        if self.type == "int":
            return sorted({round(v) for v in values})
        return [float(v) for v in values]


@dataclass(frozen=True)
class StageSpec:
    name: str
    sampler: str
    n_trials: int | None = None
    fixed: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SweepSpec:
    name: str
    seed: int
    fixed: Mapping[str, Any]
    space: Mapping[str, ParamSpace]
    stages: tuple[StageSpec, ...]
    description: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "seed": self.seed, "description": self.description,
            "fixed": dict(self.fixed),
            "space": {k: _space_dict(v) for k, v in self.space.items()},
            "stages": [{"name": s.name, "sampler": s.sampler, "n_trials": s.n_trials,
                        "fixed": dict(s.fixed)} for s in self.stages],
        }

    def with_overrides(self, overrides: Mapping[str, str]) -> SweepSpec:
        """Apply ``key=value`` overrides to the fixed parameters (validated)."""
        fixed = dict(self.fixed)
        for key, raw in overrides.items():
            if key in ("name", "seed"):
                continue
            fixed[key] = raw
        changed = {k: v for k, v in overrides.items() if k in ("name", "seed")}
        return parse_spec({**self.to_dict(), "fixed": fixed, **changed}, "<overrides>")


def _space_dict(p: ParamSpace) -> dict[str, Any]:
    out: dict[str, Any] = {"type": p.type}
    if p.type == "categorical":
        out["choices"] = list(p.choices)
    else:
        out.update(low=p.low, high=p.high, log=p.log)
        if p.grid is not None:
            out["grid"] = p.grid
    return out


def load_spec(path: str | Path, overrides: Mapping[str, str] | None = None) -> SweepSpec:
    """Read and validate a TOML sweep spec; ``overrides`` change its fixed parameters."""
    path = Path(path)
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


_TOP_KEYS = {"name", "seed", "description", "fixed", "space", "stages"}
_SPACE_KEYS = {"type", "low", "high", "log", "grid", "choices"}
_STAGE_KEYS = {"name", "sampler", "n_trials", "fixed"}


def parse_spec(raw: Mapping[str, Any], origin: str) -> SweepSpec:
    def fail(message: str) -> SweepSpecError:
        return SweepSpecError(f"{origin}: {message}")

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
    space = {k: _parse_space(k, v, fail) for k, v in _table(raw.get("space", {}), "space",
                                                             fail).items()}
    overlap = set(space) & set(fixed)
    if overlap:
        raise fail(f"{', '.join(sorted(overlap))} is both fixed and searched")
    stages_raw = raw.get("stages")
    if not isinstance(stages_raw, list) or not stages_raw:
        raise fail("'stages' must be a non-empty list of [[stages]] tables")
    stages = tuple(_parse_stage(i, s, space, fixed, fail) for i, s in enumerate(stages_raw))
    names = [s.name for s in stages]
    if len(set(names)) != len(names):
        raise fail(f"stage names must be unique, got {names}")
    return SweepSpec(name=name, seed=seed, fixed=fixed, space=space, stages=stages,
                     description=str(raw.get("description", "")))


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


def _parse_space(name: str, raw: Any, fail: Any) -> ParamSpace:
    if name not in parameter_names():
        raise fail(f"space.{name}: unknown parameter")
    raw = _table(raw, f"space.{name}", fail)
    for key in raw:
        if key not in _SPACE_KEYS:
            expected = ", ".join(sorted(_SPACE_KEYS))
            raise fail(f"space.{name}.{key}: unknown key (expected {expected})")
    kind = raw.get("type", "categorical" if "choices" in raw else "float")
    if kind == "categorical":
        choices = raw.get("choices")
        if not isinstance(choices, Sequence) or isinstance(choices, str) or not choices:
            raise fail(f"space.{name}.choices must be a non-empty list")
        for choice in choices:
            _check_value(name, choice, f"space.{name}.choices", fail)
        return ParamSpace(name, "categorical", choices=tuple(
            tuple(c) if isinstance(c, list) else c for c in choices))
    if kind not in ("float", "int"):
        raise fail(f"space.{name}.type={kind!r} must be float, int or categorical")
    low, high, log = raw.get("low"), raw.get("high"), raw.get("log", False)
    for key, v in (("low", low), ("high", high)):
        if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v):
            raise fail(f"space.{name}.{key} must be a finite number")
    if low > high:
        raise fail(f"space.{name}: low={low} is above high={high}")
    if log and low <= 0:
        raise fail(f"space.{name}: a log range needs low > 0, got {low}")
    grid = raw.get("grid")
    if grid is not None and (not isinstance(grid, int) or isinstance(grid, bool) or grid < 1):
        raise fail(f"space.{name}.grid={grid!r} must be a positive integer (number of points)")
    for v in (low, high):
        _check_value(name, v, f"space.{name}", fail)
    if kind == "int" and not (float(low).is_integer() and float(high).is_integer()):
        raise fail(f"space.{name}: an int range needs integer low and high")
    return ParamSpace(name, kind, low=low, high=high, log=bool(log), grid=grid)


def _check_value(name: str, value: Any, where: str, fail: Any) -> None:
    try:
        TrialSpec.from_mapping({name: value})
    except SpecError as exc:
        raise fail(f"{where}: {exc}") from None


def _parse_stage(index: int, raw: Any, space: Mapping[str, ParamSpace],
                 fixed: Mapping[str, Any], fail: Any) -> StageSpec:
    raw = _table(raw, f"stages[{index}]", fail)
    for key in raw:
        if key not in _STAGE_KEYS:
            raise fail(f"stages[{index}].{key}: unknown key "
                       f"(expected {', '.join(sorted(_STAGE_KEYS))})")
    name = raw.get("name", f"stage{index}")
    sampler = raw.get("sampler", "grid")
    if sampler not in SAMPLERS:
        raise fail(f"stages[{index}].sampler={sampler!r} must be one of {', '.join(SAMPLERS)}")
    n_trials = raw.get("n_trials")
    if n_trials is not None and (not isinstance(n_trials, int) or n_trials < 1):
        raise fail(f"stages[{index}].n_trials={n_trials!r} must be a positive integer")
    if sampler == "grid":
        for p in space.values():
            if p.type != "categorical" and p.grid is None:
                raise fail(f"stages[{index}] is a grid stage but space.{p.name} has no 'grid' "
                           "(number of points)")
    elif n_trials is None:
        raise fail(f"stages[{index}].n_trials is required for the {sampler} sampler")
    stage_fixed = _check_params(raw.get("fixed", {}), f"stages[{index}].fixed", fail)
    try:
        TrialSpec.from_mapping({**fixed, **stage_fixed})
    except SpecError as exc:
        raise fail(f"stages[{index}].fixed: {exc}") from None
    return StageSpec(name=str(name), sampler=sampler, n_trials=n_trials, fixed=stage_fixed)
