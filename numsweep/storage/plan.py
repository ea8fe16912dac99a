"""A stage's plan as the first process to reach the stage stores it (``ns_stages.plan_json``),
so that every process runs the same plan, and the one description of its searched ranges
that ``sweep show`` and the report print."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class StagePlan:
    """What a stage searches and runs.

    ``space`` holds each searched entry as stored (``ParamSpace.to_dict``: type, low, high,
    log, grid, choices, when); ``configs`` the configurations listed or chosen (grid points,
    ``configs``, the ``best`` one); ``n_configs`` how many configurations the stage runs
    (fewer once a time budget cut it); ``reused`` the ids of earlier trials it counts as its
    own; ``setup_by`` the process that stored it and adds the reused trials to the Optuna
    study, ``study_ready`` once that is done; ``group_size`` how many of its trials train
    together as one fused group at most (1: one at a time; None: stored by an older numsweep,
    which trained them one at a time), ``group_auto`` whether that was chosen
    automatically and ``group_pace`` the measurement that chose it (seconds per
    trial-update by group size; empty when none was made, or stored by an older numsweep).
    A ``pbt`` stage's ``configs`` are its members' initial values; ``exploit_seconds`` and
    ``exploit_steps`` its population's time in exploit steps and their number, once it
    ended (None before).
    """

    space: dict[str, dict[str, Any]] = field(default_factory=dict)
    fixed: dict[str, Any] = field(default_factory=dict)
    planned: int | None = None
    reused: tuple[int, ...] = ()
    configs: tuple[dict[str, Any], ...] = ()
    n_configs: int | None = None
    setup_by: str = ""
    study_ready: bool = True
    group_size: int | None = None
    group_auto: bool = False
    group_pace: dict[int, float] = field(default_factory=dict)
    grouping: str | None = None
    exploit_seconds: float | None = None
    exploit_steps: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """The stored JSON form (the same keys numsweep has always stored)."""
        out: dict[str, Any] = {"space": {k: dict(v) for k, v in self.space.items()},
                               "fixed": dict(self.fixed)}
        if self.planned is not None:
            out["planned"] = self.planned
        out["reused"] = list(self.reused)
        out["configs"] = [dict(c) for c in self.configs]
        if self.n_configs is not None:
            out["n_configs"] = self.n_configs
        if self.setup_by:
            out["setup_by"] = self.setup_by
        out["study_ready"] = self.study_ready
        if self.group_size is not None:
            out["group_size"] = self.group_size
            out["group_auto"] = self.group_auto
        if self.group_pace:
            out["group_pace"] = {str(k): v for k, v in sorted(self.group_pace.items())}
        if self.grouping is not None:
            out["grouping"] = self.grouping
        if self.exploit_seconds is not None:
            out["exploit_seconds"] = self.exploit_seconds
        if self.exploit_steps is not None:
            out["exploit_steps"] = self.exploit_steps
        return out

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> StagePlan:
        """Any stored form: the full plan, or (older databases) the searched ranges alone."""
        if not isinstance(raw.get("space"), dict):
            return cls(space={k: dict(v) for k, v in raw.items() if isinstance(v, dict)})
        return cls(space={k: dict(v) for k, v in raw["space"].items()},
                   fixed=dict(raw.get("fixed", {})),
                   planned=None if raw.get("planned") is None else int(raw["planned"]),
                   reused=tuple(int(i) for i in raw.get("reused", [])),
                   configs=tuple(dict(c) for c in raw.get("configs", [])),
                   n_configs=None if raw.get("n_configs") is None else int(raw["n_configs"]),
                   setup_by=str(raw.get("setup_by", "")),
                   study_ready=bool(raw.get("study_ready", True)),
                   group_size=None if raw.get("group_size") is None else int(raw["group_size"]),
                   group_auto=bool(raw.get("group_auto", False)),
                   group_pace=_pace(raw.get("group_pace")),
                   grouping=None if raw.get("grouping") is None else str(raw["grouping"]),
                   exploit_seconds=None if raw.get("exploit_seconds") is None
                   else float(raw["exploit_seconds"]),
                   exploit_steps=None if raw.get("exploit_steps") is None
                   else int(raw["exploit_steps"]))

    def describe_pace(self) -> str:
        """The measurement that chose the group size, e.g. ``measured per trial-update:
        K=1 2.10 ms, 2 2.40 ms, 4 1.61 ms`` (empty without one)."""
        if not self.group_pace:
            return ""
        sizes = sorted(self.group_pace)
        return "measured per trial-update: " + ", ".join(
            f"{'K=' if i == 0 else ''}{k} {self.group_pace[k] * 1e3:.2f} ms"
            for i, k in enumerate(sizes))

    def describe(self, sampler: str = "grid") -> str:
        """The plan in words: ranges, fixed values, trials planned and reused. A ``best``
        stage searches nothing: it trains the best trial of the stages before again."""
        words = ["nothing: trains the best trial of the stages before again"
                 if sampler == "best" else describe_space(self.space, sampler)]
        if self.fixed:
            words.append("fixed " + ", ".join(f"{k}={_cell(v)}" for k, v in self.fixed.items()))
        if self.planned is not None:
            words.append(f"{self.planned} new {_trials(self.planned)} planned")
        if self.reused:
            words.append(f"{len(self.reused)} earlier {_trials(len(self.reused))} reused")
        if self.group_size is not None and self.group_size > 1:
            kind = "slot groups of" if self.grouping == "slots" else "fused groups of up to"
            words.append(f"{kind} {self.group_size}"
                         + (" (automatic)" if self.group_auto else ""))
        return "; ".join(words)


def _pace(raw: Any) -> dict[int, float]:
    """A stored measurement ({"8": seconds, ...}); nothing for an older plan or a bad one."""
    if not isinstance(raw, dict):
        return {}
    try:
        return {int(k): float(v) for k, v in raw.items()}
    except (TypeError, ValueError):
        return {}


def _trials(n: int) -> str:
    return "trial" if n == 1 else "trials"


def describe_space(space: Mapping[str, Mapping[str, Any]], sampler: str = "grid") -> str:
    """A stage's searched ranges in words, e.g. ``lam: 1e-05 to 0.1 (log, grid of 8)``; the
    number of grid points only for a grid stage (other samplers draw from the range)."""
    parts = []
    for name, rule in space.items():
        if "choices" in rule:
            text = f"{name}: one of {', '.join(_cell(c) for c in rule['choices'])}"
        elif "low" in rule and "high" in rule:
            extra = [w for w in ("log" if rule.get("log") else "",
                                 f"grid of {rule['grid']}"
                                 if rule.get("grid") and sampler == "grid" else "",
                                 f"step {rule['step']}" if rule.get("step") else "") if w]
            text = (f"{name}: {_cell(rule['low'])} to {_cell(rule['high'])}"
                    + (f" ({', '.join(extra)})" if extra else ""))
        else:
            text = f"{name}: {json.dumps(rule)}"
        if rule.get("when"):
            text += " when " + ", ".join(f"{k} in {_cell(v)}" for k, v in rule["when"].items())
        parts.append(text)
    return "; ".join(parts) if parts else "(nothing searched)"


def _cell(value: Any) -> str:
    """4 significant digits; whole numbers in full; lists as ``[4,10]``."""
    if isinstance(value, float):
        if math.isnan(value):
            return ""
        return str(int(value)) if value.is_integer() and abs(value) < 1e15 else f"{value:.4g}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(str(v) for v in value) + "]"
    return str(value)
