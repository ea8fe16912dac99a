"""Each update rule against steps worked out by hand, and its in-place float32 behaviour."""

from __future__ import annotations

import math
import types

import numpy as np
import pytest

from numsweep.engine.optimizers import (
    SGD,
    AdaDelta,
    AdaGrad,
    Adam,
    Momentum,
    Nesterov,
    RMSProp,
    RMSPropNesterov,
    make_optimizer,
)
from numsweep.engine.spec import OPTIMIZERS, RULE_PARAMETERS, TrialSpec

GRADS = [2.0, -1.0, 0.5]


def run(opt: object, grads: list[float], lr: float, w0: float = 1.0) -> list[float]:
    """Apply ``grads`` one step each to a scalar parameter; the values after every step."""
    w = np.array([w0])
    out = []
    for g in grads:
        opt.step({"w": w}, {"w": np.array([g])}, lr)  # type: ignore[attr-defined]
        out.append(float(w[0]))
    return out


def test_sgd_by_hand() -> None:
    # 1 - 0.1*2 = 0.8; 0.8 + 0.1 = 0.9; 0.9 - 0.05 = 0.85
    assert run(SGD(), GRADS, 0.1) == pytest.approx([0.8, 0.9, 0.85], abs=1e-15)


def test_momentum_by_hand() -> None:
    # v1 = -0.2, w = 0.8; v2 = 0.5*-0.2 + 0.1 = 0, w = 0.8; v3 = -0.05, w = 0.75
    assert run(Momentum(0.5), GRADS, 0.1) == pytest.approx([0.8, 0.8, 0.75], abs=1e-15)


def test_nesterov_by_hand() -> None:
    # v1 = -0.2; w = 1 - 0.5*0 + 1.5*(-0.2) = 0.7
    # v2 = -0.1 + 0.1 = 0; w = 0.7 + 0.1 + 0 = 0.8
    # v3 = 0 - 0.05 = -0.05; w = 0.8 - 0 + 1.5*(-0.05) = 0.725
    assert run(Nesterov(0.5), GRADS, 0.1) == pytest.approx([0.7, 0.8, 0.725], abs=1e-15)


def test_adagrad_by_hand() -> None:
    # r = 4, w = 1 - 0.1*2/2 = 0.9; r = 5, w = 0.9 + 0.1/sqrt(5); r = 5.25, w -= 0.05/sqrt(5.25)
    w2 = 0.9 + 0.1 / math.sqrt(5)
    expected = [0.9, w2, w2 - 0.05 / math.sqrt(5.25)]
    assert run(AdaGrad(eps=0.0 + 1e-300), GRADS, 0.1) == pytest.approx(expected, abs=1e-15)


def test_rmsprop_by_hand() -> None:
    # rho 0.5: r = 2, w = 1 - 0.2/sqrt(2); r = 1.5, w += 0.1/sqrt(1.5); r = 0.875
    w1 = 1 - 0.2 / math.sqrt(2)
    w2 = w1 + 0.1 / math.sqrt(1.5)
    w3 = w2 - 0.05 / math.sqrt(0.875)
    assert run(RMSProp(rho=0.5, eps=1e-300), GRADS, 0.1) == pytest.approx([w1, w2, w3],
                                                                          abs=1e-15)


def test_rmsprop_nesterov_by_hand() -> None:
    mu, rho, lr = 0.5, 0.5, 0.1
    w, v, r, expected = 1.0, 0.0, 0.0, []
    for g in GRADS:
        r = rho * r + (1 - rho) * g * g
        v_new = mu * v - lr * g / math.sqrt(r)
        w += -mu * v + (1 + mu) * v_new
        v = v_new
        expected.append(w)
    # The first step by hand: r = 2, v = -0.2/sqrt(2), w = 1 - 0.3/sqrt(2).
    assert expected[0] == pytest.approx(1 - 0.3 / math.sqrt(2))
    assert run(RMSPropNesterov(mu, rho, eps=1e-300), GRADS, lr) == pytest.approx(expected,
                                                                                abs=1e-15)


def test_adadelta_by_hand() -> None:
    rho, eps = 0.5, 1e-2
    a = s = 0.0
    w, expected = 1.0, []
    for g in GRADS:
        a = rho * a + (1 - rho) * g * g
        d = -math.sqrt(s + eps) / math.sqrt(a + eps) * g
        s = rho * s + (1 - rho) * d * d
        w += d
        expected.append(w)
    # First step by hand: a = 2, d = -0.1/sqrt(2.01)*2.
    assert expected[0] == pytest.approx(1 - 0.2 / math.sqrt(2.01))
    assert run(AdaDelta(rho, eps), GRADS, 1.0) == pytest.approx(expected, abs=1e-15)
    # The schedule's learning rate scales the step.
    assert run(AdaDelta(rho, eps), GRADS[:1], 0.5) == pytest.approx([1 - 0.1 / math.sqrt(2.01)])


