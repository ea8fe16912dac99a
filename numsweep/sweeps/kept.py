"""Where a sweep keeps its checkpoints and trained networks, which it keeps, and clean-up.

Files, not the database: a checkpoint is rewritten at every curve point of every running
trial (megabytes for the larger ConvNets: parameters plus optimizer state), which would
grow SQLite's write-ahead log and PostgreSQL's table bloat and fight the sweep's own small
transactions for the database lock; a file is replaced with one atomic rename and removed
with one unlink. The folder (``--checkpoint-dir``) defaults to one beside a SQLite database
(``runs.db`` -> ``runs.db.checkpoints/``); for any other database it defaults to
``~/.cache/numsweep/checkpoints/<hash of the URL>/`` on this machine, so workers on several
machines must be given a folder every one of them can reach (a shared file system), or a
lost trial resumed elsewhere starts from update 0.

Layout inside the folder::

    <sweep>/<stage>/slots-<s>[-<s>...].npz   checkpoint of a group of planned slots
    <sweep>/train/<spec hash>.npz             checkpoint of a ``numsweep train`` run
    <sweep>/weights/trial-<id>.npz            kept network of a finished trial

A checkpoint is keyed by what stays the same across attempts of a trial (sweep, stage,
planned slots), so an attempt that runs a lost or interrupted trial again finds it. The
keep policy (``--keep-weights``): ``best`` (default) keeps the best trial of each stage and
every trial of a final stage (the last stage, or one with ``sampler = "best"``), ``all``
every finished trial, ``none`` nothing.
"""

from __future__ import annotations

import hashlib
import math
import re
import shutil
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from numsweep.engine import TrialSpec
from numsweep.engine.checkpoint import (
    WEIGHTS_NOT_KEPT,
    Weights,
    WeightsError,
    load_weights,
    measure_test_accuracy,
)
from numsweep.errors import NumsweepError
from numsweep.storage import (
    RunSettings,
    Storage,
    StorageError,
    TrialRecord,
    TrialState,
    database_identity,
    is_in_memory,
)

KEEP_POLICIES = ("best", "all", "none")
DEFAULT_KEEP = "best"


def default_checkpoint_dir(url: str) -> Path:
    """``<database file>.checkpoints`` beside a SQLite file; a folder in this user's cache,
    one per database (its URL without the password) for any other database (see the module
    docstring)."""
    database = url.split("?", 1)[0].split(":///", 1)[1] if url.startswith("sqlite") and \
        ":///" in url else ""
    if database and database != ":memory:" and not database.startswith("file:"):
        db = Path(database)
        return db.with_name(db.name + ".checkpoints")
    digest = hashlib.sha256(database_identity(url).encode()).hexdigest()[:16]
    return Path.home() / ".cache" / "numsweep" / "checkpoints" / digest


def checkpoint_root(storage: Storage, folder: str | Path | None) -> Path:
    """The checkpoint folder: ``folder`` when given, else the database's default, absolute;
    a one-line error when it is a file, or lies under one (every checkpoint and kept network
    would fail to be written), before any work. An in-memory database has none: its trials'
    ids come again in the next one, so their checkpoints and networks would be taken for
    another sweep's."""
    if folder is None and is_in_memory(storage.url):
        raise StorageError(f"{storage.url} is an in-memory database: give it a checkpoint "
                           f"folder of its own (checkpoint_dir)")
    root = Path(folder if folder is not None else default_checkpoint_dir(storage.url)).absolute()
    for place in (root, *root.parents):
        if place.exists():
            if not place.is_dir():
                where = "" if place == root else f" ({place} is a file)"
                raise NumsweepError(f"checkpoint folder {root} is not a folder{where}; give "
                                    "--checkpoint-dir a folder")
            break
    return root


