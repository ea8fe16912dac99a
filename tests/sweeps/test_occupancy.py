"""A stage's slot groups: how full they ran, stored as each ends (with its event), and what
``sweep show`` says of them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from click.testing import CliRunner

from numsweep.cli import cli
from numsweep.storage import Storage, TrialState
from numsweep.sweeps.deletion import delete_sweep
from numsweep.sweeps.events import TrialEvent
from numsweep.sweeps.occupancy import note_slot_group, stage_occupancy
from numsweep.sweeps.report import sweep_report

PLAN = {"space": {}, "fixed": {}, "reused": [], "configs": [], "study_ready": True}


@dataclass(frozen=True)
class Stats:
    """What engine ``SlotStats`` reports of a group that ended."""

    size: int
    steps: int
    slot_updates: int
    trials: int
    full_steps: int
    full_slot_updates: int


def _context(storage: Storage, events: list[TrialEvent]) -> Any:
    """The parts of a sweep's context :func:`note_slot_group` uses."""
    return SimpleNamespace(storage=storage,
                           settings=SimpleNamespace(name="here:7", notify=events.append))


def _sweep(tmp_path: Path) -> tuple[Storage, int, int]:
    """A sweep of two stages, each with a trial: (storage, coarse's id, fine's id)."""
    storage = Storage(f"sqlite:///{tmp_path / 'r.db'}")
    sweep = storage.get_or_create_sweep("s", {"name": "s"}, seed=1)
    ids = []
    for index, name in enumerate(("coarse", "fine")):
        stage = storage.get_or_create_stage(sweep.id, index, name, "random", PLAN)
        trial = storage.start_trial(sweep.id, stage.id, None, {"lam": 0.1}, seed=1)
        storage.finish_trial(trial, TrialState.COMPLETE, metrics={"val_acc": 0.5})
        ids.append(stage.id)
    return storage, ids[0], ids[1]


def test_a_stage_s_occupancy_sums_its_groups_and_counts_until_it_ran_dry(
        tmp_path: Path) -> None:
    storage, coarse, _ = _sweep(tmp_path)
    events: list[TrialEvent] = []
    ctx = _context(storage, events)
    # 4 slots x 100 steps, full for the first 80 (320 slot-updates), then 40 slots empty
    first = note_slot_group(ctx, coarse, 1, Stats(4, 100, 360, 12, 80, 320))
    assert (first.share, first.until_dry, first.ran_dry) == (0.9, 1.0, True)
    assert events == [TrialEvent("group", "coarse", group_size=4, occupancy=0.9)]
    # a second group, 2 of whose full steps' slot-updates a late join left empty
    both = note_slot_group(ctx, coarse, 9, Stats(4, 50, 190, 5, 50, 190), worker="there:3")
    assert (both.slot_updates, both.capacity, both.full_slot_updates, both.full_capacity,
            both.groups, both.trials) == (550, 600, 510, 520, 2, 17)
    assert events[-1].occupancy == both.share == 550 / 600
    assert both.until_dry == 510 / 520
    stored = storage.slot_groups(coarse)
    assert [(g.group_id, g.worker) for g in stored] == [(1, "here:7"), (9, "there:3")]
    assert stage_occupancy(stored) == both
    # the first group resumed and ended again: its row replaced, the occupancy with it
    again = note_slot_group(ctx, coarse, 1, Stats(4, 100, 400, 12, 100, 400))
    assert (again.groups, again.share) == (2, 590 / 600)
    assert not stage_occupancy([storage.slot_groups(coarse)[0]]).ran_dry
    assert stage_occupancy([]).share == 1.0 and stage_occupancy([]).until_dry is None


def test_sweep_show_says_how_full_each_stage_s_slot_groups_were(tmp_path: Path) -> None:
    storage, coarse, fine = _sweep(tmp_path)
    for group, (steps, used, trials, full) in enumerate(
            [(100, 390, 12, 90), (100, 392, 11, 100), (80, 300, 9, 60)]):
        storage.record_slot_group(coarse, group + 1, "host:1", 4, steps, used, trials, full,
                                  4 * full - 2)
    storage.record_slot_group(fine, 7, "host:1", 2, 10, 20, 3, 10, 20)
    report = sweep_report(storage, "s")
    shown = {st.name: st for st in report.stages}
    occupancy = shown["coarse"].occupancy
    assert occupancy is not None and occupancy.capacity == 4 * 280  # 1082 of 1120 trained
    assert (occupancy.full_slot_updates, occupancy.full_capacity) == (994, 1000)
    assert shown["coarse"].slots == (
        "3 groups of 4 slots, occupancy 96.6% (99.4% until the stage ran out of trials); "
        "trials per group: 12, 11, 9")
    assert shown["fine"].slots == "1 group of 2 slots, occupancy 100.0%; trials per group: 3"
    url = storage.url
    storage.dispose()
    result = CliRunner().invoke(cli, ["sweep", "show", "s", "--db", url])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert f"  slots: {shown['coarse'].slots}" in lines
    assert lines.index(f"  slots: {shown['fine'].slots}") > lines.index("stage fine [random]: "
                                                                       "1 complete")


def test_a_stage_without_slot_groups_shows_none_and_a_deleted_sweep_takes_its_groups(
        tmp_path: Path) -> None:
    storage, coarse, fine = _sweep(tmp_path)
    storage.record_slot_group(fine, 2, "host:1", 2, 10, 20, 3, 10, 20)
    shown = {st.name: st for st in sweep_report(storage, "s").stages}
    assert shown["coarse"].occupancy is None and shown["coarse"].slots == ""
    result = CliRunner().invoke(cli, ["sweep", "show", "s", "--db", storage.url])
    assert result.output.count("  slots: ") == 1
    delete_sweep(storage, "s")
    assert storage.slot_groups(fine) == [] and storage.slot_groups(coarse) == []
