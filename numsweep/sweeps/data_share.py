"""How data reaches worker processes: the split saved once as ``.npy`` files that every
worker memory-maps (:class:`DataShare`)."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from numsweep.engine import TrialSpec, make_split
from numsweep.engine.build import build_network
from numsweep.sweeps.dataset_cache import cached_dataset
from numsweep.sweeps.worker import SPLIT_FIELDS, SharedSplit, split_key


class DataShare:
    """Loads the dataset once in this process; with worker processes, saves each normalised
    split (and the patchify ConvNet's patch matrices) once as ``.npy`` files that workers open
    with ``mmap_mode="r"``: one copy in memory however many workers there are."""

    def __init__(self, source: str | None, jobs: int) -> None:
        self.source = source
        self.jobs = jobs
        self.dataset = cached_dataset(source)
        self.folder: Path | None = None
        self.shared: dict[str, SharedSplit] = {}

    def make_folder(self) -> Path:
        """This sweep process's folder for its worker processes (made on first use)."""
        if self.folder is None:
            base = Path("/dev/shm") if Path("/dev/shm").is_dir() and os.access(
                "/dev/shm", os.W_OK) else Path(tempfile.gettempdir())
            _remove_orphans(base)
            self.folder = Path(tempfile.mkdtemp(prefix=f"numsweep-{os.getpid()}-", dir=base))
        return self.folder

    def shared_for(self, spec: TrialSpec) -> SharedSplit | None:
        if self.jobs == 1:
            return None
        self.folder = self.make_folder()
        key = split_key(spec.n_train, spec.n_val, spec.dtype)
        shared = self.shared.get(key)
        if shared is not None and (spec.model != "convnet" or spec.f in shared.patch_sizes):
            return shared
        # made here, saved, and dropped: this process keeps no copy of its own
        split = make_split(self.dataset, spec.n_train, spec.n_val, np.dtype(spec.dtype))
        if shared is None:
            for name in SPLIT_FIELDS:
                np.save(self.folder / f"{key}.{name}.npy", getattr(split, name))
            shared = SharedSplit(str(self.folder), key, split.num_classes)
        if spec.model == "convnet" and spec.f not in shared.patch_sizes:
            try:
                net = build_network(spec, split.x_train.shape[1:], split.num_classes,
                                    np.random.default_rng(0))
            except ValueError:
                self.shared[key] = shared
                return shared  # the worker reports the error as a failed trial
            for name in ("x_train", "x_val", "x_test"):
                np.save(self.folder / f"{key}.f{spec.f}.{name}.npy",
                        net.prepare(getattr(split, name)))
            shared = SharedSplit(shared.folder, key, shared.num_classes,
                                 (*shared.patch_sizes, spec.f))
        self.shared[key] = shared
        return shared

    def close(self) -> None:
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)


def _remove_orphans(base: Path) -> None:
    """Remove shared-data folders left by sweep processes that were killed."""
    for folder in base.glob("numsweep-*-*"):
        try:
            pid = int(folder.name.split("-")[1])
            os.kill(pid, 0)
        except ValueError:
            continue
        except ProcessLookupError:
            shutil.rmtree(folder, ignore_errors=True)
        except PermissionError:
            continue  # another user's live process
