"""A stage's plan: worked out once every earlier stage is finished (its space, narrowed or
not, its configuration queue, the earlier trials it reuses, its group size) and stored by
the first process that reaches it, so that every process runs the same plan
(:func:`stage_plan`); cut down when a time budget is used up; summed up at its end."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from numsweep.defaults import GROUPINGS, default_grouping
from numsweep.engine import TrialSpec
from numsweep.storage import SlotRecord, StagePlan, StageRecord, TrialRecord, TrialState
from numsweep.sweeps.context import Plan, ProcessSettings, SweepContext
from numsweep.sweeps.events import StageSummary
from numsweep.sweeps.grouping import GroupChoice, auto_group_size
from numsweep.sweeps.narrowing import narrow_space
from numsweep.sweeps.objectives import (
    Objective,
    chosen,
    describe,
    mean_values,
    objective_values,
    ranked,
)
from numsweep.sweeps.optuna_bridge import entry_values, inside
from numsweep.sweeps.population import initial_values
from numsweep.sweeps.slots import slot_counts
from numsweep.sweeps.spec import (
    ParamSpace,
    StageSpec,
    SweepSpecError,
    explored_entries,
    grid_points,
)
from numsweep.sweeps.warm_start import config_key, warm_configs


def source_trials(ctx: SweepContext, names: Sequence[str], objectives: Sequence[Objective]
                  ) -> list[TrialRecord]:
    """The complete trials of stages ``names`` (with the ones they reused) that measured
    every objective."""
    out: list[TrialRecord] = []
    for name in names:
        out += ctx.storage.get_trials(ctx.spec.name, stage=name, states=[TrialState.COMPLETE])
        out += ctx.reused.get(name, [])
    unique = {t.id: t for t in out}
    return [t for _, t in sorted(unique.items())
            if objective_values(t.metrics, objectives) is not None]


def _top_trials(trials: Sequence[TrialRecord], objectives: Sequence[Objective],
                top_k: int) -> list[TrialRecord]:
    """The ``top_k`` best trials by one objective; with several, the Pareto front."""
    values = [objective_values(t.metrics, objectives) or () for t in trials]
    best = ranked(list(trials), values, objectives)
    return best[:top_k] if len(objectives) == 1 else best


def _space_for(ctx: SweepContext, stage: StageSpec) -> tuple[dict[str, ParamSpace], str]:
    space = dict(ctx.spec.space)
    if stage.narrow is None:
        return space, ""
    source = stage.narrow.source
    objectives = ctx.spec.stage_objectives(stage)
    trials = source_trials(ctx, [source], objectives)
    top = _top_trials(trials, objectives, stage.narrow.top_k)
    space, note = narrow_space(space, [t.params for t in top], ctx.spaces[source],
                               stage.narrow.widen, source, available=len(trials))
    if len(objectives) > 1 and top:
        note = (f"the {len(top)} trials on the Pareto front of {source} "
                f"({describe(objectives)}; ids {', '.join(str(t.id) for t in top)}): " + note)
    return space, note


def _best_config(ctx: SweepContext, stage: StageSpec, index: int
                 ) -> tuple[dict[str, Any], str]:
    spec = ctx.spec
    sources = list(stage.source) or [s.name for s in spec.stages[:index]]
    objectives = spec.stage_objectives(stage)
    trials = source_trials(ctx, sources, objectives)
    if not trials:
        raise SweepSpecError(f"{spec.origin}: stages.{stage.name}: no complete trial in "
                             f"{', '.join(sources)} to take the best configuration from")
    groups: dict[str, list[TrialRecord]] = {}
    for t in trials:
        key = json.dumps({n: t.params.get(n) for n in spec.searched}, sort_keys=True)
        groups.setdefault(key, []).append(t)
    # configurations in the order of their first trial: ties go to the earliest
    items = sorted(groups.items(), key=lambda kv: min(t.id for t in kv[1]))
    means = [mean_values([t.metrics for t in group], objectives) or () for _, group in items]
    key, best = chosen(items, means, objectives, stage.pick)
    mean = mean_values([t.metrics for t in best], objectives) or ()
    params = json.loads(key)
    first = min(best, key=lambda t: t.id)
    replay = ""
    if first.stage in [s.name for s in spec.stages if s.sampler == "pbt"]:
        # a pbt member: its schedule from the root ancestor's values, retrained alone
        params, replay = _pbt_schedule(ctx, first, params)
    shown = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                      for k, v in params.items() if k != "hp_changes")  # told in words
    seeds = f" (mean of {len(best)} seeds)" if len(best) > 1 else ""
    scores = ", ".join(f"{o.metric} {v:.4g}" if o.metric != "val_acc" else f"val_acc {v:.4f}"
                       for o, v in zip(objectives, mean, strict=True))
    front = ""
    if len(objectives) > 1:
        size = len(ranked(items, means, objectives))
        front = (f" (pick = {stage.pick} on the Pareto front of {size} configurations "
                 f"over {describe(objectives)})")
    note = (f"best of {', '.join(sources)}{front}: trial {min(t.id for t in best)} "
            f"{scores}{seeds} with {shown}{replay}; retrained with "
            f"{', '.join(f'{k}={v}' for k, v in stage.fixed.items()) or 'the same settings'}")
    return {k: v for k, v in params.items() if k not in stage.fixed}, note


def _pbt_schedule(ctx: SweepContext, trial: TrialRecord, params: Mapping[str, Any]
                  ) -> tuple[dict[str, Any], str]:
    """The configuration that retrains pbt member ``trial``'s schedule alone from scratch:
    its root ancestor's initial values and the changes of its lineage (``hp_changes``)."""
    from numsweep.sweeps.lineage import member_history

    history = member_history(ctx.storage, trial)
    if history is None:
        return dict(params), ""
    out = {**params, **history.initial,
           "hp_changes": [list(change) for change in history.changes]}
    return out, (f" (pbt member; its schedule of {len(history.changes)} changes from the "
                 f"values of member {history.root} at update 0)")


