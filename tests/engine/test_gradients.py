"""Analytic gradients against float64 centered differences (relative error <= 1e-7)."""

from __future__ import annotations

import numpy as np
import pytest

from numsweep.engine import layers
from numsweep.engine.losses import softmax_cross_entropy
from numsweep.engine.networks import MLP, PatchConvNet

TOL = 1e-7


def rel_error(analytic: np.ndarray, numeric: np.ndarray) -> float:
    """Largest elementwise |a - n| / max(1e-8, |a| + |n|).

    An entry whose analytic gradient is exactly zero (a path through a ReLU that is off for
    the whole batch) counts as matching when the numeric one is rounding noise (< 1e-10):
    the ratio of two zeros measures nothing.
    """
    err = np.abs(analytic - numeric) / np.maximum(1e-8, np.abs(analytic) + np.abs(numeric))
    err[(analytic == 0) & (np.abs(numeric) < 1e-10)] = 0.0
    return float(err.max())


def numeric_grad(f, x: np.ndarray, h: float = 1e-4) -> np.ndarray:
    """Fourth-order centered differences: error O(h^4), so rounding stays far below 1e-7."""
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


MARGIN = 1e-2  # far more than the 2h the stencil moves a parameter


def pre_activations(net: MLP | PatchConvNet, x: np.ndarray) -> list[np.ndarray]:
    """Every ReLU input of the network for the batch x."""
    p = net.params
    if isinstance(net, PatchConvNet):
        s0 = layers.patch_conv_forward(x, p["F"], p["bF"])[0]
        s1 = np.maximum(s0, 0).reshape(len(x), -1) @ p["W1"] + p["b1"]
        return [s0, s1]
    out, h = [], x
    for i in range(1, net.layers):
        s = h @ p[f"W{i}"] + p[f"b{i}"]
        out.append(s)
        h = np.maximum(s, 0)
    return out


def smooth_case(build, batch):
    """The first seed whose ReLU inputs all keep MARGIN from the kink at 0 and whose units
    are all alive, so that finite differences measure the gradient and not the kink."""
    for seed in range(1000):
        rng = np.random.default_rng(seed)
        net = build(rng)
        for p in net.params.values():
            p += rng.normal(scale=0.1, size=p.shape)  # non-zero biases exercise their gradients
        x, y = batch(rng)
        pre = pre_activations(net, x)
        if all(np.abs(s).min() > MARGIN and (s.reshape(-1, s.shape[-1]) > 0).any(axis=0).all()
               for s in pre):
            return net, x, y
    raise AssertionError("no smooth case found")


@pytest.mark.parametrize("eps", [0.0, 0.1])
def test_softmax_cross_entropy_gradient(eps: float) -> None:
    rng = np.random.default_rng(1)
    scores = rng.normal(size=(5, 4))
    y = rng.integers(0, 4, size=5)
    _, dscores = softmax_cross_entropy(scores, y, eps)
    num = numeric_grad(lambda: softmax_cross_entropy(scores, y, eps)[0], scores)
    assert rel_error(dscores, num) < TOL


def test_label_smoothing_targets_change_the_loss() -> None:
    scores = np.array([[2.0, 0.0, -1.0]])
    plain, _ = softmax_cross_entropy(scores, np.array([0]), 0.0)
    smooth, _ = softmax_cross_entropy(scores, np.array([0]), 0.2)
    log_p = scores - np.log(np.exp(scores).sum())
    assert plain == pytest.approx(-log_p[0, 0])
    assert smooth == pytest.approx(-(0.8 * log_p[0, 0] + 0.1 * log_p[0, 1] + 0.1 * log_p[0, 2]))


@pytest.mark.parametrize("hidden", [(7,), (6, 5)])
@pytest.mark.parametrize(("lam", "eps"), [(0.0, 0.0), (0.1, 0.0), (0.05, 0.1)])
def test_mlp_gradients(hidden: tuple[int, ...], lam: float, eps: float) -> None:
    net, x, y = smooth_case(lambda rng: MLP(8, hidden, 4, rng=rng, dtype=np.float64),
                            lambda rng: (rng.normal(size=(6, 8)), rng.integers(0, 4, size=6)))
    _, _, grads = net.loss(x, y, lam=lam, eps=eps, rng=None)
    for name, p in net.params.items():
        num = numeric_grad(lambda: net.loss(x, y, lam=lam, eps=eps, rng=None)[1], p)
        assert rel_error(grads[name], num) < TOL, name


@pytest.mark.parametrize("lam", [0.0, 0.02])
def test_patch_convnet_gradients(lam: float) -> None:
    net, x, y = smooth_case(
        lambda rng: PatchConvNet((8, 8, 3), f=4, nf=3, nh=5, num_classes=4, rng=rng,
                                 dtype=np.float64),
        lambda rng: (layers.patchify(rng.normal(size=(4, 8, 8, 3)), 4),
                     rng.integers(0, 4, size=4)))
    _, _, grads = net.loss(x, y, lam=lam, eps=0.1, rng=None)
    for name, p in net.params.items():
        num = numeric_grad(lambda: net.loss(x, y, lam=lam, eps=0.1, rng=None)[1], p)
        assert rel_error(grads[name], num) < TOL, name


def test_patch_conv_matches_naive_loops() -> None:
    rng = np.random.default_rng(4)
    images = rng.normal(size=(3, 8, 8, 3))
    f, nf = 4, 5
    filters = rng.normal(size=(f, f, 3, nf))
    b = rng.normal(size=nf)
    fast, _ = layers.patch_conv_forward(layers.patchify(images, f),
                                        filters.reshape(f * f * 3, nf), b)
    naive = layers.patch_conv_forward_naive(images, filters, b, f)
    np.testing.assert_allclose(fast, naive, rtol=1e-12, atol=1e-12)


def test_patchify_rejects_f_that_does_not_divide() -> None:
    with pytest.raises(ValueError, match="f=5 does not divide"):
        layers.patchify(np.zeros((1, 32, 32, 3)), 5)
