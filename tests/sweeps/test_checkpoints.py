"""Checkpoints and kept networks in sweeps (tiny generated data): a sweep killed mid-trial
resumes that trial from its checkpoint to the result an uninterrupted sweep gets; the keep
policies; ``trial weights``, ``evaluate``, ``plot filters`` and ``sweep gc`` from the CLI."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from numsweep.cli import cli
from numsweep.storage import Storage, TrialState
from numsweep.sweeps import parse_spec, resume_sweep, run_sweep
from numsweep.sweeps.kept import checkpoint_path, default_checkpoint_dir, kept_trials
from tests.killed_child import run_killed_after_second_save

FIXED = {"model": "convnet", "f": 4, "nf": 3, "nh": 8, "n_train": 200, "n_val": 50,
         "batch_size": 50, "eval_train": 50, "curve_points": 2, "cycles": 3, "dropout": 0.1}


def sweep_spec(name: str = "ck") -> dict:
    return {"name": name, "seed": 3, "fixed": FIXED,
            "space": {"lam": {"low": 1e-4, "high": 1e-1, "log": True, "grid": 3}},
            "stages": [{"name": "coarse", "sampler": "grid"},
                       {"name": "final", "sampler": "best"}]}


def invoke(*args: object):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


SWEEP_KILLED = """
import numsweep.sweeps.proposals as proposals
from numsweep.storage import Storage
from numsweep.sweeps import parse_spec, run_sweep
from tests.sweeps.test_checkpoints import sweep_spec

# with --jobs 1 the trial trains inside the proposal turn: let the resume take it over soon
proposals.PROPOSAL_LEASE_SECONDS = 1.0
run_sweep(parse_spec(sweep_spec(), "test"), Storage(sys.argv[1]), data_source=sys.argv[2],
          jobs=1, group_size=1)  # lone trials: one checkpoint per slot
