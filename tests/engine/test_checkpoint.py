"""Checkpoints: a run killed after a curve point and resumed ends exactly as an uninterrupted
run (bitwise, float32 and float64, one BLAS thread), a lone trial and a fused group alike;
a torn, corrupt or foreign checkpoint is ignored with a warning; kept weights round-trip and
reproduce the test accuracy.

The kills are real: a subprocess trains with the checkpoint and SIGKILLs itself right after
its second checkpoint is written (``save_state`` wrapped), then this process resumes.
"""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

import numsweep.engine.checkpoint as checkpoint_module
from numsweep.engine import Split, TrialSpec, load_dataset, make_split, train, train_group
from numsweep.engine.checkpoint import (
    CheckpointWarning,
    WeightsError,
    load_state,
    load_weights,
    measure_test_accuracy,
    save_weights,
)
from tests.killed_child import run_killed_after_second_save

BASE = {"n_train": 120, "n_val": 40, "batch_size": 20, "n_s": 4, "cycles": 3,
        "curve_points": 2, "eval_train": 60}
SHAPES: dict[str, dict[str, Any]] = {"mlp": {"hidden": (10,)},
                                     "convnet": {"f": 4, "nf": 3, "nh": 8},
                                     "convnet3": {"nf": 3, "nh": 8}}

LONE = {"model": "convnet", **SHAPES["convnet"], "optimizer": "adam", "eta_max": 0.003,
        "dropout": 0.2, "lam": 0.001, "seed": 3, "dtype": "float32", "flip": 0.5, "translate": 1}
GROUP = {"model": "mlp", **SHAPES["mlp"], "optimizer": "nesterov", "dropout_input": 0.1,
         "dtype": "float64", "data_seed": 11}


def group_specs() -> list[TrialSpec]:
    return [TrialSpec(**BASE, **GROUP, seed=s, lam=0.001 * s, eta_max=0.05 + 0.02 * s)
            for s in range(3)]


def stop_first_at_first_period(i: int) -> Any:
    """Trial 0 of the group is pruned at the end of its first cycle (before the kill), so
    the checkpoint also holds a trial that already left the group."""
    def reporter(step: int, val_acc: float) -> bool:
        return i == 0
    return reporter


@pytest.fixture(scope="module")
def split64(tiny_npz: Path) -> Split:
    return make_split(load_dataset(tiny_npz), BASE["n_train"], BASE["n_val"],
                      np.dtype("float64"))


@pytest.fixture(scope="module")
def split32(tiny_npz: Path) -> Split:
    return make_split(load_dataset(tiny_npz), BASE["n_train"], BASE["n_val"],
                      np.dtype("float32"))


def assert_identical(a: Any, b: Any) -> None:
    """The same curves and metrics, bitwise (seconds and the message aside)."""
    assert a.curves == b.curves
    assert a.spec == b.spec
    for name in ("val_acc", "test_acc", "train_acc", "updates", "param_count", "epochs",
                 "diverged", "stopped"):
        assert getattr(a, name) == getattr(b, name), name


KILLED_CALL = """
from threadpoolctl import threadpool_limits
import numsweep.engine.train as train_module
from tests.engine.test_checkpoint import *

data = load_dataset(sys.argv[1])
path = sys.argv[2]
with threadpool_limits(1):
    {call}
"""


def run_killed(call: str, npz: Path, path: Path) -> None:
    """Run ``call`` in a subprocess that SIGKILLs itself after its second checkpoint."""
    run_killed_after_second_save(KILLED_CALL.format(call=call), npz, path)
    assert path.exists()


def test_a_lone_trial_killed_after_its_second_curve_point_resumes_to_the_same_result(
        tiny_npz: Path, split32: Split, tmp_path: Path) -> None:
    spec = TrialSpec(**BASE, **LONE)
    path = tmp_path / "lone.npz"
    with threadpool_limits(1):
        reference = train(spec, split32)
    run_killed("train(TrialSpec(**BASE, **LONE), make_split(data, 120, 40, "
               "np.dtype('float32')), checkpoint=path)", tiny_npz, path)
    state = load_state(path, _digest([spec], split32))
    assert state is not None and 0 < state.step < reference.updates
    with threadpool_limits(1):
        resumed = train(spec, split32, checkpoint=path)
    assert_identical(resumed, reference)
    assert f"resumed from its checkpoint at update {state.step}" in resumed.message