def _safe(name: str) -> str:
    """A sweep or stage name as a file name (other characters become ``_``)."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", name) or "_"


def checkpoint_path(root: Path, sweep: str, stage: str, slots: Sequence[int]) -> Path:
    """The checkpoint of the planned slots ``slots`` of a stage (one slot: a lone trial;
    several: the group that trains them together)."""
    return root / _safe(sweep) / _safe(stage) / f"slots-{'-'.join(map(str, sorted(slots)))}.npz"


def slot_group_checkpoint_path(root: Path, sweep: str, stage: str, group_id: int) -> Path:
    """The checkpoint of a slot group of a stage (its file names its members); ``group_id``
    is the id of the first trial it started with."""
    return root / _safe(sweep) / _safe(stage) / f"group-{group_id}.npz"


def slot_group_checkpoints(root: Path, sweep: str, stage: str) -> list[Path]:
    """The slot-group checkpoints of a stage, oldest group first."""
    folder = root / _safe(sweep) / _safe(stage)
    found = [p for p in (folder.glob("group-*.npz") if folder.is_dir() else [])
             if _group_of(p) is not None]
    return sorted(found, key=lambda p: _group_of(p) or 0)


def _group_of(path: Path) -> int | None:
    match = re.fullmatch(r"group-(\d+)\.npz", path.name)
    return int(match.group(1)) if match else None


def slot_group_members(path: Path) -> list[int] | None:
    """The members (their keys: planned slots) of the slot group whose checkpoint is at
    ``path``, in its row order; None when it holds no slot group's state."""
    import warnings

    from numsweep.engine.checkpoint import CheckpointWarning, load_slot_state

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CheckpointWarning)
        state = load_slot_state(path, None)
    return None if state is None else [int(m["key"]) for m in state.members]


def train_checkpoint_path(root: Path, sweep: str, spec: TrialSpec) -> Path:
    """The checkpoint of a ``numsweep train`` run: keyed by its spec, so running the same
    command again continues it."""
    digest = hashlib.sha256(repr(sorted(spec.to_dict().items())).encode()).hexdigest()[:16]
    return root / _safe(sweep) / "train" / f"{digest}.npz"


def weights_path(root: Path, sweep: str, trial_id: int) -> Path:
    return root / _safe(sweep) / "weights" / f"trial-{trial_id}.npz"


def check_policy(policy: str) -> str:
    if policy not in KEEP_POLICIES:
        raise NumsweepError(f"--keep-weights {policy!r} is invalid: expected one of "
                            f"{', '.join(KEEP_POLICIES)}")
    return policy


def kept_trials(trials: Iterable[TrialRecord], policy: str,
                final_stages: Iterable[str]) -> set[int]:
    """The ids of the finished trials whose networks ``policy`` keeps (see the module
    docstring); ``final_stages`` are the names of the stages all of whose trials it keeps."""
    finals = set(final_stages)
    done = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    if policy == "none":
        return set()
    if policy == "all":
        return {t.id for t in done}
    keep: set[int] = set()
    by_stage: dict[str | None, list[TrialRecord]] = {}
    for t in done:
        by_stage.setdefault(t.stage, []).append(t)
    for stage, members in by_stage.items():
        if stage in finals or stage is None:  # single trials (numsweep train) are kept
            keep.update(t.id for t in members)
            continue
        scored = [t for t in members if math.isfinite(t.metrics.get("val_acc", math.nan))]
        if scored:
            keep.add(max(scored, key=lambda t: (t.metrics["val_acc"], -t.id)).id)
    return keep


def final_stage_names(stored_spec: dict) -> list[str]:
    """The final stages of a sweep as stored in the database: the last one, and any whose
    sampler is ``best``."""
    stages = stored_spec.get("stages") or []
    names = [s.get("name") for s in stages if s.get("sampler") == "best"]
    if stages:
        names.append(stages[-1].get("name"))
    return [n for n in names if n]


def sweep_policy(storage: Storage, sweep: str) -> tuple[str, Path]:
    """The keep policy and checkpoint folder a sweep was run with (stored with it)."""
    run = storage.get_sweep(sweep).run or RunSettings()
    root = run.checkpoint_dir
    return (run.keep_weights or DEFAULT_KEEP,
            Path(root) if root else default_checkpoint_dir(storage.url))


