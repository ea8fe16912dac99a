from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from numsweep.engine import DataError, TrialSpec, load_dataset, make_split, train


def test_mlp_learns_tiny_data(tiny_npz: Path) -> None:
    data = load_dataset(tiny_npz)
    result = train(TrialSpec(lam=0.001, n_train=500, n_val=100, batch_size=50, cycles=2,
                             eta_max=0.05), data)
    assert result.val_acc > 0.5
    assert result.updates == 2 * 2 * 20
    assert result.spec.n_s == 20
    steps = sorted({c.step for c in result.curves})
    assert steps[0] == 0 and steps[-1] == result.updates
    assert {c.split for c in result.curves} == {"train", "val"}


def test_convnet_overfits_a_small_training_set(tiny_npz: Path) -> None:
    data = load_dataset(tiny_npz)
    spec = TrialSpec(model="convnet", f=4, nf=8, nh=32, n_train=100, n_val=100, batch_size=20,
                     n_s=100, cycles=2, eta_max=0.05)
    assert train(spec, data).train_acc == 1.0


def test_same_seed_same_result(tiny_npz: Path) -> None:
    data = load_dataset(tiny_npz)
    spec = TrialSpec(n_train=300, n_val=100, batch_size=50, cycles=1, seed=7)
    a, b = train(spec, data), train(spec, data)
    assert a.val_acc == b.val_acc
    assert [c.loss for c in a.curves] == [c.loss for c in b.curves]


def test_diverging_run_stops_and_says_so(tiny_npz: Path) -> None:
    data = load_dataset(tiny_npz)
    result = train(TrialSpec(n_train=300, n_val=100, batch_size=50, cycles=1, eta_min=1e3,
                             eta_max=1e4, schedule="constant"), data)
    assert result.diverged
    assert "diverged" in result.message
    assert result.updates < 2 * 6
    assert np.isnan(result.val_acc)


def test_split_normalises_with_training_statistics(tiny_npz: Path) -> None:
    split = make_split(load_dataset(tiny_npz), 400, 100)
    flat = split.x_train.reshape(400, -1)
    np.testing.assert_allclose(flat.mean(axis=0), 0, atol=1e-4)
    np.testing.assert_allclose(flat.std(axis=0), 1, atol=1e-3)
    assert len(split.x_val) == 100 and len(split.x_test) == 200


def test_split_larger_than_data_is_an_error(tiny_npz: Path) -> None:
    with pytest.raises(DataError, match="exceeds the 600 training images"):
        make_split(load_dataset(tiny_npz), 550, 100)


@pytest.mark.parametrize(("changes", "steps", "ends"), [
    # Doubling cycles of 6 and 12 updates, 2 points per cycle.
    ({"cycle_mult": 2, "n_s": 3}, [0, 3, 6, 12, 18], [6]),
    ({"schedule": "exp_range", "gamma": 0.99, "n_s": 3}, [0, 3, 6, 9, 12], [6]),
    # Non-cyclic: epochs of 300 // 50 = 6 updates, 2 points per epoch; 15 updates.
    ({"schedule": "linear", "n_updates": 15}, [0, 3, 6, 9, 12, 14, 15], [6, 12]),
    ({"schedule": "step", "step_size": 4, "eta_decay": 0.5, "n_updates": 12},
     [0, 3, 6, 9, 12], [6]),
    ({"schedule": "constant", "n_updates": 6}, [0, 3, 6], []),
    ({"schedule": "exponential", "n_updates": 6}, [0, 3, 6], []),
])
def test_every_schedule_records_curves_per_period(tiny_npz: Path, changes: dict[str, object],
                                                  steps: list[int], ends: list[int]) -> None:
    data = load_dataset(tiny_npz)
    spec = TrialSpec.from_mapping({"n_train": 300, "n_val": 100, "batch_size": 50, "cycles": 2,
                                   "curve_points": 2, "hidden": 16, **changes})
    reported: list[int] = []
    result = train(spec, data, reporter=lambda step, acc: reported.append(step) is not None)
    assert sorted({c.step for c in result.curves}) == steps
    assert result.updates == steps[-1]
    assert reported == ends  # the pruner hears at the end of every period but the last
    lrs = {c.step: c.lr for c in result.curves}
    assert not result.diverged and all(np.isfinite(list(lrs.values())))
    if spec.schedule not in ("cyclic", "exp_range"):
        assert result.spec.n_updates == steps[-1]


