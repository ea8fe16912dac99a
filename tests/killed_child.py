"""A child Python process that SIGKILLs itself right after its second checkpoint is written
(``save_state`` wrapped): the real kill behind the engine's and the sweeps' resume tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

KILL_AFTER_SECOND_SAVE = """
import os, signal, sys
import numsweep.engine.checkpoint as ck

saves = []
original = ck.save_state

def save_then_die(*args, **kwargs):
    original(*args, **kwargs)
    saves.append(1)
    if len(saves) == 2:
        os.kill(os.getpid(), signal.SIGKILL)

ck.save_state = save_then_die
"""


def run_killed_after_second_save(body: str, *args: object) -> None:
    """Run the script ``body`` (``sys.argv[1:]`` are ``args``) in a child process that is
    SIGKILLed right after its second checkpoint save; fails the test if it was not."""
    script = KILL_AFTER_SECOND_SAVE + textwrap.dedent(body) + '\nraise SystemExit("not killed")\n'
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path.cwd()), *sys.path])}
    proc = subprocess.run([sys.executable, "-c", script, *map(str, args)],
                          capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