def apply_policy(storage: Storage, sweep: str, root: Path, policy: str,
                 stages: Iterable[str] | None = None) -> list[Path]:
    """Remove the kept networks of ``sweep``'s finished trials (of ``stages`` only, when
    given) that ``policy`` does not keep; the removed files. Files of trials still running
    are left alone (their result may not be stored yet)."""
    record = storage.get_sweep(sweep)
    trials = storage.get_trials(sweep)
    keep = kept_trials(trials, policy, final_stage_names(record.spec))
    only = None if stages is None else set(stages)
    finished = {t.id for t in trials
                if t.state.is_finished() and (only is None or t.stage in only)}
    removed = []
    folder = root / _safe(sweep) / "weights"
    for path in sorted(folder.glob("trial-*.npz")) if folder.is_dir() else []:
        trial_id = _trial_of(path)
        if trial_id in finished and trial_id not in keep:
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def unkept_networks(storage: Storage, sweep: str) -> list[TrialRecord]:
    """The finished trials of ``sweep`` whose network its keep policy keeps but could not be
    written (a full disk: their results are stored, their message says why) and is still
    missing; ``numsweep trial rerun`` writes each again."""
    record = storage.get_sweep(sweep)
    policy, root = sweep_policy(storage, sweep)
    trials = storage.get_trials(sweep)
    keep = kept_trials(trials, policy, final_stage_names(record.spec))
    return [t for t in trials if t.id in keep and WEIGHTS_NOT_KEPT in t.message
            and not weights_path(root, sweep, t.id).is_file()]


def _trial_of(path: Path) -> int | None:
    match = re.fullmatch(r"trial-(\d+)\.npz", path.name)
    return int(match.group(1)) if match else None


@dataclass(frozen=True)
class Collected:
    """What ``sweep gc`` removed: files and their bytes."""

    checkpoints: tuple[Path, ...]
    weights: tuple[Path, ...]
    bytes: int


def collect_garbage(storage: Storage, sweep: str, folder: str | Path | None = None,
                    policy: str | None = None) -> Collected:
    """Remove the checkpoints of ``sweep``'s trials that are finished (every slot of a
    checkpoint final), stray temporary files, and the kept networks its keep policy (the
    stored one unless ``policy``) no longer keeps."""
    stored_policy, stored_root = sweep_policy(storage, sweep)
    root = Path(folder) if folder is not None else stored_root
    policy = check_policy(policy or stored_policy)
    trials = storage.get_trials(sweep)
    latest: dict[tuple[str | None, int | None], TrialRecord] = {}
    for t in sorted(trials, key=lambda t: (t.attempt, t.id)):
        latest[(t.stage, t.slot)] = t
    base = root / _safe(sweep)
    sizes = 0
    removed: list[Path] = []
    for path in sorted(base.glob("*/*.npz")) if base.is_dir() else []:
        if path.parent.name in ("weights", "train"):
            continue
        slots = _slots_of(path)
        if slots is None and _group_of(path) is not None:
            slots = slot_group_members(path)  # a slot group's: the members it saved
        stage = next((s for (s, _) in latest if s is not None and _safe(s) == path.parent.name),
                     None)
        if slots is None or stage is None:
            continue
        if all(latest.get((stage, s)) is not None and latest[(stage, s)].state.is_finished()
               for s in slots):
            sizes += path.stat().st_size
            path.unlink()
            removed.append(path)
    for path in sorted(base.glob("**/*.tmp")) if base.is_dir() else []:
        sizes += path.stat().st_size
        path.unlink()
        removed.append(path)
    train_folder = base / "train"
    if train_folder.is_dir() and all(t.state.is_finished() for t in trials):
        for path in sorted(train_folder.glob("*.npz")):
            sizes += path.stat().st_size
            path.unlink()
            removed.append(path)
    weights_before = {p: p.stat().st_size for p in (base / "weights").glob("*.npz")} \
        if (base / "weights").is_dir() else {}
    gone = apply_policy(storage, sweep, root, policy)
    sizes += sum(weights_before.get(p, 0) for p in gone)
    for folder in sorted(base.glob("*/"), reverse=True) if base.is_dir() else []:
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()  # a stage's folder once its checkpoints are gone
    return Collected(tuple(removed), tuple(gone), sizes)


def _slots_of(path: Path) -> list[int] | None:
    match = re.fullmatch(r"slots-([\d-]+)\.npz", path.name)
    return [int(s) for s in match.group(1).split("-")] if match else None


# -- one trial's kept network ---------------------------------------------------------------

