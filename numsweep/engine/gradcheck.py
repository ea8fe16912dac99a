"""Gradient checks: every layer, loss and network against float64 centered differences.

A check compares the analytic gradient of one layer or network with a fourth-order centered
difference (error O(h^4)) and reports the largest relative error over every entry of every
input and parameter. Inputs are chosen away from the kinks (ReLU at 0, ties in max pooling,
SVM margins at 0) by trying seeds until each kink is at least ``MARGIN`` away, so that the
differences measure the gradient and not the kink. ``run_checks`` runs them all; the
``numsweep gradcheck`` command prints the result.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

import numsweep.engine.layers as layers
from numsweep.engine.fused import fuse
from numsweep.engine.losses import add_l2_gradient, l2_penalty, softmax_cross_entropy, svm_loss
from numsweep.engine.networks import MLP, ConvNet3, PatchConvNet
from numsweep.engine.pertrial import trial_hp
from numsweep.engine.spec import SpecError

TOL = 1e-7
"""Largest relative error a check may have."""

AnyNetwork = MLP | PatchConvNet | ConvNet3

MARGIN = 3e-2
"""Smallest distance of a kink from the evaluation point: several times the most the stencil
(steps up to 2h = 2e-3 on one parameter) moves a pre-activation, a pooling gap or a margin."""


def rel_error(analytic: np.ndarray, numeric: np.ndarray) -> float:
    """Largest elementwise |a - n| / max(1e-8, |a| + |n|).

    An entry whose analytic gradient is exactly zero (a path through a ReLU that is off for
    the whole batch, or a dropped unit) counts as matching when the numeric one is rounding
    noise (< 1e-10): the ratio of two zeros measures nothing.
    """
    err = np.abs(analytic - numeric) / np.maximum(1e-8, np.abs(analytic) + np.abs(numeric))
    err[(analytic == 0) & (np.abs(numeric) < 1e-10)] = 0.0
    return float(err.max()) if err.size else 0.0


def numeric_grad(f: Callable[[], float], x: np.ndarray, h: float = 1e-3) -> np.ndarray:
    """Gradient of the scalar ``f()`` w.r.t. the array ``x`` (changed in place and restored),
    by fourth-order centered differences: the truncation error is O(h^4) ~ 1e-12, and h=1e-3
    keeps float64 rounding (~1e-16 |f| / h) far below 1e-7 even for tiny gradient entries."""
    grad = np.zeros_like(x)
    it = np.nditer(x, flags=["multi_index"])
    for _ in it:
        i = it.multi_index
        old = x[i]
        values = []
        for step in (2 * h, h, -h, -2 * h):
            x[i] = old + step
            values.append(f())
        x[i] = old
        grad[i] = (-values[0] + 8 * values[1] - 8 * values[2] + values[3]) / (12 * h)
    return grad


@dataclass(frozen=True)
class CheckResult:
    """One check: the largest relative error over ``entries`` gradient entries; ``worst``
    names the input or parameter where it occurred."""

    name: str
    what: str
    max_rel_error: float
    worst: str
    entries: int
    seconds: float

    @property
    def passed(self) -> bool:
        return self.max_rel_error <= TOL

    def to_dict(self) -> dict[str, object]:
        return {"name": self.name, "what": self.what, "max_rel_error": self.max_rel_error,
                "worst": self.worst, "entries": self.entries, "seconds": self.seconds,
                "passed": self.passed}


def compare(analytic: dict[str, np.ndarray], f: Callable[[], float],
            arrays: dict[str, np.ndarray]) -> dict[str, float]:
    """Relative error of each analytic gradient against ``numeric_grad(f, arrays[name])``."""
    return {name: rel_error(analytic[name], numeric_grad(f, arrays[name])) for name in arrays}


def _result(name: str, what: str, errors: dict[str, float], arrays: dict[str, np.ndarray],
            t0: float) -> CheckResult:
    worst = max(errors, key=errors.__getitem__)
    return CheckResult(name, what, errors[worst], worst,
                       int(sum(a.size for a in arrays.values())), time.perf_counter() - t0)


# ---------------------------------------------------------------- layers and losses

def away_from_zero(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Normal values pushed at least 0.1 away from 0 (the ReLU kink)."""
    x = rng.normal(size=shape)
    return x + np.sign(x) * 0.1


