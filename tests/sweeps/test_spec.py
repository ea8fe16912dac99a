from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from numsweep.sweeps import SweepSpecError, load_spec
from tests.sweeps.conftest import assert_one_line_spec_error, write_spec

EXAMPLE = Path(__file__).parents[2] / "examples" / "lambda-coarse.toml"

BASE = """
name = "s"
[fixed]
hidden = [20]
[space]
lam = { type = "float", low = 1e-5, high = 1e-1, log = true, grid = 8 }
[[stages]]
name = "coarse"
sampler = "grid"
"""


def test_example_spec_loads_with_a_log10_grid() -> None:
    spec = load_spec(EXAMPLE)
    assert spec.name == "lambda-coarse"
    values = spec.space["lam"].grid_values()
    assert len(values) == 8
    assert values[0] == pytest.approx(1e-5) and values[-1] == pytest.approx(1e-1)
    ratios = [b / a for a, b in itertools.pairwise(values)]
    assert ratios == pytest.approx([10 ** (4 / 7)] * 7)


def test_overrides_change_fixed_parameters() -> None:
    spec = load_spec(EXAMPLE, {"n_train": "2000", "cycles": "1"})
    assert spec.fixed["n_train"] == 2000 and spec.fixed["cycles"] == 1


def test_a_command_line_parameter_beats_a_stage_fixed_value_and_a_stage_one_beats_both(
        ) -> None:
    spec = load_spec("lambda-search", {"cycles": "1"})
    final = spec.stage_fixed(spec.stages[2])  # the preset's final fixes cycles = 3
    assert final["cycles"] == 1 and final["n_val"] == 1000
    assert all(spec.stage_fixed(s)["cycles"] == 1 for s in spec.stages)
    # whatever order they come in, STAGE.KEY wins in its stage
    spec = load_spec("lambda-search", {"final.cycles": "4", "cycles": "1"})
    assert spec.stage_fixed(spec.stages[2])["cycles"] == 4
    assert spec.stage_fixed(spec.stages[0])["cycles"] == 1


@pytest.mark.parametrize(("text", "message"), [
    ("bogus = 1\n" + BASE, "unknown key 'bogus'"),
    (BASE + "bogus = 1\n", "stages[0].bogus: unknown key"),
    (BASE.replace("hidden = [20]", "hiden = [20]"), "fixed.hiden: unknown parameter"),
    (BASE.replace("hidden = [20]", "lam = -1.0"), "lam=-1.0 is invalid"),
    (BASE.replace("hidden = [20]", 'batch_size = "big"'), "batch_size='big' is invalid"),
    (BASE.replace("low = 1e-5", "low = 1.0"), "low=1.0 is above high"),
    (BASE.replace("low = 1e-5", "low = -1.0"), "a log range needs low > 0"),
    (BASE.replace(", grid = 8", ""), "has no 'grid'"),
    (BASE.replace("grid = 8", "grid = 0"), "grid=0 must be a positive integer"),
    (BASE.replace('sampler = "grid"', 'sampler = "magic"'), "sampler='magic' must be one of"),
    (BASE.replace('sampler = "grid"', 'sampler = "tpe"'), "n_trials is required"),
    (BASE.replace("[[stages]]\nname = \"coarse\"\nsampler = \"grid\"\n", ""), "'stages'"),
    ("name = [", "invalid TOML"),
])
def test_invalid_specs_give_one_line_errors(tmp_path: Path, text: str, message: str) -> None:
    assert_one_line_spec_error(tmp_path, text, message)


def test_invalid_override_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(SweepSpecError, match="cycles='x' is invalid"):
        load_spec(write_spec(tmp_path, BASE), {"cycles": "x"})
    with pytest.raises(SweepSpecError, match="unknown parameter"):
        load_spec(write_spec(tmp_path, BASE), {"cylces": "2"})


def test_missing_spec_file(tmp_path: Path) -> None:
    with pytest.raises(SweepSpecError, match="no such spec file"):
        load_spec(tmp_path / "none.toml")
