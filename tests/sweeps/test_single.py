"""One configuration trained in this process and stored (``numsweep train``, ``single.py``)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from numsweep.engine import SpecError, TrialSpec
from numsweep.engine.checkpoint import WEIGHTS_NOT_KEPT
from numsweep.storage import Storage, TrialState
from numsweep.sweeps.single import TrainedTrial, train_trial

SMALL = {"hidden": [8], "n_train": 200, "n_val": 50, "batch_size": 50, "cycles": 1,
         "n_s": 4, "eval_train": 50}


def test_train_trial_stores_the_trial_and_says_what_was_not_kept(tmp_path: Path,
                                                                  tiny_npz: Path) -> None:
    storage = Storage(f"sqlite:///{tmp_path / 't.db'}")
    trained = train_trial(TrialSpec.from_mapping(SMALL), storage, data_source=str(tiny_npz),
                          checkpoint_dir=str(tmp_path / "ck"))
    [stored] = storage.get_trials("train")
    assert (stored.id, stored.state) == (trained.trial_id, TrialState.COMPLETE)
    assert trained.result is trained.outcome.result and trained.result is not None
    assert trained.unkept == ""
    why = f"{WEIGHTS_NOT_KEPT} (OSError: disk full)"
    result = dataclasses.replace(trained.result, message=f"stopped early; {why}")
    unkept = TrainedTrial(1, dataclasses.replace(trained.outcome, result=result))
    assert unkept.unkept == why
    failed = TrainedTrial(1, dataclasses.replace(trained.outcome, result=None, error="boom"))
    assert failed.result is None and failed.unkept == ""


def test_a_network_that_does_not_fit_the_images_stores_nothing(tmp_path: Path,
                                                               tiny_npz: Path) -> None:
    storage = Storage(f"sqlite:///{tmp_path / 't.db'}")
    small = {k: v for k, v in SMALL.items() if k != "hidden"}
    spec = TrialSpec.from_mapping({**small, "model": "convnet", "f": 5, "nf": 2, "nh": 4})
    with pytest.raises(SpecError, match="model=convnet"):
        train_trial(spec, storage, data_source=str(tiny_npz))
    assert storage.get_trials() == []
