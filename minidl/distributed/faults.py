"""Fail fast: a rank that dies must take the job down, never leave the others waiting, and the
error must say which rank it was.

- An uncaught exception on any rank prints its traceback, a line naming the rank, and calls
  MPI_Abort, which makes the launcher end every rank of the job.
- A rank killed by a signal is noticed by the launcher (mpiexec), which ends the others; MPICH's
  launcher reports only the dead process's pid. So every rank starts a small watcher process
  at init_process_group, connected by a pipe: when the rank's end of the pipe closes without
  the rank having said goodbye (normal exit, or an exception already reported), the watcher
  prints "rank R of N (pid P) died without a Python exception ... (its last collective: OP)".
  The launcher then kills the surviving ranks, whose watchers see their pipes close too: only
  the first watcher on the machine to claim the job's marker file speaks (in a new session, the
  watchers outlive the launcher's cleanup of the ranks' process groups).
- A rank still waiting in a collective when the others are gone or stuck elsewhere raises
  DistributedError after the group's timeout, or as soon as it sees that another rank on its
  machine has ended (every wait in minidl.distributed is bounded); that exception, uncaught,
  aborts the job through the hook above.
"""

from __future__ import annotations

import atexit
import glob
import os
import subprocess
import sys
import tempfile
import time
from typing import Any

_installed = False
_watcher: subprocess.Popen | None = None
_marker: str | None = None

# Runs in the watcher (python -I: no site, no user paths; it imports nothing of minidl).
# argv: rank, size, pid, marker path. stdin: the rank's notes, one per line; "exit" = quiet.
_WATCHER = """
import os, sys
rank, size, pid, marker = sys.argv[1:5]
last = b""
for line in sys.stdin.buffer:
    last = line.strip()
if last != b"exit":
    try:
        os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    except OSError:
        sys.exit(0)
    op = last.decode(errors="replace")
    sys.stderr.write(
        f"minidl.distributed: rank {rank} of {size} (pid {pid}) died without a Python "
        f"exception (killed by a signal, or os._exit); its last collective: {op or 'none'}. "
        "The launcher ends the other ranks.\\n")
    sys.stderr.flush()
"""


def _claim() -> None:
    """This rank reports the failure itself: make every watcher on the machine stay quiet."""
    if _marker is not None:
        try:
            os.close(os.open(_marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        except OSError:
            pass
    note("exit")


def note(what: str) -> None:
    """Tell this rank's watcher the collective being waited on (shown if the rank dies)."""
    if _watcher is not None and _watcher.stdin is not None:
        try:
            _watcher.stdin.write(what.replace("\n", " ").encode() + b"\n")
            _watcher.stdin.flush()
        except (OSError, ValueError):
            pass


def _goodbye() -> None:
    note("exit")
    if _watcher is not None and _watcher.stdin is not None:
        try:
            _watcher.stdin.close()
        except OSError:
            pass


def _remove_stale_markers(folder: str, age_seconds: float = 3600.0) -> None:
    """Failed jobs leave their (empty) marker file behind: remove those older than an hour."""
    now = time.time()
    for path in glob.glob(os.path.join(folder, "minidl-dist-*.failed")):
        try:
            if now - os.stat(path).st_mtime > age_seconds:
                os.unlink(path)
        except OSError:
            pass


def _start_watcher(rank: int, size: int, job: str) -> None:
    global _watcher, _marker
    if os.name != "posix" or _watcher is not None:
        return
    folder = tempfile.gettempdir()
    _marker = os.path.join(folder, f"minidl-dist-{job}.failed")
    _remove_stale_markers(folder)
    _watcher = subprocess.Popen(
        [sys.executable, "-I", "-c", _WATCHER, str(rank), str(size), str(os.getpid()), _marker],
        stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, start_new_session=True,
    )
    atexit.register(_goodbye)
    # A forked child (a DataLoader worker) must not hold the pipe open: the watcher would miss
    # the rank's death while the child lives.
    os.register_at_fork(after_in_child=_forget_watcher)


def _forget_watcher() -> None:
    global _watcher
    if _watcher is not None and _watcher.stdin is not None:
        try:
            _watcher.stdin.close()
        except OSError:
            pass
    _watcher = None


def _abort_on_exception(previous: Any) -> Any:
    def hook(kind: type, value: BaseException, tb: Any) -> None:
        previous(kind, value, tb)
        from minidl.distributed import process_group as pg

        g = pg._group
        if g is None:
            return
        _claim()
        sys.stderr.write(
            f"minidl.distributed: rank {g.rank} of {g.size} failed with {kind.__name__}: "
            f"{value}; aborting the job\n"
        )
        sys.stderr.flush()
        g.comm.Abort(1)

    return hook


def install(rank: int, size: int, job: str) -> None:
    """Make an uncaught exception on this rank abort the whole MPI job, and a death by signal
    name the rank (idempotent). job: a name shared by the job's ranks (the marker file's)."""
    global _installed
    if not _installed:
        sys.excepthook = _abort_on_exception(sys.excepthook)
        _installed = True
    _start_watcher(rank, size, job)
