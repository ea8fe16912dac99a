"""A stage's plan: the stored JSON form reads back unchanged, older forms still read."""

from __future__ import annotations

import json

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


def test_the_measurement_that_chose_the_group_size_reads_back() -> None:
    stored = {**STORED, "group_size": 8, "group_auto": True,
              "group_pace": {"1": 0.0021, "2": 0.0024, "8": 0.00135}}
    plan = StagePlan.from_dict(stored)
    assert plan.group_pace == {1: 0.0021, 2: 0.0024, 8: 0.00135}
    assert plan.to_dict() == stored
    assert json.loads(json.dumps(plan.to_dict())) == stored  # as plan_json holds it
    assert plan.describe_pace() == "measured per trial-update: K=1 2.10 ms, 2 2.40 ms, 8 1.35 ms"
    # a plan without one (an older numsweep, --group-size given): nothing stored or said
    older = StagePlan.from_dict({**STORED, "group_size": 4, "group_auto": True})
    assert older.group_pace == {} and "group_pace" not in older.to_dict()
    assert older.describe_pace() == ""
    assert StagePlan.from_dict({**STORED, "group_pace": "garbled"}).group_pace == {}
