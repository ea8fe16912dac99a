"""The Dask backend: a sweep's trials on a local Dask cluster (two worker processes on
loopback); a missing dask or an unreachable scheduler is a one-line error."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from numsweep.storage import Storage, TrialState
from numsweep.sweeps import parse_spec, run_sweep
from numsweep.sweeps.executors import BackendError, dask_slots, make_executor
from tests.sweeps.test_durable import (
    assert_each_planned_trial_complete_once,
    invoke,
    spec_dict,
    write_spec,
)

distributed = pytest.importorskip("distributed")


def test_dask_backend_completes_a_sweep_on_a_local_cluster(tmp_path: Path,
                                                           tiny_npz: Path) -> None:
    spec = parse_spec(spec_dict("dask", n_trials=4), "<test>")
    storage = Storage(f"sqlite:///{tmp_path / 'd.db'}")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  host="127.0.0.1", dashboard_address=None) as cluster:
        events: list = []
        summaries = run_sweep(spec, storage, data_source=str(tiny_npz), jobs=None,
                              backend="dask", scheduler=cluster.scheduler_address,
                              on_event=events.append)
    assert [s.counts for s in summaries] == [{"COMPLETE": 4}, {"COMPLETE": 4}]
    # the grid stage in slot groups of 2 (one per worker thread), fed through the scheduler
    assert [(e.stage, e.group_size) for e in events if e.kind == "group"] == [("coarse", 2)] * 2
    assert_each_planned_trial_complete_once(storage, "dask")
    trials = storage.get_trials("dask")
    assert {t.state for t in trials} == {TrialState.COMPLETE}
    pids = {t.worker.rpartition(":")[2] for t in trials}
    assert str(os.getpid()) not in pids and len(pids) == 2  # the cluster's two workers ran them


def test_the_display_and_the_planner_get_the_clusters_slots(tmp_path: Path,
                                                            tiny_npz: Path) -> None:
    """Without --jobs a dask sweep runs a trial per worker thread of the cluster (here 2): the
    progress display and the --budget planner say so, not "1"."""
    path = write_spec(tmp_path, spec_dict("slots", n_trials=2, grid=2))
    db = f"sqlite:///{tmp_path / 's.db'}"
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  host="127.0.0.1", dashboard_address=None) as cluster:
        assert dask_slots(cluster.scheduler_address) == 2
        result = invoke("sweep", "run", path, "--backend", "dask", "--scheduler",
                        cluster.scheduler_address, "--budget", "1h", "--db", db, "--data",
                        tiny_npz)
    assert result.exit_code == 0, result.output
    assert " on 2 jobs " in result.output  # the planner's estimate
    assert "jobs 2" in result.output and "jobs 1" not in result.output


def test_an_unreachable_scheduler_is_a_one_line_error() -> None:
    with pytest.raises(BackendError, match=r"^cannot reach the Dask scheduler at "
                                           r"tcp://127.0.0.1:9: "):
        make_executor(1, "dask", "tcp://127.0.0.1:9", timeout=1)


@pytest.mark.parametrize(("address", "reason"), [
    ("notaurl", "missing port number in address 'notaurl'"),
    ("tcp://10.0.0.5:notaport", "the port is not a number")])
def test_what_is_no_scheduler_address_is_refused_at_once(address: str, reason: str) -> None:
    with pytest.raises(BackendError) as err:  # was: a traceback after 40 s
        make_executor(1, "dask", address, timeout=60)
    assert str(err.value) == (f"--scheduler {address!r} is not a Dask scheduler address "
                              f"({reason}); give tcp://HOST:PORT, such as tcp://10.0.0.5:8786")


def test_dask_backend_without_dask_or_scheduler_says_what_is_missing(
        tmp_path: Path, tiny_npz: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = f"sqlite:///{tmp_path / 'x.db'}"
    spec = tmp_path / "s.toml"
    spec.write_text('name = "s"\n[space]\nlam = { low = 1e-4, high = 1e-1 }\n'
                    '[[stages]]\nname = "r"\nsampler = "random"\nn_trials = 1\n'
                    '[fixed]\nn_train = 200\nn_val = 50\nhidden = [8]\n')
    no_scheduler = invoke("sweep", "run", spec, "--backend", "dask", "--db", db, "--data",
                          tiny_npz)
    assert no_scheduler.exit_code == 1
    assert no_scheduler.output.strip().splitlines() == [
        "Error: --backend dask needs --scheduler ADDRESS (such as tcp://10.0.0.5:8786)"]
    monkeypatch.setitem(sys.modules, "distributed", None)  # as if not installed
    missing = invoke("sweep", "run", spec, "--backend", "dask", "--scheduler",
                     "tcp://127.0.0.1:9", "--db", db, "--data", tiny_npz)
    assert missing.exit_code == 1
    assert missing.output.strip().splitlines() == [
        "Error: --backend dask needs dask.distributed (pip install 'numsweep[dask]')"]


def test_a_pool_made_again_keeps_the_dask_scheduler(tmp_path: Path, tiny_npz: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """A pool that broke is made again from every setting of the first: on a Dask cluster
    the new one connects to the same scheduler (was: made without it, a replacement asked
    for --scheduler, or in another kind of pool)."""
    from concurrent.futures import BrokenExecutor

    from numsweep.sweeps.executors import DaskExecutor
    from numsweep.sweeps.pool import WorkerPool

    submit = DaskExecutor.submit
    broke: list[DaskExecutor] = []

    def breaks_once(self: DaskExecutor, fn: object, *args: object) -> object:
        if not broke:
            broke.append(self)
            raise BrokenExecutor("a worker died")
        return submit(self, fn, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(DaskExecutor, "submit", breaks_once)
    spec = parse_spec(spec_dict("again", n_trials=2, grid=2), "<test>")
    storage = Storage(f"sqlite:///{tmp_path / 'a.db'}")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  host="127.0.0.1", dashboard_address=None) as cluster:
        address = cluster.scheduler_address
        summaries = run_sweep(spec, storage, data_source=str(tiny_npz), jobs=None,
                              backend="dask", scheduler=address)
        pool = WorkerPool(None, "dask", address)
        try:
            first = pool.executor
            pool.after_worker_death()  # the scheduler replaces a dead worker itself
            assert pool.executor is first
            pool.replace()
            assert pool.executor is not first and pool.jobs == 2
            assert pool.executor.client.scheduler.address == address
        finally:
            pool.shutdown(wait=False)
        assert first.client.status == "closed"  # the replaced client closed with the pool
    assert broke and [s.counts for s in summaries] == [{"COMPLETE": 2}, {"COMPLETE": 2}]
    assert_each_planned_trial_complete_once(storage, "again")
    pids = {t.worker.rpartition(":")[2] for t in storage.get_trials("again")}
    assert str(os.getpid()) not in pids  # the replacement ran them on the cluster too
