"""Results that finished while the database stayed away are kept here and written later."""

from __future__ import annotations

from pathlib import Path

import pytest

from numsweep.storage import Storage, TrialState
from numsweep.sweeps.results import keep_unsaved, unsaved_folder, write_unsaved
from numsweep.sweeps.worker import TrialOutcome


def test_kept_results_are_written_once_the_database_is_back(tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch
                                                            ) -> None:
    monkeypatch.setenv("NUMSWEEP_UNSAVED", str(tmp_path / "unsaved"))
    storage = Storage(f"sqlite:///{tmp_path / 'r.db'}")
    sweep = storage.get_or_create_sweep("s", {"name": "s"}, seed=1)
    waiting = storage.start_trial(sweep.id, None, 0, {"lam": 0.1}, seed=3)
    taken = storage.start_trial(sweep.id, None, 1, {"lam": 0.2}, seed=4)
    storage.interrupt_trials([taken], "lost meanwhile")  # another attempt runs it
    count, folder = keep_unsaved(storage.url, [TrialOutcome(waiting, None, error="E: x"),
                                               TrialOutcome(taken, None, error="E: y")])
    assert count == 2 and folder == unsaved_folder(storage.url) and folder.is_dir()
    assert write_unsaved(storage) == 1
    states = {t.id: t.state for t in storage.get_trials("s")}
    assert states == {waiting: TrialState.FAILED, taken: TrialState.INTERRUPTED}
    assert not list(folder.glob("*.pkl"))
    assert write_unsaved(storage) == 0
