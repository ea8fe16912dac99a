"""Fused trials: a trial trained in a group gives what it gives alone, with the same seeds.

``train`` trains a lone MLP or ConvNet as a group of one; its agreement with the reference
layers is tested in test_fast_path.py. Here: the fused gradients against K lone networks'
reference ``loss``, and every trial of a group of K = 2 and 5 against its lone run (float64:
relative 1e-10; float32: the rounding of a different summation order, a few float32 ulps
growing over the updates, checked at 1e-4), for every model, optimizer and schedule kind;
divergence and pruning take a trial out of a group without touching the others (float64
to 1e-10: the wide products of the fused layouts for K > 1 may round a trial's numbers
differently by its place in them, so "untouched" is checked to rounding, not bitwise).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from numsweep.engine import Split, TrialSpec, load_dataset, make_split, train
from numsweep.engine.fused import FusedPatchConvNet, fuse
from numsweep.engine.group import group_key, groupable, train_group
from numsweep.engine.networks import MLP, ConvNet3, PatchConvNet
from numsweep.engine.optimizers import make_optimizer
from numsweep.engine.pertrial import PerTrial
from numsweep.engine.spec import RULE_PARAMETERS
from numsweep.engine.streams import data_rng, resolve_data_seed
from tests.conftest import for_model

BASE = {"n_train": 120, "n_val": 40, "batch_size": 20, "n_s": 4, "cycles": 2,
        "curve_points": 2, "eval_train": 60, "f": 4, "nf": 3, "nh": 8, "hidden": (10,)}


@pytest.fixture(scope="module")
def splits(tiny_npz: Path) -> dict[str, Split]:
    data = load_dataset(tiny_npz)
    return {dt: make_split(data, BASE["n_train"], BASE["n_val"], np.dtype(dt))
            for dt in ("float64", "float32")}


def variants(spec: TrialSpec, k: int) -> list[TrialSpec]:
    """k specs of one group: the per-trial values spread, the last one ``spec`` itself."""
    out = []
    for i in range(k - 1):
        changes: dict[str, Any] = {"seed": spec.seed + 10 + i, "lam": 0.002 * i,
                                   "eta_max": spec.eta_max * (0.5 + 0.3 * i),
                                   "eta_min": spec.eta_min * (1 + i),
                                   "dropout": 0.1 * (i % 3), "dropout_input": 0.05 * (i % 2)}
        rule = {"momentum": 0.5 + 0.1 * i, "beta1": 0.8 + 0.02 * i, "beta2": 0.99 + 0.001 * i,
                "rho": 0.8 + 0.05 * i, "opt_eps": 1e-8 * (1 + i)}
        changes.update({k: v for k, v in rule.items()  # those of the spec's update rule
                        if spec.optimizer in RULE_PARAMETERS[k][1]})
        if spec.loss == "softmax":
            changes["eps"] = 0.05 * (i % 3)
        if spec.schedule in ("cyclic", "step"):
            changes["eta_decay"] = 0.9 - 0.1 * (i % 2) if spec.schedule == "step" else 0.8
        if spec.schedule == "exp_range":
            changes["gamma"] = 0.99 - 0.01 * i
        out.append(spec.replace(data_seed=resolve_data_seed(spec), **changes))
    return [*out, spec]


def assert_same(a: Any, b: Any, rtol: float) -> None:
    """Two TrialResults of the same trial: curves, metrics and counts."""
    assert (a.updates, a.diverged, a.stopped, a.message) == (b.updates, b.diverged, b.stopped,
                                                             b.message)
    assert a.spec == b.spec
    assert [(c.step, c.split, c.lr) for c in a.curves] == [(c.step, c.split, c.lr)
                                                           for c in b.curves]
    for field in ("loss", "cost", "acc"):
        np.testing.assert_allclose([getattr(c, field) for c in a.curves],
                                   [getattr(c, field) for c in b.curves], rtol=rtol, atol=0)
    np.testing.assert_allclose([a.val_acc, a.test_acc, a.train_acc],
                               [b.val_acc, b.test_acc, b.train_acc], rtol=rtol)
    assert a.param_count == b.param_count and a.epochs == b.epochs


CASES = {
    "mlp_sgd_cyclic": {"model": "mlp", "hidden": (10, 6)},
    "mlp_momentum_constant": {"model": "mlp", "optimizer": "momentum", "schedule": "constant",
                              "eta_max": 0.02, "n_updates": 10},
    "mlp_adam_linear_svm": {"model": "mlp", "optimizer": "adam", "schedule": "linear",
                            "eta_max": 0.003, "n_updates": 10, "loss": "svm"},
    "convnet_sgd_exp_range": {"model": "convnet", "schedule": "exp_range", "gamma": 0.99},
    "convnet_nesterov_step_leaky": {"model": "convnet", "optimizer": "nesterov",
                                    "schedule": "step", "step_size": 4, "eta_decay": 0.5,
                                    "eta_max": 0.02, "n_updates": 10,
                                    "activation": "leaky_relu"},
    "convnet_rmsprop_exponential": {"model": "convnet", "optimizer": "rmsprop",
                                    "schedule": "exponential", "eta_min": 1e-4,
                                    "eta_max": 3e-3, "n_updates": 10},
    "convnet_multi_adagrad_batch_cyclic": {"model": "convnet", "f": (4, 8), "nf": (3, 2),
                                           "optimizer": "adagrad", "eta_max": 0.02,
                                           "batch_schedule": "cyclic", "b_min": 10,
                                           "b_max": 30},
    "convnet_rmsprop_nesterov_augment": {"model": "convnet", "optimizer": "rmsprop_nesterov",
                                         "eta_max": 0.003, "flip": 0.5, "translate": 1,
                                         "cutout": 4, "aug_copies": 2},
    "mlp_adadelta_he": {"model": "mlp", "optimizer": "adadelta", "eta_max": 1.0,
                        "init": "he", "schedule": "constant", "n_updates": 10},
}


@pytest.mark.parametrize("k", [1, 2, 5])
@pytest.mark.parametrize("name", list(CASES))
def test_a_trial_in_a_group_matches_its_lone_run(splits: dict[str, Split], name: str,
                                                 k: int) -> None:
    spec = TrialSpec.from_mapping(for_model({**BASE, "seed": 3, "dtype": "float64", **CASES[name]}))
    specs = variants(spec, k)
    results = train_group(specs, splits["float64"])
    assert len(results) == k
    for s, result in zip(specs, results, strict=True):
        assert not result.diverged
        assert_same(result, train(s, splits["float64"]), rtol=1e-10)
    first = results[-1].curves
    assert first[-2].loss < first[0].loss  # it trained: not a comparison of idle networks


def test_eight_convnet3_trials_in_a_group_match_their_lone_runs(splits: dict[str, Split]
                                                                ) -> None:
    """K = 8 three-layer ConvNets fused, one of them pruned at the first period's end: each
    result is its lone run's (float64 to 1e-10), the pruned one's too."""
    spec = TrialSpec.from_mapping(for_model({**BASE, "seed": 5, "dtype": "float64",
                                             "model": "convnet3", "filter_size": 3,
                                             "optimizer": "adam", "eta_max": 0.003}))
    specs = variants(spec, 8)

    def prune_third(step: int, val_acc: float) -> bool:
        return True

    reporters = [prune_third if i == 2 else None for i in range(8)]
    results = train_group(specs, splits["float64"], reporters=reporters)
    assert results[2].stopped and sum(r.stopped for r in results) == 1
    for i, (s, result) in enumerate(zip(specs, results, strict=True)):
        alone = train(s, splits["float64"], reporter=reporters[i])
        assert_same(result, alone, rtol=1e-10)


@pytest.mark.parametrize("name", ["convnet_nesterov_step_leaky",
                                  "convnet_multi_adagrad_batch_cyclic"])
def test_a_convnet_group_in_chunks_of_trials_matches_lone_runs(
        splits: dict[str, Split], name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The feature-major ConvNet runs its trials in cache-sized chunks: here 2 of 5 trials
    per chunk (the tiny images fit any chunk otherwise)."""
    per_trial = 8 * 20 * (3 * 16 if "multi" not in name else 3 * 16 + 2 * 4)
    monkeypatch.setattr(FusedPatchConvNet, "CHUNK_BYTES", 2 * per_trial)
    spec = TrialSpec.from_mapping(for_model({**BASE, "seed": 3, "dtype": "float64", **CASES[name]}))
    specs = variants(spec, 5)
    for s, result in zip(specs, train_group(specs, splits["float64"]), strict=True):
        assert_same(result, train(s, splits["float64"]), rtol=1e-10)


