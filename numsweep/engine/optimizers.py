"""Update rules for K trials at once (K = 1: a lone trial), and the update with L2.

:func:`make_optimizer` makes the rule of K specs, each hyperparameter per trial: a Python
float for K = 1, a :class:`pertrial.PerTrial` (K values broadcast against the trial-stacked
parameters (K, ...)) for K > 1, so that one ``step`` per rule serves both with the same
numbers. ``step(params, grads, lr)`` updates each array of ``params`` in place with the
gradient of the same name at the learning rate ``lr`` (a float or a PerTrial, like the
hyperparameters); :meth:`Rule.update` is a training update: the L2 term (written once, in
:func:`losses.add_l2_gradient`) and the step from the K trials' learning rates and L2
strengths. ``state`` maps a parameter name to that parameter's own arrays (velocities,
running averages and a scratch buffer), created on the first step with the parameter's shape
and dtype, so a float32 network is updated in float32 with no array allocated per step.
The array functions come from the parameters' module (:func:`backend.array_module`: NumPy,
or CuPy on a GPU); per-trial values meet the arrays through :func:`pertrial.operand`, which
leaves a lone trial's Python floats as they are.

The formulas (w a parameter, g its gradient, eta the learning rate):

- ``sgd``: w -= eta g; with ``prescaled`` (the training loop's SGD) the gradients come
  already multiplied by eta and L2 enters as the decay w = (1 - 2 eta lam) w - eta g: two
  passes over each weight and no scratch array
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

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from numsweep.engine.backend import array_module
from numsweep.engine.losses import add_l2_gradient
from numsweep.engine.pertrial import PerTrial, hp_values, operand, trial_hp
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


class Rule:
    """What every update rule shares: the training update and the trials' selection."""

    state: State
    prescaled = False
    """Whether ``update`` takes gradients already multiplied by the learning rates."""

    def step(self, params: Params, grads: Params, lr: Any) -> None:
        raise NotImplementedError

    def update(self, params: Params, grads: Params, lrs: np.ndarray, lams: np.ndarray,
               weight_names: tuple[str, ...]) -> None:
        """One training update of K trials from the data gradients ``grads``: the L2 term
        lam_k ||W||^2 of each trial's weights ``weight_names`` added to them, then the step
        at the learning rates ``lrs`` (K,) float64 (``lams`` (K,) float64 too)."""
        add_l2_gradient(grads, params, weight_names, trial_hp(lams))
        self.step(params, grads, trial_hp(lrs))

    def select(self, idx: np.ndarray) -> None:
        """Keep only the trials ``idx`` (indices into the current K) in the per-trial
        hyperparameters and the state."""
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            if f.name == "state":
                self.state = {name: {k: a[_index_on(idx, a)] for k, a in slots.items()}
                              for name, slots in value.items()}
            elif isinstance(value, (PerTrial, np.ndarray)):  # np.ndarray: Adam's counts
                setattr(self, f.name, value[idx])

    def copy_row(self, dst: int, src: int) -> None:
        """Trial ``dst``'s state (and Adam's count, when per trial) becomes a copy of trial
        ``src``'s; the hyperparameters stay (see :meth:`set_values`)."""
        for slots in self.state.values():
            for a in slots.values():
                a[dst] = a[src]
        t = getattr(self, "t", None)
        if isinstance(t, np.ndarray):
            t[dst] = t[src]

    def set_values(self, j: int, **values: float) -> None:
        """Trial ``j``'s hyperparameters (fields of this rule, e.g. ``momentum=0.8``; names
        it lacks are ignored) from the next step on: a float alone, a new PerTrial else."""
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            if f.name not in values:
                continue
            value = getattr(self, f.name)
            if isinstance(value, PerTrial):
                rows = value.values.reshape(-1).copy()
                rows[j] = values[f.name]
                setattr(self, f.name, PerTrial(rows))
            elif isinstance(value, float):
                if j != 0:
                    raise IndexError(f"trial {j} of a rule of one trial")
                setattr(self, f.name, float(values[f.name]))

    def join(self, new: Rule, k: int, n: int) -> None:
        """Append ``n`` trials after the current ``k``: the hyperparameters of ``new`` (the
        rule of their specs, no step taken) and state rows of zeros, so each starts as a
        lone trial's fresh rule does. The hyperparameters become :class:`PerTrial`."""
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            if f.name == "state":
                self.state = {name: {slot: _append_zeros(a, n) for slot, a in slots.items()}
                              for name, slots in value.items()}
            elif f.name == "t":  # Adam's step count, per trial once trials join
                self.t = np.concatenate([_rows(value, k, np.int64),
                                         np.zeros(n, dtype=np.int64)])
            elif isinstance(value, (float, PerTrial)):
                setattr(self, f.name, PerTrial(np.concatenate([
                    _rows(value, k, np.float64), _rows(getattr(new, f.name), n, np.float64)])))

    def per_trial(self, k: int) -> None:
        """Every hyperparameter of these ``k`` trials a :class:`PerTrial` (and Adam's step
        count per trial), whatever ``k``: a slot group's rule keeps one form as its trials
        come and go."""
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            if f.name == "t":
                self.t = _rows(value, k, np.int64).copy()
            elif isinstance(value, (float, PerTrial)):
                setattr(self, f.name, PerTrial(_rows(value, k, np.float64)))


