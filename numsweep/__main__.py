"""``python -m numsweep``, and the ``numsweep`` command's entry point (:func:`run`).

A Ctrl-C while the command's modules load ends the process at once with exit code 130:
nothing has started yet, and a KeyboardInterrupt raised inside an import can be swallowed
(Python drops one that lands in garbage collection, and the command would then run on).
:func:`numsweep.cli.main` then puts numsweep's own Ctrl-C handling in place."""

import os
import signal


def _exit_interrupted(_signum: int, _frame: object) -> None:
    os.write(2, b"interrupted\n")
    os._exit(130)  # at once: nothing to save, and no interpreter shutdown to interrupt


def run() -> None:
    signal.signal(signal.SIGINT, _exit_interrupted)
    from numsweep.cli import main

    try:
        main()
    except KeyboardInterrupt:  # one that escaped every handler, as the process unwinds
        os.write(2, b"interrupted\n")
        os._exit(130)  # not Python's own exit by SIGINT (status -2)


if __name__ == "__main__":
    run()
