"""The fused networks (the trained ones: K trials along a leading axis, K = 1 a lone trial)
against the reference ``loss`` of the networks they stack (the allocating layers, checked
against numerical gradients in test_gradients.py): same data losses, same gradients, and
with the L2 term (``losses.add_l2_gradient``) the reference's gradients of the cost; then
training curves against a written-out reference loop."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from numsweep.engine import Split, TrialSpec, gradcheck, load_dataset, make_split, train
from numsweep.engine.augment import Augmenter
from numsweep.engine.batch_schedules import BatchSampler
from numsweep.engine.build import build_network
from numsweep.engine.fused import fuse
from numsweep.engine.losses import add_l2_gradient
from numsweep.engine.networks import MLP, ConvNet3, PatchConvNet
from numsweep.engine.optimizers import make_optimizer
from numsweep.engine.pertrial import trial_hp
from numsweep.engine.runplan import curve_steps, resolve_n_s
from numsweep.engine.schedules import make_schedule
from numsweep.engine.streams import data_rng, resolve_data_seed, trial_rng
from numsweep.engine.workspace import Workspace
from tests.conftest import for_model

CASES = gradcheck.network_cases()


def trial_nets(case: gradcheck.NetworkCase, k: int) -> tuple[list[Any], np.ndarray, np.ndarray]:
    """k networks of ``case``'s structure (the first its gradient check's, the others other
    draws, their parameters moved by noise so biases are not zero) and the shared batch."""
    net, x, y = gradcheck.smooth_case(case)
    nets = [net]
    for i in range(1, k):
        rng = np.random.default_rng(100 + i)
        other = case.build(rng)
        for value in other.params.values():
            value += rng.normal(scale=0.1, size=value.shape)
        nets.append(other)
    return nets, x, y


def dropout_rngs(case: gradcheck.NetworkCase, k: int) -> list[Any] | None:
    if case.dropout_seed is None:
        return None
    return [np.random.default_rng(case.dropout_seed + i) for i in range(k)]


@pytest.mark.parametrize("k", [1, 3])
@pytest.mark.parametrize("name", list(CASES))
def test_the_fused_network_matches_the_reference_loss(name: str, k: int) -> None:
    """Every gradcheck network case (L2, smoothing, dropout, leaky ReLU, SVM, every model):
    train_step of K fused trials gives each trial's reference data loss and scale_k times
    its data gradients; with lam_k 2 W added, the reference's gradients of the cost."""
    case = CASES[name]
    nets, x, y = trial_nets(case, k)
    fused = fuse(nets, [n.dropout for n in nets], [n.dropout_input for n in nets])
    smooth = case.eps or (k > 1 and nets[0].loss_name == "softmax")
    eps = np.array([case.eps, 0.05, 0.2][:k]) if smooth else np.zeros(k)
    lams = np.array([case.lam, 0.01, 0.0][:k])
    for scale in (np.ones(k), np.array([0.25, 0.5, 2.0][:k])):
        losses, grads = fused.train_step(x, y, eps=eps, scale=scale,
                                         rngs=dropout_rngs(case, k))
        if scale[0] == 1:
            add_l2_gradient(grads, fused.params, fused.weight_names, trial_hp(lams))
        refs = [net.loss(x, y, lam=float(lams[i]) if scale[0] == 1 else 0.0,
                         eps=float(eps[i]), rng=(dropout_rngs(case, k) or [None] * k)[i])
                for i, net in enumerate(nets)]
        for i, (loss, _, ref) in enumerate(refs):
            assert losses[i] == pytest.approx(loss, rel=1e-12)
            assert set(grads) == set(ref)
            for key, g in ref.items():
                got = fused.lone_param(key, grads[key])[i].reshape(g.shape)
                np.testing.assert_allclose(got, scale[i] * g, rtol=1e-10, atol=1e-13)
    for i, net in enumerate(nets):
        np.testing.assert_allclose(fused.scores(x)[i], net.scores(x), rtol=1e-12)


@pytest.mark.parametrize("k", [1, 2])
@pytest.mark.parametrize("model", ["mlp", "convnet", "convnet3"])
def test_train_step_reuses_its_buffers_across_batch_sizes(model: str, k: int) -> None:
    rng = np.random.default_rng(0)
    nets: list[Any] = [
        MLP(48, (7,), 5, rng=rng, dtype=np.float32) if model == "mlp" else
        PatchConvNet((4, 4, 3), 2, 3, 6, 5, rng=rng, dtype=np.float32) if model == "convnet"
        else ConvNet3((4, 4, 3), 3, 3, 6, 5, rng=rng, dtype=np.float32) for _ in range(k)]
    net = fuse(nets, [0.0] * k, [0.0] * k)
    x = net.prepare(rng.normal(size=(9, 4, 4, 3)).astype(np.float32))
    y = rng.integers(0, 5, size=9)
    step = {"eps": np.full(k, 0.1), "rngs": None, "scale": np.ones(k)}
    first = {key: v.copy() for key, v in net.train_step(x, y, **step)[1].items()}
    _, small = net.train_step(x[:4], y[:4], **step)
    ids = {key: id(v) for key, v in small.items()}
    _, again = net.train_step(x, y, **step)
    assert {key: id(v) for key, v in again.items()} == ids
    for i, lone in enumerate(nets):
        for key, ref in lone.loss(x, y, lam=0.0, eps=0.1, rng=None)[2].items():
            assert again[key].dtype == np.float32
            got = net.lone_param(key, again[key])[i].reshape(ref.shape)
            np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-6)
    for key in first:
        np.testing.assert_array_equal(again[key], first[key])
    part = net.scores(x[3:5]).copy()  # a workspace array: the next call overwrites it
    np.testing.assert_allclose(part, net.scores(x)[:, 3:5], rtol=1e-6)


