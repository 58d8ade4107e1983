"""A running search process, with the real components (a local Ray runtime, an Optuna study on disk, an
MLflow sqlite store, a tiny random BERT training on real SST-2 rows):

- its Ray listens on 127.0.0.1 only (every listening socket of the search's process tree, as
  ``ss -ltnp`` would list them) and keeps Ray's token authentication (the search no longer sets
  ``RAY_AUTH_MODE=disabled``);
- its GCS passes the ``--address`` probe that an HTTP server fails;
- it owns its folder: a ``--resume`` of it (or an ``orchestrator.sync``) while it runs is refused at once
  with one line naming the process, and a ``kill -9`` of that process lets go of the folder (the operating
  system releases the lock).

One search process, stopped by its own PID; about 25 s on 2 cores.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

psutil = pytest.importorskip("psutil")
pytest.importorskip("ray")

REPO = Path(__file__).resolve().parents[1]
LOOPBACK = {"127.0.0.1", "::ffff:127.0.0.1", "::1"}


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "RAY_AUTH_MODE"}
    return {**env, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}


def _tree(pid: int) -> list:
    root = psutil.Process(pid)
    return [root, *root.children(recursive=True)]


def _listening(procs: list) -> list[tuple[str, int, str, int]]:
    """(ip, port, process name, pid) of every listening TCP socket of ``procs``."""
    out = []
    for p in procs:
        try:
            conns = p.net_connections(kind="inet") if hasattr(p, "net_connections") else p.connections(kind="inet")
            name = p.name()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        out += [(c.laddr.ip, c.laddr.port, name, p.pid) for c in conns if c.status == psutil.CONN_LISTEN]
    return out


def test_a_running_search_listens_on_loopback_only_and_owns_its_folder(tiny_model_dir, glue_dir, tmp_path, capsys):
    from orchestrator import search, sync
    from orchestrator.tracking.lock import SearchLock
    from orchestrator.tracking.probes import check_ray, speaks_http2

    out = tmp_path / "searches"
    cmd = [sys.executable, "-m", "orchestrator.search", "--task", "sst2", "--model", tiny_model_dir,
           "--data-dir", str(glue_dir), "--train-samples", "64", "--eval-samples", "32", "--max-steps", "100000",
           "--batch-size", "16", "--trials", "2", "--max-concurrent", "1", "--name", "owned", "--output-dir", str(out),
           "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}", "--num-cpus", "1", "--confirm", "0"]
    log = tmp_path / "search.log"
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=_env(), stdout=open(log, "w"), stderr=subprocess.STDOUT,
                            start_new_session=True)
    started: list = []
    try:
        t0 = time.time()
        while "Search owned:" not in log.read_text() and proc.poll() is None and time.time() - t0 < 120:
            time.sleep(0.3)
        assert proc.poll() is None, log.read_text()[-3000:]
        time.sleep(1.0)  # the first trial's worker is up
        started = _tree(proc.pid)

        # Ray on 127.0.0.1 only, token authentication kept
        sockets = _listening(started)
        names = {name for _, _, name, _ in sockets}
        assert {"gcs_server", "raylet"} <= names, sockets
        assert all(ip in LOOPBACK for ip, _, _, _ in sockets), [s for s in sockets if s[0] not in LOOPBACK]
        raylet = next(p for p in started if p.name() == "raylet")
        assert raylet.environ().get("RAY_AUTH_MODE") == "token"

        # a real GCS passes the --address probe
        gcs_ports = [port for _, port, name, _ in sockets if name == "gcs_server"]
        assert any(speaks_http2("127.0.0.1", port) is None for port in gcs_ports), gcs_ports
        check_ray(f"127.0.0.1:{next(p for p in gcs_ports if speaks_http2('127.0.0.1', p) is None)}")

        # the folder is owned: a --resume while the search runs is refused at once
        t1 = time.perf_counter()
        rc = search.main(["--resume", "--name", "owned", "--output-dir", str(out)])
        seconds = time.perf_counter() - t1
        err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
        assert rc == 2 and len(err) == 1 and err[0].startswith("error:"), err
        assert f"search owned is in use by process {proc.pid}" in err[0], err
        assert seconds < 10, seconds
        assert proc.poll() is None  # the running search goes on

        # so is a sync beside it (it would rewrite the front and close the parent run under the search)
        assert sync.main(["--search", str(out / "owned")]) == 2
        err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
        assert len(err) == 1 and f"search owned is in use by process {proc.pid}" in err[0], err
        assert proc.poll() is None

        # kill -9: the operating system lets go of the lock
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        SearchLock.acquire(out / "owned", "owned").release()
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
        for p in started[1:]:  # Ray's processes of that search, by their pids
            try:
                p.kill()
            except psutil.NoSuchProcess:
                pass