def distinct(rng: np.random.Generator, shape: tuple[int, ...], gap: float = 0.05) -> np.ndarray:
    """Values in random order, all at least ``gap`` apart (no ties for max pooling)."""
    n = int(np.prod(shape))
    return ((rng.permutation(n) - n / 2) * gap).reshape(shape)


def check_layer(name: str, what: str, forward: Callable[..., tuple[np.ndarray, object]],
                backward: Callable[..., tuple[np.ndarray | None, ...]],
                inputs: dict[str, np.ndarray], rng: np.random.Generator) -> CheckResult:
    """Checks ``backward`` against the gradient of sum(forward(**inputs) * dout) for a random
    upstream gradient dout; ``backward`` returns the input gradients in ``inputs`` order."""
    t0 = time.perf_counter()
    out, cache = forward(**inputs)
    dout = rng.normal(size=out.shape)
    analytic = dict(zip(inputs, backward(dout, cache), strict=True))
    errors = compare(analytic, lambda: float(np.vdot(forward(**inputs)[0], dout)), inputs)
    return _result(name, what, errors, inputs, t0)


def check_loss(name: str, what: str, loss: Callable[[np.ndarray, np.ndarray, float],
                                                    tuple[float, np.ndarray]],
               scores: np.ndarray, y: np.ndarray, eps: float) -> CheckResult:
    t0 = time.perf_counter()
    _, dscores = loss(scores, y, eps)
    errors = compare({"scores": dscores}, lambda: loss(scores, y, eps)[0], {"scores": scores})
    return _result(name, what, errors, {"scores": scores}, t0)


