"""MLflow export, read back with MLflow's client: an experiment per sweep, a run per finished
trial with parameters, metrics, curves as metric history and the stage as a tag; again, only
what is new."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from numsweep.analysis.queries import load_curves, load_trials
from numsweep.cli import cli
from numsweep.export import ExportError, export_mlflow
from tests.export.conftest import add_lambda_trial, finish_running_trial

pytest.importorskip("mlflow", reason="MLflow export tests need pip install 'numsweep[mlflow]'")


def runs_of(uri: str, sweep: str) -> list:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name(sweep)
    return list(client.search_runs([experiment.experiment_id], max_results=1000))


def test_trials_become_runs_once_and_new_ones_follow(export_db: str, tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    summary = export_mlflow(export_db, uri, ["lambda", "archs"])
    trials = load_trials(export_db, ["lambda", "archs"])
    finished = trials[trials["state"] != "RUNNING"]
    assert sorted(summary.exported) == sorted(int(i) for i in finished["trial_id"])
    assert summary.unfinished == 1
    runs = runs_of(uri, "lambda")
    assert len(runs) == 9 and len(runs_of(uri, "archs")) == 9
    by_trial = {int(r.data.tags["numsweep.trial_id"]): r for r in runs}
    best = trials.loc[trials.loc[trials["sweep"] == "lambda", "val_acc"].idxmax()]
    run = by_trial[int(best["trial_id"])]
    assert run.info.run_name == f"trial-{best['trial_id']}"
    assert run.info.status == "FINISHED"
    assert run.data.tags["stage"] == best["stage"]
    assert float(run.data.params["lam"]) == pytest.approx(best["lam"])
    assert run.data.params["hidden"] == "[50]" and run.data.params["model"] == "mlp"
    assert run.data.metrics["val_acc"] == pytest.approx(best["val_acc"])
    client = MlflowClient(tracking_uri=uri)
    history = client.get_metric_history(run.info.run_id, "train/loss")
    curves = load_curves(export_db, [int(best["trial_id"])])
    train = curves[curves["split"] == "train"]
    assert sorted(m.step for m in history) == sorted(train["step"])
    assert sorted(m.value for m in history) == pytest.approx(sorted(train["loss"]))
    assert len(client.get_metric_history(run.info.run_id, "val/acc")) == len(train)
    failed = trials.loc[(trials["state"] == "FAILED") & (trials["sweep"] == "lambda"),
                        "trial_id"].iloc[0]
    assert by_trial[int(failed)].info.status == "FAILED"

    again = export_mlflow(export_db, uri, ["lambda", "archs"])
    assert again.exported == () and again.already == 18
    assert len(runs_of(uri, "lambda")) == 9  # no duplicates

    new = add_lambda_trial(export_db, 0.006, 0.452)
    finished_now = finish_running_trial(export_db)
    later = export_mlflow(export_db, uri, "lambda")
    assert sorted(later.exported) == sorted([new, finished_now])
    ids = [int(r.data.tags["numsweep.trial_id"]) for r in runs_of(uri, "lambda")]
    assert sorted(ids) == sorted(set(ids)) and {new, finished_now} <= set(ids)


def test_a_run_cut_short_is_replaced_and_the_cli_exports(export_db: str,
                                                         tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    result = CliRunner().invoke(cli, ["export", "mlflow", "--tracking-uri", uri, "--sweep",
                                      "archs", "--db", export_db], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert result.output.strip() == f"exported 9 trials to {uri}"
    client = MlflowClient(tracking_uri=uri)
    run = runs_of(uri, "archs")[0]
    client.delete_tag(run.info.run_id, "numsweep.exported")  # as if the export stopped there
    result = CliRunner().invoke(cli, ["export", "mlflow", "--tracking-uri", uri, "--sweep",
                                      "archs", "--db", export_db], catch_exceptions=False)
    assert result.output.strip() == f"exported 1 trial to {uri} (8 already there)"
    runs = runs_of(uri, "archs")
    assert len(runs) == 9
    assert sorted(int(r.data.tags["numsweep.trial_id"]) for r in runs) == sorted(
        int(i) for i in load_trials(export_db, "archs")["trial_id"])
    assert all(r.data.tags.get("numsweep.exported") for r in runs)


def test_without_mlflow_a_one_line_error_names_the_extra(
        export_db: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "mlflow", None)  # import fails as if not installed
    with pytest.raises(ExportError, match=r"pip install 'numsweep\[mlflow\]'"):
        export_mlflow(export_db, f"sqlite:///{tmp_path / 'm.db'}")
    result = CliRunner().invoke(cli, ["export", "mlflow", "--db", export_db,
                                      "--tracking-uri", f"sqlite:///{tmp_path / 'm.db'}"],
                                catch_exceptions=False)
    assert result.exit_code == 1
    assert result.output.strip() == ("Error: numsweep export mlflow needs the mlflow package: "
                                     "pip install 'numsweep[mlflow]'")
    assert not (tmp_path / "m.db").exists()


def test_an_unusable_tracking_uri_is_a_one_line_error(export_db: str) -> None:
    result = CliRunner().invoke(cli, ["export", "mlflow", "--tracking-uri", "bogus://nowhere",
                                      "--db", export_db], catch_exceptions=False)
    assert result.exit_code == 1
    assert result.output.startswith("Error: MLflow at bogus://nowhere: ")
    assert result.output.strip().count("\n") == 0