def trial_weights_path(storage: Storage, trial_id: int, folder: str | Path | None = None) -> Path:
    """The kept network of trial ``trial_id``; a :class:`WeightsError` naming the file when
    it was not kept or is gone."""
    found = storage.get_trials(trial_ids=[trial_id])
    if not found:
        raise StorageError(f"no trial with id {trial_id} in {storage.shown_url}")
    trial = found[0]
    policy, stored_root = sweep_policy(storage, trial.sweep)
    root = Path(folder) if folder is not None else stored_root
    path = weights_path(root, trial.sweep, trial_id)
    if not path.is_file():
        spec = storage.get_sweep(trial.sweep).spec
        kept = trial_id in kept_trials(storage.get_trials(trial.sweep), policy,
                                       final_stage_names(spec))
        why = (f"the sweep ran with --keep-weights {policy}, which keeps it: it was removed "
               f"since (`numsweep sweep gc` with another --keep-weights, or by hand)" if kept
               else f"--keep-weights {policy}, which the sweep ran with, does not keep it"
               + ("" if policy == "none" else " (a failed trial, or not its stage's best)"))
        raise WeightsError(f"weights file {path} of trial {trial_id} does not exist: {why}")
    return path


def export_weights(storage: Storage, trial_id: int, out: str | Path,
                   folder: str | Path | None = None) -> Weights:
    """Copy trial ``trial_id``'s kept network to ``out`` (checked readable first)."""
    path = trial_weights_path(storage, trial_id, folder)
    weights = load_weights(path)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(path, out)
    return weights


@dataclass(frozen=True)
class Evaluation:
    """A kept network's test accuracy measured again, beside the stored one (NaN when the
    weights came from a file without it)."""

    trial_id: int | None
    weights: Path
    measured: float
    stored: float

    @property
    def agrees(self) -> bool:
        return self.measured == self.stored

    @property
    def differs(self) -> bool:
        """Whether a stored accuracy is known and the measured one differs from it."""
        return not math.isnan(self.stored) and not self.agrees


def evaluate_weights(path: str | Path, data_source: str | None, *, trial_id: int | None = None,
                     stored: float | None = None) -> Evaluation:
    """Measure the network at ``path`` on the test set of ``data_source``."""
    from numsweep.engine import load_dataset

    weights = load_weights(path)
    acc = measure_test_accuracy(weights, load_dataset(data_source))
    if stored is None:
        stored = float(weights.info.get("test_acc", math.nan))
    return Evaluation(trial_id, Path(path), acc, stored)


def evaluate_trial(storage: Storage, trial_id: int, *, data_source: str | None = None,
                   folder: str | Path | None = None) -> Evaluation:
    """Trial ``trial_id``'s kept network measured again on the data its sweep ran on (or
    ``data_source``), beside its stored test accuracy."""
    path = trial_weights_path(storage, trial_id, folder)
    trial = storage.get_trials(trial_ids=[trial_id])[0]
    if data_source is None:
        data_source = (storage.get_sweep(trial.sweep).run or RunSettings()).data
    return evaluate_weights(path, data_source, trial_id=trial_id,
                            stored=float(trial.metrics.get("test_acc", math.nan)))


def _trial_target(target: str | int) -> int | None:
    """The trial id a TARGET names (an int, or digits as typed), else None (a file)."""
    if isinstance(target, int):
        return target
    return int(target) if target.isdigit() else None


def evaluate(target: str | int, db: str | Storage, *, data_source: str | None = None,
             folder: str | Path | None = None) -> Evaluation:
    """``numsweep evaluate TARGET``: a trial id's kept network in ``db``
    (:func:`evaluate_trial`), or a weights file measured on ``data_source``
    (:func:`evaluate_weights`; the database is not opened)."""
    trial_id = _trial_target(target)
    if trial_id is None:
        return evaluate_weights(target, data_source)
    storage = db if isinstance(db, Storage) else Storage(db, read_only=True)
    return evaluate_trial(storage, trial_id, data_source=data_source, folder=folder)


@dataclass(frozen=True)
class KeptNetwork:
    """A kept network, read, and where it comes from: a trial of a sweep, or a file."""

    weights: Weights
    path: Path
    trial_id: int | None = None
    sweep: str = ""


def kept_network(target: str | int, db: str | Storage,
                 folder: str | Path | None = None) -> KeptNetwork:
    """The network TARGET names: a trial id's kept network in ``db``, or a weights file
    (the database is not opened); a :class:`WeightsError` when it is missing or damaged."""
    trial_id = _trial_target(target)
    if trial_id is None:
        return KeptNetwork(load_weights(target), Path(target))
    storage = db if isinstance(db, Storage) else Storage(db, read_only=True)
    path = trial_weights_path(storage, trial_id, folder)
    weights = load_weights(path)
    return KeptNetwork(weights, path, trial_id, storage.get_trials(trial_ids=[trial_id])[0].sweep)