def svm_scores(rng: np.random.Generator, n: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Scores whose SVM margins s_j - s_y + 1 are all at least 0.1 away from 0, some positive
    and some negative."""
    scores = rng.permutation(n * k).reshape(n, k) * 0.3
    return scores, rng.integers(0, k, size=n)


def _layer_checks() -> dict[str, Callable[[], CheckResult]]:
    def affine() -> CheckResult:
        rng = np.random.default_rng(0)
        return check_layer("affine", "x (4, 5) @ w (5, 3) + b", layers.affine_forward,
                           layers.affine_backward,
                           {"x": rng.normal(size=(4, 5)), "w": rng.normal(size=(5, 3)),
                            "b": rng.normal(size=3)}, rng)

    def relu() -> CheckResult:
        rng = np.random.default_rng(1)
        return check_layer("relu", "max(0, x)", lambda x: layers.relu_forward(x),
                           lambda d, c: (layers.relu_backward(d, c),),
                           {"x": away_from_zero(rng, (4, 6))}, rng)

    def leaky_relu() -> CheckResult:
        rng = np.random.default_rng(2)
        return check_layer("leaky_relu", "max(0.1 x, x)",
                           lambda x: layers.leaky_relu_forward(x, 0.1),
                           lambda d, c: (layers.leaky_relu_backward(d, c),),
                           {"x": away_from_zero(rng, (4, 6))}, rng)

    def dropout() -> CheckResult:
        rng = np.random.default_rng(3)
        return check_layer("dropout", "inverted dropout, rate 0.5, fixed mask (same seed)",
                           lambda x: layers.dropout_forward(x, 0.5, np.random.default_rng(7)),
                           lambda d, c: (layers.dropout_backward(d, c),),
                           {"x": rng.normal(size=(5, 6))}, rng)

    def patch_conv() -> CheckResult:
        rng = np.random.default_rng(4)
        return check_layer("patch_conv", "patch matrix (2, 4, 12) @ filters (12, 3) + bias",
                           layers.patch_conv_forward, layers.patch_conv_backward,
                           {"p": rng.normal(size=(2, 4, 12)), "w": rng.normal(size=(12, 3)),
                            "b": rng.normal(size=3)}, rng)

    def conv(name: str, size: int, c: int, f: int, stride: int, pad: int
             ) -> Callable[[], CheckResult]:
        def run() -> CheckResult:
            rng = np.random.default_rng(5)
            what = (f"conv {size}x{size}x{c} images, {f}x{f} filters, stride {stride}, "
                    f"pad {pad}")
            return check_layer(name, what,
                               lambda x, w, b: layers.conv_forward(x, w, b, f, stride, pad),
                               layers.conv_backward,
                               {"x": rng.normal(size=(2, size, size, c)),
                                "w": rng.normal(size=(f * f * c, 3)),
                                "b": rng.normal(size=3)}, rng)
        return run

    def max_pool() -> CheckResult:
        rng = np.random.default_rng(6)
        return check_layer("max_pool", "2x2 max pooling, stride 2, on (2, 4, 6, 3)",
                           lambda x: layers.max_pool_forward(x),
                           lambda d, c: (layers.max_pool_backward(d, c),),
                           {"x": distinct(rng, (2, 4, 6, 3))}, rng)

    def softmax(eps: float) -> Callable[[], CheckResult]:
        def run() -> CheckResult:
            rng = np.random.default_rng(8)
            return check_loss(f"softmax_loss{'_smoothed' if eps else ''}",
                              f"softmax cross-entropy, label smoothing eps={eps}",
                              softmax_cross_entropy, rng.normal(size=(5, 4)),
                              rng.integers(0, 4, size=5), eps)
        return run

    def svm() -> CheckResult:
        scores, y = svm_scores(np.random.default_rng(9), 5, 4)
        return check_loss("svm_loss", "multiclass SVM (hinge) loss, delta 1", svm_loss,
                          scores, y, 0.0)

    return {
        "affine": affine, "relu": relu, "leaky_relu": leaky_relu, "dropout": dropout,
        "patch_conv": patch_conv, "conv": conv("conv", 5, 3, 3, 1, 1),
        "conv_strided": conv("conv_strided", 7, 2, 3, 2, 0),
        "conv_strided_padded": conv("conv_strided_padded", 8, 2, 4, 2, 1),
        "max_pool": max_pool, "softmax_loss": softmax(0.0),
        "softmax_loss_smoothed": softmax(0.1), "svm_loss": svm,
    }


# ---------------------------------------------------------------- whole networks

@dataclass(frozen=True)
class NetworkCase:
    """A small float64 network, its batch and its loss settings, for one network check."""

    name: str
    what: str
    build: Callable[[np.random.Generator], AnyNetwork]
    image_shape: tuple[int, int, int]
    batch: int
    num_classes: int
    lam: float
    eps: float
    dropout_seed: int | None = None

    def rng(self) -> np.random.Generator | None:
        """A fresh generator for every pass, so each pass draws the same dropout masks."""
        return None if self.dropout_seed is None else np.random.default_rng(self.dropout_seed)


def kink_distances(net: AnyNetwork, x: np.ndarray, y: np.ndarray,
                   rng: np.random.Generator | None) -> tuple[list[np.ndarray], bool]:
    """Distances of every kink from the evaluation point, and whether every ReLU unit is on
    for some example (so that no gradient is trivially zero).

    Replays the network's forward pass with the same layers and dropout draws.
    """
    dists: list[np.ndarray] = []
    alive = True

    def act(s: np.ndarray, units: int) -> np.ndarray:
        nonlocal alive
        dists.append(np.abs(s).ravel())
        if net.activation == "relu":
            alive = alive and bool((s.reshape(-1, units) > 0).any(axis=0).all())
            return np.maximum(s, 0)
        return layers.leaky_relu_forward(s, net.leaky_slope)[0]

    p = net.params
    h, _ = layers.dropout_forward(x, net.dropout_input, rng)
    if isinstance(net, MLP):
        for i in range(1, net.layers):
            h = act(h @ p[f"W{i}"] + p[f"b{i}"], p[f"b{i}"].size)
            h, _ = layers.dropout_forward(h, net.dropout, rng)
        scores = h @ p[f"W{net.layers}"] + p[f"b{net.layers}"]
    else:
        if isinstance(net, PatchConvNet):
            s = np.concatenate([
                act(layers.patch_conv_forward(pb, p[br.w], p[br.b])[0], p[br.b].size)
                .reshape(len(x), -1) for br, pb in zip(net.branches, net._patches(h),
                                                       strict=True)], axis=1)
        else:
            assert isinstance(net, ConvNet3)
            s = act(layers.conv_forward(h, p["F"], p["bF"], net.filter_size, net.stride,
                                        net.pad)[0], p["bF"].size)
            n, hh, ww, c = s.shape
            windows = np.sort(s.reshape(n, hh // 2, 2, ww // 2, 2, c)
                              .transpose(0, 1, 3, 5, 2, 4).reshape(-1, 4), axis=1)
            gaps = windows[:, 3] - windows[:, 2]
            gaps[windows[:, 3] == 0] = np.inf  # an all-zero window after ReLU: no kink
            dists.append(gaps)
            s = layers.max_pool_forward(s)[0]
        h = act(s.reshape(len(x), -1) @ p["W1"] + p["b1"], p["b1"].size)
        h, _ = layers.dropout_forward(h, net.dropout, rng)
        scores = h @ p["W2"] + p["b2"]
    if net.loss_name == "svm":
        margins = scores - scores[np.arange(len(y)), y][:, None] + 1
        margins[np.arange(len(y)), y] = np.inf
        dists.append(np.abs(margins).ravel())
    return dists, alive


def smooth_case(case: NetworkCase, tries: int = 1000
                ) -> tuple[AnyNetwork, np.ndarray, np.ndarray]:
    """The first seed whose kinks all keep MARGIN from the evaluation point and whose units
    are all alive. Parameters get noise so non-zero biases exercise their gradients."""
    for seed in range(tries):
        rng = np.random.default_rng(seed)
        net = case.build(rng)
        for value in net.params.values():
            value += rng.normal(scale=0.1, size=value.shape)
        images = rng.normal(size=(case.batch, *case.image_shape))
        x = net.prepare(images)
        y = rng.integers(0, case.num_classes, size=case.batch)
        dists, alive = kink_distances(net, x, y, case.rng())
        if alive and all(d.min() > MARGIN for d in dists if d.size):
            return net, x, y
    raise AssertionError(f"{case.name}: no case away from the kinks in {tries} seeds")


def check_network(case: NetworkCase) -> CheckResult:
    """Every parameter gradient of the cost (loss + L2) of ``case``."""
    t0 = time.perf_counter()
    net, x, y = smooth_case(case)
    _, _, grads = net.loss(x, y, lam=case.lam, eps=case.eps, rng=case.rng())
    errors = compare(grads, lambda: net.loss(x, y, lam=case.lam, eps=case.eps,
                                             rng=case.rng())[1], net.params)
    return _result(case.name, case.what, errors, net.params, t0)


def network_cases() -> dict[str, NetworkCase]:
    f64 = np.float64

    def mlp(hidden: tuple[int, ...], **kw: Any) -> Callable[[np.random.Generator], AnyNetwork]:
        return lambda rng: MLP(8 * 3, hidden, 4, rng=rng, dtype=f64, **kw)

    def patch(**kw: Any) -> Callable[[np.random.Generator], AnyNetwork]:
        return lambda rng: PatchConvNet((4, 4, 3), 2, 3, 5, 4, rng=rng, dtype=f64, **kw)

    def conv3(shape: tuple[int, int, int], filter_size: int,
              **kw: Any) -> Callable[[np.random.Generator], AnyNetwork]:
        return lambda rng: ConvNet3(shape, 2, filter_size, 4, 3, rng=rng, dtype=f64, **kw)

    mlp_shape = (2, 4, 3)
    cases = [
        NetworkCase("mlp", "MLP 24-7-4, no L2", mlp((7,)), mlp_shape, 6, 4, 0.0, 0.0),
        NetworkCase("mlp_l2", "MLP 24-6-5-4, L2 lam=0.1", mlp((6, 5)), mlp_shape, 6, 4,
                    0.1, 0.0),
        NetworkCase("mlp_smoothing", "MLP 24-6-5-4, lam=0.05, label smoothing eps=0.1",
                    mlp((6, 5)), mlp_shape, 6, 4, 0.05, 0.1),
        NetworkCase("mlp_leaky", "MLP 24-6-5-4, leaky ReLU slope 0.1, lam=0.05",
                    mlp((6, 5), activation="leaky_relu", leaky_slope=0.1), mlp_shape, 6, 4,
                    0.05, 0.0),
        NetworkCase("mlp_dropout", "MLP 24-8-6-4, dropout input 0.2 / hidden 0.5 (fixed "
                    "mask), lam=0.05", mlp((8, 6), dropout_input=0.2, dropout=0.5),
                    mlp_shape, 6, 4, 0.05, 0.0, dropout_seed=11),
        NetworkCase("mlp_svm", "MLP 24-7-4, SVM loss, lam=0.05", mlp((7,), loss="svm"),
                    mlp_shape, 6, 4, 0.05, 0.0),
        NetworkCase("convnet", "patchify ConvNet f=2 nf=3 nh=5 with conv bias, lam=0.02, "
                    "eps=0.1", patch(), (4, 4, 3), 4, 4, 0.02, 0.1),
        NetworkCase("convnet_leaky_svm", "patchify ConvNet, leaky ReLU 0.1, SVM loss, "
                    "lam=0.02", patch(activation="leaky_relu", leaky_slope=0.1, loss="svm"),
                    (4, 4, 3), 4, 4, 0.02, 0.0),
        NetworkCase("convnet_multi", "patchify ConvNet with patch sizes f=[2, 4], nf=[3, 2], "
                    "nh=5, dropout input 0.2 / hidden 0.5 (fixed mask), lam=0.02, eps=0.1",
                    lambda rng: PatchConvNet((4, 4, 3), [2, 4], [3, 2], 5, 4, rng=rng,
                                             dtype=f64, dropout_input=0.2, dropout=0.5),
                    (4, 4, 3), 4, 4, 0.02, 0.1, dropout_seed=3),
        NetworkCase("convnet3", "conv 3x3 pad 1 nf=2 - relu - pool - affine 4 - relu - affine, "
                    "lam=0.02, eps=0.1", conv3((6, 6, 3), 3), (6, 6, 3), 3, 3, 0.02, 0.1),
        NetworkCase("convnet3_strided", "conv 4x4 stride 2 pad 1 - pool, dropout 0.5 (fixed "
                    "mask), SVM loss, lam=0.02",
                    conv3((8, 8, 3), 4, stride=2, pad=1, dropout=0.5, loss="svm"),
                    (8, 8, 3), 3, 3, 0.02, 0.0, dropout_seed=5),
    ]
    return {c.name: c for c in cases}


def check_fused_network(case: NetworkCase) -> CheckResult:
    """The trained network (``fused.py``) of ``case``, two trials fused: the gradient of
    the sum of both trials' costs (data loss from ``train_step`` plus lam_k ||W_k||^2, with
    per-trial lam and label smoothing) w.r.t. the stacked parameters, against
    ``train_step``'s gradients plus ``losses.add_l2_gradient``. The second trial is the
    first moved by noise far below the kinks' margin."""
    t0 = time.perf_counter()
    net, x, y = smooth_case(case)
    other = case.build(np.random.default_rng(0))
    noise = np.random.default_rng(1)
    for name, value in other.params.items():
        value[...] = net.params[name] + noise.normal(scale=2e-4, size=value.shape)
    fused = fuse([net, other], [net.dropout] * 2, [net.dropout_input] * 2)
    lams = np.array([case.lam, 2 * case.lam + 0.01])
    eps = np.array([case.eps, case.eps + 0.05]) if net.loss_name == "softmax" else np.zeros(2)

    def cost() -> float:
        losses, _ = fused.train_step(x, y, eps=eps, rngs=None if case.dropout_seed is None
                                     else [case.rng(), case.rng()], scale=np.ones(2))
        l2 = l2_penalty(fused.params, fused.weight_names, trials=True)
        return float(np.sum(losses + lams * l2))

    cost()
    grads = {name: g.copy() for name, g in fused._grad_buffers().items()}
    add_l2_gradient(grads, fused.params, fused.weight_names, trial_hp(lams))
    errors = compare(grads, cost, fused.params)
    return _result(f"fused_{case.name}", f"{case.what}; two trials fused", errors,
                   fused.params, t0)


def checks() -> dict[str, Callable[[], CheckResult]]:
    """Every check by name: layers and losses first, then whole networks (the reference
    networks, then the trained ones: two trials fused)."""
    out = _layer_checks()
    cases = network_cases()
    for name, case in cases.items():
        out[name] = functools.partial(check_network, case)
    for name, case in cases.items():
        out[f"fused_{name}"] = functools.partial(check_fused_network, case)
    return out


def run_checks(names: list[str] | None = None) -> list[CheckResult]:
    """Runs the named checks (all by default), in order."""
    available = checks()
    unknown = [n for n in names or [] if n not in available]
    if unknown:
        raise SpecError(f"unknown gradient check {unknown[0]!r} "
                         f"(known: {', '.join(available)})")
    return [available[n]() for n in (names or list(available))]
