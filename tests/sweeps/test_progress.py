"""The live progress display counts what the events say and estimates the time left."""

from __future__ import annotations

import io
import math

from rich.console import Console

from numsweep.storage import TrialState
from numsweep.sweeps.events import TrialEvent
from numsweep.sweeps.progress import SweepProgress


def test_progress_counts_states_best_and_estimates() -> None:
    out = io.StringIO()
    progress = SweepProgress(Console(file=out, width=200), jobs=2)
    with progress:
        progress(TrialEvent("stage", "coarse", planned=4, reused=1, message="why"))
        for n in range(3):
            progress(TrialEvent("started", "coarse", n, estimate=2.0, trial_id=50 + n))
        progress(TrialEvent("finished", "coarse", 0, TrialState.COMPLETE, 0.4, estimate=2.0,
                            seconds=3.0, trial_id=50))
        progress(TrialEvent("finished", "coarse", 1, TrialState.PRUNED, 0.1, estimate=2.0,
                            seconds=1.0, trial_id=51))
        stage = progress.stages["coarse"]
        assert stage.running == 1 and stage.counts == {"COMPLETE": 1, "PRUNED": 1}
        assert stage.best == 0.4
        assert progress.eta() == 2 * 2.0 / 2  # 2 trials left x 2 s mean / 2 jobs
        progress(TrialEvent("finished", "coarse", 2, TrialState.FAILED, None,
                            message="loss diverged", estimate=2.0, seconds=2.0, trial_id=52))
    text = out.getvalue()
    assert "coarse trial 50 complete val_acc 0.4000 in 3.0 s train+eval (estimated 2.0 s)" \
        in text
    assert "coarse trial 52 failed" in text and "loss diverged" in text
    assert "1/4" in text and "0.4000" in text and "6.0" in text  # estimated 6 s, measured 6 s


def test_a_resumed_stage_starts_from_its_finished_trials_and_shows_interruptions() -> None:
    out = io.StringIO()
    progress = SweepProgress(Console(file=out, width=200), jobs=1)
    with progress:
        assert out.getvalue() == ""  # nothing drawn before the first event
        progress(TrialEvent("stage", "fine", planned=6, counts={"COMPLETE": 4}))
        progress(TrialEvent("started", "fine", 9, trial_id=31))
        progress(TrialEvent("finished", "fine", 9, TrialState.INTERRUPTED,
                            message="worker process lost", trial_id=31))
        assert progress.stages["fine"].counts == {"COMPLETE": 4, "INTERRUPTED": 1}
    text = out.getvalue()
    assert "fine trial 31 interrupted (worker process lost)" in text and "4/6" in text


def test_trials_are_named_by_their_database_id_not_their_number_in_the_sweep() -> None:
    out = io.StringIO()
    with SweepProgress(Console(file=out, width=200), jobs=1) as progress:
        progress(TrialEvent("stage", "coarse", planned=1))
        progress(TrialEvent("started", "coarse", 9, trial_id=58))
        progress(TrialEvent("finished", "coarse", 9, TrialState.COMPLETE, 0.5, seconds=1.0,
                            trial_id=58))
    text = out.getvalue()
    assert "coarse trial 58 complete" in text and "trial 9" not in text


def test_at_80_columns_the_table_leaves_out_columns_instead_of_cutting_them() -> None:
    out = io.StringIO()
    with SweepProgress(Console(file=out, width=80), jobs=2) as progress:
        for name in ("coarse", "fine"):
            progress(TrialEvent("stage", name, planned=12, reused=2))
            for n in range(3):
                progress(TrialEvent("started", name, n, estimate=20.0, trial_id=n))
            progress(TrialEvent("finished", name, 0, TrialState.COMPLETE, 0.4, seconds=30.0,
                                estimate=20.0, trial_id=0))
            progress(TrialEvent("finished", name, 1, TrialState.PRUNED, 0.1, seconds=3.0,
                                estimate=20.0, trial_id=1))
            progress(TrialEvent("finished", name, 2, TrialState.FAILED, seconds=3.0,
                                estimate=20.0, trial_id=2))
    text = out.getvalue()
    assert "…" not in text
    assert max(len(line) for line in text.splitlines()) <= 80
    header = next(line for line in text.splitlines() if "stage" in line and "done" in line)
    # the most wanted columns stay, whole; the least wanted go first
    assert "best val_acc" in header and "failed" in header and "reused" not in header
    assert "0.4000" in text


def test_columns_that_are_all_zero_go_first() -> None:
    progress = SweepProgress(Console(file=io.StringIO(), width=60), jobs=1)
    progress(TrialEvent("stage", "coarse", planned=4))
    progress(TrialEvent("started", "coarse", 0, trial_id=7))
    progress(TrialEvent("finished", "coarse", 0, TrialState.COMPLETE, 0.4, seconds=2.0,
                        trial_id=7))
    out = io.StringIO()
    Console(file=out, width=60).print(progress.render())
    header = out.getvalue().splitlines()[1]
    assert "best val_acc" in header and "measured s" in header
    assert "pruned" not in header and "failed" not in header  # nothing pruned nor failed
    progress.live.stop()


