"""TensorBoard export, read back with TensorBoard's event reader: a run folder per finished
trial with its curves as scalars and its parameters as HParams; again, only what is new."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from numsweep.analysis.queries import load_curves, load_trials
from numsweep.cli import cli
from numsweep.export import ExportError, export_tensorboard
from tests.export.conftest import add_lambda_trial, finish_running_trial

pytest.importorskip("tensorboard", reason="TensorBoard export tests need "
                    "pip install 'numsweep[tensorboard]'")


def read_run(folder: Path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = EventAccumulator(str(folder), size_guidance={"scalars": 0, "tensors": 0})
    run.Reload()
    return run


def hparams_of(run) -> dict[str, object]:
    from tensorboard.plugins.hparams import metadata

    content = run.PluginTagToContent("hparams")
    start = metadata.parse_session_start_info_plugin_data(
        content[metadata.SESSION_START_INFO_TAG])
    end = metadata.parse_session_end_info_plugin_data(content[metadata.SESSION_END_INFO_TAG])
    values = {k: v.WhichOneof("kind") and getattr(v, v.WhichOneof("kind"))
              for k, v in start.hparams.items()}
    return {**values, "_status": end.status}


def event_files(out: Path) -> list[Path]:
    return sorted(out.rglob("events.out.tfevents*"))


def test_each_finished_trial_is_a_run_with_scalars_and_hparams(export_db: str,
                                                                 tmp_path: Path) -> None:
    out = tmp_path / "tb"
    summary = export_tensorboard(export_db, out, "lambda")
    trials = load_trials(export_db, "lambda")
    finished = trials[trials["state"] != "RUNNING"]
    assert sorted(summary.exported) == sorted(int(i) for i in finished["trial_id"])
    assert summary.unfinished == 1 and summary.already == 0
    assert sorted(p.name for p in (out / "lambda").iterdir()) == sorted(
        f"trial-{i}" for i in finished["trial_id"])
    best = trials.loc[trials["val_acc"].idxmax()]
    run = read_run(out / "lambda" / f"trial-{best['trial_id']}")
    curves = load_curves(export_db, [int(best["trial_id"])])
    train = curves[curves["split"] == "train"]
    loss = run.Scalars("train/loss")
    assert [e.step for e in loss] == list(train["step"])
    assert [e.value for e in loss] == pytest.approx(list(train["loss"]), rel=1e-6)
    assert [e.value for e in run.Scalars("val/acc")] == pytest.approx(
        list(curves.loc[curves["split"] == "val", "acc"]), rel=1e-6)
    assert [e.value for e in run.Scalars("lr")] == pytest.approx(list(train["lr"]), rel=1e-6)
    assert run.Scalars("result/val_acc")[0].value == pytest.approx(best["val_acc"], rel=1e-6)
    hparams = hparams_of(run)
    assert hparams["lam"] == pytest.approx(best["lam"])
    assert hparams["stage"] == best["stage"] and hparams["model"] == "mlp"
    assert hparams["hidden"] == "[50]" and hparams["state"] == "complete"
    from tensorboard.plugins.hparams import api_pb2

    assert hparams["_status"] == api_pb2.STATUS_SUCCESS
    failed = trials.loc[trials["state"] == "FAILED", "trial_id"].iloc[0]
    assert hparams_of(read_run(out / "lambda" / f"trial-{failed}"))["_status"] == \
        api_pb2.STATUS_FAILURE


def test_exporting_again_writes_only_what_is_new(export_db: str, tmp_path: Path) -> None:
    out = tmp_path / "tb"
    first = export_tensorboard(export_db, out, ["lambda", "archs"])
    files = event_files(out)
    assert len(files) == len(first.exported) == 8 + 1 + 9
    again = export_tensorboard(export_db, out, ["lambda", "archs"])
    assert again.exported == () and again.already == len(first.exported)
    assert event_files(out) == files  # nothing written twice
    new = add_lambda_trial(export_db, 0.006, 0.452)
    finished = finish_running_trial(export_db)
    later = export_tensorboard(export_db, out, ["lambda", "archs"])
    assert sorted(later.exported) == sorted([new, finished]) and later.unfinished == 0
    assert len(event_files(out)) == len(files) + 2
    assert read_run(out / "lambda" / f"trial-{new}").Scalars("train/loss")


def test_a_run_folder_cut_short_is_written_again(export_db: str, tmp_path: Path) -> None:
    out = tmp_path / "tb"
    export_tensorboard(export_db, out, "archs")
    folder = sorted((out / "archs").iterdir())[0]
    (folder / "numsweep-trial.json").unlink()  # as if the export stopped before its end
    (folder / "events.out.tfevents.0.partial").write_bytes(b"")
    again = export_tensorboard(export_db, out, "archs")
    assert again.exported == (int(folder.name.removeprefix("trial-")),)
    assert [p.name for p in folder.glob("events.out.tfevents*")] != []
    assert not (folder / "events.out.tfevents.0.partial").exists()
    assert len(list(folder.glob("events.out.tfevents*"))) == 1
    assert read_run(folder).Scalars("result/val_acc")


def test_every_sweep_by_default_and_from_the_cli(export_db: str, tmp_path: Path) -> None:
    out = tmp_path / "tb"
    result = CliRunner().invoke(cli, ["export", "tensorboard", str(out), "--db", export_db],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert result.output.strip() == f"exported 29 trials to {out} (1 not finished yet)"
    assert {p.name for p in out.iterdir()} == {"lambda", "archs", "optimizers", "range"}
    result = CliRunner().invoke(cli, ["export", "tensorboard", str(out), "--sweep", "archs",
                                      "--db", export_db], catch_exceptions=False)
    assert result.output.strip() == f"exported 0 trials to {out} (9 already there)"
    result = CliRunner().invoke(cli, ["export", "tensorboard", str(out), "--sweep", "nope",
                                      "--db", export_db], catch_exceptions=False)
    assert result.exit_code == 1 and "no sweep named 'nope'" in result.output


def test_without_tensorboard_a_one_line_error_names_the_extra(
        export_db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # import fails as if not installed
    with pytest.raises(ExportError, match=r"pip install 'numsweep\[tensorboard\]'"):
        export_tensorboard(export_db, tmp_path / "tb", "archs")
    result = CliRunner().invoke(cli, ["export", "tensorboard", str(tmp_path / "tb"), "--db",
                                      export_db], catch_exceptions=False)
    assert result.exit_code == 1
    assert result.output.strip() == ("Error: numsweep export tensorboard needs the tensorboard "
                                     "package: pip install 'numsweep[tensorboard]'")
    assert not (tmp_path / "tb").exists()


def test_tensorboards_hparams_view_sees_every_trial(export_db: str, tmp_path: Path) -> None:
    from tensorboard import context as tb_context
    from tensorboard.backend.event_processing import data_provider
    from tensorboard.backend.event_processing import plugin_event_multiplexer as pem
    from tensorboard.plugins import base_plugin
    from tensorboard.plugins.hparams import backend_context

    out = tmp_path / "tb"
    export_tensorboard(export_db, out, "lambda")
    runs = pem.EventMultiplexer()
    runs.AddRunsFromDirectory(str(out))
    runs.Reload()
    view = backend_context.Context(base_plugin.TBContext(
        logdir=str(out), multiplexer=runs,
        data_provider=data_provider.MultiplexerDataProvider(runs, str(out))))
    request = tb_context.RequestContext()
    try:
        sessions = view.hparams_metadata(request, "")
        experiment = view.experiment_from_metadata(
            request, "", True, sessions, view.hparams_from_data_provider(request, "", None))
    except TypeError:  # pragma: no cover - another TensorBoard's internal API
        pytest.skip("this TensorBoard's HParams backend takes other arguments")
    assert len(sessions) == 9  # every finished trial a session
    assert {"lam", "stage", "state", "seed", "model"} <= {h.name for h in
                                                           experiment.hparam_infos}
    assert {"result/val_acc", "val/acc", "train/loss"} <= {m.name.tag for m in
                                                           experiment.metric_infos}