def test_a_fused_group_killed_after_its_second_curve_point_resumes_to_the_same_results(
        tiny_npz: Path, split64: Split, tmp_path: Path) -> None:
    specs = group_specs()
    path = tmp_path / "group.npz"

    def reporters() -> list[Any]:
        return [stop_first_at_first_period(i) for i in range(3)]

    with threadpool_limits(1):
        reference = train_group(specs, split64, reporters=reporters())
    assert reference[0].stopped and not reference[1].stopped
    run_killed("train_group(group_specs(), make_split(data, 120, 40, np.dtype('float64')), "
               "reporters=[stop_first_at_first_period(i) for i in range(3)], "
               "checkpoint=path)", tiny_npz, path)
    state = load_state(path, _digest(specs, split64))
    assert state is not None and state.active == [1, 2] and 0 in state.results
    heard: list[tuple[int, float]] = []

    def listening(step: int, val_acc: float) -> bool:
        heard.append((step, val_acc))
        return False

    with threadpool_limits(1):
        resumed = train_group(specs, split64, checkpoint=path,
                              reporters=[reporters()[0], listening, None])
    for a, b in zip(resumed, reference, strict=True):
        assert_identical(a, b)
    # the reporter heard again the reports before the checkpoint: one per cycle end
    assert [s for s, _ in heard] == [8, 16]


def _digest(specs: list[TrialSpec], split: Split) -> str:
    return checkpoint_module.state_digest(specs, split.y_train, split.x_train.shape[1:],
                                          split.num_classes)


def interrupted_checkpoint(specs: list[TrialSpec], split: Split, path: Path,
                           monkeypatch: pytest.MonkeyPatch) -> None:
    """``path``: the checkpoint a run interrupted after its second one would leave (a copy
    of the second write of a run in this process)."""
    live = path.with_name("live.npz")
    saves = []
    original = checkpoint_module.save_state

    def save_and_copy_the_second(*args: Any, **kwargs: Any) -> None:
        original(*args, **kwargs)
        saves.append(1)
        if len(saves) == 2:
            shutil.copyfile(live, path)

    with monkeypatch.context() as m:
        m.setattr(checkpoint_module, "save_state", save_and_copy_the_second)
        if len(specs) == 1:
            train(specs[0], split, checkpoint=live)
        else:
            train_group(specs, split, checkpoint=live)
    assert path.exists()


