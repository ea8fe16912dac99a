"""A trial's parameters and its result: the vocabulary shared by every part of numsweep.

The field names of :class:`TrialSpec` are the parameter names used in sweep specs, in
``key=value`` overrides, in database rows, in DataFrame columns and on chart labels.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

MODELS = ("mlp", "convnet", "convnet3")
SCHEDULES = ("cyclic", "constant")
OPTIMIZERS = ("sgd",)
INITS = ("xavier", "he")
DTYPES = ("float32", "float64")
ACTIVATIONS = ("relu", "leaky_relu")
LOSSES = ("softmax", "svm")


class SpecError(ValueError):
    """A parameter has a wrong name, type or value; the message names the parameter."""


@dataclass(frozen=True)
class TrialSpec:
    """Everything that determines one training run.

    ``n_s`` of ``None`` means ``2 * floor(n_train / batch_size)`` (two epochs per half cycle);
    ``n_train`` of ``None`` means every training image not kept for validation.
    """

    model: str = "mlp"
    hidden: tuple[int, ...] = (50,)
    f: int = 4
    nf: int = 10
    nh: int = 50
    filter_size: int = 3
    conv_stride: int = 1
    conv_pad: int | None = None
    activation: str = "relu"
    leaky_slope: float = 0.01
    loss: str = "softmax"
    lam: float = 0.0
    eps: float = 0.0
    batch_size: int = 100
    eta_min: float = 1e-5
    eta_max: float = 1e-1
    n_s: int | None = None
    cycles: int = 2
    schedule: str = "cyclic"
    optimizer: str = "sgd"
    dropout: float = 0.0
    dropout_input: float = 0.0
    init: str = "xavier"
    seed: int = 0
    n_train: int | None = None
    n_val: int = 5000
    curve_points: int = 10
    eval_train: int = 10000
    dtype: str = "float32"

    def __post_init__(self) -> None:
        _check(self.model in MODELS, "model", self.model, f"one of {', '.join(MODELS)}")
        _check(len(self.hidden) >= 1 and all(h >= 1 for h in self.hidden), "hidden",
               list(self.hidden), "a non-empty list of positive widths")
        for name in ("f", "nf", "nh", "batch_size", "cycles", "curve_points", "eval_train"):
            _check(getattr(self, name) >= 1, name, getattr(self, name), "at least 1")
        _check(math.isfinite(self.lam) and self.lam >= 0, "lam", self.lam, "finite and >= 0")
        _check(0 <= self.eps < 1, "eps", self.eps, "in [0, 1)")
        _check(0 < self.eta_min <= self.eta_max and math.isfinite(self.eta_max), "eta_min",
               self.eta_min, f"positive and at most eta_max={self.eta_max}")
        _check(self.n_s is None or self.n_s >= 1, "n_s", self.n_s, "at least 1")
        _check(self.schedule in SCHEDULES, "schedule", self.schedule,
               f"one of {', '.join(SCHEDULES)}")
        _check(self.optimizer in OPTIMIZERS, "optimizer", self.optimizer,
               f"one of {', '.join(OPTIMIZERS)}")
        _check(0 <= self.dropout < 1, "dropout", self.dropout, "in [0, 1)")
        _check(0 <= self.dropout_input < 1, "dropout_input", self.dropout_input, "in [0, 1)")
        _check(self.filter_size >= 1, "filter_size", self.filter_size, "at least 1")
        _check(self.conv_stride >= 1, "conv_stride", self.conv_stride, "at least 1")
        _check(self.conv_pad is None or self.conv_pad >= 0, "conv_pad", self.conv_pad,
               ">= 0 (unset: (filter_size - 1) // 2)")
        _check(self.activation in ACTIVATIONS, "activation", self.activation,
               f"one of {', '.join(ACTIVATIONS)}")
        _check(0 < self.leaky_slope < 1, "leaky_slope", self.leaky_slope, "in (0, 1)")
        _check(self.loss in LOSSES, "loss", self.loss, f"one of {', '.join(LOSSES)}")
        _check(self.loss == "softmax" or self.eps == 0, "eps", self.eps,
               f"0 with loss={self.loss} (label smoothing needs loss=softmax)")
        _check(self.init in INITS, "init", self.init, f"one of {', '.join(INITS)}")
        _check(self.seed >= 0, "seed", self.seed, ">= 0")
        _check(self.n_train is None or self.n_train >= 1, "n_train", self.n_train, "at least 1")
        _check(self.n_val >= 1, "n_val", self.n_val, "at least 1")
        _check(self.dtype in DTYPES, "dtype", self.dtype, f"one of {', '.join(DTYPES)}")

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> TrialSpec:
        """Build a spec from parsed TOML/JSON values or ``key=value`` strings."""
        known = {f.name for f in dataclasses.fields(cls)}
        kwargs: dict[str, Any] = {}
        for key, raw in values.items():
            if key not in known:
                raise SpecError(f"unknown parameter {key!r} (known: {', '.join(sorted(known))})")
            kwargs[key] = coerce(key, raw)
        return cls(**kwargs)

    def replace(self, **changes: Any) -> TrialSpec:
        return TrialSpec.from_mapping({**self.to_dict(), **changes})

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able values (``hidden`` as a list)."""
        out = dataclasses.asdict(self)
        out["hidden"] = list(self.hidden)
        return out


