"""Update rules. Hyperparameters live on the optimizer; per-parameter state in ``state``.

Every optimizer has the same signature: ``step(params, grads, lr)`` updates each array of
``params`` in place with the gradient of the same name, at the learning rate ``lr`` given by
the schedule. ``state`` maps a parameter name to that parameter's own arrays (velocities,
running averages and a scratch buffer), created on the first step with the parameter's shape
and dtype, so a float32 network is updated in float32 with no array allocated per step.
The array functions come from the parameters' module (:func:`backend.array_module`: NumPy,
or CuPy on a GPU); per-trial hyperparameters of a group (``fused.PerTrial``) meet the arrays
through :func:`_hp`, which leaves a lone trial's Python floats as they are.

The formulas (w a parameter, g its gradient, eta the learning rate):

- ``sgd``: w -= eta g
- ``momentum``: v = mu v - eta g; w += v
- ``nesterov`` (the CS231n form, which keeps the look-ahead point as the parameter):
  v' = mu v - eta g; w += -mu v + (1 + mu) v'
- ``adagrad``: r += g^2; w -= eta g / (sqrt(r) + eps)
- ``rmsprop``: r = rho r + (1 - rho) g^2; w -= eta g / (sqrt(r) + eps)
- ``rmsprop_nesterov``: r as rmsprop, then the Nesterov step with eta g / (sqrt(r) + eps)
  in place of eta g (Goodfellow et al., algorithm 8.7, in the same look-ahead form)
- ``adadelta`` (Zeiler 2012): a = rho a + (1 - rho) g^2;
  d = -sqrt(s + eps) / sqrt(a + eps) g; s = rho s + (1 - rho) d^2; w += eta d
  (Zeiler's rule has no learning rate: eta = 1 is the original, a schedule scales it)
- ``adam`` (Kingma & Ba 2015): m = b1 m + (1 - b1) g; v = b2 v + (1 - b2) g^2;
  w -= eta (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps), t counting steps from 1
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from numsweep.engine.backend import array_module
from numsweep.engine.spec import TrialSpec

Params = dict[str, np.ndarray]
State = dict[str, dict[str, np.ndarray]]


def _slot(state: State, name: str, w: np.ndarray, *keys: str) -> list[np.ndarray]:
    """The named per-parameter arrays of ``name`` (zeros of w's shape/dtype when new)."""
    slots = state.get(name)
    if slots is None:
        slots = state[name] = {}
    out = []
    for key in keys:
        arr = slots.get(key)
        if arr is None:
            arr = slots[key] = array_module(w).zeros_like(w)
        out.append(arr)
    return out


def _hp(value: Any, like: Any) -> Any:
    """A hyperparameter as ``like``'s ufuncs take it: a float or an array as it is, a group's
    per-trial values (``fused.PerTrial``) as an array of ``like``'s dtype on its device
    (NumPy would round them itself; CuPy's ufuncs take only arrays and scalars)."""
    as_array = getattr(value, "as_array", None)
    return value if as_array is None else as_array(like.dtype, array_module(like))


@dataclass
class SGD:
    """Plain mini-batch gradient descent: w -= lr * dw."""

    state: State = field(default_factory=dict)

    def step(self, params: Params, grads: Params, lr: float) -> None:
        for name, w in params.items():
            (buf,) = _slot(self.state, name, w, "buf")
            array_module(w).multiply(grads[name], lr, out=buf)
            w -= buf


def sgd_step_prescaled(params: Params, scaled_grads: Params, lr: float, lam: float,
                       weight_names: tuple[str, ...]) -> None:
    """SGD with L2 fused into the update, from gradients already multiplied by lr.

    w = (1 - 2 lr lam) w - lr g for the weights in ``weight_names`` and w -= lr g for the
    rest: the same step as ``SGD.step`` on the gradient of the cost (g + 2 lam w) in two
    passes over each weight and no scratch array (``scaled_grads`` hold lr g).
    """
    decay = 1 - 2 * lr * lam
    for name, w in params.items():
        if lam and name in weight_names:
            w *= decay
        w -= scaled_grads[name]


@dataclass
class Momentum:
    """SGD with (heavy-ball) momentum: v = mu v - lr dw; w += v."""

    momentum: float = 0.9
    state: State = field(default_factory=dict)

    def step(self, params: Params, grads: Params, lr: float) -> None:
        for name, w in params.items():
            v, buf = _slot(self.state, name, w, "v", "buf")
            v *= _hp(self.momentum, v)
            array_module(w).multiply(grads[name], lr, out=buf)
            v -= buf
            w += v


@dataclass
class Nesterov:
    """Nesterov momentum: v' = mu v - lr dw; w += -mu v + (1 + mu) v'."""

    momentum: float = 0.9
    state: State = field(default_factory=dict)

    def step(self, params: Params, grads: Params, lr: float) -> None:
        mu = self.momentum
        for name, w in params.items():
            xp = array_module(w)
            v, buf = _slot(self.state, name, w, "v", "buf")
            xp.multiply(v, _hp(-mu, v), out=buf)            # buf = -mu v
            w += buf
            v *= _hp(mu, v)
            xp.multiply(grads[name], lr, out=buf)
            v -= buf                                # v' = mu v - lr g
            xp.multiply(v, _hp(1 + mu, v), out=buf)
            w += buf


def _adaptive_step(g: np.ndarray, r: np.ndarray, buf: np.ndarray, eps: float,
                   lr: float) -> None:
    """buf = lr g / (sqrt(r) + eps): the step of AdaGrad, RMSProp and RMSProp + Nesterov."""
    xp = array_module(r)
    xp.sqrt(r, out=buf)
    buf += _hp(eps, buf)
    xp.divide(g, buf, out=buf)
    buf *= lr


@dataclass
class AdaGrad:
    """r += dw^2; w -= lr dw / (sqrt(r) + eps)."""

    eps: float = 1e-8
    state: State = field(default_factory=dict)

    def step(self, params: Params, grads: Params, lr: float) -> None:
        for name, w in params.items():
            g = grads[name]
            r, buf = _slot(self.state, name, w, "r", "buf")
            array_module(g).multiply(g, g, out=buf)
            r += buf
            _adaptive_step(g, r, buf, self.eps, lr)
            w -= buf


def _rms_average(r: np.ndarray, g: np.ndarray, buf: np.ndarray, rho: float) -> None:
    """r = rho r + (1 - rho) g^2, using ``buf`` as scratch."""
    array_module(g).multiply(g, g, out=buf)
    buf *= _hp(1 - rho, buf)
    r *= _hp(rho, r)
    r += buf


@dataclass
class RMSProp:
    """r = rho r + (1 - rho) dw^2; w -= lr dw / (sqrt(r) + eps)."""

    rho: float = 0.9
    eps: float = 1e-8
    state: State = field(default_factory=dict)

    def step(self, params: Params, grads: Params, lr: float) -> None:
        for name, w in params.items():
            g = grads[name]
            r, buf = _slot(self.state, name, w, "r", "buf")
            _rms_average(r, g, buf, self.rho)
            _adaptive_step(g, r, buf, self.eps, lr)
            w -= buf


@dataclass
class RMSPropNesterov:
    """RMSProp with Nesterov momentum: r as RMSProp; v' = mu v - lr dw / (sqrt(r) + eps);
    w += -mu v + (1 + mu) v'."""

    momentum: float = 0.9
    rho: float = 0.9
    eps: float = 1e-8
    state: State = field(default_factory=dict)

    def step(self, params: Params, grads: Params, lr: float) -> None:
        mu = self.momentum
        for name, w in params.items():
            g = grads[name]
            xp = array_module(w)
            r, v, buf = _slot(self.state, name, w, "r", "v", "buf")
            _rms_average(r, g, buf, self.rho)
            xp.multiply(v, _hp(-mu, v), out=buf)
            w += buf
            v *= _hp(mu, v)
            _adaptive_step(g, r, buf, self.eps, lr)
            v -= buf
            xp.multiply(v, _hp(1 + mu, v), out=buf)
            w += buf


@dataclass
class AdaDelta:
    """Zeiler's AdaDelta, its step scaled by lr (lr = 1 is the original rule)."""

    rho: float = 0.9
    eps: float = 1e-8
    state: State = field(default_factory=dict)

    def step(self, params: Params, grads: Params, lr: float) -> None:
        for name, w in params.items():
            g = grads[name]
            xp = array_module(w)
            a, s, buf, d = _slot(self.state, name, w, "a", "s", "buf", "d")
            _rms_average(a, g, buf, self.rho)
            xp.add(s, _hp(self.eps, s), out=d)
            xp.add(a, _hp(self.eps, a), out=buf)
            xp.divide(d, buf, out=d)
            xp.sqrt(d, out=d)
            d *= g                                  # d = sqrt(s + eps) / sqrt(a + eps) g
            _rms_average(s, d, buf, self.rho)
            d *= lr
            w -= d


@dataclass
class Adam:
    """Adam with bias correction; ``t`` counts the steps taken."""

    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    state: State = field(default_factory=dict)
    t: int = 0

    def corrections(self, lr: float) -> tuple[float, float]:
        """(1 / sqrt(1 - beta2^t), lr / (1 - beta1^t)): the bias corrections of step t."""
        return 1 / math.sqrt(1 - self.beta2 ** self.t), lr / (1 - self.beta1 ** self.t)

    def step(self, params: Params, grads: Params, lr: float) -> None:
        self.t += 1
        b1, b2 = self.beta1, self.beta2
        inv_sqrt_c2, lr_c1 = self.corrections(lr)
        for name, w in params.items():
            g = grads[name]
            xp = array_module(w)
            m, v, buf = _slot(self.state, name, w, "m", "v", "buf")
            m *= _hp(b1, m)
            xp.multiply(g, _hp(1 - b1, g), out=buf)
            m += buf
            _rms_average(v, g, buf, b2)
            xp.sqrt(v, out=buf)
            buf *= inv_sqrt_c2
            buf += _hp(self.eps, buf)
            xp.divide(m, buf, out=buf)
            buf *= lr_c1
            w -= buf


Optimizer = SGD | Momentum | Nesterov | AdaGrad | RMSProp | RMSPropNesterov | AdaDelta | Adam


def make_optimizer(name: str, spec: TrialSpec | None = None) -> Optimizer:
    """The update rule ``name`` with its hyperparameters from ``spec`` (defaults without)."""
    s = spec or TrialSpec()
    if name == "sgd":
        return SGD()
    if name == "momentum":
        return Momentum(s.momentum)
    if name == "nesterov":
        return Nesterov(s.momentum)
    if name == "adagrad":
        return AdaGrad(s.opt_eps)
    if name == "rmsprop":
        return RMSProp(s.rho, s.opt_eps)
    if name == "rmsprop_nesterov":
        return RMSPropNesterov(s.momentum, s.rho, s.opt_eps)
    if name == "adadelta":
        return AdaDelta(s.rho, s.opt_eps)
    if name == "adam":
        return Adam(s.beta1, s.beta2, s.opt_eps)
    raise ValueError(f"unknown optimizer {name!r}")