def _rows(value: Any, k: int, dtype: Any) -> np.ndarray:
    """A hyperparameter of ``k`` trials (a float, a PerTrial, a count) as (k,) values."""
    values = np.asarray(hp_values(value), dtype=dtype).reshape(-1)
    return values if len(values) == k else np.full(k, values[0], dtype=dtype)


def _append_zeros(a: Any, n: int) -> Any:
    """``a`` (K, ...) with ``n`` rows of zeros appended (on ``a``'s device)."""
    xp = array_module(a)
    return xp.concatenate([a, xp.zeros((n, *a.shape[1:]), a.dtype)])


def _index_on(idx: np.ndarray, a: Any) -> Any:
    """Host indices as ``a``'s module indexes with them (CuPy: a device copy)."""
    xp = array_module(a)
    return idx if xp is np else xp.asarray(idx)


@dataclass
class SGD(Rule):
    """Plain mini-batch gradient descent: w -= lr * dw (``prescaled``: see ``update``)."""

    state: State = field(default_factory=dict)
    prescaled: bool = False  # type: ignore[misc]

    def step(self, params: Params, grads: Params, lr: Any) -> None:
        for name, w in params.items():
            (buf,) = _slot(self.state, name, w, "buf")
            array_module(w).multiply(grads[name], operand(lr, w), out=buf)
            w -= buf

    def update(self, params: Params, grads: Params, lrs: np.ndarray, lams: np.ndarray,
               weight_names: tuple[str, ...]) -> None:
        """As :meth:`Rule.update`; ``prescaled``: ``grads`` hold lr_k g (the network scaled
        them) and each weight is updated as w = (1 - 2 lr_k lam_k) w - lr_k g."""
        if not self.prescaled:
            super().update(params, grads, lrs, lams, weight_names)
            return
        if len(lams) == 1:  # a lone trial: Python floats, no per-update arrays
            lam = float(lams[0])
            decay: Any = 1 - 2 * float(lrs[0]) * lam if lam else None
        else:
            lams = np.asarray(lams, dtype=np.float64)
            decay = PerTrial(1 - 2 * np.asarray(lrs) * lams) if lams.any() else None
        for name, w in params.items():
            if decay is not None and name in weight_names:
                w *= operand(decay, w)
            w -= grads[name]


@dataclass
class Momentum(Rule):
    """SGD with (heavy-ball) momentum: v = mu v - lr dw; w += v."""

    momentum: float = 0.9
    state: State = field(default_factory=dict)

    def step(self, params: Params, grads: Params, lr: Any) -> None:
        for name, w in params.items():
            v, buf = _slot(self.state, name, w, "v", "buf")
            v *= operand(self.momentum, v)
            array_module(w).multiply(grads[name], operand(lr, w), out=buf)
            v -= buf
            w += v


