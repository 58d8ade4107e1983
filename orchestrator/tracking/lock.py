"""One process at a time owns a search folder: an exclusive ``flock`` on ``<search folder>/search.lock``.

A search takes the lock when it creates its folder, ``--resume`` before it starts Ray; both hold it
until Ray is shut down. A second ``--resume`` of the same search (or a resume while the search runs)
is refused with one line naming the process that holds it. The operating system releases the lock
when that process ends, however it ends (``kill -9`` included), so there is no stale lock to clean up;
the file stays (removing it would let two processes lock two different files of the same name) and
holds the last owner's pid, host and start time, which the refusal quotes. ``sync`` takes the lock too (it
rewrites the front and closes the parent run, which must not happen beside the search itself); ``export``
and ``report`` only read a search and take no lock.

:func:`store_lock` is the other lock here: a blocking ``flock`` on ``<database>.lock`` next to a SQLite
file that MLflow or Optuna may be creating, so that the first use of a new store (creating its tables,
running its migrations) happens in one process at a time. Two searches started at once on a new
``mlflow.db`` otherwise race in MLflow's schema migration, and one dies (``Online migration expected to
match one row``).
"""

from __future__ import annotations

import datetime as _dt
import errno
import fcntl
import os
import socket
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional

LOCK_FILE = "search.lock"
STORE_LOCK_WAIT_S = 300.0  # creating MLflow's tables takes ~1.5 s; a slow disk or a busy machine, more


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


@contextmanager
def store_lock(database: Path, *, timeout: float = STORE_LOCK_WAIT_S) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``<database>.lock`` for the block, waiting up to ``timeout`` seconds
    for another process's first use of the store to end (see the module docstring). Where the lock file
    cannot be created (a read-only folder: nothing can create the store there either) or the wait runs out,
    the block runs unlocked."""
    path = Path(str(database) + ".lock")
    if not needs_store_lock(Path(database)):
        yield
        return
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError:
        yield
        return
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES) or time.monotonic() > deadline:
                    break  # no lock to be had: go on as before the lock existed
                time.sleep(0.05)
        yield
    finally:
        os.close(fd)  # closing the only descriptor lets go of the lock


def needs_store_lock(database: Path) -> bool:
    """Whether opening ``database`` must wait for the store lock: the file is missing or empty (this
    process may create it), or a lock file is there (a process of ours creates, or created, it; the lock
    file is made before the database, so a database half-made by another process always has one). A
    database that exists without a lock file was made elsewhere, complete: nothing is written next to it."""
    try:
        if Path(database).stat().st_size == 0:
            return True
    except OSError:
        return True
    return Path(str(database) + ".lock").exists()
