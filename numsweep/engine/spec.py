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

from numsweep.defaults import DEVICES
from numsweep.errors import NumsweepError

MODELS = ("mlp", "convnet", "convnet3")
SCHEDULES = ("cyclic", "constant", "exp_range", "linear", "step", "exponential")
OPTIMIZERS = ("sgd", "momentum", "nesterov", "adagrad", "rmsprop", "rmsprop_nesterov",
              "adadelta", "adam")
BATCH_SCHEDULES = ("constant", "cyclic", "linear", "exponential")
INITS = ("xavier", "he")
DTYPES = ("float32", "float64")
MODEL_PARAMETERS = {
    "mlp": ("hidden",),
    "convnet": ("f", "nf", "nh"),
    "convnet3": ("nf", "filter_size", "nh", "conv_stride", "conv_pad"),
}
"""The shape parameters each model reads; the others' keep their defaults (see
:meth:`TrialSpec.__post_init__`)."""
RULE_PARAMETERS = {
    "momentum": ("optimizer", ("momentum", "nesterov", "rmsprop_nesterov")),
    "rho": ("optimizer", ("rmsprop", "rmsprop_nesterov", "adadelta")),
    "beta1": ("optimizer", ("adam",)),
    "beta2": ("optimizer", ("adam",)),
    "opt_eps": ("optimizer", ("adagrad", "rmsprop", "rmsprop_nesterov", "adadelta", "adam")),
    "leaky_slope": ("activation", ("leaky_relu",)),
    "step_size": ("schedule", ("step",)),
}
"""Parameters read only with some values of another: (that parameter, its values). Like a
model's shape parameters they keep their defaults elsewhere."""
ACTIVATIONS = ("relu", "leaky_relu")
LOSSES = ("softmax", "svm")
CYCLIC_SCHEDULES = ("cyclic", "exp_range")  # a run's length is set by n_s, cycles, cycle_mult

CHANGEABLE = ("lam", "eps", "eta_min", "eta_max", "eta_decay", "gamma", "momentum", "beta1",
              "beta2", "rho", "opt_eps", "dropout", "dropout_input")
"""The parameters ``hp_changes`` may change mid-run (and population-based training explore):
the per-trial values of a fused group (``group.PER_TRIAL``) but the two seeds' kin."""

MAX_UPDATES = 10**9
"""A run planned longer is refused whatever the data (years of training on one core)."""
MAX_MEASUREMENTS = 10**6
"""Curve measurements (``curve_points`` per cycle or epoch) a run may plan: each evaluates
``eval_train + n_val`` images, and the plan of them is held in memory."""


class SpecError(NumsweepError, ValueError):
    """A parameter has a wrong name, type or value; the message names the parameter."""


class RunTooLong(SpecError):
    """The run planned by a spec is longer than a run may be (:data:`MAX_UPDATES`,
    :data:`MAX_MEASUREMENTS`)."""


