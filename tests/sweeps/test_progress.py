"""The live progress display counts what the events say and estimates the time left."""

from __future__ import annotations

import io

from rich.console import Console

from numsweep.storage import TrialState
from numsweep.sweeps.progress import SweepProgress
from numsweep.sweeps.runner import TrialEvent


def test_progress_counts_states_best_and_estimates() -> None:
    out = io.StringIO()
    progress = SweepProgress(Console(file=out, width=200), jobs=2)
    with progress:
        progress(TrialEvent("stage", "coarse", planned=4, reused=1, message="why"))
        for n in range(3):
            progress(TrialEvent("started", "coarse", n, estimate=2.0))
        progress(TrialEvent("finished", "coarse", 0, TrialState.COMPLETE, 0.4, estimate=2.0,
                            seconds=3.0))
        progress(TrialEvent("finished", "coarse", 1, TrialState.PRUNED, 0.1, estimate=2.0,
                            seconds=1.0))
        stage = progress.stages["coarse"]
        assert stage.running == 1 and stage.counts == {"COMPLETE": 1, "PRUNED": 1}
        assert stage.best == 0.4
        assert progress.eta() == 2 * 2.0 / 2  # 2 trials left x 2 s mean / 2 jobs
        progress(TrialEvent("finished", "coarse", 2, TrialState.FAILED, None,
                            message="loss diverged", estimate=2.0, seconds=2.0))
    text = out.getvalue()
    assert "coarse trial 0 complete val_acc 0.4000 in 3.0 s (estimated 2.0 s)" in text
    assert "coarse trial 2 failed" in text and "loss diverged" in text
    assert "1/4" in text and "0.4000" in text and "6.0" in text  # estimated 6 s, measured 6 s


def test_a_resumed_stage_starts_from_its_finished_trials_and_shows_interruptions() -> None:
    out = io.StringIO()
    progress = SweepProgress(Console(file=out, width=200), jobs=1)
    with progress:
        assert out.getvalue() == ""  # nothing drawn before the first event
        progress(TrialEvent("stage", "fine", planned=6, counts={"COMPLETE": 4}))
        progress(TrialEvent("started", "fine", 9))
        progress(TrialEvent("finished", "fine", 9, TrialState.INTERRUPTED,
                            message="worker process lost"))
        assert progress.stages["fine"].counts == {"COMPLETE": 4, "INTERRUPTED": 1}
    text = out.getvalue()
    assert "fine trial 9 interrupted (worker process lost)" in text and "4/6" in text


def test_the_display_shows_the_group_size_and_counts_groups_in_the_time_left() -> None:
    out = io.StringIO()
    progress = SweepProgress(Console(file=out, width=200), jobs=2)
    with progress:
        progress(TrialEvent("stage", "grid", planned=16, group_size=4, group_auto=True))
        progress(TrialEvent("started", "grid", 0))
        progress(TrialEvent("finished", "grid", 0, TrialState.COMPLETE, 0.4, seconds=8.0))
        # 15 trials left in groups of 4, each group's trial measured 8 s, 2 jobs
        assert progress.eta() == 15 / 4 * 8.0 / 2
    assert "4 (auto)" in out.getvalue() and "groups of" in out.getvalue()
