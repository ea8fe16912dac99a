"""Ctrl-C held back inside shielded blocks, raised as they end; a second Ctrl-C insists; a
dropped one raised again; during the command's imports, exit 130 at once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from numsweep.shield import (
    ctrl_c_deferred,
    install_sigint_handler,
    interrupt_pending,
    shielded,
)

pytestmark = pytest.mark.usefixtures("ctrl_c_waits_for_the_database")


def ctrl_c() -> None:
    os.kill(os.getpid(), signal.SIGINT)
    time.sleep(0.05)  # the handler runs in this sleep's wake


def test_outside_a_shielded_block_ctrl_c_raises_at_once() -> None:
    with pytest.raises(KeyboardInterrupt):
        ctrl_c()
    assert not interrupt_pending()


def test_inside_nested_blocks_ctrl_c_waits_for_the_outermost_to_end() -> None:
    steps: list[str] = []
    with pytest.raises(KeyboardInterrupt):
        with shielded():
            with shielded():
                ctrl_c()
                steps.append("inner went on")
                assert interrupt_pending()
            steps.append("outer went on")
        steps.append("not reached")
    assert steps == ["inner went on", "outer went on"]
    assert not interrupt_pending()
    with shielded():  # nothing left over: a later block ends quietly
        pass


def test_an_error_in_the_block_is_kept_as_the_interrupt_s_context() -> None:
    with pytest.raises(KeyboardInterrupt) as raised, shielded():
        ctrl_c()
        raise ValueError("the block's own error")
    assert isinstance(raised.value.__context__, ValueError)


def test_a_second_ctrl_c_raises_inside_the_block() -> None:
    steps: list[str] = []
    with pytest.raises(KeyboardInterrupt), shielded():
        ctrl_c()
        steps.append("first waited")
        ctrl_c()
        steps.append("not reached")
    assert steps == ["first waited"]
    assert not interrupt_pending()


def test_blocks_in_other_threads_do_not_hold_back_the_main_thread() -> None:
    inside, leave = threading.Event(), threading.Event()

    def other() -> None:
        with shielded():
            inside.set()
            leave.wait(5)

    thread = threading.Thread(target=other)
    thread.start()
    try:
        assert inside.wait(5)
        with pytest.raises(KeyboardInterrupt):
            ctrl_c()
    finally:
        leave.set()
        thread.join()


def test_ctrl_c_deferred_puts_the_shield_in_place_of_python_s_handler_and_back() -> None:
    signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a notebook or a script
    steps: list[str] = []
    with pytest.raises(KeyboardInterrupt), ctrl_c_deferred(), shielded():
        ctrl_c()
        steps.append("the block went on")
    assert steps == ["the block went on"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_ctrl_c_deferred_leaves_another_program_s_handler_alone() -> None:
    def theirs(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, theirs)
    with ctrl_c_deferred():
        assert signal.getsignal(signal.SIGINT) is theirs


class DropsCtrlC:
    """Ctrl-C lands in its ``__del__``, where Python prints and drops the KeyboardInterrupt."""

    def __del__(self) -> None:
        ctrl_c()


def test_a_ctrl_c_that_python_dropped_is_raised_again() -> None:
    install_sigint_handler()  # again: pytest puts a hook of its own in place for the test
    steps: list[str] = []
    with pytest.raises(KeyboardInterrupt):
        DropsCtrlC()  # deleted at once
        steps.append("dropped")
        time.sleep(1)
        steps.append("not reached")
    assert steps == ["dropped"]


def test_ctrl_c_while_the_command_s_modules_load_exits_130_at_once() -> None:
    """What ``numsweep``/``python -m numsweep`` do before numsweep's handling is in place."""
    code = ("import os, signal, time\n"
            "from numsweep.__main__ import _exit_interrupted\n"
            "signal.signal(signal.SIGINT, _exit_interrupted)\n"
            "os.kill(os.getpid(), signal.SIGINT)\n"
            "time.sleep(10)\n")
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=30)
    assert (done.returncode, done.stderr) == (130, "interrupted\n")
    assert time.monotonic() - started < 8
