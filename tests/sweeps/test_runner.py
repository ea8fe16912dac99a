from __future__ import annotations

from pathlib import Path

import pytest

from numsweep.storage import Storage, TrialState
from numsweep.sweeps import load_spec, run_sweep
from numsweep.sweeps.optuna_bridge import TRIAL_ID_ATTR

SPEC = """
name = "tiny"
seed = 5
[fixed]
hidden = [16]
n_train = 300
n_val = 100
batch_size = 50
cycles = 1
[space]
lam = { type = "float", low = 1e-4, high = 1e-1, log = true, grid = 4 }
[[stages]]
name = "coarse"
sampler = "grid"
[[stages]]
name = "fine"
sampler = "random"
n_trials = 2
"""


@pytest.fixture
def spec_path(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.toml"
    path.write_text(SPEC)
    return path


def run(spec_path: Path, tmp_path: Path, tiny_npz: Path, jobs: int, name: str) -> list:
    storage = Storage(f"sqlite:///{tmp_path / (name + '.db')}")
    run_sweep(load_spec(spec_path), storage, data_source=str(tiny_npz), jobs=jobs)
    return storage.get_trials("tiny")


def test_grid_then_random_stage_stores_every_trial(spec_path: Path, tmp_path: Path,
                                                   tiny_npz: Path) -> None:
    trials = run(spec_path, tmp_path, tiny_npz, 1, "a")
    assert [t.stage for t in trials] == ["coarse"] * 4 + ["fine"] * 2
    assert all(t.state is TrialState.COMPLETE for t in trials)
    assert len({t.params["lam"] for t in trials[:4]}) == 4
    assert all(t.metrics["val_acc"] > 0.2 for t in trials)


def test_same_seed_same_trials_with_one_or_two_jobs(spec_path: Path, tmp_path: Path,
                                                    tiny_npz: Path) -> None:
    def key(trials: list) -> list:
        return sorted((t.stage, t.params["lam"], t.seed, t.metrics["val_acc"]) for t in trials)

    assert key(run(spec_path, tmp_path, tiny_npz, 1, "one")) == \
        key(run(spec_path, tmp_path, tiny_npz, 2, "two"))


def test_events_and_study_name_trials_by_their_database_id(spec_path: Path, tmp_path: Path,
                                                          tiny_npz: Path) -> None:
    """In a database where ids and numbers differ (another sweep came first), the progress
    events and the Optuna studies carry the id that `trials`, `--trial` and `rerun` take."""
    import optuna

    from numsweep.sweeps import parse_spec

    url = f"sqlite:///{tmp_path / 'ids.db'}"
    storage = Storage(url)
    raw = load_spec(spec_path).to_dict()
    run_sweep(parse_spec({**raw, "name": "first"}, "<t>"), storage,
              data_source=str(tiny_npz), jobs=1)
    events: list = []
    run_sweep(load_spec(spec_path), storage, data_source=str(tiny_npz), jobs=1,
              on_event=events.append)
    trials = storage.get_trials("tiny")
    ids = {t.id for t in trials}
    assert ids != {t.number for t in trials} and ids != {t.number + 1 for t in trials}
    finished = [e for e in events if e.kind == "finished"]
    assert {e.trial_id for e in finished} == ids
    assert {e.trial_id for e in events if e.kind == "started"} == ids
    attrs = {t.user_attrs[TRIAL_ID_ATTR]
             for stage in ("coarse", "fine")
             for t in optuna.load_study(study_name=f"tiny/{stage}", storage=url).get_trials()
             if not t.user_attrs.get("reused")}
    assert attrs == ids


def test_an_estimate_that_cannot_be_computed_leaves_no_trial_running(
        spec_path: Path, tmp_path: Path, tiny_npz: Path) -> None:
    storage = Storage(f"sqlite:///{tmp_path / 'e.db'}")

    def overflowing(_spec: object) -> float:
        raise OverflowError("int too large to convert to float")  # as budget.py once did

    events: list = []
    run_sweep(load_spec(spec_path), storage, data_source=str(tiny_npz), jobs=1,
              estimate=overflowing, on_event=events.append)  # was: the error, trials RUNNING
    assert {t.state for t in storage.get_trials("tiny")} == {TrialState.COMPLETE}
    assert all(e.estimate is None for e in events if e.kind == "started")
