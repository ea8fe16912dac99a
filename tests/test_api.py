"""The notebook API importable from ``numsweep`` itself, outside Jupyter."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import matplotlib.pyplot as plt
import pytest
from sqlalchemy import event

import numsweep
from numsweep.storage import Storage, TrialState
from numsweep.sweeps import SweepInterrupted

SPEC = {
    "name": "api-lambda",
    "fixed": {"model": "mlp", "hidden": [8], "cycles": 1, "batch_size": 50, "n_train": 300,
              "n_val": 100},
    "space": {"lam": {"type": "float", "low": 1e-4, "high": 1e-1, "log": True, "grid": 3}},
    "stages": [{"name": "coarse", "sampler": "grid"}],
}


def test_sweep_from_a_dict_then_trials_curves_and_charts_on_given_axes(
        tmp_path: Path, tiny_npz: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "runs.db"
    result = numsweep.sweep(SPEC, db=str(db), data=tiny_npz, overrides={"seed": 3})
    assert "stage coarse: 3/3 trials" in capsys.readouterr().err  # progress outside Jupyter
    assert result.name == "api-lambda" and [s.name for s in result.stages] == ["coarse"]
    trials = result.trials()
    assert len(trials) == 3 and set(trials["state"]) == {"COMPLETE"}
    assert trials.equals(numsweep.load_trials(db, "api-lambda"))
    curves = result.curves()
    assert set(curves["trial_id"]) == set(trials["trial_id"])
    fig, ax = plt.subplots()
    drawn = numsweep.charts.draw_lambda(numsweep.charts.lambda_data(trials), ax=ax)
    assert drawn is ax and ax.get_xscale() == "log"
    plt.close(fig)
    assert result.report(tmp_path / "report").exists()


def test_sweep_runs_as_many_trials_at_once_as_the_command_line_by_default(
        tmp_path: Path, tiny_npz: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, object] = {}

    def fake_run(*_args: object, **kwargs: object) -> list[object]:
        seen.update(kwargs)
        return []

    monkeypatch.setattr("numsweep.api.run_sweep", fake_run)
    monkeypatch.setattr("os.cpu_count", lambda: 7)
    numsweep.sweep(SPEC, db=str(tmp_path / "runs.db"), data=tiny_npz, progress=False)
    assert seen["jobs"] == 7  # the cores, as `numsweep sweep run` without --jobs


def test_a_bad_spec_is_a_numsweep_error(tmp_path: Path, tiny_npz: Path) -> None:
    with pytest.raises(numsweep.NumsweepError, match="hidden"):
        numsweep.sweep(SPEC, db=str(tmp_path / "runs.db"), data=tiny_npz,
                       overrides={"hidden": "0"}, progress=False)


def test_importing_numsweep_changes_no_global_state() -> None:
    code = ("import sys, logging, matplotlib\n"
            "before = matplotlib.rcParams['backend']\n"
            "import numsweep, numsweep.analysis, numsweep.analysis.report, numsweep.cli\n"
            "assert 'matplotlib.pyplot' not in sys.modules or "
            "matplotlib.rcParams['backend'] == before\n"
            "assert not matplotlib.get_backend().lower() == 'agg' or before.lower() == 'agg'\n")
    subprocess.run([sys.executable, "-c", code], check=True,
                   env={"PYTHONPATH": str(Path(__file__).parents[1]), "MPLBACKEND": "svg",
                        "PATH": "/usr/bin:/bin"})


def test_interrupting_the_kernel_during_a_result_write_keeps_that_result(
        tmp_path: Path, tiny_npz: Path) -> None:
    """In a notebook Python's own handler raises KeyboardInterrupt wherever it lands; while a
    sweep runs numsweep puts its own in place, so the write under way (a trial's result)
    completes, and then the sweep stops with nothing left RUNNING."""
    storage = Storage(f"sqlite:///{tmp_path / 'kernel.db'}")
    sent: list[str] = []

    def interrupt_the_kernel(_conn: object, _cursor: object, statement: str,
                             *_args: object) -> None:
        if not sent and threading.current_thread() is threading.main_thread() \
                and statement.startswith("UPDATE ns_trials SET state"):
            sent.append(statement)
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.01)  # the handler runs here, inside the result's transaction

    event.listen(storage.engine, "before_cursor_execute", interrupt_the_kernel)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)  # as in Jupyter
    try:
        with pytest.raises(SweepInterrupted):
            numsweep.sweep(SPEC, db=storage, data=tiny_npz, progress=False)
    finally:
        signal.signal(signal.SIGINT, previous)
    assert sent and signal.getsignal(signal.SIGINT) is previous
    states = [t.state for t in storage.get_trials("api-lambda")]
    assert TrialState.COMPLETE in states and TrialState.RUNNING not in states