def _reusable(ctx: SweepContext, stage: StageSpec, space: Mapping[str, ParamSpace],
              fixed: Mapping[str, Any]) -> list[TrialRecord]:
    if stage.narrow is None or not stage.reuse or stage.replicates > 1 \
            or stage.sampler in ("list", "best"):
        return []
    source = ctx.stage(stage.narrow.source)
    if ctx.spec.stage_fixed(source) != dict(fixed):
        return []
    trials = source_trials(ctx, [source.name], ctx.spec.stage_objectives(stage))
    return [t for t in trials if inside(space, t.params, fixed)]


def _store_plan(ctx: SweepContext, index: int, stage: StageSpec) -> StageRecord:
    """Work out the stage's plan (every earlier stage is finished) and store it; when
    another process stored one first, that one is returned."""
    fixed = ctx.spec.stage_fixed(stage)
    space, note = _space_for(ctx, stage)
    queue: list[dict[str, Any]] = [dict(c) for c in stage.configs]
    if stage.sampler == "best":
        best, note = _best_config(ctx, stage, index)
        queue = [best]
        space = {k: p for k, p in space.items() if not set(p.names) & set(stage.fixed)}
    elif stage.sampler == "pbt":  # the population's initial values, planned once
        assert stage.pbt is not None
        space = explored_entries(space, stage)
        queue = initial_values(space, stage.pbt.population, ctx.spec.seed, index)
    reused = _reusable(ctx, stage, space, fixed)
    if stage.sampler == "grid":
        points = grid_points(space, fixed)
        done = [json.dumps(entry_values(space, t.params, fixed), sort_keys=True)
                for t in reused]
        keys = [json.dumps(entry_values(space, p, fixed), sort_keys=True) for p in points]
        reused = [t for t, k in zip(reused, done, strict=True) if k in keys]
        taken = {json.dumps(entry_values(space, t.params, fixed), sort_keys=True)
                 for t in reused}
        listed = {json.dumps(entry_values(space, c, fixed), sort_keys=True) for c in queue}
        queue += [p for p, k in zip(points, keys, strict=True)
                  if k not in taken and k not in listed]
        # n_trials counts new trials: the reused ones come on top
        queue = queue if stage.n_trials is None else queue[: stage.n_trials]
    elif stage.sampler not in ("list", "best") and stage.warm_start is not None:
        assert stage.n_trials is not None
        warm, warm_note = warm_configs(
            stage.warm_start, ctx.storage, space, fixed,
            ctx.spec.stage_objectives(stage), room=stage.n_trials - len(queue),
            taken_already=[config_key(space, c, fixed) for c in queue])
        queue += warm
        note = (note + "; " if note else "") + warm_note
    n_configs = (len(queue) if stage.sampler in ("grid", "list", "best", "pbt")
                 else stage.n_trials or 0)
    queue = queue[:n_configs]
    if reused:
        note = (note + "; " if note else "") + (
            f"reuses {len(reused)} trials of {stage.narrow.source if stage.narrow else ''} "
            f"inside the narrowed range (ids {', '.join(str(t.id) for t in reused)}) "
            f"and trains {n_configs * stage.replicates} new")
    # a pbt population is one fused group: nothing to measure or choose
    choice = (GroupChoice(n_configs) if stage.sampler == "pbt"
              else _plan_group_size(ctx, stage, n_configs * stage.replicates))
    plan = StagePlan(
        space={k: p.to_dict() for k, p in space.items()}, fixed=dict(stage.fixed),
        planned=n_configs * stage.replicates, reused=tuple(t.id for t in reused),
        configs=tuple(queue), n_configs=n_configs,
        # the process that stores the plan adds the reused trials to the study
        setup_by=ctx.settings.name, study_ready=not reused,
        group_size=choice.size, group_auto=ctx.settings.group_size is None,
        group_pace=choice.pace,
        grouping="batch" if stage.sampler == "pbt" else (
            ctx.settings.grouping or default_grouping(stage.waits_for_results)))
    return ctx.storage.get_or_create_stage(ctx.sweep.id, index, stage.name,
                                           stage.sampler, plan.to_dict(), note)