@dataclass(frozen=True)
class TrialSpec:
    """Everything that determines one training run.

    ``n_s`` of ``None`` means ``2 * floor(n_train / batch_size)`` (two epochs per half cycle);
    ``n_train`` of ``None`` means every training image not kept for validation.
    ``seed`` seeds the trial's own random stream (initialisation, dropout masks) and
    ``data_seed`` the data stream (batch order, augmentation draws); ``data_seed`` of
    ``None`` means ``seed``, so a lone ``seed=5`` still fixes everything. The two streams
    are drawn from independent generators even when both seeds are equal.
    ``data_offset`` is the number of batches of the data stream drawn before the trial's
    first update (a trial that joined a slot group at that group step, ``slots.py``): the
    run first skips them (every draw, augmentation included); it needs a constant batch
    size.
    ``device`` is where the arrays live: ``cpu`` (NumPy) or ``cuda`` (CuPy on a GPU).
    ``hp_changes`` are (update, name, value) changes of :data:`CHANGEABLE` values, each made
    just before that update (the schedule of a population-based training member's values,
    ``pbt.lineage_changes``); ascending updates, each > 0 (and below the run's total).
    """

    model: str = "mlp"
    hidden: tuple[int, ...] = (50,)
    f: int | tuple[int, ...] = 4
    nf: int | tuple[int, ...] = 10
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
    cycle_mult: int = 1
    eta_decay: float = 1.0
    gamma: float = 1.0
    step_size: int | None = None
    n_updates: int | None = None
    batch_schedule: str = "constant"
    b_min: int = 32
    b_max: int = 512
    optimizer: str = "sgd"
    momentum: float = 0.9
    beta1: float = 0.9
    beta2: float = 0.999
    rho: float = 0.9
    opt_eps: float = 1e-8
    flip: float = 0.0
    translate: int = 0
    cutout: int = 0
    aug_copies: int = 1
    dropout: float = 0.0
    dropout_input: float = 0.0
    init: str = "xavier"
    seed: int = 0
    data_seed: int | None = None
    data_offset: int = 0
    hp_changes: tuple[tuple[int, str, float], ...] = ()
    n_train: int | None = None
    n_val: int = 5000
    curve_points: int = 10
    eval_train: int = 10000
    dtype: str = "float32"
    device: str = "cpu"

    def __post_init__(self) -> None:
        _check(self.model in MODELS, "model", self.model, f"one of {', '.join(MODELS)}")
        _check(len(self.hidden) >= 1 and all(h >= 1 for h in self.hidden), "hidden",
               list(self.hidden), "a non-empty list of positive widths")
        self._check_patches()
        self._check_model_parameters()
        for name in ("nh", "batch_size", "cycles", "curve_points", "eval_train"):
            _check(getattr(self, name) >= 1, name, getattr(self, name), "at least 1")
        _check(math.isfinite(self.lam) and self.lam >= 0, "lam", self.lam, "finite and >= 0")
        _check(0 <= self.eps < 1, "eps", self.eps, "in [0, 1)")
        _check(0 < self.eta_min <= self.eta_max and math.isfinite(self.eta_max), "eta_min",
               self.eta_min, f"positive and at most eta_max={self.eta_max}")
        _check(self.n_s is None or self.n_s >= 1, "n_s", self.n_s, "at least 1")
        _check(self.schedule in SCHEDULES, "schedule", self.schedule,
               f"one of {', '.join(SCHEDULES)}")
        self._check_training()
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
        _check(self.data_seed is None or self.data_seed >= 0, "data_seed", self.data_seed,
               ">= 0 (unset: seed)")
        _check(self.data_offset >= 0, "data_offset", self.data_offset, ">= 0 batches")
        _check(self.data_offset == 0 or self.batch_schedule == "constant", "data_offset",
               self.data_offset, f"0 with batch_schedule={self.batch_schedule} (a trial "
               "joins a data stream mid-way only with batch_schedule=constant)")
        self._check_hp_changes()
        _check(self.n_train is None or self.n_train >= 1, "n_train", self.n_train, "at least 1")
        _check(self.n_val >= 1, "n_val", self.n_val, "at least 1")
        _check(self.dtype in DTYPES, "dtype", self.dtype, f"one of {', '.join(DTYPES)}")
        _check(self.device in DEVICES, "device", self.device, f"one of {', '.join(DEVICES)}")
        _check(self.device == "cpu" or self.model != "convnet3", "device", self.device,
               "cpu with model=convnet3 (only the MLP and the patchify ConvNet run on a GPU)")
        for name, (control, users) in RULE_PARAMETERS.items():
            value, default, setting = getattr(self, name), _DEFAULTS[name], getattr(self, control)
            _check(value == default or setting in users, name, value,
                   f"{'unset' if default is None else f'{default!r} (unset)'} with "
                   f"{control}={setting} (it applies to "
                   f"{control}={', '.join(users)})")

    def _check_hp_changes(self) -> None:
        """Each change names a changeable value, at an update after the previous one's (or
        the same), once per name and update; the values in force after each update's
        changes are a valid spec's."""
        object.__setattr__(self, "hp_changes", tuple(tuple(c) for c in self.hp_changes))
        seen: set[tuple[int, str]] = set()
        values: dict[str, Any] = {}
        for n, change in enumerate(self.hp_changes):
            update, name, value = change
            last = self.hp_changes[n - 1][0] if n else 1
            _check(name in CHANGEABLE, "hp_changes", list(change),
                   f"a change of one of {', '.join(CHANGEABLE)}")
            _check(update >= last, "hp_changes", list(change),
                   f"an update >= {last} (ascending, each > 0)")
            _check((update, name) not in seen, "hp_changes", list(change),
                   f"one change of {name} at update {update}")
            seen.add((update, name))
            values[name] = value
            if n + 1 < len(self.hp_changes) and self.hp_changes[n + 1][0] == update:
                continue  # an update's changes hold together
            try:
                dataclasses.replace(self, hp_changes=(), **values)
            except SpecError as exc:
                raise SpecError(f"hp_changes={list(change)!r} is invalid: {exc}") from None

    def _check_patches(self) -> None:
        """f and nf: one patch size and filter count, or lists of the same length (several
        patch sizes, used by model=convnet; other models ignore f as they ignore hidden or
        f=4). A list of one is the same as its value."""
        for name in ("f", "nf"):
            value = getattr(self, name)
            if isinstance(value, tuple):
                _check(len(value) >= 1 and all(v >= 1 for v in value), name, list(value),
                       "a positive whole number or a non-empty list of them")
                if len(value) == 1:
                    object.__setattr__(self, name, value[0])
            else:
                _check(value >= 1, name, value, "at least 1")
        f, nf = self.f, self.nf
        if isinstance(f, tuple) or isinstance(nf, tuple):
            fs = list(f) if isinstance(f, tuple) else [f]
            nfs = list(nf) if isinstance(nf, tuple) else [nf]
            _check(self.model != "convnet3" or not isinstance(nf, tuple), "nf", nfs,
                   "a single filter count with model=convnet3 (lists of patch sizes and "
                   "filter counts are for model=convnet)")
            _check(len(fs) == len(nfs), "nf", nfs if isinstance(nf, tuple) else nf,
                   f"a list of {len(fs)} filter counts, one per patch size in f={fs}")
            _check(len(set(fs)) == len(fs), "f", fs, "distinct patch sizes")

    def _check_model_parameters(self) -> None:
        """A shape parameter of another model would be dropped silently (two trials that
        differ only in it train the same network): it must keep its default."""
        if self.model not in MODELS:
            return
        own = MODEL_PARAMETERS[self.model]
        for name, users in model_parameter_users().items():
            value = getattr(self, name)
            default = _DEFAULTS[name]
            if name not in own and value != default:
                shown = list(value) if isinstance(value, tuple) else value
                _check(False, name, shown,
                       f"{_plain(default)!r} (unset) with model={self.model} (it applies "
                       f"to model={', '.join(users)})")

    @property
    def patches(self) -> tuple[tuple[int, int], ...]:
        """The patchify ConvNet's (patch size, filter count) pairs: one unless f and nf are
        lists."""
        fs = self.f if isinstance(self.f, tuple) else (self.f,)
        nfs = self.nf if isinstance(self.nf, tuple) else (self.nf,)
        return tuple(zip(fs, nfs, strict=True))

    def _check_training(self) -> None:
        """Schedules, batch-size schedules, update rules and augmentation."""
        _check(self.cycle_mult >= 1, "cycle_mult", self.cycle_mult, "at least 1")
        _check(self.cycle_mult == 1 or self.schedule == "cyclic", "cycle_mult", self.cycle_mult,
               f"1 with schedule={self.schedule} (growing cycles need schedule=cyclic)")
        _check(0 < self.eta_decay <= 1, "eta_decay", self.eta_decay, "in (0, 1]")
        _check(self.eta_decay == 1 or self.schedule in ("cyclic", "step"), "eta_decay",
               self.eta_decay, f"1 with schedule={self.schedule} (it applies to cyclic, step)")
        _check(0 < self.gamma <= 1, "gamma", self.gamma, "in (0, 1]")
        _check(self.gamma == 1 or self.schedule == "exp_range", "gamma", self.gamma,
               f"1 with schedule={self.schedule} (it applies to exp_range)")
        _check(self.step_size is None or self.step_size >= 1, "step_size", self.step_size,
               "at least 1")
        _check(self.schedule != "step" or self.step_size is not None, "step_size",
               self.step_size, "a number of updates with schedule=step")
        _check(self.schedule != "step" or self.eta_decay < 1, "eta_decay", self.eta_decay,
               "below 1 with schedule=step (the factor of each drop, e.g. 0.1)")
        _check(self.n_updates is None or self.n_updates >= 1, "n_updates", self.n_updates,
               "at least 1")
        _check(self.n_updates is None or self.schedule not in ("cyclic", "exp_range"),
               "n_updates", self.n_updates, f"unset with schedule={self.schedule} (a cyclic "
               "run's length is set by n_s, cycles and cycle_mult)")
        _check(self.batch_schedule in BATCH_SCHEDULES, "batch_schedule", self.batch_schedule,
               f"one of {', '.join(BATCH_SCHEDULES)}")
        _check(self.b_min >= 1, "b_min", self.b_min, "at least 1")
        _check(self.b_max >= self.b_min, "b_max", self.b_max, f"at least b_min={self.b_min}")
        _check(0 <= self.momentum < 1, "momentum", self.momentum, "in [0, 1)")
        _check(0 <= self.beta1 < 1, "beta1", self.beta1, "in [0, 1)")
        _check(0 <= self.beta2 < 1, "beta2", self.beta2, "in [0, 1)")
        _check(0 <= self.rho < 1, "rho", self.rho, "in [0, 1)")
        _check(0 < self.opt_eps < 1, "opt_eps", self.opt_eps, "in (0, 1)")
        _check(0 <= self.flip <= 1, "flip", self.flip, "a probability in [0, 1]")
        _check(self.translate >= 0, "translate", self.translate, ">= 0 pixels")
        _check(self.cutout >= 0, "cutout", self.cutout, ">= 0 pixels")
        _check(self.aug_copies >= 1, "aug_copies", self.aug_copies, "at least 1")
        self._check_length()

    def _check_length(self) -> None:
        """The planned updates and curve measurements within :data:`MAX_UPDATES` and
        :data:`MAX_MEASUREMENTS`, checked before anything is computed from them (an unset
        ``n_s`` counts as its least, 1; the data can make the run longer, see
        ``sweeps.guards.check_run_length``)."""
        for name in ("n_s", "n_updates"):
            value = getattr(self, name)
            if value is not None and value > MAX_UPDATES:
                raise RunTooLong(f"{name}={value!r} is invalid: expected at most "
                                 f"{MAX_UPDATES:,} updates")
        if self.schedule in CYCLIC_SCHEDULES:
            if self.cycles * self.curve_points > MAX_MEASUREMENTS:
                raise RunTooLong(
                    f"cycles={self.cycles} x curve_points={self.curve_points} curve "
                    f"measurements is invalid: expected at most {MAX_MEASUREMENTS:,}")
            total = updates_with_n_s(self, self.n_s or 1)
            if total > MAX_UPDATES:
                n_s = f"n_s={self.n_s}" if self.n_s is not None else "n_s at least 1"
                raise RunTooLong(
                    f"cycles={self.cycles} with cycle_mult={self.cycle_mult} and {n_s} plan "
                    f"more than {MAX_UPDATES:,} updates: invalid")
        elif self.n_updates is None and updates_with_n_s(self, self.n_s or 1) > MAX_UPDATES:
            raise RunTooLong(f"cycles={self.cycles} with n_s={self.n_s or 1} plan more than "
                             f"{MAX_UPDATES:,} updates (n_updates unset: 2 x n_s x cycles): "
                             "invalid")

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
        """Plain JSON-able values (``hidden``, and ``f``/``nf`` when several, as lists)."""
        out = dataclasses.asdict(self)
        out["hidden"] = list(self.hidden)
        if self.hp_changes:  # absent when empty: the specs (and digests) as before it existed
            out["hp_changes"] = [list(change) for change in self.hp_changes]
        else:
            del out["hp_changes"]
        for name in ("f", "nf"):
            if isinstance(out[name], tuple):
                out[name] = list(out[name])
        return out


