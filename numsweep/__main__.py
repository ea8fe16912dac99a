import os
import sys


def _interrupted(exc: BaseException | None) -> bool:
    """Whether Ctrl-C caused ``exc`` (a KeyboardInterrupt raised inside an import can reach
    here wrapped in another error)."""
    seen = 0
    while exc is not None and seen < 20:
        if isinstance(exc, KeyboardInterrupt):
            return True
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return False


try:
    from numsweep.cli import main

    main()
except SystemExit:
    raise
except BaseException as exc:  # Ctrl-C while the command's modules load: nothing started yet
    if not _interrupted(exc):
        raise
    print("interrupted", file=sys.stderr, flush=True)
    os._exit(130)  # at once: an interpreter shutdown could turn it into a SIGINT death
