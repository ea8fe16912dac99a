"""A generated result database (tests/analysis/conftest.py) that export tests may add to."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from numsweep.storage import Storage, TrialState
from tests.analysis.conftest import _trial, build_db


@pytest.fixture
def export_db(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'demo.db'}"
    build_db(url).dispose()
    return url


def add_lambda_trial(url: str, lam: float, val_acc: float) -> int:
    """A new complete trial in stage fine of sweep lambda; its id."""
    storage = Storage(url)
    sweep = storage.get_sweep("lambda")
    fine = next(st for st in storage.list_stages(sweep.id) if st.name == "fine")
    number = storage.count_trials(sweep.id)
    trial_id = _trial(storage, sweep.id, fine.id, number, {"lam": lam}, val_acc,
                      np.random.default_rng(number))
    storage.dispose()
    return trial_id


def finish_running_trial(url: str) -> int:
    """Finish the running trial of sweep lambda; its id."""
    storage = Storage(url)
    running = [t for t in storage.get_trial_rows("lambda").trials
               if t[4] is TrialState.RUNNING]
    trial_id = int(running[0][0])
    storage.finish_trial(trial_id, TrialState.COMPLETE, metrics={"val_acc": 0.3},
                         curves=[])
    storage.dispose()
    return trial_id
