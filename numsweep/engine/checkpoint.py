"""Checkpoints (a group's full training state, to resume mid-run) and kept weights.

A checkpoint is ONE ``.npz`` file per group (a lone trial is a group of one), written at the
group's curve points and replacing the previous one. It holds everything the rest of the run
depends on, so a run resumed from it ends with the same curves and metrics, bitwise, as one
never stopped (the same BLAS threads assumed):

- every trial still training: its parameters and optimizer state in the LONE network's
  layout (what :meth:`fused.FusedNet.lone_param` gives), the optimizer's step count;
- both random streams: the shared data stream (batch order, augmentation draws) with the
  batch sampler's permutation, cursor and count, and each trial's own generator
  (``bit_generator.state``);
- the update step, every trial's curves so far, the seconds spent, and the results of the
  trials that already left the group (diverged or pruned).

The schedules are functions of the step and need no state. Scratch slots of the optimizers
(:data:`SCRATCH_SLOTS`, overwritten before every read) are not written.

Writes are atomic: a temporary file in the same folder, flushed and fsynced, then
``os.replace``; a reader sees the old file or the new one, never a torn one. A checkpoint
is used only when its digest (:func:`state_digest`: the specs, the data's shapes and a
fingerprint of its labels, this format's version) matches the run; a torn, corrupt or
mismatched file gives one :class:`CheckpointWarning` naming it, and training starts from
update 0.

Writes run in the background (:class:`CheckpointWriter`): training waits only while the
state is copied out of its arrays (and for the previous write, if it is still going), so a
write's fsync does not hold up the updates; the copy keeps the file the state at its update.

Kept weights (:func:`save_weights`, :func:`load_weights`) are a finished trial's parameters
in the lone layout, in an ``.npz`` whose ``header`` entry is a small JSON document naming
the spec (``numsweep trial weights`` exports them; ``numpy.load`` reads them anywhere).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import tempfile
import threading
import time
import warnings
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from numsweep.engine.spec import CurvePoint, TrialResult, TrialSpec
from numsweep.errors import NumsweepError

FORMAT = 1
"""The checkpoint format's version (part of the digest: another version is not read)."""

WEIGHTS_FORMAT = "numsweep-weights-1"

SCRATCH_SLOTS = frozenset({"buf", "d"})
"""Optimizer state slots every step overwrites before reading (scratch, not state)."""

Arrays = dict[str, np.ndarray]


class CheckpointWarning(UserWarning):
    """A checkpoint that cannot be used (torn, corrupt, for other specs): training restarts."""


class WeightsError(NumsweepError, ValueError):
    """A weights file is missing, corrupt or not numsweep's; the message names it."""


@dataclass
class GroupState:
    """What a group's run depends on at one update step (see the module docstring).

    ``active`` are the positions (in the group's spec order) of the trials still training;
    ``params`` and ``slots`` hold one entry per active trial, in that order, in the lone
    layout; ``trial_rngs``, ``curves``, the seconds hold one entry per spec of the group.
    """

    step: int
    active: list[int]
    params: list[Arrays]
    slots: list[dict[str, Arrays]]
    opt_t: int | list[int] | None  # a list: each trial's count (a slot group's Adam)
    trial_rngs: list[dict[str, Any]]
    data_rng: dict[str, Any]
    sampler_order: np.ndarray
    sampler_cursor: int
    sampler_drawn: int
    curves: list[list[CurvePoint]]
    train_seconds: list[float]
    eval_seconds: list[float]
    results: dict[int, TrialResult] = field(default_factory=dict)


def state_digest(specs: Sequence[TrialSpec], y_train: np.ndarray, x_shape: tuple[int, ...],
                 num_classes: int) -> str:
    """What a checkpoint must match to be resumed from: the specs in their order, the data's
    shapes and a fingerprint of its training labels, and :data:`FORMAT`."""
    h = hashlib.sha256()
    h.update(json.dumps({"format": FORMAT, "specs": [s.to_dict() for s in specs],
                         "x_shape": list(x_shape), "num_classes": num_classes,
                         "n_train": len(y_train)}, sort_keys=True).encode())
    h.update(np.ascontiguousarray(y_train).tobytes())
    return h.hexdigest()


# -- atomic files ---------------------------------------------------------------------------