"""


def test_a_trial_killed_mid_run_continues_from_its_checkpoint_on_resume(
        tmp_path: Path, tiny_npz: Path) -> None:
    spec = parse_spec(sweep_spec(), "test")
    reference_db = f"sqlite:///{tmp_path / 'ref.db'}"
    run_sweep(spec, Storage(reference_db), data_source=str(tiny_npz), jobs=1, group_size=1)
    reference = {(t.stage, t.params["lam"]): t for t in Storage(reference_db).get_trials("ck")}

    db = f"sqlite:///{tmp_path / 'killed.db'}"
    run_killed_after_second_save(SWEEP_KILLED, db, tiny_npz)
    folder = default_checkpoint_dir(db)
    assert folder == tmp_path / "killed.db.checkpoints"
    left = checkpoint_path(folder, "ck", "coarse", [0])
    assert left.exists()
    [running] = Storage(db).get_trials("ck")
    assert running.state is TrialState.RUNNING

    resume_sweep("ck", Storage(db), jobs=1, grace=1, group_size=1)
    trials = Storage(db).get_trials("ck")
    again = [t for t in trials if t.slot == 0 and t.stage == "coarse"
             and t.state is TrialState.COMPLETE]
    assert len(again) == 1 and "resumed from its checkpoint at update" in again[0].message
    assert not left.exists()  # stored, so its checkpoint is gone
    storage, ref_storage = Storage(db), Storage(reference_db)
    for t in (t for t in trials if t.state is TrialState.COMPLETE):
        ref = reference[(t.stage, t.params["lam"])]
        for name in ("val_acc", "test_acc", "train_acc", "updates"):
            assert t.metrics[name] == ref.metrics[name], name
        assert [(c.step, c.split, c.loss, c.acc) for c in storage.get_curves([t.id])] == \
            [(c.step, c.split, c.loss, c.acc) for c in ref_storage.get_curves([ref.id])]


@pytest.fixture(scope="module")
def kept_sweep(tmp_path_factory: pytest.TempPathFactory, tiny_npz: Path) -> tuple[str, Path]:
    folder = tmp_path_factory.mktemp("kept")
    db = f"sqlite:///{folder / 'k.db'}"
    run_sweep(parse_spec(sweep_spec("kept"), "test"), Storage(db), data_source=str(tiny_npz),
              jobs=2, keep_weights="all", checkpoint_dir=folder / "files")
    return db, folder / "files"


def kept_ids(root: Path, sweep: str) -> set[int]:
    return {int(p.stem.split("-")[1]) for p in (root / sweep / "weights").glob("trial-*.npz")}


def test_the_keep_policies(kept_sweep: tuple[str, Path]) -> None:
    db, root = kept_sweep
    trials = Storage(db).get_trials("kept")
    assert kept_ids(root, "kept") == {t.id for t in trials}
    assert not list(root.glob("kept/coarse/*.npz"))  # checkpoints of stored trials: removed
    coarse = [t for t in trials if t.stage == "coarse"]
    best = max(coarse, key=lambda t: (t.metrics["val_acc"], -t.id))
    final = [t.id for t in trials if t.stage == "final"]
    assert kept_trials(trials, "best", ["final"]) == {best.id, *final}
    assert kept_trials(trials, "none", ["final"]) == set()


def test_weights_export_evaluate_and_filters_from_the_cli(
        kept_sweep: tuple[str, Path], tmp_path: Path, tiny_npz: Path) -> None:
    db, _root = kept_sweep
    trial = Storage(db).get_trials("kept")[0]
    out = tmp_path / "model.npz"
    result = invoke("trial", "weights", trial.id, "-o", out, "--db", db)
    assert result.exit_code == 0, result.output
    with np.load(out) as npz:
        assert {"F", "bF", "W1", "b1", "W2", "b2", "header"} <= set(npz.files)
    result = invoke("evaluate", trial.id, "--db", db)
    assert result.exit_code == 0, result.output
    stored = trial.metrics["test_acc"]
    assert f"measured {stored:.4f}  stored {stored:.4f}" in result.output
    result = invoke("evaluate", out, "--data", tiny_npz)
    assert result.exit_code == 0 and f"measured {stored:.4f}" in result.output
    png = tmp_path / "filters.png"
    result = invoke("plot", "filters", trial.id, "-o", png, "--db", db)
    assert result.exit_code == 0 and png.stat().st_size > 0, result.output


def test_evaluate_and_kept_network_take_a_trial_id_or_a_weights_file(
        kept_sweep: tuple[str, Path], tmp_path: Path, tiny_npz: Path) -> None:
    """What ``evaluate TARGET`` and ``plot filters TARGET`` read: a trial id (as typed, or an
    int) from the database, or a file, for which the database is never opened."""
    import math

    from numsweep.sweeps.kept import Evaluation, evaluate, export_weights, kept_network

    db, _root = kept_sweep
    trial = Storage(db).get_trials("kept")[0]
    for target in (trial.id, str(trial.id)):
        measured = evaluate(target, db)
        assert (measured.trial_id, measured.differs) == (trial.id, False)
        kept = kept_network(target, db)
        assert (kept.trial_id, kept.sweep, kept.weights.spec.model) == (trial.id, "kept", "convnet")
    out = tmp_path / "model.npz"
    export_weights(Storage(db), trial.id, out)
    unopened = str(tmp_path / "absent" / "no.db")  # opening it would be an error
    assert evaluate(str(out), unopened, data_source=str(tiny_npz)).trial_id is None
    assert kept_network(str(out), unopened).path == out
    assert not Evaluation(None, out, 0.5, math.nan).differs  # nothing stored to differ from
    assert Evaluation(None, out, 0.5, 0.4).differs


def test_missing_weights_are_a_one_line_error(kept_sweep: tuple[str, Path],
                                              tmp_path: Path) -> None:
    db, _ = kept_sweep
    result = CliRunner().invoke(cli, ["trial", "weights", "999", "-o", str(tmp_path / "m.npz"),
                                      "--db", db])
    assert result.exit_code == 1 and "no trial with id 999" in result.output
    bad = tmp_path / "bad.npz"
    bad.write_text("x")
    result = CliRunner().invoke(cli, ["evaluate", str(bad)])
    assert result.exit_code == 1
    assert f"weights file {bad} is unreadable" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_sweep_gc_removes_what_the_policy_no_longer_keeps(tmp_path: Path,
                                                          tiny_npz: Path) -> None:
    db = f"sqlite:///{tmp_path / 'g.db'}"
    root = tmp_path / "files"
    run_sweep(parse_spec(sweep_spec("gc"), "test"), Storage(db), data_source=str(tiny_npz),
              jobs=1, keep_weights="all", checkpoint_dir=root)
    trials = Storage(db).get_trials("gc")
    stray = checkpoint_path(root, "gc", "coarse", [1])  # e.g. left by a killed process
    stray.write_bytes(b"old")
    result = invoke("sweep", "gc", "gc", "--keep-weights", "best", "--db", db)
    assert result.exit_code == 0, result.output
    assert "removed 1 checkpoints and 2 kept networks" in result.output
    assert not stray.exists()
    assert kept_ids(root, "gc") == kept_trials(trials, "best", ["final"])
    result = invoke("sweep", "gc", "gc", "--keep-weights", "none", "--db", db)
    assert kept_ids(root, "gc") == set()
    # the network is gone because gc removed it, not because of the policy it ran with
    gone = CliRunner().invoke(cli, ["evaluate", str(trials[0].id), "--db", db])
    assert gone.exit_code == 1, gone.output
    [line] = gone.output.strip().splitlines()
    assert "ran with --keep-weights all, which keeps it: it was removed since " \
        "(`numsweep sweep gc` with another --keep-weights" in line


def test_numsweep_train_keeps_its_network_in_the_checkpoint_dir(tmp_path: Path,
                                                                 tiny_npz: Path) -> None:
    db = f"sqlite:///{tmp_path / 't.db'}"
    small = ["model=convnet", "f=4", "nf=3", "nh=8", "n_train=200", "n_val=50",
             "batch_size=50", "eval_train=50", "cycles=1"]
    result = invoke("train", *small, "--db", db, "--data", tiny_npz, "--checkpoint-dir",
                    tmp_path / "files")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "files" / "train" / "weights" / "trial-1.npz").exists()
    assert not list((tmp_path / "files").glob("train/train/*.npz"))  # stored: removed
    result = invoke("evaluate", 1, "--db", db, "--data", tiny_npz, "--checkpoint-dir",
                    tmp_path / "files")
    assert result.exit_code == 0 and "measured" in result.output, result.output
    result = invoke("train", *small, "lam=0.1", "--db", db, "--data", tiny_npz,
                    "--keep-weights", "none")
    assert result.exit_code == 0, result.output
    assert not (tmp_path / "t.db.checkpoints" / "train" / "weights" / "trial-2.npz").exists()


def test_a_server_database_keeps_one_checkpoint_folder_whatever_its_password() -> None:
    one = default_checkpoint_dir("postgresql://user:first@host/db")
    assert one == default_checkpoint_dir("postgresql://user:second@host/db")
    assert one != default_checkpoint_dir("postgresql://user:first@host/other")
    assert "first" not in str(one)


def test_a_checkpoint_path_that_is_a_folder_leaves_no_trial_running(tmp_path: Path,
                                                                   tiny_npz: Path) -> None:
    storage = Storage(f"sqlite:///{tmp_path / 'f.db'}")
    root = tmp_path / "ck"
    for stage, slot in (("coarse", 0), ("coarse", 1), ("coarse", 2), ("final", 0)):
        checkpoint_path(root, "ck", stage, [slot]).mkdir(parents=True)  # in the way
    run_sweep(parse_spec(sweep_spec(), "<test>"), storage, data_source=str(tiny_npz), jobs=1,
              checkpoint_dir=root, group_size=1)  # was: IsADirectoryError, trials RUNNING
    assert {t.state for t in storage.get_trials("ck")} == {TrialState.COMPLETE}
    assert checkpoint_path(root, "ck", "coarse", [0]).is_dir()  # left as it was


def test_a_checkpoint_dir_that_is_a_file_is_refused_before_any_trial(tmp_path: Path,
                                                                    tiny_npz: Path) -> None:
    db = f"sqlite:///{tmp_path / 'f.db'}"
    (tmp_path / "file").write_text("")
    small = ["n_train=200", "n_val=50", "cycles=1", "batch_size=50", "hidden=8"]
    for folder, why in ((tmp_path / "file", ""),
                        (tmp_path / "file" / "sub", f" ({tmp_path / 'file'} is a file)")):
        result = invoke("train", *small, "--checkpoint-dir", folder, "--db", db, "--data",
                        tiny_npz)
        assert result.exit_code == 1
        assert result.output.strip() == (f"Error: checkpoint folder {folder} is not a folder"
                                         f"{why}; give --checkpoint-dir a folder")
    assert Storage(db).get_trials() == []  # was: a FAILED trial (NotADirectoryError)


def test_the_default_checkpoint_folder_is_ignored_by_git() -> None:
    """`numsweep sweep run` in a checkout leaves numsweep.db.checkpoints/ beside numsweep.db:
    neither is something to commit."""
    import fnmatch

    from numsweep.sweeps.kept import default_checkpoint_dir

    patterns = (Path(__file__).parents[2] / ".gitignore").read_text().split()
    folder = default_checkpoint_dir("sqlite:///numsweep.db").name
    assert any(p.endswith("/") and fnmatch.fnmatch(folder, p.rstrip("/")) for p in patterns)
    assert any(fnmatch.fnmatch("numsweep.db", p) for p in patterns)
