"""Atomic file writes: a reader never sees a half-written file under the real name.

Checkpoints, downloaded datasets, IDX files and rendered graphs all go through `atomic_path`.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to `path`; when the block succeeds, flush it to disk and
    rename it onto `path`, else delete it and leave `path` untouched.

    The temporary file lives in the target's folder because a rename is atomic only within
    one filesystem; the folder is synced after the rename so the new name survives a crash.
    """
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    fd, tmp_name = tempfile.mkstemp(dir=folder, prefix=f".{path.name}.", suffix=".part")
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        _fsync(tmp, os.O_RDONLY)
        # mkstemp creates 0600 files; these are ordinary files meant to be shared.
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    with contextlib.suppress(OSError):
        _fsync(folder, os.O_RDONLY)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write `data` to `path` atomically (see atomic_path)."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def _fsync(path: Path, flags: int) -> None:
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