def parameter_names() -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(TrialSpec))


def _check(ok: bool, name: str, value: object, expected: str) -> None:
    if not ok:
        raise SpecError(f"{name}={value!r} is invalid: expected {expected}")


_INT_FIELDS = {"f", "nf", "nh", "batch_size", "n_s", "cycles", "seed", "n_train", "n_val",
               "curve_points", "eval_train", "filter_size", "conv_stride", "conv_pad"}
_FLOAT_FIELDS = {"lam", "eps", "eta_min", "eta_max", "dropout", "dropout_input", "leaky_slope"}
_OPTIONAL = {"n_s", "n_train", "conv_pad"}


def coerce(name: str, raw: Any) -> Any:
    """Convert ``raw`` (a string from the command line, or a TOML value) to ``name``'s type."""
    try:
        if name in _OPTIONAL and (raw is None or (isinstance(raw, str) and raw.lower() in
                                                   ("auto", "none", ""))):
            return None
        if name in _INT_FIELDS:
            return _to_int(raw)
        if name in _FLOAT_FIELDS:
            if isinstance(raw, bool):
                raise ValueError
            return float(raw)
        if name == "hidden":
            return _to_widths(raw)
        if not isinstance(raw, str):
            raise ValueError
        return raw
    except (TypeError, ValueError):
        raise SpecError(f"{name}={raw!r} is invalid: wrong type for {name}") from None


def _to_int(raw: Any) -> int:
    if isinstance(raw, bool):
        raise ValueError
    if isinstance(raw, int):
        return raw
    if isinstance(raw, float):
        if not raw.is_integer():
            raise ValueError
        return int(raw)
    if isinstance(raw, str):
        value = float(raw) if any(c in raw for c in ".eE") else int(raw)
        return _to_int(value)
    raise ValueError


def _to_widths(raw: Any) -> tuple[int, ...]:
    if isinstance(raw, str):
        text = raw.strip()
        parsed = json.loads(text) if text.startswith("[") else [p for p in text.split(",") if p]
        return tuple(_to_int(v) for v in parsed)
    if isinstance(raw, (list, tuple)):
        return tuple(_to_int(v) for v in raw)
    return (_to_int(raw),)


@dataclass(frozen=True)
class CurvePoint:
    """Loss, cost and accuracy of one split at one update step."""

    step: int
    split: str
    loss: float
    cost: float
    acc: float
    lr: float


@dataclass(frozen=True)
class TrialResult:
    """What one training run measured.

    ``spec`` is the spec as run: ``n_s`` and ``n_train`` hold the values they resolved to.

    ``train_seconds`` counts the parameter updates only; the time spent measuring the curves
    is ``eval_seconds``. ``diverged`` is true when the loss became NaN or inf; training then
    stopped at ``updates`` and ``message`` says so.
    """

    spec: TrialSpec
    val_acc: float
    test_acc: float
    train_acc: float
    train_seconds: float
    eval_seconds: float
    updates: int
    param_count: int
    diverged: bool = False
    stopped: bool = False
    message: str = ""
    curves: tuple[CurvePoint, ...] = field(default=(), repr=False)

    def metrics(self) -> dict[str, float]:
        return {
            "val_acc": self.val_acc,
            "test_acc": self.test_acc,
            "train_acc": self.train_acc,
            "train_seconds": self.train_seconds,
            "eval_seconds": self.eval_seconds,
            "updates": self.updates,
            "param_count": self.param_count,
        }