def updates_with_n_s(spec: TrialSpec, n_s: int) -> int:
    """The updates ``spec`` plans with its half-cycle resolved to ``n_s``. Stops counting
    growing cycles once past :data:`MAX_UPDATES` (so that an absurd spec costs nothing)."""
    if spec.schedule not in CYCLIC_SCHEDULES:
        return spec.n_updates if spec.n_updates is not None else 2 * n_s * spec.cycles
    mult = spec.cycle_mult if spec.schedule == "cyclic" else 1
    if mult == 1:
        return 2 * n_s * spec.cycles
    total, half = 0, n_s
    for _ in range(spec.cycles):  # at most about 30 rounds before it passes the bound
        total += 2 * half
        if total > MAX_UPDATES:
            break
        half *= mult
    return total


def conditional_parameters() -> dict[str, tuple[str, tuple[str, ...]]]:
    """Every parameter read only with some values of another: (that parameter, its
    values), the models' shape parameters included."""
    return {**{name: ("model", users) for name, users in model_parameter_users().items()},
            **RULE_PARAMETERS}


def model_parameter_users() -> dict[str, tuple[str, ...]]:
    """Each shape parameter and the models that read it."""
    users: dict[str, tuple[str, ...]] = {}
    for model, names in MODEL_PARAMETERS.items():
        for name in names:
            users[name] = (*users.get(name, ()), model)
    return users


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