@pytest.mark.parametrize("damage", ["torn", "corrupt", "garbage", "other specs"])
def test_a_damaged_or_foreign_checkpoint_is_ignored_with_a_warning(
        split64: Split, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, damage: str) -> None:
    specs = group_specs()
    path = tmp_path / "group.npz"
    reference = train_group(specs, split64)
    if damage == "other specs":
        other = [s.replace(lam=0.5) for s in specs]
        interrupted_checkpoint(other, split64, path, monkeypatch)
    else:
        interrupted_checkpoint(specs, split64, path, monkeypatch)
        data = path.read_bytes()
        if damage == "torn":
            path.write_bytes(data[: len(data) // 2])
        elif damage == "corrupt":  # bytes changed inside an array: the zip CRC catches it
            middle = len(data) // 3
            path.write_bytes(data[:middle] + bytes(b ^ 0xFF for b in data[middle:middle + 64])
                             + data[middle + 64:])
        else:
            path.write_text("not a checkpoint\n")
    with pytest.warns(CheckpointWarning) as caught:
        results = train_group(specs, split64, checkpoint=path)
    [warning] = [w for w in caught if w.category is CheckpointWarning]
    text = str(warning.message)
    assert str(path) in text and "starts from update 0" in text and "\n" not in text
    for a, b in zip(results, reference, strict=True):
        assert_identical(a, b)
        assert "resumed" not in a.message


def test_convnet3_resumes_from_its_checkpoint(split32: Split, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    spec = TrialSpec(**{**BASE, "cycles": 2}, model="convnet3", **SHAPES["convnet3"],
                     filter_size=3,
                     optimizer="momentum", eta_max=0.05, dropout=0.2, dtype="float32", seed=4)
    path = tmp_path / "c3.npz"
    reference = train(spec, split32)
    interrupted_checkpoint([spec], split32, path, monkeypatch)
    resumed = train(spec, split32, checkpoint=path)
    assert_identical(resumed, reference)
    assert "resumed from its checkpoint" in resumed.message


def test_a_convnet3_group_resumes_from_its_checkpoint(split64: Split, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """A fused group of three-layer ConvNets checkpoints as every group does: resumed, each
    trial ends bitwise as the uninterrupted group's."""
    spec = TrialSpec(**{**BASE, "cycles": 2}, model="convnet3", **SHAPES["convnet3"],
                     filter_size=3, optimizer="adam", eta_max=0.003, dtype="float64", seed=4)
    specs = [spec.replace(seed=4 + i, data_seed=4, lam=0.001 * i, dropout=0.1 * i)
             for i in range(3)]
    path = tmp_path / "c3group.npz"
    reference = train_group(specs, split64)
    interrupted_checkpoint(specs, split64, path, monkeypatch)
    resumed = train_group(specs, split64, checkpoint=path)
    for a, b in zip(resumed, reference, strict=True):
        assert_identical(a, b)
        assert "resumed from its checkpoint" in a.message


def test_no_checkpoint_file_trains_from_the_start_without_a_warning(
        split64: Split, tmp_path: Path) -> None:
    spec = group_specs()[1]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = train(spec, split64, checkpoint=tmp_path / "missing" / "c.npz")
    assert (tmp_path / "missing" / "c.npz").exists()  # the last curve point's state
    assert not list((tmp_path / "missing").glob("*.tmp"))
    assert result.message == ""


@pytest.mark.parametrize("model", ["mlp", "convnet", "convnet3"])
def test_kept_weights_round_trip_and_reproduce_the_test_accuracy(
        tiny_npz: Path, split32: Split, tmp_path: Path, model: str) -> None:
    extra = {"filter_size": 3} if model == "convnet3" else {}
    spec = TrialSpec(**{**BASE, "cycles": 1}, model=model, dtype="float32", seed=2,
                     **SHAPES[model], **extra)
    path = tmp_path / f"{model}.npz"
    result = train(spec, split32, weights=path)
    kept = load_weights(path)
    assert kept.spec == spec and kept.info["test_acc"] == result.test_acc
    assert kept.info["image_shape"] == list(split32.x_train.shape[1:])
    assert sum(a.size for a in kept.params.values()) == result.param_count
    assert measure_test_accuracy(kept, load_dataset(tiny_npz)) == result.test_acc
    again = tmp_path / "again.npz"
    save_weights(again, kept.spec, kept.params, **kept.info)
    twice = load_weights(again)
    assert twice.info == kept.info
    for name, a in kept.params.items():
        np.testing.assert_array_equal(twice.params[name], a)
        assert twice.params[name].dtype == np.float32


def test_a_group_keeps_each_trials_weights_in_the_lone_layout(split64: Split,
                                                              tmp_path: Path) -> None:
    specs = [TrialSpec(**BASE, model="convnet", **SHAPES["convnet"], seed=s, data_seed=5,
                       dtype="float64")
             for s in range(3)]
    paths = [tmp_path / f"t{i}.npz" for i in range(3)]
    results = train_group(specs, split64, weights=paths)
    for _spec, path, result in zip(specs, paths, results, strict=True):
        kept = load_weights(path)
        assert measure_test_accuracy(kept, split64) == result.test_acc
        assert kept.params["F"].shape == (4 * 4 * 3, 3)  # the lone (d, nf) layout


@pytest.mark.parametrize("model", ["mlp", "convnet3"])  # the fused path and the lone one
def test_a_weights_file_that_cannot_be_written_keeps_the_result(
        split32: Split, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, model: str) -> None:
    import errno

    extra = {"filter_size": 3} if model == "convnet3" else {}
    spec = TrialSpec(**{**BASE, "cycles": 1}, model=model, dtype="float32", seed=2, **extra)
    expected = train(spec, split32)

    def disk_full(path: Any, arrays: Any) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(checkpoint_module, "write_npz_atomic", disk_full)
    path = tmp_path / "w.npz"
    result = train(spec, split32, weights=path)
    assert result.message == (f"network not kept ({path}): OSError: [Errno 28] No space left "
                              f"on device")
    assert not result.diverged
    assert (result.val_acc, result.test_acc, result.updates) == (
        expected.val_acc, expected.test_acc, expected.updates)
    assert not path.exists()


def test_missing_or_damaged_weights_files_are_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match="does not exist"):
        load_weights(tmp_path / "none.npz")
    bad = tmp_path / "bad.npz"
    bad.write_text("nope")
    with pytest.raises(WeightsError, match=f"weights file {bad} is unreadable"):
        load_weights(bad)
    foreign = tmp_path / "foreign.npz"
    np.savez(foreign, header=np.frombuffer(b'{"format": "x"}', np.uint8))
    with pytest.raises(WeightsError, match="is not numsweep-weights-1"):
        load_weights(foreign)


@pytest.mark.parametrize("k", [1, 3])
def test_a_resumed_run_tells_its_watchers_the_points_it_restored_first(
        split64: Split, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, k: int) -> None:
    """A resumed trial's live curve starts at update 0: the points restored from the
    checkpoint come first (at once), then each new one; together its whole curve."""
    specs = group_specs()[:k]
    path = tmp_path / "group.npz"
    interrupted_checkpoint(specs, split64, path, monkeypatch)
    heard: list[list[tuple[Any, ...]]] = [[] for _ in specs]
    watchers = [lambda points, total, i=i: heard[i].append(points) for i in range(k)]
    if k == 1:
        results = [train(specs[0], split64, checkpoint=path, on_points=watchers[0])]
    else:
        results = train_group(specs, split64, checkpoint=path, on_points=watchers)
    for result, calls in zip(results, heard, strict=True):
        assert "resumed from its checkpoint" in result.message
        assert len(calls[0]) > 2  # the restored points, in one call
        assert [p for points in calls for p in points] == list(result.curves)