def test_adam_by_hand() -> None:
    # The first step of Adam is lr * sign(g) (up to eps): m^ = g, v^ = g^2.
    assert run(Adam(eps=1e-300), [2.0], 0.1) == pytest.approx([0.9], abs=1e-15)
    b1, b2, lr = 0.5, 0.75, 0.1
    m = v = 0.0
    w, expected = 1.0, []
    for t, g in enumerate(GRADS, start=1):
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        w -= lr * (m / (1 - b1 ** t)) / (math.sqrt(v / (1 - b2 ** t)) + 1e-8)
        expected.append(w)
    # By hand: step 1 m = 1, v = 1, m^ = 2, v^ = 4: w = 0.9; step 2 m = 0: w stays;
    # step 3 m = 0.25, v = 0.8125, m^ = 0.25 / 0.875, v^ = 0.8125 / 0.578125.
    assert expected[:2] == pytest.approx([0.9, 0.9])
    assert expected[2] == pytest.approx(0.9 - 0.1 * (0.25 / 0.875)
                                        / math.sqrt(0.8125 / 0.578125))
    assert run(Adam(b1, b2, 1e-8), GRADS, lr) == pytest.approx(expected, abs=1e-15)


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_updates_are_in_place_float32_and_leave_gradients_alone(name: str) -> None:
    rng = np.random.default_rng(0)
    opt = make_optimizer(TrialSpec(optimizer=name))
    params = {"W": rng.normal(size=(4, 3)).astype(np.float32),
              "b": np.zeros(3, np.float32)}
    arrays = {k: v for k, v in params.items()}
    before = {k: v.copy() for k, v in params.items()}
    for _ in range(3):
        grads = {k: rng.normal(size=v.shape).astype(np.float32) for k, v in params.items()}
        kept = {k: g.copy() for k, g in grads.items()}
        opt.step(params, grads, 0.01)
        for k in params:
            np.testing.assert_array_equal(grads[k], kept[k])
    for k, w in params.items():
        assert w is arrays[k] and w.dtype == np.float32
        assert not np.array_equal(w, before[k])
        assert all(s.dtype == np.float32 for s in opt.state[k].values())


def test_hyperparameters_come_from_the_spec() -> None:
    spec = TrialSpec(optimizer="adam", beta1=0.8, beta2=0.99, opt_eps=1e-6)
    adam = make_optimizer(spec)
    assert (adam.beta1, adam.beta2, adam.eps) == (0.8, 0.99, 1e-6)  # type: ignore[union-attr]
    nesterov = TrialSpec(optimizer="nesterov", momentum=0.7)
    assert make_optimizer(nesterov).momentum == 0.7  # type: ignore[union-attr]
    adadelta = TrialSpec(optimizer="adadelta", rho=0.95)
    assert make_optimizer(adadelta).rho == 0.95  # type: ignore[union-attr]
    with pytest.raises(ValueError, match="unknown optimizer 'lbfgs'"):
        make_optimizer([types.SimpleNamespace(optimizer="lbfgs")])  # type: ignore[list-item]


SPREAD = {"momentum": [0.5, 0.9, 0.7], "beta1": [0.8, 0.9, 0.85], "beta2": [0.99, 0.999, 0.995],
          "rho": [0.8, 0.9, 0.95], "opt_eps": [1e-8, 1e-6, 1e-7]}


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name", OPTIMIZERS)
def test_k_trials_update_as_k_lone_trials(name: str, dtype: type) -> None:
    """One rule of K = 3 trials (per-trial hyperparameters, learning rates and L2 strengths
    broadcast against trial-stacked parameters) gives each trial's lone update (K = 1,
    Python floats): bitwise, the same roundings (Adam: to its corrections' last bit); SGD
    both plain and prescaled."""
    own = {k: v for k, v in SPREAD.items() if name in RULE_PARAMETERS[k][1]}
    specs = [TrialSpec(optimizer=name, **{k: v[i] for k, v in own.items()}) for i in range(3)]
    lrs, lams = np.array([0.01, 0.03, 0.02]), np.array([0.0, 0.01, 0.002])
    rng = np.random.default_rng(0)
    weights = ("W",)
    for prescaled in ((False, True) if name == "sgd" else (False,)):
        group = make_optimizer(specs, prescaled=prescaled)
        lone = [make_optimizer(s, prescaled=prescaled) for s in specs]
        params = {"W": rng.normal(size=(3, 4, 2)).astype(dtype),
                  "b": rng.normal(size=(3, 1, 2)).astype(dtype)}
        lone_params = [{k: v[i].copy() for k, v in params.items()} for i in range(3)]
        for _ in range(3):
            grads = {k: rng.normal(size=v.shape).astype(dtype) for k, v in params.items()}
            scale = lrs.reshape(-1, 1, 1).astype(dtype) if prescaled else 1
            grads = {k: (g * scale).astype(dtype) for k, g in grads.items()}
            for i in range(3):
                lone[i].update(lone_params[i], {k: g[i].copy() for k, g in grads.items()},
                               lrs[i:i + 1], lams[i:i + 1], weights)
            group.update(params, grads, lrs, lams, weights)
        for i in range(3):
            for k in params:
                if name == "adam":  # its bias corrections b^t: NumPy's pow per trial in a
                    # group, Python's for a lone trial, which may differ in the last bit
                    np.testing.assert_allclose(params[k][i], lone_params[i][k], rtol=1e-6
                                               if dtype == np.float32 else 1e-14)
                else:
                    np.testing.assert_array_equal(params[k][i], lone_params[i][k])


def test_a_group_keeps_the_selected_trials_state() -> None:
    specs = [TrialSpec(optimizer="adam", beta1=b) for b in (0.8, 0.9, 0.85)]
    opt = make_optimizer(specs)
    params = {"W": np.ones((3, 2, 2))}
    opt.update(params, {"W": np.arange(12.0).reshape(3, 2, 2)}, np.full(3, 0.1), np.zeros(3),
               ("W",))
    m = opt.state["W"]["m"].copy()
    opt.select(np.array([2, 0]))
    assert opt.beta1.values.ravel().tolist() == [0.85, 0.8]  # type: ignore[union-attr]
    np.testing.assert_array_equal(opt.state["W"]["m"], m[[2, 0]])
