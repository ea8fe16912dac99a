"""A trained trial stores ``data_seed`` resolved to its ``seed``: it names no configuration,
so tables, labels and the report leave it out unless it was set apart from the seed."""

from __future__ import annotations

import pandas as pd

from numsweep.analysis.selection import config_labels, varying_parameters
from numsweep.analysis.tables import trial_table


def _frame(data_seeds: list[int]) -> pd.DataFrame:
    return pd.DataFrame({"trial_id": [1, 2, 3], "sweep": ["s"] * 3, "stage": ["c"] * 3,
                         "state": ["COMPLETE"] * 3, "seed": [11, 22, 33],
                         "lam": [0.001, 0.01, 0.1], "data_seed": data_seeds,
                         "val_acc": [0.3, 0.4, 0.35]})


def test_a_data_seed_equal_to_the_seed_is_not_a_varying_parameter() -> None:
    frame = _frame([11, 22, 33])
    assert varying_parameters(frame) == ["lam"]
    assert config_labels(frame).tolist() == ["lam=0.001", "lam=0.01", "lam=0.1"]
    assert "data_seed" not in trial_table(frame, 80).columns + trial_table(frame, 80).hidden


def test_a_data_seed_set_apart_from_the_seed_still_is() -> None:
    assert varying_parameters(_frame([5, 6, 7])) == ["lam", "data_seed"]
