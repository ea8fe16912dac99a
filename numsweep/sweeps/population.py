"""A pbt stage's population before it trains: each member's initial explored values, drawn
from the stage's space with the stage's own seeded generator (so every process, and a
resume, plans the same population), and the engine's settings made from the stage's."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from numsweep.engine import TrialSpec
from numsweep.sweeps.seeds import SAMPLER_SEED_NUMBER, stage_data_seed, trial_seed
from numsweep.sweeps.spec import ParamSpace, StageSpec, SweepSpecError

if TYPE_CHECKING:
    from numsweep.engine.pbt import PBTSettings

PBT_SEED_NUMBER = 2**31 - 3
"""The place :func:`trial_seed` draws a pbt stage's exploit decisions' seed from."""


def initial_values(space: Mapping[str, ParamSpace], population: int, sweep_seed: int,
                   stage_index: int) -> list[dict[str, float]]:
    """Each member's explored values: uniform in each range (in log space when ``log``),
    drawn member by member in the space's order from the stage's sampler seed."""
    rng = np.random.default_rng(trial_seed(sweep_seed, stage_index, SAMPLER_SEED_NUMBER))
    members = []
    for _ in range(population):
        values = {}
        for p in space.values():
            assert p.low is not None and p.high is not None
            if p.log:
                drawn = math.exp(rng.uniform(math.log(p.low), math.log(p.high)))
            else:
                drawn = float(rng.uniform(p.low, p.high))
            values[p.name] = float(min(max(drawn, p.low), p.high))
        members.append(values)
    return members


def pbt_settings(stage: StageSpec, space: Mapping[str, ParamSpace], sweep_seed: int,
                 stage_index: int) -> PBTSettings:
    """The engine's settings of a pbt stage: its exploit rule and the bounds of its space."""
    from numsweep.engine.pbt import Bound, PBTSettings

    pbt = stage.pbt
    assert pbt is not None
    factors = {pbt.factors(name) for name in space}
    if len(factors) > 1:
        raise SweepSpecError(f"stages.{stage.name}.mutations: every explored parameter is "
                             f"perturbed by the same factors; give one list for all of "
                             f"{', '.join(space)}")
    bounds = tuple(Bound(p.name, float(p.low or 0.0), float(p.high or 0.0), p.log)
                   for p in space.values())
    return PBTSettings(interval=pbt.interval, quantile=pbt.quantile, metric=pbt.metric,
                       metric_subset=pbt.metric_subset, factors=next(iter(factors)),
                       resample_probability=pbt.resample_probability, bounds=bounds,
                       seed=trial_seed(sweep_seed, stage_index, PBT_SEED_NUMBER))


def member_specs(seed: int, index: int, fixed: Mapping[str, Any],
                 initial: Sequence[Mapping[str, Any]], device: str | None = None
                 ) -> list[TrialSpec]:
    """Every member's spec: the stage's fixed values, its initial values, its own seed and
    the stage's data seed (one data stream: the population trains as one group)."""
    specs = []
    for slot, values in enumerate(initial):
        seeds = {"seed": trial_seed(seed, index, slot),
                 "data_seed": (fixed["data_seed"] if fixed.get("data_seed") is not None
                               else stage_data_seed(seed, index))}
        params = {**fixed, **values, **seeds}
        if device is not None:
            params["device"] = device
        specs.append(TrialSpec.from_mapping(params))
    return specs


def explored_values(params: Mapping[str, Any], space: Mapping[str, ParamSpace]
                    ) -> dict[str, float]:
    """The explored values among a member's parameters."""
    return {name: float(params[name]) for name in space if name in params}
