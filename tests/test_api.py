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
from numsweep.api import SweepResult
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


def test_an_in_memory_database_only_where_the_caller_holds_it(tmp_path: Path,
                                                              tiny_npz: Path) -> None:
    home = tmp_path / "home"
    with pytest.raises(numsweep.NumsweepError, match="is an in-memory database"):
        numsweep.sweep(SPEC, db="sqlite://", data=tiny_npz, progress=False)
    held = Storage("sqlite://", in_memory=True)
    with pytest.raises(numsweep.NumsweepError, match="give it a checkpoint folder of its own"):
        numsweep.sweep(SPEC, db=held, data=tiny_npz, progress=False)
    result = numsweep.sweep(SPEC, db=held, data=tiny_npz, progress=False,
                            checkpoint_dir=home / "kept")
    trials = result.trials()  # read from the object that holds them
    assert len(trials) == 3 and set(trials["state"]) == {"COMPLETE"}
    assert len(result.curves()) > 0


def test_a_long_run_needs_force_in_python_too(tmp_path: Path, tiny_npz: Path) -> None:
    with pytest.raises(numsweep.NumsweepError, match=r"plans 20,000,000 updates.*pass --force "
                                                     r"to run it \(force=True in Python\)"):
        numsweep.sweep(SPEC, db=str(tmp_path / "runs.db"), data=tiny_npz,
                       overrides={"n_s": 10**7}, progress=False)
    assert Storage(str(tmp_path / "runs.db")).list_sweeps() == []  # nothing stored


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


def test_several_sweeps_and_the_exports_from_the_api(tmp_path: Path) -> None:
    from tests.analysis.conftest import build_db

    db = f"sqlite:///{tmp_path / 'demo.db'}"
    build_db(db).dispose()
    both = numsweep.load_trials(db, ["archs", "optimizers"])
    assert set(both["sweep"]) == {"archs", "optimizers"}
    curves = numsweep.load_curves(db, sweep=["archs", "optimizers"])
    assert set(curves["trial_id"]) == set(both["trial_id"])
    page = numsweep.build_report(db, ["archs", "optimizers"], tmp_path / "cmp").markdown
    assert "Best trial of each sweep" in page.read_text()
    assert {"export_mlflow", "export_tensorboard"} <= set(numsweep.__all__)
    pytest.importorskip("tensorboard", reason="needs pip install 'numsweep[tensorboard]'")
    summary = numsweep.export_tensorboard(db, tmp_path / "tb", sweep="archs")
    assert len(summary.exported) == 9 and (tmp_path / "tb" / "archs").is_dir()


def test_the_export_packages_are_imported_only_on_use() -> None:
    code = ("import sys, numsweep, numsweep.export, numsweep.cli\n"
            "numsweep.export_mlflow, numsweep.export_tensorboard\n"
            "assert 'mlflow' not in sys.modules and 'tensorboard' not in sys.modules\n")
    subprocess.run([sys.executable, "-c", code], check=True,
                   env={"PYTHONPATH": str(Path(__file__).parents[1]), "PATH": "/usr/bin:/bin"})


def test_a_sweep_result_does_not_show_the_database_password() -> None:
    result = SweepResult("s", "postgresql://user:PASSWORD@host/db", ())
    assert "PASSWORD" not in repr(result) and "PASSWORD" not in str(result)


def test_the_notebook_bar_shows_a_running_trials_latest_point() -> None:
    """While a group trains, the stage's bar says where a running trial is (its update and
    val_acc), at most every ``point_seconds``; its end clears it."""
    from numsweep.api import StageProgress
    from numsweep.sweeps.events import TrialEvent

    written: list[str] = []
    bar = StageProgress(lambda stage, text: written.append(text), point_seconds=3600)
    bar(TrialEvent("stage", "coarse", planned=8))
    bar(TrialEvent("point", "coarse", 0, trial_id=3, val_acc=0.25, step=450, total=9000))
    bar(TrialEvent("point", "coarse", 0, trial_id=3, val_acc=0.3, step=900, total=9000))
    assert written == ["stage coarse: 0/8 trials",
                       "stage coarse: 0/8 trials; trial 3 at update 450/9000 val_acc 0.2500"]
    bar(TrialEvent("finished", "coarse", 0, TrialState.COMPLETE, 0.4, trial_id=3))
    assert written[-1] == "stage coarse: 1/8 trials, best val_acc 0.4000"