def _plan_group_size(ctx: SweepContext, stage: StageSpec, trials: int) -> GroupChoice:
    """The stage's group size: ``--group-size``, or chosen from the stage's size, the
    jobs, the free memory and a measurement of what pays here, whatever the sampler (see
    :func:`grouping.auto_group_size`)."""
    if ctx.settings.group_size is not None:
        return GroupChoice(ctx.settings.group_size)
    try:
        spec = TrialSpec.from_mapping(ctx.spec.stage_fixed(stage))
    except ValueError:
        return GroupChoice(1)
    dataset = ctx.data.dataset
    return auto_group_size(spec, trials, ctx.pool.jobs, dataset.image_shape,
                           len(dataset.classes), threads=ctx.settings.threads)


def check_grouping(grouping: str | None) -> str | None:
    if grouping is not None and grouping not in GROUPINGS:
        raise SweepSpecError(f"--grouping must be one of {', '.join(GROUPINGS)}, "
                             f"got {grouping!r}")
    return grouping


def exec_grouping(settings: ProcessSettings, plan: Plan) -> str:
    """How this process forms the stage's groups: ``--grouping`` when given, else the
    stage's stored choice (batch for a stage stored by an older numsweep)."""
    return settings.grouping or plan.stored.grouping or "batch"


def exec_group_size(settings: ProcessSettings, plan: Plan) -> int:
    """How many claimed trials this process trains together: ``--group-size`` when
    given, else the stage's stored choice (1 for a stage stored by an older numsweep)."""
    if settings.group_size is not None:
        return settings.group_size
    return plan.stored.group_size or 1


def stage_plan(ctx: SweepContext, index: int, stage: StageSpec) -> Plan:
    """The stage's plan as stored (by this process or the first one to reach it)."""
    rec = ctx.storage.get_stage(ctx.sweep.id, index)
    if rec is None:
        rec = _store_plan(ctx, index, stage)
    stored = rec.plan
    if rec.name != stage.name or stored.n_configs is None:
        raise SweepSpecError(f"stage {index} of sweep {ctx.spec.name!r} in "
                             f"{ctx.storage.shown_url} is {rec.name!r}, stored by another "
                             f"spec or an older numsweep: it cannot be continued")
    space = {name: ParamSpace.from_dict(name, d) for name, d in stored.space.items()}
    ids = list(stored.reused)
    reused = ctx.storage.get_trials(trial_ids=ids) if ids else []
    ctx.spaces[stage.name] = space
    ctx.reused[stage.name] = reused
    return Plan(rec.id, stored, space, ctx.spec.stage_fixed(stage), reused, rec.note)


def planned_configs(ctx: SweepContext, plan: Plan, index: int) -> int:
    """The stage's planned configurations (fewer once a time budget cut the stage)."""
    rec = ctx.storage.get_stage(ctx.sweep.id, index)
    stored = None if rec is None else rec.plan.n_configs
    return plan.n_configs if stored is None else stored


def cut(ctx: SweepContext, index: int, stage: StageSpec, proposed: int) -> int:
    """The time budget is used up: the stage keeps the configurations proposed so far."""
    rec = ctx.storage.get_stage(ctx.sweep.id, index)
    assert rec is not None
    left = ((rec.plan.n_configs or 0) - proposed) * stage.replicates
    if left > 0:  # one atomic update of the plan and the note
        ctx.storage.merge_stage_space(
            rec.id, {"n_configs": proposed, "planned": proposed * stage.replicates},
            note=f"time budget used up: {left} planned trials not run")
    return proposed


def stage_summary(ctx: SweepContext, index: int, stage: StageSpec, plan: Plan,
                  slots: Mapping[int, SlotRecord]) -> StageSummary:
    """What the finished stage planned, how its trials ended, and its best trial."""
    objectives = ctx.spec.stage_objectives(stage)
    trials = source_trials(ctx, [stage.name], objectives)
    values = [objective_values(t.metrics, objectives) or () for t in trials]
    best = chosen(trials, values, objectives, stage.pick) if trials else None
    params = ({n: best.params[n] for n in ctx.spec.searched if n in best.params}
              if best else None)
    rec = ctx.storage.get_stage(ctx.sweep.id, index)
    note = rec.note if rec is not None else plan.note
    planned = planned_configs(ctx, plan, index) * stage.replicates
    return StageSummary(
        stage.name, planned, slot_counts(slots.values()),
        best.metrics.get("val_acc") if best else None, params, sampler=stage.sampler,
        note=note, reused=len(plan.reused),
        best_test_acc=best.metrics.get("test_acc") if best else None,
        best_trial=best.id if best else None)