def test_records_epochs_parameter_count_and_seed(tiny_npz: Path) -> None:
    data = load_dataset(tiny_npz)
    result = train(TrialSpec(n_train=300, n_val=100, batch_size=50, cycles=1, n_s=9, seed=11,
                             hidden=(16,)), data)
    assert result.updates == 18 and result.epochs == 3.0
    assert result.param_count == 16 * 16 * 3 * 16 + 16 + 16 * 10 + 10
    assert result.spec.seed == 11
    assert result.metrics()["epochs"] == 3.0


def test_cyclic_batch_size_schedule(tiny_npz: Path) -> None:
    data = load_dataset(tiny_npz)
    spec = TrialSpec(n_train=300, n_val=100, batch_size=50, n_s=6, cycles=1,
                     batch_schedule="cyclic", b_min=10, b_max=100, hidden=(16,))
    result = train(spec, data)
    # Batch sizes 10, 25, ..., 100, ..., 25 over 12 updates: 660 images drawn.
    assert result.updates == 12 and result.epochs == pytest.approx(660 / 300)
    with pytest.raises(ValueError, match="b_max=400 exceeds n_train=300"):
        train(spec.replace(b_max=400), data)


@pytest.mark.parametrize(("optimizer", "eta"), [
    ("sgd", 0.05), ("momentum", 0.01), ("nesterov", 0.01), ("adagrad", 0.01),
    ("rmsprop", 0.001), ("rmsprop_nesterov", 0.001), ("adadelta", 1.0), ("adam", 0.001),
])
def test_every_update_rule_trains(tiny_npz: Path, optimizer: str, eta: float) -> None:
    data = load_dataset(tiny_npz)
    result = train(TrialSpec(optimizer=optimizer, schedule="constant", eta_max=eta,
                             n_updates=24, n_train=300, n_val=100, batch_size=50, hidden=(16,),
                             curve_points=1), data)
    train_loss = [c.loss for c in result.curves if c.split == "train"]
    assert train_loss[-1] < 0.75 * train_loss[0]


def test_mlp_overfits_100_examples(tiny_npz: Path) -> None:
    data = load_dataset(tiny_npz)
    spec = TrialSpec(hidden=(64,), n_train=100, n_val=100, batch_size=20, optimizer="adam",
                     schedule="constant", eta_max=1e-3, n_updates=200, eval_train=100)
    result = train(spec, data)
    assert result.train_acc == 1.0
    assert [c.loss for c in result.curves if c.split == "train"][-1] < 0.05


@pytest.mark.parametrize("loss", ["svm", "softmax"])
def test_curves_measure_the_networks_own_loss(tiny_npz: Path, loss: str) -> None:
    """The curves' loss is the trained loss (SVM hinge or cross-entropy), not always softmax."""
    from numsweep.engine.build import build_network
    from numsweep.engine.losses import softmax_cross_entropy, svm_loss

    spec = TrialSpec(loss=loss, n_train=300, n_val=100, batch_size=50, cycles=1, n_s=3,
                     hidden=(16,), eval_train=300, lam=0.01, eta_max=0.01)
    split = make_split(load_dataset(tiny_npz), 300, 100)
    result = train(spec, split)
    net = build_network(spec, split.x_train.shape[1:], 10, np.random.default_rng(spec.seed))
    scores = net.scores(net.prepare(split.x_train))
    first = next(c for c in result.curves if c.split == "train")
    assert first.step == 0
    expected = (svm_loss if loss == "svm" else softmax_cross_entropy)(scores, split.y_train)[0]
    other = (softmax_cross_entropy if loss == "svm" else svm_loss)(scores, split.y_train)[0]
    assert first.loss == pytest.approx(expected, rel=1e-5)
    assert abs(first.loss - other) > 0.1
    assert first.cost == pytest.approx(first.loss + 0.01 * sum(
        float(np.vdot(net.params[n], net.params[n])) for n in net.weight_names), rel=1e-5)