@dataclass
class Nesterov(Rule):
    """Nesterov momentum: v' = mu v - lr dw; w += -mu v + (1 + mu) v'."""

    momentum: float = 0.9
    state: State = field(default_factory=dict)

    def step(self, params: Params, grads: Params, lr: Any) -> None:
        mu = self.momentum
        for name, w in params.items():
            xp = array_module(w)
            v, buf = _slot(self.state, name, w, "v", "buf")
            xp.multiply(v, operand(-mu, v), out=buf)            # buf = -mu v
            w += buf
            v *= operand(mu, v)
            xp.multiply(grads[name], operand(lr, w), out=buf)
            v -= buf                                # v' = mu v - lr g
            xp.multiply(v, operand(1 + mu, v), out=buf)
            w += buf


def _adaptive_step(g: np.ndarray, r: np.ndarray, buf: np.ndarray, eps: Any,
                   lr: Any) -> None:
    """buf = lr g / (sqrt(r) + eps): the step of AdaGrad, RMSProp and RMSProp + Nesterov."""
    xp = array_module(r)
    xp.sqrt(r, out=buf)
    buf += operand(eps, buf)
    xp.divide(g, buf, out=buf)
    buf *= operand(lr, buf)


@dataclass
class AdaGrad(Rule):
    """r += dw^2; w -= lr dw / (sqrt(r) + eps)."""

    eps: float = 1e-8
    state: State = field(default_factory=dict)

    def step(self, params: Params, grads: Params, lr: Any) -> None:
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
    buf *= operand(1 - rho, buf)
    r *= operand(rho, r)
    r += buf


@dataclass
class RMSProp(Rule):
    """r = rho r + (1 - rho) dw^2; w -= lr dw / (sqrt(r) + eps)."""

    rho: float = 0.9
    eps: float = 1e-8
    state: State = field(default_factory=dict)

    def step(self, params: Params, grads: Params, lr: Any) -> None:
        for name, w in params.items():
            g = grads[name]
            r, buf = _slot(self.state, name, w, "r", "buf")
            _rms_average(r, g, buf, self.rho)
            _adaptive_step(g, r, buf, self.eps, lr)
            w -= buf


@dataclass
class RMSPropNesterov(Rule):
    """RMSProp with Nesterov momentum: r as RMSProp; v' = mu v - lr dw / (sqrt(r) + eps);
    w += -mu v + (1 + mu) v'."""

    momentum: float = 0.9
    rho: float = 0.9
    eps: float = 1e-8
    state: State = field(default_factory=dict)

    def step(self, params: Params, grads: Params, lr: Any) -> None:
        mu = self.momentum
        for name, w in params.items():
            g = grads[name]
            xp = array_module(w)
            r, v, buf = _slot(self.state, name, w, "r", "v", "buf")
            _rms_average(r, g, buf, self.rho)
            xp.multiply(v, operand(-mu, v), out=buf)
            w += buf
            v *= operand(mu, v)
            _adaptive_step(g, r, buf, self.eps, lr)
            v -= buf
            xp.multiply(v, operand(1 + mu, v), out=buf)
            w += buf


@dataclass
class AdaDelta(Rule):
    """Zeiler's AdaDelta, its step scaled by lr (lr = 1 is the original rule)."""

    rho: float = 0.9
    eps: float = 1e-8
    state: State = field(default_factory=dict)

    def step(self, params: Params, grads: Params, lr: Any) -> None:
        for name, w in params.items():
            g = grads[name]
            xp = array_module(w)
            a, s, buf, d = _slot(self.state, name, w, "a", "s", "buf", "d")
            _rms_average(a, g, buf, self.rho)
            xp.add(s, operand(self.eps, s), out=d)
            xp.add(a, operand(self.eps, a), out=buf)
            xp.divide(d, buf, out=d)
            xp.sqrt(d, out=d)
            d *= g                                  # d = sqrt(s + eps) / sqrt(a + eps) g
            _rms_average(s, d, buf, self.rho)
            d *= operand(lr, d)
            w -= d


