"""``numsweep gradcheck``: a table or JSON of every check, exit code 1 when one fails."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from numsweep.cli import cli
from numsweep.engine import gradcheck, layers


def test_gradcheck_table_lists_every_check() -> None:
    result = CliRunner().invoke(cli, ["gradcheck"])
    assert result.exit_code == 0, result.output
    for name in gradcheck.checks():
        assert name in result.output
    assert f"all {len(gradcheck.checks())} gradient checks within 1e-07" in result.output


def test_gradcheck_json_of_chosen_checks() -> None:
    result = CliRunner().invoke(cli, ["gradcheck", "--json", "--check", "conv",
                                      "--check", "svm_loss"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert [r["name"] for r in rows] == ["conv", "svm_loss"]
    assert all(r["passed"] and 0 <= r["max_rel_error"] <= 1e-7 and r["entries"] > 0
               for r in rows)


def test_gradcheck_exits_1_when_a_gradient_is_wrong(monkeypatch: pytest.MonkeyPatch) -> None:
    right = layers.relu_backward
    monkeypatch.setattr(layers, "relu_backward", lambda d, c: right(d, c) * np.float64(1.001))
    result = CliRunner().invoke(cli, ["gradcheck", "--check", "relu", "--check", "affine"])
    assert result.exit_code == 1
    assert "FAIL" in result.output
    assert "Error: 1 of 2 gradient checks exceed 1e-07: relu" in result.output


def test_gradcheck_unknown_check_is_an_error() -> None:
    result = CliRunner().invoke(cli, ["gradcheck", "--check", "nope"])
    assert result.exit_code == 1
    assert "Error: unknown gradient check 'nope'" in result.output


def test_gradcheck_table_fits_columns_when_piped() -> None:
    result = CliRunner().invoke(cli, ["gradcheck", "--check", "conv"], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    assert max(len(line) for line in result.output.splitlines()) <= 80
    assert "…" not in result.output and "pad 1" in result.output  # wrapped, not cut
