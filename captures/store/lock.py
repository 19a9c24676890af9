"""The one-writer-per-rank lock: an exclusive ``flock`` on ``.lock.rank<r>``, probed shared by readers."""

from __future__ import annotations

import errno
import os
import time
from pathlib import Path

from captures.store.errors import CaptureBusyError, CaptureFileError, CaptureWriteError
from captures.store.files import _CLOEXEC, _NOFOLLOW, _NONBLOCK
from captures.store.layout import _lock_path

try:  # POSIX; without it (Windows) writers are not exclusive
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]


def _acquire_lock(directory: Path, rank: int) -> int | None:
    """Take the exclusive writer lock of ``rank`` (an ``flock`` on ``.lock.rank<r>``); its fd.

    The file is re-checked after locking: a writer that finished may have unlinked it in between, and
    a lock on an unlinked inode would exclude nobody.
    """
    if fcntl is None:  # pragma: no cover
        return None
    path = _lock_path(directory, rank)
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | _NOFOLLOW | _CLOEXEC, 0o666)
        except OSError as e:
            if e.errno == errno.ELOOP:
                raise CaptureFileError(path, "is a symbolic link; refusing it as the writer lock") from e
            raise CaptureWriteError(path, e) from e
        # A reader probing the lock (Capture.status, check(repair=True)) holds it shared for a few
        # microseconds: retry briefly before calling the rank busy.
        for attempt in range(20):
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError:
                if attempt < 19:
                    time.sleep(0.005)
        else:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise CaptureBusyError(
                f"{directory}: rank {rank} is being written by another recorder (pid {holder}); "
                "wait for it to finish or choose another directory") from None
        try:
            same = os.path.samestat(os.fstat(fd), os.lstat(path))
        except FileNotFoundError:
            same = False
        if same:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
            return fd
        os.close(fd)


def _release_lock(directory: Path, rank: int, fd: int | None) -> None:
    if fd is None:
        return
    try:
        _lock_path(directory, rank).unlink()
    except OSError:
        pass
    os.close(fd)  # closing drops the flock


def _lock_is_free(directory: Path, rank: int) -> bool:
    """Whether no live writer holds rank ``rank`` (no lock file, or one nobody has locked)."""
    if fcntl is None:  # pragma: no cover
        return True
    path = _lock_path(directory, rank)
    try:
        fd = os.open(path, os.O_RDONLY | _NOFOLLOW | _NONBLOCK | _CLOEXEC)
    except OSError:
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)
