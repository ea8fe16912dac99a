"""Analytic gradients against float64 centered differences (relative error <= 1e-7).

The checks themselves live in :mod:`numsweep.engine.gradcheck` (also run by
``numsweep gradcheck``); these tests run each one and make sure a wrong gradient fails.
"""

from __future__ import annotations

import numpy as np
import pytest

from numsweep.engine import gradcheck, layers
from numsweep.engine.fused import FusedConvNet3
from numsweep.engine.gradcheck import TOL, numeric_grad, rel_error
from numsweep.engine.losses import softmax_cross_entropy, svm_loss

CHECKS = gradcheck.checks()


@pytest.mark.parametrize("name", list(CHECKS))
def test_gradient_check(name: str) -> None:
    result = CHECKS[name]()
    assert result.entries > 0
    assert result.max_rel_error <= TOL, f"{name}: {result.max_rel_error:.3g} at {result.worst}"


def test_every_layer_and_network_kind_is_checked() -> None:
    expected = {"affine", "relu", "leaky_relu", "dropout", "patch_conv", "conv", "max_pool",
                "softmax_loss", "softmax_loss_smoothed", "svm_loss", "mlp", "mlp_l2",
                "mlp_smoothing", "mlp_dropout", "convnet", "convnet_multi", "convnet3"}
    assert expected <= set(CHECKS)


def test_numeric_grad_of_a_known_function() -> None:
    x = np.array([0.5, -1.0, 2.0])
    num = numeric_grad(lambda: float(np.sum(np.sin(x) * x)), x)
    assert rel_error(np.cos(x) * x + np.sin(x), num) < 1e-10
    assert np.array_equal(x, [0.5, -1.0, 2.0])  # restored


def test_a_wrong_layer_gradient_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    def average_pool_gradient(dout: np.ndarray, cache: object) -> np.ndarray:
        return np.repeat(np.repeat(dout, 2, axis=1), 2, axis=2) / 4

    monkeypatch.setattr(layers, "max_pool_backward", average_pool_gradient)
    assert not CHECKS["max_pool"]().passed


def test_a_wrong_network_gradient_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    right = layers.conv_backward

    def off_by_a_little(dout: np.ndarray, cache: object, *, input_grad: bool = True):
        dx, dw, db = right(dout, cache, input_grad=input_grad)
        return dx, dw * 1.0001, db

    monkeypatch.setattr(layers, "conv_backward", off_by_a_little)
    result = CHECKS["convnet3"]()
    assert not result.passed and result.worst == "F"


def test_dropout_check_uses_one_mask_for_both_passes() -> None:
    case = gradcheck.network_cases()["mlp_dropout"]
    net, x, y = gradcheck.smooth_case(case)
    a = net.loss(x, y, lam=case.lam, eps=case.eps, rng=case.rng())
    b = net.loss(x, y, lam=case.lam, eps=case.eps, rng=case.rng())
    c = net.loss(x, y, lam=case.lam, eps=case.eps, rng=np.random.default_rng(99))
    assert a[1] == b[1] and a[1] != c[1]


def test_label_smoothing_targets_change_the_loss() -> None:
    scores = np.array([[2.0, 0.0, -1.0]])
    plain, _ = softmax_cross_entropy(scores, np.array([0]), 0.0)
    smooth, _ = softmax_cross_entropy(scores, np.array([0]), 0.2)
    log_p = scores - np.log(np.exp(scores).sum())
    assert plain == pytest.approx(-log_p[0, 0])
    assert smooth == pytest.approx(-(0.8 * log_p[0, 0] + 0.1 * log_p[0, 1] + 0.1 * log_p[0, 2]))


def test_svm_loss_by_hand() -> None:
    scores = np.array([[3.0, 2.5, -1.0], [0.0, 1.0, 0.5]])
    y = np.array([0, 2])
    # row 0: max(0, 2.5 - 3 + 1) + max(0, -1 - 3 + 1) = 0.5; row 1: 0.5 + 1.5 = 2
    loss, dscores = svm_loss(scores, y)
    assert loss == pytest.approx((0.5 + 2.0) / 2)
    np.testing.assert_allclose(dscores, [[-0.5, 0.5, 0.0], [0.5, 0.5, -1.0]])


def test_svm_loss_refuses_label_smoothing() -> None:
    with pytest.raises(ValueError, match="only the softmax loss"):
        svm_loss(np.zeros((1, 3)), np.array([0]), 0.1)


def test_every_network_is_checked_fused_too() -> None:
    assert {f"fused_{name}" for name in gradcheck.network_cases()} <= set(CHECKS)


def test_a_wrong_fused_gradient_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    def average_unpool(self: FusedConvNet3, dpooled: np.ndarray, sv: np.ndarray,
                       pooled: np.ndarray, dsv: np.ndarray) -> None:
        for i in (0, 1):
            for j in (0, 1):
                dsv[:, :, i::2, j::2] = dpooled / 4

    monkeypatch.setattr(FusedConvNet3, "_unpool", average_unpool)
    result = CHECKS["fused_convnet3"]()
    assert not result.passed and result.worst in ("F", "bF")
