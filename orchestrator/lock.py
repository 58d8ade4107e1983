"""One process at a time owns a search folder: an exclusive ``flock`` on ``<search folder>/search.lock``.

A search takes the lock when it creates its folder, ``--resume`` before it starts Ray; both hold it
until Ray is shut down. A second ``--resume`` of the same search (or a resume while the search runs)
is refused with one line naming the process that holds it. The operating system releases the lock
when that process ends, however it ends (``kill -9`` included), so there is no stale lock to clean up;
the file stays (removing it would let two processes lock two different files of the same name) and
holds the last owner's pid, host and start time, which the refusal quotes. ``export``, ``report`` and
``sync`` only read a search and take no lock.
"""

from __future__ import annotations

import datetime as _dt
import errno
import fcntl
import os
import socket
from pathlib import Path
from typing import Optional

LOCK_FILE = "search.lock"


class SearchLocked(RuntimeError):
    """Another process owns the search folder; the one-line message names it."""


class SearchLock:
    """The held lock of one search folder; :meth:`release` (or the end of a ``with`` block, or the end
    of the process) lets it go."""

    def __init__(self, fd: int, path: Path) -> None:
        self._fd: Optional[int] = fd
        self.path = path

    @classmethod
    def acquire(cls, search_dir: Path, name: str) -> "SearchLock":
        """Lock ``search_dir`` for this process, or raise :class:`SearchLocked` at once (no waiting)."""
        path = Path(search_dir) / LOCK_FILE
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = _read(fd)
            os.close(fd)
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise SearchLocked(f"cannot lock search {name} ({path}: {exc.strerror or exc})") from None
            raise SearchLocked(f"search {name} is in use by {holder or 'another process'}: wait for it to end or stop "
                               "it (a stopped or killed process lets go of it at once)") from None
        os.ftruncate(fd, 0)
        since = _dt.datetime.now().astimezone().isoformat(timespec="seconds")
        os.pwrite(fd, f"process {os.getpid()} on {socket.gethostname()} since {since}\n".encode(), 0)
        return cls(fd, path)

    def release(self) -> None:
        if self._fd is not None:
            try:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
            finally:
                os.close(self._fd)
                self._fd = None

    def __enter__(self) -> "SearchLock":
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _read(fd: int) -> str:
    try:
        return " ".join(os.pread(fd, 300, 0).decode("utf-8", "replace").split())
    except OSError:
        return ""