def write_npz_atomic(path: str | Path, arrays: Mapping[str, np.ndarray]) -> None:
    """Write ``arrays`` as an uncompressed ``.npz`` at ``path`` atomically (temporary file in
    the same folder, fsync, ``os.replace``); the folder is created when missing."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def _fsync_dir(folder: Path) -> None:
    """Make the rename itself durable (POSIX; a no-op where folders cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _json_array(value: Any) -> np.ndarray:
    return np.frombuffer(json.dumps(value).encode(), dtype=np.uint8)


def _read_npz(path: Path) -> tuple[dict[str, Any], Arrays]:
    """(JSON header, arrays) of an ``.npz`` written here; raises on any damage (the zip
    members' CRCs are checked as they are read)."""
    if not zipfile.is_zipfile(path):
        raise ValueError("not an .npz archive (torn or another kind of file)")
    with np.load(path, allow_pickle=False) as npz:
        arrays = {name: npz[name] for name in npz.files}
    header = json.loads(arrays.pop("header").tobytes().decode())
    if not isinstance(header, dict):
        raise ValueError("header is not a JSON object")
    return header, arrays


READ_ERRORS = (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, UnicodeDecodeError,
               TypeError, IndexError, AttributeError)
"""What reading a damaged file may raise (json's errors are ValueErrors)."""


# -- results and curves as JSON -------------------------------------------------------------

def _curves_json(curves: Sequence[CurvePoint]) -> list[list[Any]]:
    return [[c.step, c.split, c.loss, c.cost, c.acc, c.lr] for c in curves]


def _curves_from_json(rows: Sequence[Sequence[Any]]) -> list[CurvePoint]:
    return [CurvePoint(int(s), str(split), float(lo), float(co), float(a), float(lr))
            for s, split, lo, co, a, lr in rows]


def result_to_json(result: TrialResult) -> dict[str, Any]:
    return {"spec": result.spec.to_dict(), "val_acc": result.val_acc,
            "test_acc": result.test_acc, "train_acc": result.train_acc,
            "train_seconds": result.train_seconds, "eval_seconds": result.eval_seconds,
            "updates": result.updates, "param_count": result.param_count,
            "epochs": result.epochs, "diverged": result.diverged, "stopped": result.stopped,
            "message": result.message, "curves": _curves_json(result.curves)}


def result_from_json(data: Mapping[str, Any]) -> TrialResult:
    values = dict(data)
    spec = TrialSpec.from_mapping(values.pop("spec"))
    curves = tuple(_curves_from_json(values.pop("curves")))
    return TrialResult(spec=spec, curves=curves, **values)


# -- checkpoints ----------------------------------------------------------------------------

@dataclass
class SlotState:
    """A slot group's state at one group step (``slots.py``): its trials' rows as a
    :class:`GroupState` (every row active, in row order) and what a slot group adds:
    ``members`` (per row: its key, spec, the group step it joined at and the stream's
    images drawn then), the group's counters (``stats``), and the digest of its members
    (:func:`slot_digest`), the ones a run resuming from it must start with."""

    digest: str
    group: GroupState
    members: list[dict[str, Any]]
    stats: dict[str, Any]


@dataclass
class PopulationState:
    """A population's state at an exploit step (``pbt.py``): the group's (every member
    training, in member order) and what population-based training adds in ``extra`` (a
    JSON-able mapping: the members' values, the events so far, the PBT generator)."""

    group: GroupState
    extra: dict[str, Any]


def slot_digest(size: int, members: Sequence[tuple[int, TrialSpec]], y_train: np.ndarray,
                x_shape: tuple[int, ...], num_classes: int) -> str:
    """What a slot group's checkpoint must match: its size, its members' keys and specs (in
    key order, ``data_offset`` aside: the engine sets it), the data as in
    :func:`state_digest`."""
    specs = [dataclasses.replace(spec, data_offset=0) for _, spec in sorted(
        members, key=lambda member: member[0])]
    keys = sorted(key for key, _ in members)
    return state_digest(specs, y_train, x_shape, num_classes) + f".slots{size}." + \
        hashlib.sha256(json.dumps(keys).encode()).hexdigest()


def save_state(path: str | Path, digest: str, state: GroupState) -> None:
    """Write ``state`` as the checkpoint at ``path``, replacing the previous one atomically."""
    arrays, header = _state_arrays(digest, state)
    arrays["header"] = _json_array(header)
    write_npz_atomic(path, arrays)


def save_slot_state(path: str | Path, state: SlotState) -> None:
    """Write a slot group's ``state`` at ``path`` (atomically, as :func:`save_state`)."""
    arrays, header = _state_arrays(state.digest, state.group)
    header.update(kind="slots", members=state.members, stats=state.stats)
    arrays["header"] = _json_array(header)
    write_npz_atomic(path, arrays)


POPULATION_KEYS = ("values", "events", "rng", "exploit_seconds", "done_at", "marked")
"""What a population's state adds to its group's (``pbt.Population.capture``)."""


def save_population_state(path: str | Path, digest: str, state: PopulationState) -> None:
    """Write a population's ``state`` at ``path`` (atomically, as :func:`save_state`)."""
    arrays, header = _state_arrays(digest, state.group)
    header.update(kind="pbt", pbt=state.extra)
    arrays["header"] = _json_array(header)
    write_npz_atomic(path, arrays)


def load_population_state(path: str | Path | None, digest: str) -> PopulationState | None:
    """The population's state in the checkpoint at ``path`` when it is whole and for this
    run; None and a :class:`CheckpointWarning` as :func:`load_state`."""
    if path is None or not Path(path).exists():
        return None
    path = Path(path)
    try:
        header, arrays = _read_npz(path)
        if (header.get("format") != FORMAT or header.get("kind") != "pbt"
                or header.get("digest") != digest):
            _warn(path, "it was written for another population, settings or data")
            return None
        extra = dict(header["pbt"])
        for key in POPULATION_KEYS:  # a KeyError: the file is not used
            extra[key]
        return PopulationState(_state_from(header, arrays), extra)
    except READ_ERRORS as exc:
        _warn(path, f"it is unreadable ({type(exc).__name__}: {exc})".splitlines()[0])
        return None


def _state_arrays(digest: str, state: GroupState) -> tuple[dict[str, np.ndarray],
                                                           dict[str, Any]]:
    """A group state's arrays and JSON header, as a checkpoint file holds them."""
    arrays: dict[str, np.ndarray] = {"sampler_order": np.asarray(state.sampler_order)}
    for j, params in enumerate(state.params):
        for name, a in params.items():
            arrays[f"p.{j}.{name}"] = a
    for j, slots in enumerate(state.slots):
        for name, named in slots.items():
            for slot, a in named.items():
                if slot not in SCRATCH_SLOTS:
                    arrays[f"o.{j}.{name}.{slot}"] = a
    header = {
        "format": FORMAT, "digest": digest, "step": state.step, "active": state.active,
        "opt_t": state.opt_t, "trial_rngs": state.trial_rngs, "data_rng": state.data_rng,
        "sampler_cursor": state.sampler_cursor, "sampler_drawn": state.sampler_drawn,
        "curves": [_curves_json(c) for c in state.curves],
        "train_seconds": state.train_seconds, "eval_seconds": state.eval_seconds,
        "results": {str(i): result_to_json(r) for i, r in state.results.items()},
    }
    return arrays, header


def load_state(path: str | Path | None, digest: str) -> GroupState | None:
    """The state in the checkpoint at ``path`` when it is whole and for this run (its
    digest); None when there is none, and a :class:`CheckpointWarning` naming the file when
    it cannot be used (training then starts from update 0)."""
    if path is None or not Path(path).exists():
        return None
    path = Path(path)
    try:
        header, arrays = _read_npz(path)
        if header.get("format") != FORMAT or header.get("digest") != digest:
            _warn(path, "it was written for other specs or data")
            return None
        return _state_from(header, arrays)
    except READ_ERRORS as exc:
        _warn(path, f"it is unreadable ({type(exc).__name__}: {exc})".splitlines()[0])
        return None


def load_slot_state(path: str | Path | None, digest: str | None) -> SlotState | None:
    """The slot group's state in the checkpoint at ``path`` when it is whole and its digest
    is ``digest`` (None: any slot group's, to look at it); None and a
    :class:`CheckpointWarning` as :func:`load_state`."""
    if path is None or not Path(path).exists():
        return None
    path = Path(path)
    try:
        header, arrays = _read_npz(path)
        if (header.get("format") != FORMAT or header.get("kind") != "slots"
                or (digest is not None and header.get("digest") != digest)):
            _warn(path, "it was written for another group of trials or other data")
            return None
        return SlotState(str(header["digest"]), _state_from(header, arrays),
                         list(header["members"]), dict(header["stats"]))
    except READ_ERRORS as exc:
        _warn(path, f"it is unreadable ({type(exc).__name__}: {exc})".splitlines()[0])
        return None


def _warn(path: Path, why: str) -> None:
    warnings.warn(f"checkpoint {path} not used: {why}; training starts from update 0",
                  CheckpointWarning, stacklevel=3)


def _state_from(header: dict[str, Any], arrays: Arrays) -> GroupState:
    active = [int(i) for i in header["active"]]
    params: list[Arrays] = [{} for _ in active]
    slots: list[dict[str, Arrays]] = [{} for _ in active]
    for key, a in arrays.items():
        kind, _, rest = key.partition(".")
        if kind == "p":
            j, name = rest.split(".", 1)
            params[int(j)][name] = a
        elif kind == "o":
            j, name, slot = rest.split(".")
            slots[int(j)].setdefault(name, {})[slot] = a
    if any(not p for p in params):
        raise ValueError("a training trial has no parameters")
    return GroupState(
        step=int(header["step"]), active=active, params=params, slots=slots,
        opt_t=header["opt_t"], trial_rngs=header["trial_rngs"], data_rng=header["data_rng"],
        sampler_order=arrays["sampler_order"], sampler_cursor=int(header["sampler_cursor"]),
        sampler_drawn=int(header["sampler_drawn"]),
        curves=[_curves_from_json(c) for c in header["curves"]],
        train_seconds=[float(s) for s in header["train_seconds"]],
        eval_seconds=[float(s) for s in header["eval_seconds"]],
        results={int(i): result_from_json(r) for i, r in header["results"].items()})


class CheckpointWriter:
    """Writes a run's checkpoints one at a time in a background thread.

    :meth:`save` takes a function that copies the state out (called here, on the training
    thread, so the copy is the state at this update), waits for the previous write and
    starts this one; :meth:`close` waits for the last. A write that fails (a full disk, a
    folder gone) gives one :class:`CheckpointWarning` and training goes on.
    ``blocked_seconds`` is the time the training thread spent in :meth:`save`.
    """

    def __init__(self, path: str | Path, digest: str) -> None:
        self.path = Path(path)
        self.digest = digest
        self.blocked_seconds = 0.0
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def save(self, make_state: Any) -> None:
        t0 = time.perf_counter()
        state = make_state()
        self._wait()
        self._thread = threading.Thread(target=self._write, args=(state,), daemon=True,
                                        name=f"checkpoint {self.path.name}")
        self._thread.start()
        self.blocked_seconds += time.perf_counter() - t0

    def _write(self, state: GroupState | SlotState | PopulationState) -> None:
        try:
            if isinstance(state, SlotState):  # a slot group's: its digest is its members'
                save_slot_state(self.path, state)
            elif isinstance(state, PopulationState):
                save_population_state(self.path, self.digest, state)
            else:
                save_state(self.path, self.digest, state)
        except Exception as exc:  # reported on the training thread by _wait
            self._error = exc

    def _wait(self) -> None:
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._error is not None:
            exc, self._error = self._error, None
            warnings.warn(f"checkpoint {self.path} not written: {type(exc).__name__}: "
                          f"{str(exc).splitlines()[0] if str(exc) else ''}; training goes on",
                          CheckpointWarning, stacklevel=3)

    def close(self) -> None:
        """Wait for the last write."""
        t0 = time.perf_counter()
        self._wait()
        self.blocked_seconds += time.perf_counter() - t0


def clear_state(path: str | Path | None) -> None:
    """Remove the checkpoint at ``path`` (and nothing when there is none). One that cannot be
    removed (the path is a folder, the folder is gone or read-only) is left: it is of no more
    use, and its trial's result is already stored."""
    if path is not None:
        with contextlib.suppress(OSError):
            Path(path).unlink(missing_ok=True)


# -- kept weights ---------------------------------------------------------------------------

def save_weights(path: str | Path, spec: TrialSpec, params: Mapping[str, np.ndarray],
                 **info: Any) -> None:
    """A trial's network at ``path`` (atomically): its parameters in the lone layout and a
    JSON ``header`` naming the format, the spec and ``info`` (e.g. test_acc)."""
    arrays = {name: np.asarray(a) for name, a in params.items()}
    header = {"format": WEIGHTS_FORMAT, "spec": spec.to_dict(), **info}
    arrays["header"] = _json_array(header)
    write_npz_atomic(path, arrays)


WEIGHTS_NOT_KEPT = "network not kept"
"""How a trial's message begins to say its network could not be written (its result is
stored all the same)."""


def keep_weights(path: str | Path, spec: TrialSpec, params: Mapping[str, np.ndarray],
                 **info: Any) -> str:
    """:func:`save_weights`, where a write that fails (a full disk, a read-only folder) is
    not the trial's failure: its metrics stand. Returns "" when written, else a message for
    the trial (``network not kept: OSError: ...``)."""
    try:
        save_weights(path, spec, params, **info)
    except OSError as exc:
        text = str(exc).splitlines()[0] if str(exc) else ""
        return f"{WEIGHTS_NOT_KEPT} ({path}): {type(exc).__name__}: {text}"
    return ""


@dataclass(frozen=True)
class Weights:
    """A kept network: its spec, parameters (lone layout) and the header's other values."""

    spec: TrialSpec
    params: Arrays
    info: dict[str, Any]


def load_weights(path: str | Path) -> Weights:
    """The network saved at ``path``; a :class:`WeightsError` naming the file when it is
    missing, damaged or not numsweep weights."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file {path} does not exist")
    try:
        header, arrays = _read_npz(path)
        if header.get("format") != WEIGHTS_FORMAT:
            raise ValueError(f"format {header.get('format')!r} is not {WEIGHTS_FORMAT}")
        spec = TrialSpec.from_mapping(header.pop("spec"))
    except READ_ERRORS as exc:
        raise WeightsError(f"weights file {path} is unreadable: "
                           f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
                           ) from None
    header.pop("format")
    return Weights(spec, arrays, header)


def state_bytes(param_count: int, dtype: str, optimizer: str) -> tuple[int, int]:
    """(kept network, checkpoint) sizes in bytes of one trial with ``param_count``
    parameters, without the few kilobytes of header and curves: the network is one copy of
    the parameters; a checkpoint adds the optimizer's state slots (:data:`STATE_SLOTS`)."""
    size = np.dtype(dtype).itemsize * param_count
    return size, size * (1 + STATE_SLOTS[optimizer])


STATE_SLOTS = {"sgd": 0, "momentum": 1, "nesterov": 1, "adagrad": 1, "rmsprop": 1,
               "rmsprop_nesterov": 2, "adadelta": 2, "adam": 2}
"""Arrays of a parameter's size an optimizer keeps between steps (scratch not counted)."""


def weights_network(weights: Weights, image_shape: tuple[int, int, int],
                    num_classes: int) -> Any:
    """The lone network of ``weights.spec`` holding the kept parameters; a
    :class:`WeightsError` when they do not fit it."""
    from numsweep.engine.build import build_network

    net = build_network(weights.spec, image_shape, num_classes, np.random.default_rng(0))
    for name, p in net.params.items():
        a = weights.params.get(name)
        if a is None or a.shape != p.shape:
            got = "missing" if a is None else f"of shape {a.shape}"
            raise WeightsError(f"weights for {weights.spec.model}: parameter {name} is {got}, "
                               f"expected shape {p.shape}")
        p[...] = a
    return net


def measure_test_accuracy(weights: Weights, data: Any) -> float:
    """The test accuracy of the kept network on ``data`` (a Dataset, split as its spec
    says, or a Split), measured as training measured it."""
    from numsweep.engine.data import Split, make_split
    from numsweep.engine.evaluation import evaluate_group
    from numsweep.engine.fused import fuse

    spec = weights.spec
    split = data if isinstance(data, Split) else make_split(data, spec.n_train, spec.n_val,
                                                             np.dtype(spec.dtype))
    net = fuse([weights_network(weights, split.x_test.shape[1:], split.num_classes)],
               [0.0], [0.0])
    _, _, accs = evaluate_group(net, net.prepare(split.x_test), split.y_test,
                                np.array([spec.lam]), np.array([spec.eps]))
    return float(accs[0])