def test_the_jobs_shown_are_the_runners_own() -> None:
    """Under --backend dask the runner finds the cluster's slots: the display shows them."""
    out = io.StringIO()
    with SweepProgress(Console(file=out, width=80), jobs=1) as progress:
        progress(TrialEvent("stage", "coarse", planned=4, jobs=2))
        assert progress.jobs == 2
    assert "jobs 2" in out.getvalue()


def test_nothing_left_is_no_time_left() -> None:
    """A resumed sweep that had finished: "time left ~0:00", not "~?"."""
    out = io.StringIO()
    with SweepProgress(Console(file=out, width=80), jobs=2) as progress:
        progress(TrialEvent("stage", "coarse", planned=8, counts={"COMPLETE": 8}))
        assert progress.eta() == 0
    assert "time left ~0:00" in out.getvalue()


def test_the_display_shows_the_group_size_and_counts_groups_in_the_time_left() -> None:
    out = io.StringIO()
    progress = SweepProgress(Console(file=out, width=200), jobs=2)
    with progress:
        progress(TrialEvent("stage", "grid", planned=16, group_size=4, group_auto=True))
        progress(TrialEvent("started", "grid", 0))
        progress(TrialEvent("finished", "grid", 0, TrialState.COMPLETE, 0.4, seconds=2.0,
                            estimate=1.5, group_size=4, trial_id=7))
        # 15 trials left, each a 2 s share of its group's time, 2 jobs
        assert progress.eta() == 15 * 2.0 / 2
    assert "4 (auto)" in out.getvalue() and "groups of" in out.getvalue()
    assert "grid trial 7 complete val_acc 0.4000 in 2.0 s train+eval (estimated 1.5 s; " \
        "shared by a group of 4)" in out.getvalue()


def test_without_a_terminal_a_running_trial_prints_its_curve_points() -> None:
    """Output to a file: a line per curve point of a running trial (its update of the
    planned ones and val_acc), at most one per trial every ``line_seconds``; on a terminal
    the table shows each running trial's update and val_acc instead."""
    out = io.StringIO()
    with SweepProgress(Console(file=out, width=200), jobs=2, line_seconds=0) as progress:
        progress(TrialEvent("stage", "coarse", planned=2, group_size=2))
        for n in range(2):
            progress(TrialEvent("started", "coarse", n, trial_id=40 + n))
        for step, acc in ((0, 0.1), (450, 0.3125)):
            for n in range(2):
                progress(TrialEvent("point", "coarse", n, val_acc=acc + n / 100,
                                    trial_id=40 + n, step=step, total=9000))
        assert not math.isnan(progress.eta())  # foretold from the points' pace
        assert [r["update"] for r in progress.running_rows()] == ["450/9000"] * 2
    lines = out.getvalue().splitlines()
    assert "coarse trial 40 update 0/9000 val_acc 0.1000" in lines
    assert "coarse trial 41 update 450/9000 val_acc 0.3225" in lines

    out = io.StringIO()
    with SweepProgress(Console(file=out, width=200), jobs=1, line_seconds=3600) as progress:
        progress(TrialEvent("started", "coarse", 0, trial_id=40))
        for step in (0, 10, 20):
            progress(TrialEvent("point", "coarse", 0, val_acc=0.5, trial_id=40, step=step,
                                total=30))
    assert [line for line in out.getvalue().splitlines() if "trial 40 update" in line] == [
        "coarse trial 40 update 0/30 val_acc 0.5000"]  # the first, then none for an hour

    terminal = io.StringIO()
    with SweepProgress(Console(file=terminal, width=100, force_terminal=True),
                       jobs=1) as progress:
        progress(TrialEvent("stage", "coarse", planned=1))
        progress(TrialEvent("started", "coarse", 0, trial_id=40))
        progress(TrialEvent("point", "coarse", 0, val_acc=0.5, trial_id=40, step=10, total=30))
        shown = io.StringIO()
        Console(file=shown, width=100).print(progress.render())
    assert "running trial" in shown.getvalue() and "10/30" in shown.getvalue()
    assert "0.5000" in shown.getvalue()
    assert "update 10/30" not in terminal.getvalue()  # no line: the table shows it


def test_a_slot_group_that_ended_shows_the_stage_s_occupancy_so_far() -> None:
    out = io.StringIO()
    with SweepProgress(Console(file=out, width=200), jobs=1) as progress:
        progress(TrialEvent("stage", "coarse", planned=24, group_size=4))
        progress(TrialEvent("stage", "fine", planned=8))
        assert all(r["slots"] == "" for r in progress.rows())  # no group ended yet
        progress(TrialEvent("group", "coarse", group_size=4, occupancy=0.973))
        progress(TrialEvent("group", "coarse", group_size=4, occupancy=0.996))
        assert [r["slots"] for r in progress.rows()] == ["99%", ""]  # never rounds up to all
        table = io.StringIO()
        Console(file=table, width=200).print(progress.render())
    header = next(line for line in table.getvalue().splitlines() if "done" in line)
    assert "slots" in header and "99%" in table.getvalue()
    lines = out.getvalue().splitlines()  # without a terminal: a line per group
    assert "coarse: a slot group of 4 ended; slots 97% full so far" in lines
    assert "coarse: a slot group of 4 ended; slots 99% full so far" in lines
