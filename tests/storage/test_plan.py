"""A stage's plan: the stored JSON form reads back unchanged, older forms still read."""

from __future__ import annotations

from numsweep.storage import StagePlan, describe_space

STORED = {"space": {"lam": {"type": "float", "low": 1e-05, "high": 0.1, "log": True,
                            "grid": 8}},
          "fixed": {"cycles": 3}, "planned": 8, "reused": [], "configs": [{"lam": 1e-05}],
          "n_configs": 8, "setup_by": "host:12", "study_ready": True}


def test_the_stored_form_reads_back_unchanged() -> None:
    plan = StagePlan.from_dict(STORED)
    assert plan.n_configs == 8 and plan.configs == ({"lam": 1e-05},)
    assert plan.to_dict() == STORED
    assert list(plan.to_dict()) == list(STORED)  # same keys in the same order


def test_an_older_database_form_reads() -> None:
    ranges_alone = {"lam": {"type": "float", "low": 1e-05, "high": 0.1, "log": True}}
    plan = StagePlan.from_dict(ranges_alone)
    assert plan.space == ranges_alone and plan.n_configs is None and plan.reused == ()
    assert plan.describe() == "lam: 1e-05 to 0.1 (log)"


def test_one_description_of_the_ranges() -> None:
    assert describe_space(STORED["space"], "grid") == "lam: 1e-05 to 0.1 (log, grid of 8)"
    assert describe_space(STORED["space"], "tpe") == "lam: 1e-05 to 0.1 (log)"
    when = {"momentum": {"type": "float", "low": 0.5, "high": 0.99,
                         "when": {"optimizer": ["sgd"]}}}
    assert describe_space(when) == "momentum: 0.5 to 0.99 when optimizer in [sgd]"
