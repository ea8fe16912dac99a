"""The datasets a process loaded, kept for the rest of it (``dataset_cache.py``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from numsweep.engine import DataError
from numsweep.sweeps import dataset_cache
from numsweep.sweeps.dataset_cache import absolute_data, cached_dataset, clear_datasets
from tests.conftest import write_images_npz


@pytest.fixture
def loads(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str | None]]:
    """The sources read from disk during the test, the cache empty before and after it."""
    seen: list[str | None] = []
    load = dataset_cache.load_dataset

    def counted(source: str | None, **kwargs: Any) -> Any:
        seen.append(source)
        return load(source, **kwargs)

    clear_datasets()
    monkeypatch.setattr(dataset_cache, "load_dataset", counted)
    yield seen
    clear_datasets()


def test_a_source_is_loaded_once_per_process(tmp_path: Path,
                                             loads: list[str | None]) -> None:
    path = str(write_images_npz(tmp_path / "a.npz", seed=1))
    first = cached_dataset(path)
    assert cached_dataset(path) is first
    assert loads == [path]


def test_the_last_two_sources_are_kept(tmp_path: Path, loads: list[str | None]) -> None:
    a, b, c = (str(write_images_npz(tmp_path / f"{n}.npz", seed=i))
               for i, n in enumerate("abc"))
    kept_a = cached_dataset(a)
    cached_dataset(b)
    assert cached_dataset(a) is kept_a  # two sources: both kept
    cached_dataset(c)  # a third: the oldest (a) goes
    cached_dataset(b)
    cached_dataset(a)
    assert loads == [a, b, c, a]


def test_clear_datasets_loads_again(tmp_path: Path, loads: list[str | None]) -> None:
    path = str(write_images_npz(tmp_path / "a.npz", seed=1))
    first = cached_dataset(path)
    clear_datasets()
    assert cached_dataset(path) is not first
    assert loads == [path, path]


def test_a_source_that_does_not_load_is_not_kept(tmp_path: Path,
                                                 loads: list[str | None]) -> None:
    path = tmp_path / "later.npz"
    with pytest.raises(DataError):
        cached_dataset(str(path))
    write_images_npz(path, seed=2)  # there now: loaded, not an error remembered
    assert len(cached_dataset(str(path)).x_train) == 600
    assert loads == [str(path), str(path)]


def test_the_progress_reaches_the_loader(monkeypatch: pytest.MonkeyPatch,
                                         loads: list[str | None]) -> None:
    given: list[Any] = []

    def fake_load(source: str | None, *, progress: Any = None) -> Any:
        given.append(progress)
        return object()

    monkeypatch.setattr(dataset_cache, "load_dataset", fake_load)

    def progress(done: int, total: int | None) -> None:
        pass

    cached_dataset(None, progress=progress)
    assert given == [progress]


def test_absolute_data_resolves_a_path_that_exists(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "d.npz").write_bytes(b"")
    monkeypatch.chdir(tmp_path)
    assert absolute_data("d.npz") == str((tmp_path / "d.npz").resolve())
    assert absolute_data("missing.npz") == "missing.npz"  # its error names it as given
    assert absolute_data(None) is None  # the download
