"""Atomic file writes: a reader never sees a half-written file under the real name.

Checkpoints, downloaded datasets, IDX files and rendered graphs all go through `atomic_path`.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

_SUFFIX = ".part"


def _temp_name(path: Path) -> Path:
    """`.name.<pid>.<random>.part` next to `path`: the pid tells a later save whether the
    writer is still alive."""
    return path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}{_SUFFIX}")


def _writer_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True  # another thread of this process may be writing it
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # exists, owned by someone else
    return True


def remove_stale_temporaries(path: str | os.PathLike) -> list[Path]:
    """Delete the temporaries earlier writes of `path` left behind when their process was
    killed (SIGKILL, power loss): `.name.<pid>.<random>.part` files whose writer no longer
    runs. Returns the removed paths. Temporaries of live writers and of other targets stay."""
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    prefix = f".{path.name}."
    removed = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        name = entry.name
        if not (name.startswith(prefix) and name.endswith(_SUFFIX)):
            continue
        middle = name[len(prefix) : -len(_SUFFIX)].split(".")
        if len(middle) != 2 or not middle[0].isdigit() or _writer_alive(int(middle[0])):
            continue
        with contextlib.suppress(OSError):
            os.unlink(entry.path)
            removed.append(Path(entry.path))
    return removed


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to `path`; when the block succeeds, flush it to disk and
    rename it onto `path`, else delete it and leave `path` untouched.

    The temporary file lives in the target's folder because a rename is atomic only within
    one filesystem; the folder is synced after the rename so the new name survives a crash.
    Temporaries left by killed earlier writers of the same target are removed first. The file
    is created with mode 0666 minus the process umask, like any file `open()` creates.
    """
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    remove_stale_temporaries(path)
    tmp = _temp_name(path)
    os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    try:
        yield tmp
        _fsync(tmp, os.O_RDONLY)
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
