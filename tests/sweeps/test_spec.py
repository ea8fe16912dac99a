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


MLP = BASE.replace('hidden = [20]', 'model = "mlp"')


@pytest.mark.parametrize(("text", "message"), [
    (MLP.replace('model = "mlp"', 'model = "mlp"\nf = 5\nnf = 7\nfilter_size = 9'),
     "fixed.f=5 is invalid: expected 4 (unset) with model=mlp (it applies to model=convnet)"),
    (MLP.replace('model = "mlp"', 'model = "convnet"\nhidden = [100, 100]'),
     "fixed.hidden=[100, 100] is invalid: expected [50] (unset) with model=convnet"),
    (MLP.replace('model = "mlp"', 'model = "convnet3"\nf = 8'),
     "f=8 is invalid: expected 4 (unset) with model=convnet3"),
    (MLP + 'fixed = { model = "convnet", filter_size = 5 }\n',
     "stages.coarse.fixed.filter_size=5 is invalid: expected 3 (unset) with model=convnet"),
    (MLP.replace("[space]", "[space]\nnf = { type = \"int\", low = 2, high = 10 }"),
     "space.nf.low: nf=2 is invalid: expected 10 (unset) with model=mlp"),
    (MLP.replace("[space]", "[space]\nnf = { choices = [10] }"),
     "space.nf: nf is searched in stage coarse with model=mlp, which does not use it"),
    (BASE.replace('hidden = [20]', '').replace(
        "[space]", '[space]\nmodel = { choices = ["mlp", "convnet"] }\nf = { choices = [2, 4] }'),
     "f=2 is invalid: expected 4 (unset) with model=mlp"),
    (MLP.replace('model = "mlp"', 'momentum = 0.5'),
     "fixed.momentum=0.5 is invalid: expected 0.9 (unset) with optimizer=sgd"),
    (MLP.replace("[space]", '[space]\noptimizer = { choices = ["sgd", "adam"] }\n'
                            'momentum = { choices = [0.9] }'),
     "space.momentum: momentum is searched in stage coarse with optimizer=sgd"),
])
def test_parameters_of_another_model_are_refused(tmp_path: Path, text: str, message: str
                                                 ) -> None:
    assert_one_line_spec_error(tmp_path, text, message)


def test_a_shape_parameter_is_searched_where_its_model_is(tmp_path: Path) -> None:
    conditional = BASE.replace('hidden = [20]', '').replace(
        "[space]", '[space]\nmodel = { choices = ["mlp", "convnet"] }\n'
                   'f = { choices = [2, 4], when = { model = "convnet" } }')
    assert load_spec(write_spec(tmp_path, conditional)).space["f"].when == {
        "model": ("convnet",)}
    per_stage = BASE.replace('hidden = [20]', '').replace(
        "[space]", '[space]\n"f,nf" = { choices = [[2, 3], [4, 10]] }') + \
        'fixed = { model = "convnet" }\n'
    assert load_spec(write_spec(tmp_path, per_stage)).stages[0].fixed["model"] == "convnet"
    exp_range = BASE.replace('hidden = [20]', 'schedule = "exp_range"').replace(
        "[space]", "[space]\ngamma = { type = \"float\", low = 0.9, high = 0.99, grid = 2 }")
    assert load_spec(write_spec(tmp_path, exp_range)).space["gamma"].high == 0.99
