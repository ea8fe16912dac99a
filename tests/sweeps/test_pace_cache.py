"""The group-size measurements kept per machine (``sweeps.pace_cache``): a hit measures
nothing, another machine or group measures, a corrupt file is measured over and rewritten,
the folder comes from the environment."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from numsweep.engine import TrialSpec
from numsweep.sweeps.pace_cache import CACHE_FILE, cache_folder, cache_key, cached_pace

SPEC = TrialSpec(model="convnet", f=4, nf=10, nh=50)
SHAPE = (32, 32, 3)
HERE = {"cpu": "AMD EPYC", "cores": 2, "blas": ["openblas 0.3 Zen"], "numpy": "2.0",
        "device": "cpu"}


class Counting:
    def __init__(self) -> None:
        self.calls: list[list[int]] = []

    def __call__(self, spec: TrialSpec, shape: Any, classes: int, sizes: Any,
                 threads: int) -> dict[int, float]:
        self.calls.append(list(sizes))
        return {k: 1e-3 / k ** 0.5 for k in sizes}


def pace(folder: Path, measure: Counting, spec: TrialSpec = SPEC, sizes: Any = (1, 2, 4),
         machine: dict[str, Any] = HERE, threads: int = 1) -> dict[int, float]:
    return cached_pace(spec, SHAPE, 10, sizes, threads, measure=measure, machine=machine,
                       folder=folder)


def test_a_kept_measurement_is_not_measured_again(tmp_path: Path) -> None:
    measure = Counting()
    first = pace(tmp_path, measure)
    assert pace(tmp_path, measure) == first and measure.calls == [[1, 2, 4]]
    # fewer sizes, or another stage's lengths and seeds: the same measurement
    assert pace(tmp_path, measure, sizes=(1, 2)) == {1: first[1], 2: first[2]}
    other_lengths = TrialSpec(model="convnet", f=4, nf=10, nh=50, n_train=300, cycles=5,
                              data_seed=3, lam=0.5, n_val=10)
    assert pace(tmp_path, measure, spec=other_lengths) == first
    assert len(measure.calls) == 1


def test_another_machine_group_or_thread_count_is_measured(tmp_path: Path) -> None:
    measure = Counting()
    pace(tmp_path, measure)
    pace(tmp_path, measure, machine={**HERE, "blas": ["openblas 0.3 Haswell"]})
    pace(tmp_path, measure, machine={**HERE, "device": "cuda:NVIDIA H200"})
    pace(tmp_path, measure, spec=TrialSpec(model="convnet", f=4, nf=20, nh=50))
    pace(tmp_path, measure, spec=TrialSpec(model="convnet", f=4, nf=10, nh=50,
                                           batch_size=50))
    pace(tmp_path, measure, spec=TrialSpec(model="convnet", f=4, nf=10, nh=50,
                                           optimizer="adam"))
    pace(tmp_path, measure, threads=2)
    assert len(measure.calls) == 7
    # a size never asked for: measured (and kept beside the others)
    pace(tmp_path, measure, sizes=(1, 2, 4, 8))
    assert measure.calls[-1] == [1, 2, 4, 8] and len(measure.calls) == 8
    pace(tmp_path, measure, sizes=(1, 8))
    assert len(measure.calls) == 8


@pytest.mark.parametrize("content", [b"{not json", b"\x00\xff\xfe", b"[1, 2]",
                                     b'{"version": 1, "entries": {"k": 3}}',
                                     b'{"version": 99, "entries": {}}', b"nan"])
def test_a_corrupt_file_is_measured_over_and_rewritten(tmp_path: Path, content: bytes) -> None:
    (tmp_path / CACHE_FILE).write_bytes(content)
    if content == b"nan":  # this key's entry, kept with a lone trial of no time
        entry = {"asked": [1, 2, 4], "seconds": {"1": math.nan, "2": -1.0, "4": 0.0}}
        (tmp_path / CACHE_FILE).write_text(json.dumps(
            {"version": 1, "entries": {cache_key(SPEC, SHAPE, 10, 1, HERE): entry}}))
    measure = Counting()
    got = pace(tmp_path, measure)
    assert measure.calls == [[1, 2, 4]]
    stored = json.loads((tmp_path / CACHE_FILE).read_text())
    key = cache_key(SPEC, SHAPE, 10, 1, HERE)
    assert stored["entries"][key]["seconds"] == {str(k): v for k, v in got.items()}
    assert pace(tmp_path, measure) == got and len(measure.calls) == 1


def test_an_unwritable_folder_measures_and_goes_on(tmp_path: Path) -> None:
    blocked = tmp_path / "file"
    blocked.write_text("")  # a file where the folder should be
    measure = Counting()
    assert sorted(pace(blocked, measure)) == [1, 2, 4]
    assert sorted(pace(blocked, measure)) == [1, 2, 4] and len(measure.calls) == 2


def test_a_measurement_without_a_lone_trial_is_not_kept(tmp_path: Path) -> None:
    def partial(*_args: Any) -> dict[int, float]:
        return {2: 1.0}

    assert cached_pace(SPEC, SHAPE, 10, [1, 2], 1, measure=partial, machine=HERE,
                       folder=tmp_path) == {2: 1.0}
    assert not (tmp_path / CACHE_FILE).exists()


def test_the_folder_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch,
                                               tmp_path: Path) -> None:
    monkeypatch.setenv("NUMSWEEP_CACHE", str(tmp_path / "mine"))
    assert cache_folder() == tmp_path / "mine"
    monkeypatch.delenv("NUMSWEEP_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_folder() == tmp_path / "xdg" / "numsweep"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_folder() == tmp_path / "home" / ".cache" / "numsweep"


def test_the_suite_never_writes_to_the_users_cache(tmp_path_factory: pytest.TempPathFactory
                                                   ) -> None:
    assert cache_folder().is_relative_to(tmp_path_factory.getbasetemp())


def test_the_machine_key_reads_this_machine() -> None:
    from numsweep.sweeps.pace_cache import machine_key

    key = machine_key(SPEC)
    assert key["device"] == "cpu" and key["cores"] and key["numpy"] and key["cpu"]
    assert all(isinstance(b, str) for b in key["blas"])
