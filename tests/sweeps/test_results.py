"""Results that finished while the database stayed away are kept here and written later."""

from __future__ import annotations

import math
import os
import pickle
import warnings
from pathlib import Path

import numpy as np
import pytest

from numsweep.engine.spec import CurvePoint, TrialResult, TrialSpec
from numsweep.storage import Storage, TrialState, database_identity
from numsweep.sweeps.results import (
    UnsavedResultWarning,
    keep_unsaved,
    unsaved_folder,
    write_unsaved,
)
from numsweep.sweeps.worker import TrialOutcome


@pytest.fixture(autouse=True)
def unsaved_here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NUMSWEEP_UNSAVED", str(tmp_path / "unsaved"))


def test_kept_results_are_written_once_the_database_is_back(tmp_path: Path) -> None:
    storage = Storage(f"sqlite:///{tmp_path / 'r.db'}")
    sweep = storage.get_or_create_sweep("s", {"name": "s"}, seed=1)
    waiting = storage.start_trial(sweep.id, None, 0, {"lam": 0.1}, seed=3)
    taken = storage.start_trial(sweep.id, None, 1, {"lam": 0.2}, seed=4)
    storage.interrupt_trials([taken], "lost meanwhile")  # another attempt runs it
    count, folder = keep_unsaved(storage, [TrialOutcome(waiting, None, error="E: x"),
                                           TrialOutcome(taken, None, error="E: y")])
    assert count == 2 and folder == unsaved_folder(storage) and folder.is_dir()
    assert write_unsaved(storage) == 1
    states = {t.id: t.state for t in storage.get_trials("s")}
    assert states == {waiting: TrialState.FAILED, taken: TrialState.INTERRUPTED}
    assert not list(folder.glob("*.json"))
    assert write_unsaved(storage) == 0


def test_a_kept_result_keeps_its_metrics_curves_and_params(tmp_path: Path) -> None:
    storage = Storage(f"sqlite:///{tmp_path / 'r.db'}")
    sweep = storage.get_or_create_sweep("s", {"name": "s"}, seed=1)
    trial = storage.start_trial(sweep.id, None, 0, {"lam": 0.1}, seed=3)
    spec = TrialSpec(lam=0.1, hidden=(20, 10))
    curves = (CurvePoint(step=5, split="val", loss=math.nan, cost=1.5, acc=0.25, lr=0.01),)
    result = TrialResult(spec, val_acc=0.5, test_acc=0.4, train_acc=0.6, train_seconds=1.0,
                         eval_seconds=0.5, updates=10, param_count=99, epochs=1.0,
                         curves=curves)
    keep_unsaved(storage, [TrialOutcome(trial, result, worker="w:1", group=(7, 2))])
    assert write_unsaved(storage) == 1
    [stored] = storage.get_trials("s")
    assert stored.state is TrialState.COMPLETE and stored.metrics["val_acc"] == 0.5
    assert stored.params["hidden"] == [20, 10] and stored.worker == "w:1"


def test_a_pickle_in_the_folder_is_never_loaded(tmp_path: Path) -> None:
    storage = Storage(f"sqlite:///{tmp_path / 'r.db'}")
    folder = unsaved_folder(storage)
    folder.mkdir(parents=True)
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self) -> tuple[object, tuple[str]]:
            return os.system, (f"touch {marker}",)

    (folder / "5.pkl").write_bytes(pickle.dumps(Payload()))
    (folder / "6.json").write_bytes(pickle.dumps(Payload()))
    with pytest.warns(UnsavedResultWarning, match="2 kept result file"):
        assert write_unsaved(storage) == 0
    assert not marker.exists()


def test_damaged_files_are_skipped_with_one_warning_and_the_good_one_written(
        tmp_path: Path) -> None:
    storage = Storage(f"sqlite:///{tmp_path / 'r.db'}")
    sweep = storage.get_or_create_sweep("s", {"name": "s"}, seed=1)
    trial = storage.start_trial(sweep.id, None, 0, {"lam": 0.1}, seed=3)
    _, folder = keep_unsaved(storage, [TrialOutcome(trial, None, error="E: x")])
    (folder / "90.json").write_bytes(np.random.default_rng(0).bytes(300))
    (folder / "91.json").write_text('{"format": "numsweep-unsaved-1", "trial_id": "x"}')
    (folder / "92.json").write_text("[1, 2]")
    with pytest.warns(UnsavedResultWarning) as caught:
        assert write_unsaved(storage) == 1
    assert len(caught) == 1 and "3 kept result file" in str(caught[0].message)
    assert storage.get_trials("s")[0].state is TrialState.FAILED
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert write_unsaved(storage) == 0  # named once, not at every resume


def test_the_folder_is_keyed_by_the_database_not_the_url_text(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch
                                                              ) -> None:
    one, two = tmp_path / "one", tmp_path / "two"
    one.mkdir()
    two.mkdir()
    monkeypatch.chdir(one)
    relative_one = Storage("runs.db")
    same_one = Storage(f"sqlite:///{one / 'runs.db'}")
    monkeypatch.chdir(two)
    relative_two = Storage("sqlite:///runs.db")
    assert unsaved_folder(relative_one) == unsaved_folder(same_one)
    assert unsaved_folder(relative_one) != unsaved_folder(relative_two)
    server = Storage.__new__(Storage)  # no server to connect to: the key alone
    other = Storage.__new__(Storage)
    server.identity = database_identity("postgresql://u:secret@h/db")
    other.identity = database_identity("postgresql://u:other@h/db")
    assert unsaved_folder(server) == unsaved_folder(other)
    assert "secret" not in server.identity
