"""Fail fast: a rank that dies must take the job down, never leave the others waiting.

- An uncaught exception on any rank prints its traceback, a line naming the rank, and calls
  MPI_Abort, which makes the launcher end every rank of the job.
- A rank killed by a signal is noticed by the launcher (mpiexec), which ends the others.
- A rank still waiting in a collective when the others are gone or stuck elsewhere raises
  DistributedError after the group's timeout (every wait in minidl.distributed is bounded);
  that exception, uncaught, aborts the job through the hook above.
"""

from __future__ import annotations

import sys
from typing import Any

_installed = False


def _abort_on_exception(previous: Any) -> Any:
    def hook(kind: type, value: BaseException, tb: Any) -> None:
        previous(kind, value, tb)
        from minidl.distributed import process_group as pg

        g = pg._group
        if g is None:
            return
        sys.stderr.write(
            f"minidl.distributed: rank {g.rank} of {g.size} failed with {kind.__name__}: "
            f"{value}; aborting the job\n"
        )
        sys.stderr.flush()
        g.comm.Abort(1)

    return hook


def install() -> None:
    """Make an uncaught exception on this rank abort the whole MPI job (idempotent)."""
    global _installed
    if not _installed:
        sys.excepthook = _abort_on_exception(sys.excepthook)
        _installed = True
