"""The reaper: ends every process of a local Ray runtime once the search that started it is gone.

Ray ties its head processes to the driver (``gcs_server``, ``raylet``, ``log_monitor``... die with it,
``PR_SET_PDEATHSIG``) and its workers notice the raylet's end, but the raylet's two agents do not die
with it: when the driver is killed (``kill -9`` of the search alone), ``ray::DashboardAgent`` and
``ray::RuntimeEnvAgent`` notice that the raylet is gone, then try to tell the GCS - gone too - and wait
for its answer for 60 s (Ray 2.60, ``publish_error_to_driver``'s timeout), orphaned. A process-group kill
leaves the trial workers for a second or two.

So a search that starts its own Ray runtime also starts this small process (:func:`start`), in a session
of its own (a kill of the search's process group does not reach it), with a pipe from the search on its
standard input. While the search lives, the reaper notes its Ray
processes once a second. When the pipe closes - the search let go of it after ``ray.shutdown()``, or the search
ended in any way, ``kill -9`` included: the operating system closes it - the reaper ends every process
that still belongs to that Ray runtime: the processes it noted (checked by start time, so a reused pid is
left alone) and their children, Ray's servers (their command line names the runtime's session folder,
``/tmp/ray/session_<date>_<driver pid>``, one per runtime), and orphans with files open in that folder;
with SIGTERM, then SIGKILL a second later; then it exits. It needs Linux's ``/proc``; elsewhere
it is not started. Measured numbers: ``docs/search.md`` ("Stopping a search").
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import IO, Iterator, Optional

SWEEP_S = 10.0  # how long the reaper looks for stragglers after the search is gone


class Reaper:
    """The search's side of a running reaper: :meth:`release` once Ray is shut down."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.proc = proc

    def release(self, wait: float = 5.0) -> None:
        """Close the pipe (the reaper sweeps the session folder's processes and exits); wait up to
        ``wait`` seconds for it, so that no zombie stays behind a long-lived caller."""
        stdin: Optional[IO[bytes]] = self.proc.stdin
        if stdin is not None and not stdin.closed:
            try:
                stdin.close()
            except OSError:
                pass
        try:
            self.proc.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            pass


def start(session_dir: str) -> Optional[Reaper]:
    """Start the reaper of the Ray runtime whose session folder is ``session_dir``; None where it cannot run."""
    if not Path("/proc/self/fd").is_dir() or not session_dir:
        return None
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "orchestrator.running.reaper", str(session_dir), str(os.getpid())],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd="/",
            env={**os.environ, "PYTHONPATH": _package_root() + os.pathsep + os.environ.get("PYTHONPATH", "")},
            start_new_session=True, close_fds=True,
        )
    except OSError:
        return None
    return Reaper(proc)


def _package_root() -> str:
    return str(Path(__file__).resolve().parents[1])


# ----------------------------------------------------------------------------------------------
# The reaper process
# ----------------------------------------------------------------------------------------------

WATCH_S = 1.0  # how often the reaper notes the search's process tree while the search lives