_DEFAULTS = {f.name: f.default for f in dataclasses.fields(TrialSpec)}


def parameter_names() -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(TrialSpec))


def _check(ok: bool, name: str, value: object, expected: str) -> None:
    if not ok:
        raise SpecError(f"{name}={value!r} is invalid: expected {expected}")


_INT_FIELDS = {"nh", "batch_size", "n_s", "cycles", "seed", "n_train", "n_val",
               "curve_points", "eval_train", "filter_size", "conv_stride", "conv_pad",
               "data_seed", "data_offset"}
_FLOAT_FIELDS = {"lam", "eps", "eta_min", "eta_max", "dropout", "dropout_input", "leaky_slope"}
_OPTIONAL = {"n_s", "n_train", "conv_pad", "data_seed"}
# Training: schedules, batch-size schedules, update rules, augmentation.
_INT_FIELDS |= {"cycle_mult", "step_size", "n_updates", "b_min", "b_max", "translate", "cutout",
                "aug_copies"}
_FLOAT_FIELDS |= {"eta_decay", "gamma", "momentum", "beta1", "beta2", "rho", "opt_eps", "flip"}
_OPTIONAL |= {"step_size", "n_updates"}


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
        if name == "hp_changes":
            return _to_changes(raw)
        if name in ("f", "nf"):
            widths = _to_widths(raw)
            return widths[0] if len(widths) == 1 and not isinstance(raw, (list, tuple)) \
                and not (isinstance(raw, str) and raw.strip().startswith("[")) else widths
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


def _to_changes(raw: Any) -> tuple[tuple[int, str, float], ...]:
    """[[update, name, value], ...] (or its JSON text) as (int, str, float) triples."""
    rows = json.loads(raw) if isinstance(raw, str) else raw
    if not isinstance(rows, (list, tuple)):
        raise ValueError
    out = []
    for row in rows:
        if not isinstance(row, (list, tuple)) or len(row) != 3 or not isinstance(row[1], str) \
                or isinstance(row[2], bool):
            raise ValueError
        out.append((_to_int(row[0]), row[1], float(row[2])))
    return tuple(out)


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
    stopped at ``updates`` and ``message`` says so. ``epochs`` is the number of training
    images drawn divided by ``n_train`` (updates per epoch: ``n_train // batch_size``).
    """

    spec: TrialSpec
    val_acc: float
    test_acc: float
    train_acc: float
    train_seconds: float
    eval_seconds: float
    updates: int
    param_count: int
    epochs: float = 0.0
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
            "epochs": self.epochs,
        }
