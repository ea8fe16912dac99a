"""Every model, update rule, schedule kind, batch schedule, loss and range test gives the
numbers recorded in ``reference_values.json`` (see ``reference_cases.py``): float64 to a
relative 1e-10, float32 to its rounding (a different summation order moves a few ulps,
growing over the updates; an accuracy may move by one image where two scores tie to
rounding)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from tests.engine.reference_cases import REFERENCE_FILE, cases, dataset, run_case

CASES = cases()


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return dataset(tmp_path_factory.mktemp("reference"))


@pytest.fixture(scope="module")
def recorded() -> dict[str, Any]:
    return json.loads(Path(REFERENCE_FILE).read_text())


def _close(got: Any, want: Any, rel: float, acc_step: float, where: str) -> None:
    if isinstance(want, list):
        assert isinstance(got, list) and len(got) == len(want), f"{where}: length"
        for i, (g, w) in enumerate(zip(got, want, strict=True)):
            _close(g, w, rel, acc_step, f"{where}[{i}]")
    elif isinstance(want, dict):
        assert set(got) == set(want), f"{where}: keys"
        for key in want:
            step = acc_step if "acc" in key else 0.0
            _close(got[key], want[key], rel, step, f"{where}.{key}")
    elif isinstance(want, (bool, str)) or want is None:
        assert got == want, f"{where}: {got!r} != {want!r}"
    elif isinstance(want, float) and math.isnan(want):
        assert math.isnan(got), f"{where}: {got!r} is not NaN"
    else:
        tol = max(rel * abs(want), rel, acc_step)
        assert abs(got - want) <= tol, f"{where}: {got!r} != {want!r} (tolerance {tol:g})"


def test_every_case_is_recorded(recorded: dict[str, Any]) -> None:
    assert set(recorded) == set(CASES)


@pytest.mark.parametrize("name", sorted(CASES))
def test_the_engine_gives_the_recorded_numbers(name: str, data: Any,
                                               recorded: dict[str, Any]) -> None:
    case = CASES[name]
    float32 = case["specs"][0].dtype == "float32"
    n_val = case["specs"][0].n_val
    got = json.loads(json.dumps(run_case(case, data)))  # the file's float and list types
    if float32:
        _close(got, recorded[name], 1e-4, 1.0 / n_val, name)
    else:
        _close(got, recorded[name], 1e-10, 0.0, name)
