"""device=cuda from the command line: the one-line error before anything is stored (this
machine has no CuPy; the stand-in ``fake_cupy`` plays a machine without a GPU), and
``--device`` reaching the stored trials of ``sweep run`` and ``sweep resume``."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from numsweep.cli import cli
from numsweep.storage import Storage
from tests.engine import fake_cupy

EXAMPLE = Path(__file__).parents[2] / "examples" / "lambda-coarse.toml"
SMALL = ("n_train=400", "n_val=100", "cycles=1", "batch_size=50", "hidden=16")


def invoke(*args: object):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


@pytest.mark.parametrize("cupy, message", [
    (None, "Error: device=cuda needs CuPy, which is not installed (pip install "
           "'numsweep[gpu]'"),
    (fake_cupy.FakeCupy(devices=0), "Error: device=cuda needs a CUDA GPU, and CuPy finds none"),
])
def test_cuda_without_cupy_or_gpu_is_one_line_and_stores_nothing(
        tmp_path: Path, tiny_npz: Path, monkeypatch: pytest.MonkeyPatch, cupy: object,
        message: str) -> None:
    monkeypatch.setitem(sys.modules, "cupy", cupy)
    db = f"sqlite:///{tmp_path / 'd.db'}"
    for args in (("train", "device=cuda", *SMALL), ("sweep", "run", EXAMPLE, *SMALL, "--device",
                                                    "cuda")):
        result = invoke(*args, "--db", db, "--data", tiny_npz)
        assert result.exit_code == 1
        lines = [line for line in result.output.splitlines() if line.strip()]
        assert lines[-1].startswith(message) and len(lines) == 1, result.output
    assert Storage(db).get_trials() == []


def test_device_reaches_the_stored_trials(tmp_path: Path, tiny_npz: Path) -> None:
    db = f"sqlite:///{tmp_path / 'd.db'}"
    result = invoke("sweep", "run", EXAMPLE, *SMALL, "--device", "cpu", "--db", db, "--data",
                    tiny_npz, "space.lam.grid=2")
    assert result.exit_code == 0, result.output
    assert {t.params["device"] for t in Storage(db).get_trials()} == {"cpu"}
    result = invoke("sweep", "resume", "lambda-coarse", "--device", "cpu", "--db", db)
    assert result.exit_code == 0, result.output
    trained = invoke("train", "device=cpu", *SMALL, "--json", "--db", db, "--data", tiny_npz)
    assert json.loads(trained.output)["device"] == "cpu"


def test_on_a_gpu_one_process_by_default(tmp_path: Path, tiny_npz: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """--device cuda: --jobs defaults to 1 (one process per GPU), for run and resume."""
    from numsweep.sweeps import pipeline
    from numsweep.sweeps.guards import sweep_failures

    monkeypatch.setitem(sys.modules, "cupy", fake_cupy.FakeCupy(devices=1))
    seen: list[int | None] = []

    def not_run(storage: Storage, jobs: int, name: str, *args: object
                ) -> pipeline.SweepRunResult:
        seen.append(jobs)
        return pipeline.SweepRunResult(name, storage, [], sweep_failures(storage, name), [])

    monkeypatch.setattr(pipeline, "_displayed", not_run)
    db = f"sqlite:///{tmp_path / 'd.db'}"
    assert invoke("sweep", "run", EXAMPLE, *SMALL, "--device", "cuda", "--db", db, "--data",
                  tiny_npz).exit_code == 0
    assert invoke("sweep", "run", EXAMPLE, *SMALL, "device=cuda", "--jobs", "3", "--force",
                  "--db", db, "--data", tiny_npz).exit_code == 0
    assert invoke("sweep", "run", EXAMPLE, *SMALL, "--db", db, "--data",
                  tiny_npz).exit_code == 0
    assert seen[:2] == [1, 3] and seen[2] is not None and seen[2] >= 1


def test_numsweep_train_on_the_stand_in_gpu(tmp_path: Path, tiny_npz: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """`numsweep train device=cuda` end to end on the CuPy stand-in: stored as a cuda trial
    with the CPU run's numbers (the real GPU: tests/engine/test_gpu.py)."""
    db = f"sqlite:///{tmp_path / 'd.db'}"
    small = [a for a in SMALL if not a.startswith("hidden=")]  # an MLP's
    args = ("model=convnet", "f=4", "nf=3", "nh=8", *small, "--json", "--db", db, "--data",
            tiny_npz)
    cpu = json.loads(invoke("train", *args).output)
    monkeypatch.setitem(sys.modules, "cupy", fake_cupy.FakeCupy(devices=1))
    result = invoke("train", "device=cuda", *args)
    assert result.exit_code == 0, result.output
    gpu = json.loads(result.output)
    assert gpu["device"] == "cuda" and cpu["device"] == "cpu"
    assert gpu["updates"] == cpu["updates"]
    assert gpu["val_acc"] == pytest.approx(cpu["val_acc"], abs=0.02)
    assert {t.params["device"] for t in Storage(db).get_trials()} == {"cpu", "cuda"}