def test_workspace_views_share_one_buffer_per_name() -> None:
    ws = Workspace(np.float32)
    big = ws.get("a", (4, 3))
    small = ws.get("a", (2, 3))
    assert small.base is big.base and small.flags.c_contiguous and small.dtype == np.float32
    assert ws.get("a", (4, 3)) is big
    grown = ws.get("a", (5, 3))
    assert grown.base is not big.base and ws.get("a", (2, 3)).base is grown.base
    assert ws.get("m", (3,), np.bool_).dtype == np.bool_


def reference_training(spec: TrialSpec, split: Split) -> list[tuple[int, str, float, float]]:
    """The unoptimised engine, written out: net.loss (the allocating reference layers, L2 in
    the gradient), the optimizer's generic step, and curves from net._forward and the
    network's data loss, drawing from the trial's generator (init, dropout) and the data
    generator (batch order, augmentation) in train()'s order."""
    rng = trial_rng(spec)
    net = build_network(spec, split.x_train.shape[1:], split.num_classes, rng)
    x_tr, x_val = net.prepare(split.x_train), net.prepare(split.x_val)
    n = len(x_tr)
    plan = make_schedule(spec, resolve_n_s(spec, n), n // spec.batch_size)
    optimizer = make_optimizer(spec)
    augment = Augmenter.from_spec(spec)
    checkpoints = set(curve_steps(plan.ends, spec.curve_points))
    curves = []

    def record(step: int) -> None:
        for name, x, y in (("train", x_tr[:spec.eval_train], split.y_train[:spec.eval_train]),
                           ("val", x_val, split.y_val)):
            scores = net._forward(x, None)[0]  # type: ignore[attr-defined]
            curves.append((step, name, net.data_loss(scores, y, spec.eps)[0],
                           float((scores.argmax(axis=1) == y).mean())))

    record(0)
    sampler = BatchSampler(n, data_rng(resolve_data_seed(spec)))
    for step in range(plan.total):
        idx = sampler.next(spec.batch_size)
        if augment.active:
            xa, yb = augment(split.x_train[idx], split.y_train[idx], sampler.rng)
            xb = net.prepare(xa)
        else:
            xb, yb = x_tr[idx], split.y_train[idx]
        _, _, grads = net.loss(xb, yb, lam=spec.lam, eps=spec.eps, rng=rng)
        optimizer.step(net.params, grads, plan.schedule.lr(step))
        if step + 1 in checkpoints:
            record(step + 1)
    return curves


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("changes", [
    {"model": "mlp", "hidden": 24, "lam": 0.01},
    {"model": "convnet", "lam": 0.003, "eps": 0.1},
    {"model": "mlp", "hidden": "[20, 12]", "dropout": 0.3, "dropout_input": 0.1,
     "optimizer": "nesterov", "eta_max": 0.02, "lam": 0.001},
    {"model": "convnet", "activation": "leaky_relu", "loss": "svm", "optimizer": "adam",
     "eta_max": 0.003, "lam": 0.002, "dropout_input": 0.1, "dropout": 0.2},
    {"model": "convnet", "flip": 0.5, "translate": 2, "lam": 0.003},
    {"model": "convnet", "f": "[4, 8]", "nf": "[6, 4]", "lam": 0.003, "dropout_input": 0.1,
     "dropout": 0.2},
], ids=["mlp", "convnet", "mlp_dropout_nesterov", "convnet_leaky_svm_adam", "convnet_augment",
        "convnet_multi_size"])
def test_training_curves_match_the_reference_loop(tiny_npz: Path, changes: dict[str, object],
                                                  dtype: str) -> None:
    """train() (the fast path) and the written-out unoptimised loop, from the same seed:
    every curve point agrees to the dtype's rounding after 60 updates."""
    values = {"f": 4, "nf": 6, "nh": 16, "n_train": 300, "n_val": 100, "batch_size": 30,
              "n_s": 15, "cycles": 2, "curve_points": 3, "eval_train": 200, "seed": 3,
              "dtype": dtype, **changes}
    spec = TrialSpec.from_mapping(for_model(values))
    split = make_split(load_dataset(tiny_npz), spec.n_train, spec.n_val, np.dtype(dtype))
    result = train(spec, split)
    assert not result.diverged and result.updates == 60
    ref = reference_training(spec, split)
    got = [(c.step, c.split, c.loss, c.acc) for c in result.curves]
    assert [g[:2] for g in got] == [r[:2] for r in ref]
    rtol = 1e-10 if dtype == "float64" else 1e-5
    np.testing.assert_allclose([g[2] for g in got], [r[2] for r in ref], rtol=rtol)
    np.testing.assert_allclose([g[3] for g in got], [r[3] for r in ref], atol=0.011)
    assert ref[-2][2] < 0.9 * ref[0][2]  # it trained: the comparison is not of idle nets


def test_only_networks_of_one_structure_fuse() -> None:
    rng = np.random.default_rng(0)
    mlp = MLP(48, (7,), 5, rng=rng)
    for other in (MLP(48, (8,), 5, rng=rng), MLP(48, (7,), 5, rng=rng, activation="leaky_relu"),
                  MLP(48, (7,), 5, rng=rng, loss="svm"), PatchConvNet((4, 4, 3), 2, 3, 7, 5,
                                                                      rng=rng)):
        with pytest.raises(ValueError, match="cannot fuse networks of different structures"):
            fuse([mlp, other], [0.0, 0.0], [0.0, 0.0])
    fused = fuse([mlp, MLP(48, (7,), 5, rng=rng, dropout=0.5)], [0.0, 0.5], [0.0, 0.0])
    assert fused.structure == mlp.structure and fused.k == 2   # dropout rates are per trial