@pytest.mark.parametrize("name", ["mlp_adam_linear_svm", "convnet_multi_adagrad_batch_cyclic",
                                  "convnet_sgd_exp_range"])
def test_float32_groups_match_lone_runs_to_rounding(splits: dict[str, Split],
                                                    name: str) -> None:
    spec = TrialSpec.from_mapping(for_model({**BASE, "seed": 4, "dtype": "float32", **CASES[name]}))
    specs = variants(spec, 5)
    for s, result in zip(specs, train_group(specs, splits["float32"]), strict=True):
        alone = train(s, splits["float32"])
        np.testing.assert_allclose([c.loss for c in result.curves],
                                   [c.loss for c in alone.curves], rtol=1e-4)
        np.testing.assert_allclose([c.acc for c in result.curves],
                                   [c.acc for c in alone.curves], atol=0.03)


@pytest.mark.parametrize("shared_input", [False, True])
@pytest.mark.parametrize("model", ["mlp", "convnet", "convnet_multi", "convnet3",
                                   "convnet3_pad0"])
def test_fused_gradients_match_lone_reference_losses(model: str, shared_input: bool) -> None:
    """train_step of K fused networks against each lone network's reference ``loss``, with
    per-trial label smoothing, dropout rates and gradient scales; with input dropout (each
    trial's own input: products batched per trial) and without (the shared input: the wide
    products of the fused layouts)."""
    rng = np.random.default_rng(0)
    k = 3
    dropout = [0.0, 0.3, 0.2]
    dropout_input = [0.0, 0.0, 0.0] if shared_input else [0.1, 0.0, 0.2]
    nets: list[Any] = []
    for i in range(k):
        r = np.random.default_rng(i)
        common = {"rng": r, "dtype": np.float64, "dropout": dropout[i],
                  "dropout_input": dropout_input[i]}
        if model == "mlp":
            nets.append(MLP(48, (7, 5), 4, **common))
        elif model == "convnet":
            nets.append(PatchConvNet((4, 4, 3), 2, 3, 6, 4, **common))
        elif model == "convnet_multi":
            nets.append(PatchConvNet((8, 8, 3), (2, 4), (3, 2), 6, 4, **common))
        else:  # the three-layer ConvNet: padded 3x3 filters, or unpadded 5x5 ones
            size, pad = (3, None) if model == "convnet3" else (5, 0)
            nets.append(ConvNet3((8, 8, 3), 3, size, 6, 4, pad=pad, **common))
    fused = fuse(nets, dropout, dropout_input)
    shape = (6, 4, 4, 3) if model in ("mlp", "convnet") else (6, 8, 8, 3)
    x = nets[0].prepare(rng.normal(size=shape))
    y = rng.integers(0, 4, size=6)
    eps = np.array([0.0, 0.1, 0.2])
    scale = np.array([1.0, 0.5, 0.25])
    losses, grads = fused.train_step(x, y, eps=eps, scale=scale,
                                     rngs=[np.random.default_rng(50 + i) for i in range(k)])
    for i, net in enumerate(nets):
        loss, _, ref = net.loss(x, y, lam=0.0, eps=float(eps[i]),
                                rng=np.random.default_rng(50 + i))
        assert losses[i] == pytest.approx(loss, rel=1e-12)
        for name, g in ref.items():
            np.testing.assert_allclose(fused.lone_param(name, grads[name])[i].reshape(g.shape),
                                       scale[i] * g,
                                       rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(fused.scores(x)[1], nets[1].scores(x), rtol=1e-12)


def test_per_trial_values_round_like_python_floats() -> None:
    """1 - rho of K values, meeting a float32 array, equals what a lone trial's float gives."""
    rho = PerTrial([0.9, 0.999])
    a = np.ones((2, 3, 1), np.float32)
    np.testing.assert_array_equal((a * (1 - rho))[:, 0, 0],
                                  [np.float32(1) * (1 - 0.9), np.float32(1) * (1 - 0.999)])
    b = np.ones((2, 1, 1), np.float32)
    b *= rho
    assert b.dtype == np.float32 and b[1, 0, 0] == np.float32(0.999)
    opt = make_optimizer(TrialSpec(optimizer="rmsprop", rho=0.8))
    assert opt.rho == 0.8  # lone trials keep plain floats


def test_a_diverging_trial_leaves_the_group_and_the_others_train_on_unchanged(
        splits: dict[str, Split]) -> None:
    spec = TrialSpec.from_mapping(for_model({**BASE, "model": "convnet", "dtype": "float64",
                                             "seed": 1, "data_seed": 9, "optimizer": "adam",
                                             "eta_max": 0.003}))
    wild = spec.replace(seed=2, eta_max=1e150, eta_min=1e149)
    others = [spec, spec.replace(seed=3, lam=0.01)]
    with_it = train_group([others[0], wild, others[1]], splits["float64"])
    without = train_group(others, splits["float64"])
    assert with_it[1].diverged and "diverged" in with_it[1].message
    assert np.isnan(with_it[1].val_acc) and with_it[1].updates < without[0].updates
    # to rounding, not bitwise: the fused ConvNet's filter product is one product as wide
    # as the group (the feature-major FusedPatchConvNet), and a BLAS kernel may round a trial's rows
    # differently at another place in it
    for a, b in zip((with_it[0], with_it[2]), without, strict=True):
        assert not a.diverged
        assert_same(a, b, rtol=1e-10)
    alone = train(wild, splits["float64"])
    assert alone.diverged and alone.message == with_it[1].message


def test_a_pruned_trial_leaves_the_group_and_the_others_go_on(
        splits: dict[str, Split]) -> None:
    spec = TrialSpec.from_mapping(for_model({**BASE, "model": "mlp", "dtype": "float64", "seed": 1,
                                   "data_seed": 9, "cycles": 3, "optimizer": "momentum",
                                   "eta_max": 0.02}))
    specs = [spec, spec.replace(seed=2, lam=0.01), spec.replace(seed=3, eta_max=0.05)]
    calls: list[tuple[int, float]] = []

    def prune_first_period(step: int, val_acc: float) -> bool:
        calls.append((step, val_acc))
        return True

    grouped = train_group(specs, splits["float64"], reporters=[None, prune_first_period, None])
    assert grouped[1].stopped and grouped[1].updates == 8 and len(calls) == 1
    assert "stopped by the pruner at update 8" in grouped[1].message
    alone = train(specs[1], splits["float64"], reporter=lambda s, v: True)
    assert_same(grouped[1], alone, rtol=1e-10)
    # the others as in a group without it: to rounding, not bitwise, because the fused
    # MLP's first layer is one product as wide as the group (the wide FusedMLP), and a trial's place
    # in it may change a product's last bits
    without = train_group([specs[0], specs[2]], splits["float64"])
    for a, b in zip((grouped[0], grouped[2]), without, strict=True):
        assert not a.stopped and a.updates == 24
        assert_same(a, b, rtol=1e-10)


def test_group_key_and_what_cannot_be_grouped(splits: dict[str, Split]) -> None:
    spec = TrialSpec(model="convnet", seed=1)
    assert group_key(spec) == group_key(spec.replace(lam=0.1, seed=1, eps=0.1, dropout=0.2,
                                                     data_seed=1))
    assert group_key(spec) != group_key(spec.replace(seed=2))      # data_seed follows seed
    assert group_key(spec) == group_key(spec.replace(seed=2, data_seed=1))
    assert group_key(spec) != group_key(spec.replace(batch_size=50))
    assert all(groupable(spec.replace(model=m)) for m in ("mlp", "convnet", "convnet3"))
    small = TrialSpec.from_mapping(for_model({**BASE, "dtype": "float64"}))
    with pytest.raises(ValueError, match="share batch_size"):
        train_group([small, small.replace(batch_size=10)], splits["float64"])
    conv3 = TrialSpec.from_mapping(for_model({**BASE, "dtype": "float64", "model": "convnet3"}))
    with pytest.raises(ValueError, match="share filter_size"):
        train_group([conv3, conv3.replace(filter_size=5)], splits["float64"])
    assert train_group([], splits["float64"]) == []


def test_two_streams_data_seed_fixes_the_batches_and_seed_the_initialisation(
        splits: dict[str, Split]) -> None:
    spec = TrialSpec.from_mapping(for_model({**BASE, "dtype": "float64", "seed": 5}))
    base = train(spec, splits["float64"])
    assert base.spec.data_seed == 5  # unset: the trial's seed, stored resolved
    other_data = train(spec.replace(data_seed=6), splits["float64"])
    other_init = train(spec.replace(seed=6, data_seed=5), splits["float64"])
    # same initial network with another data stream; another one with the same data
    assert other_data.curves[0] == base.curves[0] and other_data.curves[-1] != base.curves[-1]
    assert other_init.curves[0] != base.curves[0]
    # the data stream is not the trial stream even for equal seeds
    assert not np.array_equal(data_rng(5).permutation(50),
                              np.random.default_rng(5).permutation(50))


def test_each_trial_s_curve_points_are_told_as_they_are_measured(
        splits: dict[str, Split]) -> None:
    """The point watchers hear each trial's curve points as they are measured (one call per
    curve point, every split of it, with the planned updates): together they are the curve
    its result holds; a pruned trial's stop at its last point."""
    spec = TrialSpec.from_mapping(for_model({**BASE, "model": "mlp", "dtype": "float64",
                                             "seed": 1, "data_seed": 9, "cycles": 3}))
    specs = [spec, spec.replace(seed=2, lam=0.01)]
    heard: list[list[tuple[Any, int]]] = [[], []]

    def watcher(i: int) -> Any:
        return lambda points, total: heard[i].append((points, total))

    results = train_group(specs, splits["float64"], on_points=[watcher(0), watcher(1)],
                          reporters=[None, lambda step, val: True])
    for result, calls in zip(results, heard, strict=True):
        assert [p for points, _ in calls for p in points] == list(result.curves)
        assert all(len({p.step for p in points}) == 1 and len(points) == 2
                   for points, _ in calls)  # train and val of one step
        assert {total for _, total in calls} == {24}
    # before training, half way through the first cycle and at its end, where it stops
    assert results[1].stopped and [points[0].step for points, _ in heard[1]] == [0, 4, 8]
    for lone_spec in (spec, spec.replace(model="convnet3", hidden=[50], filter_size=3, cycles=1)):
        alone: list[Any] = []  # a group of one
        lone = train(lone_spec, splits["float64"],
                     on_points=lambda points, total, alone=alone: alone.extend(points))
        assert alone == list(lone.curves)


@pytest.mark.parametrize("k", [1, 3])
@pytest.mark.parametrize("changes", [
    {"optimizer": "adam", "eta_max": 0.003, "filter_size": 3},
    {"filter_size": 5, "conv_pad": 0, "activation": "leaky_relu", "loss": "svm"},
], ids=["adam_cyclic", "sgd_unpadded_leaky_svm"])
def test_convnet3_fused_in_a_group_matches_its_lone_run(
        splits: dict[str, Split], changes: dict[str, Any], k: int) -> None:
    """The fused three-layer ConvNet (fused.FusedConvNet3) trained as a group of K against
    each trial's lone run (``train``, a group of one): float64 to 1e-10, with per-trial
    values spread (dropout and input dropout included)."""
    spec = TrialSpec.from_mapping(for_model({**BASE, "seed": 3, "dtype": "float64",
                                             "model": "convnet3", **changes}))
    specs = variants(spec, k)
    alone = [train(s, splits["float64"]) for s in specs]
    for result, lone in zip(train_group(specs, splits["float64"]), alone, strict=True):
        assert not result.diverged
        assert_same(result, lone, rtol=1e-10)
    assert alone[-1].curves[-2].loss < alone[-1].curves[0].loss