def _stat(pid: int) -> Optional[tuple[int, int, bytes]]:
    """(parent pid, start time in clock ticks, state) of ``pid``; None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            fields = fh.read().rsplit(b")", 1)[1].split()
        return int(fields[1]), int(fields[19]), fields[0]
    except (OSError, IndexError, ValueError):
        return None


def _table() -> dict[int, tuple[int, int, bytes]]:
    """Every visible process: pid -> (parent pid, start time, state)."""
    out = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            st = _stat(int(name))
            if st is not None:
                out[int(name)] = st
    return out


def descendants(root: int, table: dict[int, tuple[int, int, bytes]]) -> dict[int, int]:
    """The processes below ``root`` in ``table``: pid -> start time."""
    children: dict[int, list[int]] = {}
    for pid, (ppid, _, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    out, todo = {}, [root]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in out:
                out[child] = table[child][1]
                todo.append(child)
    return out


def session_processes(session_dir: str, known: dict[int, int]) -> list[int]:
    """The live processes of the Ray runtime (not this one): those noted below the search (``known``:
    pid -> start time, so a reused pid is not one of them) and their children, those whose command line
    names ``session_dir`` (Ray's own servers), and orphans (parent 1 or a noted process) with files open
    in ``session_dir`` (Ray's workers and agents, whose command lines Ray rewrites)."""
    prefix = str(session_dir).rstrip("/")
    me, uid = os.getpid(), os.getuid()
    table = _table()
    ours = {pid for pid, start in known.items() if pid in table and table[pid][1] == start}
    out = []
    for pid, (ppid, _, state) in table.items():
        if pid == me or state in (b"Z", b"X"):
            continue
        if pid in ours or ppid in ours:
            out.append(pid)
            continue
        try:
            if os.stat(f"/proc/{pid}").st_uid != uid:
                continue
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                if prefix.encode() in fh.read():
                    out.append(pid)
                    continue
            if ppid == 1 and any(t == prefix or t.startswith(prefix + "/") for t in _open_files(pid)):
                out.append(pid)
        except OSError:  # gone meanwhile, or not ours to look at
            continue
    return out


def _open_files(pid: int) -> Iterator[str]:
    folder = f"/proc/{pid}/fd"
    for fd in os.listdir(folder):
        try:
            yield os.readlink(f"{folder}/{fd}")
        except OSError:
            continue


def _alive(pid: int) -> bool:
    st = _stat(pid)
    return st is not None and st[2] not in (b"Z", b"X")


def sweep(session_dir: str, known: dict[int, int], duration: float = SWEEP_S) -> int:
    """End the runtime's processes (SIGTERM, SIGKILL a second later); look again until none is found
    twice in a row or ``duration`` seconds have passed. Returns how many were signalled."""
    signalled: set[int] = set()
    quiet = 0
    deadline = time.monotonic() + duration
    while time.monotonic() < deadline and quiet < 2:
        pids = session_processes(session_dir, known)
        if not pids:
            quiet += 1
            time.sleep(0.3)
            continue
        quiet = 0
        for pid in pids:
            _signal(pid, signal.SIGTERM)
        signalled.update(pids)
        end = time.monotonic() + 1.0
        while time.monotonic() < end and any(_alive(p) for p in pids):
            time.sleep(0.05)
        for pid in pids:
            if _alive(pid):
                _signal(pid, signal.SIGKILL)
    return len(signalled)


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except OSError:
        pass


def ray_tree(driver: int, session_dir: str) -> dict[int, int]:
    """The Ray processes below the driver: its children whose command line names ``session_dir`` (Ray's
    servers: ``gcs_server``, ``raylet``...) and everything below them (workers, agents): pid -> start time.
    Other children of the driver (a test's ``mlflow server``) are not Ray's and are left out."""
    table = _table()
    below = descendants(driver, table)
    out: dict[int, int] = {}
    for pid, start in below.items():
        if pid in out:
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                if str(session_dir).rstrip("/").encode() not in fh.read():
                    continue
        except OSError:
            continue
        out[pid] = start
        out.update(descendants(pid, table))
    return out


def watch(driver: int, session_dir: str) -> dict[int, int]:
    """Until standard input ends: note the driver's Ray processes every second. Returns what was noted."""
    import select

    known: dict[int, int] = {}
    fd = sys.stdin.fileno()
    while True:
        known.update(ray_tree(driver, session_dir))
        ready, _, _ = select.select([fd], [], [], WATCH_S)
        if ready:
            try:
                if not os.read(fd, 65536):
                    return known
            except OSError:
                return known


def main(argv: list[str]) -> int:
    session_dir, driver = argv[0], int(argv[1])
    for sig in (signal.SIGINT, signal.SIGHUP):  # a terminal's signals are the search's business
        signal.signal(sig, signal.SIG_IGN)
    known = watch(driver, session_dir)
    sweep(session_dir, known)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main(sys.argv[1:]))
