"""The start and the end of a process that is one job of a study.

Importing torch creates about 160,000 long-lived Python objects (pandas, numba and matplotlib a
few tens of thousands each). Python's cyclic collector walks every one of them in each full
collection: several times while they are being created, and again at exit, when the interpreter
also tears down every module. In a process that imports torch that is about 0.5 s at the start and
0.6 s at the end, against jobs that often train for a few seconds. Neither is needed:

- `imports_settled()` wraps a block of imports: the collector is off while it runs, and the
  objects it made are then frozen (`gc.freeze`: moved where no collection looks again).
  Collection resumes for everything made later, such as the cycles of an autograd graph.
- `end_process(status)` is the last call of an entry point (`python -m rnnbench`): exit handlers
  run and the standard streams are flushed, then the process ends at once (`os._exit`),
  without the final collections and the teardown of every module. By then every result file is
  written and closed (records writes each one atomically).

Standard library only.
"""
from __future__ import annotations

import atexit
import contextlib
import gc
import os
import sys


@contextlib.contextmanager
def imports_settled():
    """Run the block with the cyclic collector off, then freeze what it created and switch the
    collector back on (unless it was off before)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if was_enabled:
            gc.enable()


def end_process(status) -> None:
    """End the process with exit status `status` (an int, or None for 0), as `sys.exit` would
    but without the interpreter's teardown: exit handlers run, the standard streams are
    flushed, nothing else. Only for the entry point of a process, never in library code."""
    code = 0 if status is None else int(status)
    atexit._run_exitfuncs()  # logging.shutdown and every other registered handler
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a broken pipe or a closed stream: as the interpreter
            code = code or 120         # does at exit, a failed flush makes the status 120
    os._exit(code)
