"""A pbt stage's population read back: a member's ancestry and its schedule of explored
values (``engine.lineage_changes`` of the stored lineage, from its root ancestor's initial
values in the stage's plan), what ``numsweep trial show`` prints, and a member's rerun (its
whole population trained again)."""

from __future__ import annotations

import dataclasses
import traceback
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from threadpoolctl import threadpool_limits

from numsweep.storage import LineageRecord, Storage, StorageError, TrialRecord
from numsweep.sweeps.population import member_specs, pbt_settings
from numsweep.sweeps.results import record_outcome
from numsweep.sweeps.slots import latest
from numsweep.sweeps.spec import ParamSpace, parse_spec
from numsweep.sweeps.worker import TrialOutcome, TrialTask, load_split, worker_name

if TYPE_CHECKING:
    from numsweep.engine.pbt import ExploitEvent


def population_events(records: Sequence[LineageRecord], slot_of: Mapping[int, int]
                      ) -> list[ExploitEvent]:
    """Stored lineage rows as the engine's exploit events (members by slot)."""
    from numsweep.engine.pbt import ExploitEvent

    return [ExploitEvent(update=r.update, member=slot_of[r.trial_id],
                         source=slot_of[r.source_trial_id], metric_member=r.metric_member,
                         metric_source=r.metric_source, before=dict(r.before),
                         after=dict(r.after)) for r in records]


@dataclass(frozen=True)
class MemberHistory:
    """A pbt member's ancestry and schedule: ``root`` is the slot its weights trace back to at
    update 0 (``initial`` its values), ``changes`` the (update, name, value) steps of explored
    values it trained with (``engine.lineage_changes``), ``ancestry`` the exploit steps that
    made it: (update, member slot, source slot) from the newest back."""

    slot: int
    root: int
    initial: Mapping[str, float]
    changes: tuple[tuple[int, str, float], ...]
    ancestry: tuple[tuple[int, int, int], ...]
    trial_ids: tuple[int, ...]  # each slot's trial id


def member_history(storage: Storage, trial: TrialRecord) -> MemberHistory | None:
    """The history of ``trial`` when it is a member of a pbt stage (None otherwise), from
    its stage's plan (the initial values) and stored lineage."""
    from numsweep.engine.pbt import lineage_changes, lineage_root

    if trial.stage is None or trial.slot is None:
        return None
    sweep = storage.get_sweep(trial.sweep)
    stage = next((s for s in storage.list_stages(sweep.id) if s.name == trial.stage), None)
    if stage is None or stage.sampler != "pbt":
        return None
    initial = [dict(c) for c in stage.plan.configs]
    slots = latest(storage.stage_slots(stage.id))
    ids = tuple(slots[s].trial_id if s in slots else -1 for s in range(len(initial)))
    slot_of = {t: s for s, t in enumerate(ids)}
    records = storage.lineage(stage.id)
    slot_of.update({r.trial_id: slot_of.get(r.trial_id, -1) for r in records})
    events = population_events(records, slot_of)
    root = lineage_root(events, trial.slot)
    changes = tuple(lineage_changes(events, trial.slot, initial))
    chain = []
    member, before = trial.slot, None
    for e in reversed(events):  # newest first: each copy that made the current member
        if e.member == member and (before is None or e.update < before):
            chain.append((e.update, e.member, e.source))
            member, before = e.source, e.update
    return MemberHistory(trial.slot, root, dict(initial[root]), changes, tuple(chain), ids)


@dataclass(frozen=True)
class TrialDetails:
    """What ``numsweep trial show`` prints: the stored trial, and for a pbt member its
    history."""

    trial: TrialRecord
    history: MemberHistory | None


def trial_details(storage: Storage, trial_id: int) -> TrialDetails:
    """The stored trial ``trial_id`` (a one-line error when there is none) with its pbt
    history when it is a member of a pbt stage."""
    found = storage.get_trials(trial_ids=[trial_id])
    if not found:
        raise StorageError(f"no trial with id {trial_id} in {storage.shown_url}")
    return TrialDetails(found[0], member_history(storage, found[0]))


def rerun_member(storage: Storage, original: TrialRecord, data_source: str | None,
                 threads: int | None) -> tuple[int, TrialOutcome] | None:
    """Train the population of pbt member ``original`` again in this process (from its
    stage's stored plan and seeds; no checkpoint) and store that member's result as a trial
    of the sweep ``rerun``; None when ``original`` is no pbt member."""
    from numsweep.engine.pbt import train_population
    from numsweep.sweeps.guards import single_trial_sweep

    if original.stage is None or original.slot is None:
        return None
    record = storage.get_sweep(original.sweep)
    stages = storage.list_stages(record.id)
    stored = next((s for s in stages if s.name == original.stage), None)
    if stored is None or stored.sampler != "pbt":
        return None
    spec = parse_spec(record.spec, f"sweep {original.sweep!r} in {storage.shown_url}")
    stage = spec.stages[stored.index]
    plan_space = {n: ParamSpace.from_dict(n, d) for n, d in stored.plan.space.items()}
    specs = member_specs(spec.seed, stored.index, spec.stage_fixed(stage), stored.plan.configs)
    settings = pbt_settings(stage, plan_space, spec.seed, stored.index)
    member = specs[original.slot]
    sweep = single_trial_sweep(storage, "rerun")
    trial_id = storage.start_trial(sweep.id, None, storage.next_trial_number(sweep.id),
                                   member.to_dict(), member.seed,
                                   setup={"data": data_source,
                                          "pbt_member": [original.sweep, original.stage,
                                                         original.slot]})
    task = TrialTask(trial_id, member, data_source, threads)
    try:
        split = load_split(task)
        with threadpool_limits(limits=threads):
            population = train_population(specs, split, settings)
        result = population.results[original.slot]
        outcome = TrialOutcome(trial_id, dataclasses.replace(
            result, message=(f"{result.message}; " if result.message else "")
            + f"rerun of trial {original.id} (its whole population of {len(specs)})"),
            worker=worker_name(), group=(trial_id, len(specs)))
    except Exception as exc:  # stored as the rerun's failure
        outcome = TrialOutcome(trial_id, None, error=f"{type(exc).__name__}: {exc}",
                               traceback=traceback.format_exc(), worker=worker_name())
    record_outcome(storage, outcome)
    return trial_id, outcome
