"""One retry policy for locked and unreachable databases, and leases (one process at a time)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from sqlalchemy.exc import OperationalError

from numsweep.storage import Storage, StorageBusy, StorageUnavailable, retry_call


def refused() -> OperationalError:
    return OperationalError("SELECT 1", {}, Exception(
        'connection failed: connection to server at "127.0.0.1", port 5432 failed: '
        "Connection refused"))


def test_an_outage_shorter_than_the_wait_is_ridden_out() -> None:
    calls: list[float] = []
    reconnected: list[bool] = []

    def write() -> str:
        calls.append(time.monotonic())
        if len(calls) < 4:
            raise refused()
        return "written"

    assert retry_call(write, seconds=30, on_reconnect=lambda: reconnected.append(True)) == \
        "written"
    assert len(calls) == 4 and reconnected == [True]


def test_past_the_wait_one_clear_line() -> None:
    def write() -> None:
        raise refused()

    started = time.monotonic()
    with pytest.raises(StorageUnavailable) as info:
        retry_call(write, seconds=0.5, what="postgresql://me:***@db/sweeps")
    assert time.monotonic() - started >= 0.5
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("postgresql://me:***@db/sweeps was unreachable for 0.5 s "
                              "(--db-wait): ")
    # a caller retrying around it does not wait all over again
    with pytest.raises(StorageUnavailable):
        retry_call(lambda: retry_call(write, seconds=0.3), seconds=60)
    assert time.monotonic() - started < 5


def test_a_lock_is_retried_and_other_errors_are_not() -> None:
    calls = []

    def locked() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise StorageBusy("database error on x: database is locked")
        return "done"

    assert retry_call(locked, seconds=0) == "done" and len(calls) == 3

    def broken() -> None:
        calls.append(1)
        raise ValueError("no such column")

    calls.clear()
    with pytest.raises(ValueError):
        retry_call(broken, seconds=60)
    assert len(calls) == 1


def test_a_lease_is_held_by_one_process_until_given_back_or_expired(tmp_path: Path) -> None:
    storage = Storage(f"sqlite:///{tmp_path / 'l.db'}")
    assert storage.take_lease("propose:1", "a:1", 30)
    assert not storage.take_lease("propose:1", "b:2", 30)
    assert storage.take_lease("propose:1", "a:1", 30)  # its own
    assert storage.take_lease("propose:2", "b:2", 30)  # another lease
    storage.give_back_lease("propose:1", "a:1")
    assert storage.take_lease("propose:1", "b:2", 0.2)
    time.sleep(0.4)  # b died holding it
    assert storage.take_lease("propose:1", "a:1", 30)
