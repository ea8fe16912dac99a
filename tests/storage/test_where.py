"""Parameter and result conditions (``numsweep trials --where``) as SQL."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from numsweep.storage import Storage, StorageError, TrialState


def test_trial_ids_where_compares_parameters_and_metrics(tmp_path: Path) -> None:
    storage = Storage(f"sqlite:///{tmp_path / 'w.db'}")
    sweep = storage.get_or_create_sweep("s", {}, 0)
    other = storage.get_or_create_sweep("o", {}, 0)
    ids = []
    for n, (lam, opt, acc) in enumerate([(1e-4, "sgd", 0.3), (1e-2, "adam", 0.5),
                                         (1e-1, "sgd", math.nan)]):
        tid = storage.start_trial(sweep.id, None, n, {"lam": lam, "optimizer": opt}, 0)
        storage.finish_trial(tid, TrialState.COMPLETE, metrics={"val_acc": acc})
        ids.append(tid)
    elsewhere = storage.start_trial(other.id, None, 0, {"lam": 1e-5}, 0)
    assert storage.trial_ids_where([("lam", "<", 0.01)], "s") == [ids[0]]
    assert storage.trial_ids_where([("lam", "<", 0.01)]) == [ids[0], elsewhere]
    assert storage.trial_ids_where([("lam", "<=", 0.01)], "s") == ids[:2]
    assert storage.trial_ids_where([("val_acc", ">", 0.4)], "s") == [ids[1]]  # NaN never
    assert storage.trial_ids_where([("optimizer", "=", "sgd"), ("lam", ">", 1e-3)], "s") == \
        [ids[2]]
    assert storage.trial_ids_where([("optimizer", "!=", "sgd")], "s") == [ids[1]]
    with pytest.raises(StorageError, match="only = and != compare text"):
        storage.trial_ids_where([("optimizer", "<", "sgd")])