@dataclass
class Adam(Rule):
    """Adam with bias correction; ``t`` counts the steps taken (an int, or each trial's
    count (K,) in a slot group, whose trials join at different steps)."""

    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    state: State = field(default_factory=dict)
    t: int | np.ndarray = 0

    def corrections(self, lr: Any) -> tuple[Any, Any]:
        """(1 / sqrt(1 - beta2^t), lr / (1 - beta1^t)): the bias corrections of step t,
        computed in float64 (per trial: as a lone trial computes them in floats), then
        floats or PerTrial values like the hyperparameters."""
        t = self.t
        if not isinstance(t, np.ndarray) and not any(
                isinstance(v, PerTrial) for v in (self.beta1, self.beta2, lr)):
            return 1 / math.sqrt(1 - self.beta2 ** t), lr / (1 - self.beta1 ** t)
        b1, b2, lr64 = (np.asarray(hp_values(v)) for v in (self.beta1, self.beta2, lr))
        if isinstance(t, np.ndarray):
            t = t.reshape(-1, 1, 1)
        inv_sqrt_c2 = 1 / np.sqrt(1 - b2 ** t)
        lr_c1 = lr64 / (1 - b1 ** t)
        shape = np.broadcast_shapes(inv_sqrt_c2.shape, lr_c1.shape)
        return (PerTrial(np.broadcast_to(inv_sqrt_c2, shape)),
                PerTrial(np.broadcast_to(lr_c1, shape)))

    def step(self, params: Params, grads: Params, lr: Any) -> None:
        self.t += 1
        b1, b2 = self.beta1, self.beta2
        inv_sqrt_c2, lr_c1 = self.corrections(lr)
        for name, w in params.items():
            g = grads[name]
            xp = array_module(w)
            m, v, buf = _slot(self.state, name, w, "m", "v", "buf")
            m *= operand(b1, m)
            xp.multiply(g, operand(1 - b1, g), out=buf)
            m += buf
            _rms_average(v, g, buf, b2)
            xp.sqrt(v, out=buf)
            buf *= operand(inv_sqrt_c2, buf)
            buf += operand(self.eps, buf)
            xp.divide(m, buf, out=buf)
            buf *= operand(lr_c1, buf)
            w -= buf


Optimizer = SGD | Momentum | Nesterov | AdaGrad | RMSProp | RMSPropNesterov | AdaDelta | Adam


def make_optimizer(specs: TrialSpec | Sequence[TrialSpec], *,
                   prescaled: bool = False) -> Optimizer:
    """The update rule of K specs (one spec: a lone trial) sharing ``optimizer``, each
    hyperparameter per trial (a float for K = 1). ``prescaled``: SGD's ``update`` takes
    gradients already multiplied by the learning rates (the other rules ignore it)."""
    specs = [specs] if isinstance(specs, TrialSpec) else list(specs)
    name = specs[0].optimizer

    def hp(field_name: str) -> Any:
        return trial_hp([getattr(s, field_name) for s in specs])

    if name == "sgd":
        return SGD(prescaled=prescaled)
    if name == "momentum":
        return Momentum(hp("momentum"))
    if name == "nesterov":
        return Nesterov(hp("momentum"))
    if name == "adagrad":
        return AdaGrad(hp("opt_eps"))
    if name == "rmsprop":
        return RMSProp(hp("rho"), hp("opt_eps"))
    if name == "rmsprop_nesterov":
        return RMSPropNesterov(hp("momentum"), hp("rho"), hp("opt_eps"))
    if name == "adadelta":
        return AdaDelta(hp("rho"), hp("opt_eps"))
    if name == "adam":
        return Adam(hp("beta1"), hp("beta2"), hp("opt_eps"))
    raise ValueError(f"unknown optimizer {name!r}")
