"""Extend a sweep: more trials for a sampler stage (``STAGE.n_trials=+16``), also after the
sweep finished, run as a resume runs (:func:`resume_sweep`: the stored spec and data, the
same proposal lag, nothing run twice)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from numsweep.storage import Storage
from numsweep.sweeps.events import StageSummary
from numsweep.sweeps.guards import check_sweep_data
from numsweep.sweeps.runner import resume_sweep, stored_spec
from numsweep.sweeps.spec import SweepSpec, SweepSpecError

EXTENDABLE = ("random", "tpe", "qmc", "gp", "cmaes", "nsga2")
"""The samplers whose stages can take more trials (grid, list and best stages run a fixed
list)."""


def parse_extension(spec: SweepSpec, overrides: Mapping[str, str]) -> dict[str, int]:
    """Trials to add per stage from ``STAGE.n_trials=+N`` (or ``=N``, the new total)."""
    if not overrides:
        raise SweepSpecError(f"sweep {spec.name!r}: say what to add, e.g. "
                             f"{spec.stages[0].name}.n_trials=+16")
    added: dict[str, int] = {}
    names = [s.name for s in spec.stages]
    for key, value in overrides.items():
        stage_name, _, field = key.partition(".")
        if field != "n_trials":
            raise SweepSpecError(f"extend {key}={value}: only STAGE.n_trials can be extended "
                                 f"(e.g. {names[0]}.n_trials=+16); other changes make a new "
                                 "sweep (sweep run ... name=NEW)")
        if stage_name not in names:
            raise SweepSpecError(f"extend {key}={value}: no stage named {stage_name!r} "
                                 f"(stages: {', '.join(names)})")
        stage = spec.stages[names.index(stage_name)]
        if stage.sampler not in EXTENDABLE:
            raise SweepSpecError(f"extend {key}={value}: stage {stage_name} is a "
                                 f"{stage.sampler} stage (a fixed list); only stages of "
                                 f"{', '.join(EXTENDABLE)} take more trials")
        match = re.fullmatch(r"\s*(\+?)(\d+)\s*", str(value))
        current = stage.n_trials or 0
        if match is None:
            raise SweepSpecError(f"extend {key}={value}: give +N (trials to add) or N (the new "
                                 f"total, above {current})")
        number = int(match.group(2))
        more = number if match.group(1) else number - current
        if more < 1:
            raise SweepSpecError(f"extend {key}={value}: stage {stage_name} plans {current} "
                                 f"trials already; give a larger total or +N")
        added[stage_name] = more
    return added


def uses_results(spec: SweepSpec, later: str, earlier: str) -> bool:
    """Whether stage ``later`` was planned from the results of stage ``earlier``: a best
    stage picking from it, a stage narrowed from it or warm-started from it."""
    names = [s.name for s in spec.stages]
    stage = spec.stages[names.index(later)]
    if stage.sampler == "best" and earlier in (stage.source or names[: names.index(later)]):
        return True
    if stage.narrow is not None and stage.narrow.source == earlier:
        return True
    warm = stage.warm_start
    return (warm is not None and warm.sweep == spec.name and warm.db is None
            and warm.stage == earlier)


def extend_sweep(name: str, storage: Storage, overrides: Mapping[str, str], *,
                 data_source: str | None = None, **resume: Any) -> list[StageSummary]:
    """Add trials to sampler stages of sweep ``name`` and run them (and anything else left)
    as :func:`resume_sweep` does, with ``resume`` its keyword arguments. Refused, before
    anything changes, when the data is not the sweep's, a stage is not a sampler stage, or a
    later stage was already planned from the stage's results (:func:`uses_results`: its
    choice would not see the new trials; warm-start a new sweep from this one instead)."""
    from numsweep.sweeps.dataset_cache import cached_dataset

    spec, stored_data, _ = stored_spec(storage, name)
    added = parse_extension(spec, overrides)
    record = storage.get_sweep(name)
    source = data_source or stored_data
    check_sweep_data(storage, record, cached_dataset(source), source)
    planned = {st.index: st for st in storage.list_stages(record.id)}
    names = [s.name for s in spec.stages]
    for stage_name in added:
        index = names.index(stage_name)
        later = [spec.stages[i].name for i in planned
                 if i > index and uses_results(spec, spec.stages[i].name, stage_name)]
        if later:
            raise SweepSpecError(
                f"extend {stage_name}.n_trials: stage {later[0]} was already planned from the "
                f"results of {stage_name}, so it would not see the new trials; extend the "
                f"last stage that ran, or start a new sweep warm-started from this one "
                f"(warm_start = {{ sweep = \"{name}\", stage = \"{stage_name}\" }})")
    raw = spec.to_dict()
    for stage_name, more in added.items():
        index = names.index(stage_name)
        stage = spec.stages[index]
        raw["stages"][index]["n_trials"] = (stage.n_trials or 0) + more
        rec = planned.get(index)
        if rec is not None:
            plan = rec.plan
            n_configs = (plan.n_configs or 0) + more
            storage.merge_stage_space(
                rec.id, {"n_configs": n_configs, "planned": n_configs * stage.replicates},
                note=f"extended by {more} trials (sweep extend)")
    stored = {**record.spec, "stages": raw["stages"]}
    storage.set_sweep_spec(record.id, stored)
    return resume_sweep(name, storage, data_source=source, **resume)
