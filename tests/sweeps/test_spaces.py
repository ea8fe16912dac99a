"""Search spaces, stages and overrides in sweep specs: what loads, and the one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from numsweep.sweeps import SweepSpecError, load_spec, parse_spec, preset_names
from numsweep.sweeps.spec import check_against_images, grid_points, parse_duration
from tests.sweeps.conftest import assert_one_line_spec_error, write_spec

SPACES = """
name = "s"
[fixed]
hidden = [20]
[space]
lam = { type = "float", low = 1e-5, high = 1e-1, log = true, grid = 3 }
optimizer = { choices = ["sgd", "momentum"] }
momentum = { low = 0.5, high = 0.9, grid = 2, when = { optimizer = ["momentum"] } }
[[stages]]
name = "coarse"
sampler = "grid"
[[stages]]
name = "fine"
sampler = "tpe"
n_trials = 6
narrow = { top_k = 2, widen = 1 }
time_budget = "2m"
[[stages]]
name = "final"
sampler = "best"
fixed = { cycles = 3, n_val = 1000 }
"""

CONV = """
name = "arch"
[fixed]
model = "convnet"
[space]
"f,nf" = { choices = [[2, 3], [4, 10], [8, 40], [16, 160]] }
[[stages]]
name = "coarse"
sampler = "grid"
"""


def test_conditional_parameter_only_in_grid_points_where_its_condition_holds(
        tmp_path: Path) -> None:
    spec = load_spec(write_spec(tmp_path, SPACES))
    points = grid_points(spec.space, spec.fixed)
    assert len(points) == 3 * (1 + 2)  # sgd without momentum, momentum with 2 values
    assert all("momentum" not in p for p in points if p["optimizer"] == "sgd")
    assert sorted(p["momentum"] for p in points if p["optimizer"] == "momentum") == \
        [0.5, 0.5, 0.5, 0.9, 0.9, 0.9]
    assert len({repr(sorted(p.items())) for p in points}) == len(points)
    fine = spec.stages[1]
    assert fine.narrow is not None and fine.narrow.source == "coarse" and fine.narrow.top_k == 2
    assert fine.time_budget == 120
    assert spec.stages[2].fixed == {"cycles": 3, "n_val": 1000}


def test_tied_parameters_take_their_values_together(tmp_path: Path) -> None:
    spec = load_spec(write_spec(tmp_path, CONV))
    points = grid_points(spec.space, spec.fixed)
    assert [(p["f"], p["nf"]) for p in points] == [(2, 3), (4, 10), (8, 40), (16, 160)]
    check_against_images(spec, (32, 32, 3), 10)  # every f divides 32


def test_f_that_does_not_divide_the_images_names_the_field(tmp_path: Path) -> None:
    spec = load_spec(write_spec(tmp_path, CONV.replace("[16, 160]", "[5, 10]")))
    with pytest.raises(SweepSpecError) as info:
        check_against_images(spec, (32, 32, 3), 10)
    message = str(info.value)
    assert message.startswith(str(tmp_path / "spec.toml"))
    assert "space.f,nf" in message and "f=5 does not divide" in message
    assert "\n" not in message


@pytest.mark.parametrize(("text", "message"), [
    (SPACES.replace("low = 1e-5", "low = -1e-5").replace("log = true, ", ""),
     "space.lam.low: lam=-1e-05 is invalid"),
    (SPACES.replace('[fixed]\nhidden = [20]', '[fixed]\nhidden = [20]\nlam = -0.5'),
     "fixed.lam=-0.5 is invalid"),
    (SPACES.replace('choices = ["sgd", "momentum"]', "choices = []"),
     "space.optimizer.choices must be a non-empty list"),
    (SPACES.replace('choices = ["sgd", "momentum"]', 'choices = ["sgd", "magic"]'),
     "space.optimizer.choices: optimizer='magic' is invalid"),
    (SPACES.replace("when = { optimizer", "when = { optimiser"), "when.optimiser: unknown"),
    (SPACES.replace('when = { optimizer = ["momentum"] }', 'when = { optimizer = ["nesterov"] }')
     .replace('optimizer = { choices = ["sgd", "momentum"] }\n', ""),
     "would never be searched"),
    (CONV.replace("[2, 3], ", "[2], "), "must be a list of 2 values (f, nf)"),
    (CONV.replace("[[2, 3], [4, 10], [8, 40], [16, 160]]", "[]"),
     "choices must be a non-empty list"),
    (CONV.replace('"f,nf" = { choices = [[2, 3], [4, 10], [8, 40], [16, 160]] }', ""),
     "the space is empty (an empty grid)"),
    (SPACES.replace("top_k = 2", "top_k = 0"), "narrow.top_k=0 must be a positive integer"),
    (SPACES.replace('time_budget = "2m"', 'time_budget = "soon"'), "time_budget='soon'"),
    (SPACES.replace('sampler = "best"', 'sampler = "best"\nfrom = "later"'),
     "from='later' must name an earlier stage"),
    (SPACES.replace("n_trials = 6", "n_trials = 6\npruner = \"median\"\nreplicates = 2"),
     "needs replicates = 1"),
    (SPACES.replace("n_trials = 6", "n_trials = 6\nconfigs = [{ cycles = 2 }]"),
     "cycles is not searched"),
    (SPACES.replace("n_trials = 6", "n_trials = 6\nconfigs = [{ lam = -2.0 }]"),
     "stages.fine.configs[0].lam=-2.0 is invalid"),
    (SPACES.replace("n_trials = 6", "n_trials = 6\nfixed = { lam = 0.1 }"),
     "lam is searched; a stage cannot fix it"),
])
def test_invalid_spaces_and_stages_give_one_line_errors(tmp_path: Path, text: str,
                                                        message: str) -> None:
    assert_one_line_spec_error(tmp_path, text, message)


def test_overrides_fix_parameters_change_stages_and_ranges(tmp_path: Path) -> None:
    spec = load_spec(write_spec(tmp_path, SPACES), {
        "optimizer": "sgd", "fine.n_trials": "9", "fine.cycles": "4", "final.n_val": "500",
        "space.lam.grid": "5", "name": "other", "seed": "3"})
    assert spec.name == "other" and spec.seed == 3
    assert spec.fixed["optimizer"] == "sgd" and "optimizer" not in spec.space
    assert spec.stages[1].n_trials == 9 and spec.stages[1].fixed == {"cycles": 4}
    assert spec.stages[2].fixed["n_val"] == 500
    assert spec.space["lam"].grid == 5


@pytest.mark.parametrize(("overrides", "message"), [
    ({"lam": "-1"}, "fixed.lam=-1.0 is invalid"),
    ({"nope.n_trials": "3"}, "override nope.n_trials=3: no stage named 'nope'"),
    ({"fine.n_trials": "0"}, "stages.fine.n_trials=0 must be a positive integer"),
    ({"fine.sampler": "magic"}, "stages.fine.sampler='magic' must be one of"),
    ({"fine.lamb": "1"}, "unknown stage key or parameter 'lamb'"),
    ({"space.lamb.grid": "2"}, "space has no entry 'lamb'"),
    ({"space.lam.grid": "0"}, "space.lam.grid=0 must be a positive integer"),
])
def test_invalid_overrides_name_the_file_and_field(tmp_path: Path, overrides: dict[str, str],
                                                   message: str) -> None:
    path = write_spec(tmp_path, SPACES)
    with pytest.raises(SweepSpecError) as info:
        load_spec(path, overrides)
    assert message in str(info.value)
    assert str(info.value).startswith(str(path))
    assert "\n" not in str(info.value)


def test_explicit_configurations_and_every_sampler_parse() -> None:
    for sampler in ("random", "tpe", "qmc", "gp", "cmaes"):
        spec = parse_spec({"name": "x", "space": {"lam": {"low": 0.0, "high": 0.1}},
                           "stages": [{"sampler": sampler, "n_trials": 3,
                                       "configs": [{"lam": 0.01}]}]}, "<t>")
        assert spec.stages[0].configs == ({"lam": 0.01},)
    listed = parse_spec({"name": "x", "space": {"lam": {"low": 0.0, "high": 0.1}},
                         "stages": [{"sampler": "list", "configs": [{"lam": 0.0}]}]}, "<t>")
    assert listed.stages[0].sampler == "list"


def test_durations() -> None:
    assert parse_duration("30m") == 1800
    assert parse_duration("1h30m") == 5400
    assert parse_duration("90s") == 90 and parse_duration(12) == 12
    with pytest.raises(SweepSpecError, match="positive duration"):
        parse_duration("0m")


def test_lambda_search_preset_is_shipped_and_resolves_by_name() -> None:
    assert "lambda-search" in preset_names()
    spec = load_spec("lambda-search")
    assert [s.sampler for s in spec.stages] == ["grid", "random", "best"]
    assert len(spec.space["lam"].grid_values()) == 8
    assert spec.fixed["cycles"] == 2 and spec.fixed["n_val"] == 5000
    assert spec.stages[2].fixed == {"n_val": 1000, "cycles": 3}
    with pytest.raises(SweepSpecError, match="no such spec file or preset"):
        load_spec("no-such-preset")
