"""The datasets this process loaded, kept for the rest of it, and data sources as they are
stored.

The command line's check of the data, the planner's calibration, the sweep's data share and
the trials a process trains itself take the same copy: a compressed CIFAR-10 ``.npz`` takes
about a second to read. Worker processes keep their own (each process its own cache).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from numsweep.engine import Dataset, load_dataset

KEPT_SOURCES = 2
"""How many data sources a process keeps loaded (the oldest goes first)."""

_DATASETS: dict[str | None, Dataset] = {}
"""The datasets this process loaded, oldest first."""


def absolute_data(source: str | None) -> str | None:
    """A data path made absolute, as it is stored (with a sweep or a trial), so that
    ``resume``, ``worker`` and ``trial rerun`` started from another folder find it. None
    (CIFAR-10 downloaded into the cache) and a path that does not exist stay as they are."""
    if source is not None and Path(source).exists():
        return str(Path(source).resolve())
    return source


def cached_dataset(source: str | None, *, progress: Any = None) -> Dataset:
    """The dataset at ``source`` (None: CIFAR-10, downloaded with ``progress`` when it is
    not in the cache folder), loaded once per process; the last :data:`KEPT_SOURCES`
    sources are kept. A source that cannot be loaded raises and is not kept."""
    if source not in _DATASETS:
        dataset = load_dataset(source, progress=progress)
        while len(_DATASETS) >= KEPT_SOURCES:
            del _DATASETS[next(iter(_DATASETS))]
        _DATASETS[source] = dataset
    return _DATASETS[source]



def clear_datasets() -> None:
    """Forget every loaded dataset (the next :func:`cached_dataset` loads it again)."""
    _DATASETS.clear()
