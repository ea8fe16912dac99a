"""The shipped presets: every experiment of the course material parses, is listed,
has the course's settings, and runs end to end on tiny generated data through the CLI."""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

from numsweep.analysis import load_trials
from numsweep.cli import cli
from numsweep.engine import TrialSpec
from numsweep.sweeps import SweepSpec, SweepSpecError, load_spec, parse_spec, preset_names
from numsweep.sweeps.spec import StageSpec, check_against_images, resolve_data
from tests.conftest import make_images

PRESETS = ["fc-one-cycle", "fc-three-cycles", "lambda-search", "fc-wide-augmented",
           "conv-archs", "conv-longer", "label-smoothing", "conv-best", "optimizers",
           "range-tests", "cutout", "modular-nets", "conv-pareto", "pbt-lambda"]


def invoke(*args: object):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def trial(spec: SweepSpec, stage: str | None = None) -> TrialSpec:
    """The fixed parameters of a stage (default: the first) with the engine's defaults."""
    st = next(s for s in spec.stages if stage in (None, s.name))
    return TrialSpec.from_mapping(spec.stage_fixed(st))


def stage(spec: SweepSpec, name: str) -> StageSpec:
    return next(s for s in spec.stages if s.name == name)


def choices(spec: SweepSpec, entry: str) -> list[Any]:
    return [tuple(c) if isinstance(c, (list, tuple)) else c for c in spec.space[entry].choices]


def test_every_preset_of_the_course_is_shipped_and_validates() -> None:
    assert sorted(preset_names()) == sorted(PRESETS)
    for name in PRESETS:
        spec = load_spec(name)
        assert spec.name == name
        assert spec.description and "\n" not in spec.description
        assert spec.dataset in ("cifar10", "fashion_mnist")
        for st in spec.stages:  # every stage's fixed parameters make a valid trial
            trial(spec, st.name)


def test_sweep_presets_lists_each_preset_on_one_line() -> None:
    result = invoke("sweep", "presets")
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    assert [line.split("\t")[0] for line in lines] == sorted(PRESETS)
    assert all(len(line.split("\t")) == 2 and line.split("\t")[1] for line in lines)


def _fc(n_s: int, cycles: int) -> Callable[[SweepSpec], None]:
    def check(spec: SweepSpec) -> None:
        t = trial(spec)
        assert (t.model, t.hidden, t.lam, t.eta_min, t.eta_max) == ("mlp", (50,), 0.01, 1e-5,
                                                                      1e-1)
        assert (t.n_s, t.cycles, t.batch_size, t.schedule) == (n_s, cycles, 100, "cyclic")
        # data_batch_1 for training, data_batch_2 for validation
        assert (t.n_train, t.n_val) == (10000, 10000)
        assert not spec.space
    return check


def _lambda_search(spec: SweepSpec) -> None:
    lam = spec.space["lam"]
    assert lam.log and np.log10(lam.grid_values()) == pytest.approx(np.linspace(-5, -1, 8))
    coarse, fine, final = spec.stages
    assert coarse.sampler == "grid"
    t = trial(spec, "coarse")
    assert (t.hidden, t.cycles, t.n_s, t.n_train, t.n_val) == ((50,), 2, None, None, 5000)
    assert fine.sampler == "random" and fine.narrow is not None
    assert fine.narrow.source == "coarse"
    t = trial(spec, "final")
    assert final.sampler == "best" and (t.n_train, t.n_val, t.cycles) == (None, 1000, 3)


def _fc_wide(spec: SweepSpec) -> None:
    t = trial(spec)
    assert t.model == "mlp" and t.hidden[0] >= 500 and len(t.hidden) == 1
    assert t.dropout > 0 and t.flip > 0 and t.translate > 0
    assert {c[0] for c in choices(spec, "optimizer,eta_min,eta_max")} == {"adam", "nesterov"}


def _conv(archs: list[tuple[int, int]], cycle_mult: int) -> Callable[[SweepSpec], None]:
    def check(spec: SweepSpec) -> None:
        assert choices(spec, "f,nf") == archs
        t = trial(spec)
        assert (t.model, t.nh, t.lam, t.n_s, t.cycles, t.cycle_mult, t.batch_size) == (
            "convnet", 50, 0.003, 800, 3, cycle_mult, 100)
        assert (t.eta_min, t.eta_max, t.n_train, t.n_val) == (1e-5, 1e-1, None, 1000)
    return check


def _label_smoothing(spec: SweepSpec) -> None:
    eps = set()
    for st in spec.stages:
        t = trial(spec, st.name)
        assert (t.model, t.f, t.nf, t.nh, t.lam) == ("convnet", 4, 40, 300, 0.0025)
        assert (t.n_s, t.cycle_mult, t.cycles) == (800, 2, 4)
        eps |= {c["eps"] for c in st.configs}
    assert eps == {0.0, 0.1} and len(spec.stages) == 2


def _conv_best(spec: SweepSpec) -> None:
    t = trial(spec)
    assert t.model == "convnet" and t.flip > 0 and t.translate > 0
    assert (t.f, t.nf) == ((4, 8), (40, 80))  # patches of two sizes concatenated
    assert {"lam", "eps", "eta_decay"} <= set(spec.space)
    assert [s.sampler for s in spec.stages] == ["tpe", "best"]


def _optimizers(spec: SweepSpec) -> None:
    t = trial(spec)
    assert (t.hidden, t.batch_size, t.schedule) == ((1000, 1000), 128, "constant") and t.lam > 0
    rules = [c[0] for c in choices(spec, "optimizer,eta_max")]
    assert rules == ["adagrad", "rmsprop", "rmsprop_nesterov", "adadelta", "adam"]
    rates = dict(choices(spec, "optimizer,eta_max"))
    # Nesterov momentum 0.9 multiplies RMSProp's step by about 10: a tenth of its rate
    assert rates["rmsprop_nesterov"] == pytest.approx(rates["rmsprop"] / 10)
    assert choices(spec, "dropout_input,dropout") == [(0.0, 0.0), (0.2, 0.5)]
    assert spec.epochs is not None and spec.epochs < 200 and "200" in spec.description
    assert t.n_train is not None and t.n_updates == spec.epochs * (t.n_train // 128)
    course = trial(spec.with_overrides({"epochs": "200"}))
    assert course.n_updates == 200 * (t.n_train // 128)


def _range_tests(spec: SweepSpec) -> None:
    assert spec.dataset == "fashion_mnist"
    assert choices(spec, "batch_size") == [64 * 2**k for k in range(8)]  # 64 .. 8192
    clr, sizes, cbs = (stage(spec, n) for n in ("clr-exp-decay", "batch-size-test",
                                                 "cyclic-batch"))
    assert trial(spec, clr.name).schedule == "exp_range" and clr.configs == ({"batch_size": 64},)
    assert sizes.sampler == "grid" and trial(spec, sizes.name).n_updates is not None
    t = trial(spec, cbs.name)
    assert t.batch_schedule == "cyclic" and t.b_min == 64


def _cutout(spec: SweepSpec) -> None:
    t = trial(spec)
    assert t.model == "convnet" and t.cutout > 0
    assert {2, 4, 8, 16, 32} <= set(choices(spec, "aug_copies"))
    assert "ResNet" in spec.description and "no ResNets" in spec.description


def _modular(spec: SweepSpec) -> None:
    t = trial(spec, "fc")
    assert t.model == "mlp" and len(t.hidden) >= 2 and set(choices(spec, "dropout")) >= {0.0}
    assert max(choices(spec, "dropout")) > 0
    for name, epochs in (("conv3-one-epoch", 1), ("conv3-long", 10)):
        t = trial(spec, name)
        assert (t.model, t.filter_size, t.nf, t.nh, t.conv_stride) == ("convnet3", 7, 32, 500, 1)
        assert t.n_train is not None and t.n_updates == epochs * (t.n_train // t.batch_size)


def _conv_pareto(spec: SweepSpec) -> None:
    search, final = spec.stages
    assert [o.text for o in spec.stage_objectives(search)] == ["val_acc:max",
                                                               "train_seconds:min"]
    assert search.sampler == "nsga2" and final.sampler == "best" and final.pick == "knee"
    assert (4, 10) in choices(spec, "f,nf") and len(choices(spec, "nh")) > 1
    t = trial(spec)
    assert (t.model, t.lam, t.n_s, t.batch_size, t.n_val) == ("convnet", 0.003, 800, 100, 1000)


def _pbt_lambda(spec: SweepSpec) -> None:
    t = trial(spec, "population")
    assert (t.model, t.f, t.nf, t.nh) == ("convnet", 4, 10, 50)
    reference = trial(load_spec("lambda-search"), "coarse")  # the same length
    assert (t.cycles, t.n_s, t.batch_size, t.n_val, t.eta_min) == (
        reference.cycles, reference.n_s, reference.batch_size, reference.n_val,
        reference.eta_min)
    pop, final = spec.stages
    assert pop.sampler == "pbt" and pop.pbt is not None and pop.pbt.population == 16
    assert set(spec.space) == {"lam", "eta_max"} and final.sampler == "best"


CHECKS: dict[str, Callable[[SweepSpec], None]] = {
    "fc-one-cycle": _fc(500, 1),
    "fc-three-cycles": _fc(800, 3),
    "lambda-search": _lambda_search,
    "fc-wide-augmented": _fc_wide,
    "conv-archs": _conv([(2, 3), (4, 10), (8, 40), (16, 160)], 1),
    "conv-longer": _conv([(4, 10), (8, 40), (4, 40)], 2),
    "label-smoothing": _label_smoothing,
    "conv-best": _conv_best,
    "optimizers": _optimizers,
    "range-tests": _range_tests,
    "cutout": _cutout,
    "modular-nets": _modular,
    "conv-pareto": _conv_pareto,
    "pbt-lambda": _pbt_lambda,
}


@pytest.mark.parametrize("name", PRESETS)
def test_preset_has_the_course_settings(name: str) -> None:
    CHECKS[name](load_spec(name))


# epochs, dataset and single-run stages

SINGLE = """
name = "s"
dataset = "{dataset}"
epochs = 3
[fixed]
schedule = "constant"
n_train = 1000
batch_size = 64
[[stages]]
name = "run"
sampler = "list"
[[stages]]
name = "longer"
sampler = "list"
epochs = 5
"""


def test_epochs_set_n_updates_per_stage_and_follow_overrides() -> None:
    spec = parse_spec(tomllib.loads(SINGLE.format(dataset="cifar10")), "s.toml")
    assert [s.configs for s in spec.stages] == [({},), ({},)]  # one run each
    assert trial(spec, "run").n_updates == 3 * 15 and trial(spec, "longer").n_updates == 5 * 15
    spec = spec.with_overrides({"n_train": "640", "epochs": "2", "longer.epochs": "4"})
    assert trial(spec, "run").n_updates == 20 and trial(spec, "longer").n_updates == 40


@pytest.mark.parametrize(("change", "message"), [
    ({"schedule": "cyclic"}, "epochs=3: needs a fixed schedule without cycles"),
    ({"n_train": "auto"}, "epochs=3: needs a fixed n_train"),
    ({"n_updates": "10"}, "epochs=3: n_updates is set too"),
    ({"epochs": "0"}, "epochs=0 must be a positive integer"),
    ({"dataset": "mnist"}, "dataset='mnist' must be one of cifar10, fashion_mnist"),
])
def test_epochs_and_dataset_errors_name_the_field(change: dict[str, str], message: str) -> None:
    spec = parse_spec(tomllib.loads(SINGLE.format(dataset="cifar10")), "s.toml")
    with pytest.raises(SweepSpecError, match=message.replace("(", r"\(")):
        spec.with_overrides(change)


def test_dataset_is_resolved_in_a_data_folder_and_checked(tmp_path: Path) -> None:
    (tmp_path / "fashion_mnist.npz").write_bytes(b"")
    fashion, cifar = load_spec("range-tests"), load_spec("conv-archs")
    assert resolve_data(fashion, str(tmp_path)) == str(tmp_path / "fashion_mnist.npz")
    assert resolve_data(cifar, str(tmp_path)) == str(tmp_path)  # left to the data loader
    assert resolve_data(cifar, None) is None  # downloaded
    with pytest.raises(SweepSpecError, match="is not downloaded by numsweep: pass --data"):
        resolve_data(fashion, None)
    with pytest.raises(SweepSpecError, match="dataset='fashion_mnist' but the data holds "
                                             "cifar10 images"):
        check_against_images(fashion, (32, 32, 3), 10)
    check_against_images(cifar, (32, 32, 3), 10)
    check_against_images(cifar, (16, 16, 3), 10)  # images of one's own are accepted


# end to end on tiny generated data

@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding a tiny cifar10.npz (32x32x3) and fashion_mnist.npz (28x28)."""
    folder = tmp_path_factory.mktemp("data")
    rng = np.random.default_rng(1)
    for name, shape in (("cifar10", (32, 32, 3)), ("fashion_mnist", (28, 28))):
        x_train, y_train = make_images(400, rng, shape)
        x_test, y_test = make_images(100, rng, shape)
        np.savez(folder / f"{name}.npz", x_train=x_train, y_train=y_train, x_test=x_test,
                 y_test=y_test)
    return folder


SMOKE = {
    "fc-three-cycles": ["n_train=300", "n_val=100", "n_s=6", "eval_train=100"],
    "label-smoothing": ["n_train=300", "n_val=100", "n_s=3", "cycles=2", "nf=4", "nh=8",
                        "eval_train=100"],
    "range-tests": ["n_train=300", "n_val=100", "eval_train=100", "hidden=8", "n_s=8",
                    "space.batch_size.choices=[32,64]", "batch-size-test.n_updates=5",
                    "clr-exp-decay.cycles=1", "cyclic-batch.cycles=1", "cyclic-batch.b_max=128"],
    "conv-pareto": ["n_train=300", "n_val=100", "n_s=3", "eval_train=100",
                    "search.n_trials=6"],
    "pbt-lambda": ["n_train=300", "n_val=100", "n_s=6", "eval_train=100",
                   "population.population=4", "population.interval=8",
                   "population.metric_subset=50"],
}


@pytest.mark.parametrize("name", list(SMOKE))
def test_preset_runs_from_the_cli(name: str, data_dir: Path, tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'p.db'}"
    result = invoke("sweep", "run", name, *SMOKE[name], "--jobs", "1", "--db", db,
                    "--data", data_dir)
    assert result.exit_code == 0, result.output
    trials = load_trials(db, name)
    assert set(trials["state"]) == {"COMPLETE"}
    assert set(trials["stage"]) == {st.name for st in load_spec(name).stages}
    if name == "label-smoothing":  # its report overlays the curves of its two stages
        report = invoke("report", name, "-o", tmp_path / "report", "--db", db)
        assert report.exit_code == 0, report.output
        assert (tmp_path / "report" / "report.html").exists()
        assert (tmp_path / "report" / "curves.png").exists()
    if name == "conv-pareto":  # a two-objective search: its report shows the front
        report = invoke("report", name, "-o", tmp_path / "report", "--db", db)
        assert report.exit_code == 0, report.output
        assert (tmp_path / "report" / "front-search.png").exists()
        text = (tmp_path / "report" / "report.md").read_text()
        assert (r"Pareto front of stage search (val\_acc:max, train\_seconds:min; chosen: "
                "pick = knee)") in text and " (chosen) |" in text
        show = invoke("sweep", "show", name, "--db", db)
        assert "objectives: val_acc:max, train_seconds:min" in show.output
        assert "Pareto front:" in show.output and "pick = knee" in show.output


def test_configs_outside_an_overridden_space_are_a_spec_error() -> None:
    with pytest.raises(SweepSpecError, match=r"stages.clr-exp-decay.configs\[0\]: batch_size=64 "
                                             "is outside space.batch_size"):
        load_spec("range-tests", {"space.batch_size.choices": "[16, 32]"})


def test_a_preset_on_the_wrong_dataset_is_a_one_line_error(data_dir: Path,
                                                           tmp_path: Path) -> None:
    result = invoke("sweep", "run", "range-tests", "--jobs", "1",
                    "--db", f"sqlite:///{tmp_path / 'w.db'}",
                    "--data", data_dir / "cifar10.npz")
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        f"Error: {load_spec('range-tests').origin}: dataset='fashion_mnist' but the data holds "
        "cifar10 images; pass --data with fashion_mnist (or a folder holding "
        "fashion_mnist.npz)"]
