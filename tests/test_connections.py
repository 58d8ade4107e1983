"""The database probe against a real PostgreSQL server (started here, as the ``postgres`` user when run
as root, stopped by its own PID): the right password passes, a wrong one is one line within seconds and
never shows the password, and the search CLI refuses that ``--storage`` before any work. (Closed ports,
silent servers, HTTP servers and in-memory databases are rows of docs/bad-inputs.md.)

About 10 s; skipped without PostgreSQL's server programs or psycopg.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

psycopg = pytest.importorskip("psycopg", reason="pip install 'psycopg[binary]'")

PASSWORD = "probe-pw-31"


def _bin(name: str) -> str:
    found = shutil.which(name) or next((str(p) for p in Path("/usr/lib/postgresql").glob(f"*/bin/{name}")), None)
    if not found:
        pytest.skip(f"PostgreSQL's {name} is not installed")
    return found


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def postgres():
    """``postgresql://probe:<password>@127.0.0.1:<port>/postgres`` of a server of our own."""
    root = Path(tempfile.mkdtemp(prefix="increlora-probe-pg-"))
    data, sock, pwfile, log = root / "data", root / "sock", root / "pwfile", root / "postgres.log"
    sock.mkdir()
    pwfile.write_text(PASSWORD + "\n")
    log.touch()
    run_as = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    if os.geteuid() == 0:
        for path in (root, sock, pwfile, log):
            shutil.chown(path, "postgres")
    init = subprocess.run(run_as + [_bin("initdb"), "-D", str(data), "-U", "probe", "--auth=scram-sha-256",
                                    f"--pwfile={pwfile}"], capture_output=True, text=True, timeout=120)
    assert init.returncode == 0, init.stdout + init.stderr
    port = _free_port()
    proc = subprocess.Popen(run_as + [_bin("postgres"), "-D", str(data), "-p", str(port), "-k", str(sock),
                                      "-c", "listen_addresses=127.0.0.1"],
                            stdout=open(log, "a"), stderr=subprocess.STDOUT, start_new_session=True)
    try:
        for _ in range(120):  # accepting logins
            try:
                psycopg.connect(host="127.0.0.1", port=port, user="probe", password=PASSWORD, dbname="postgres").close()
                break
            except psycopg.OperationalError:
                assert proc.poll() is None, log.read_text()[-2000:]
                time.sleep(0.5)
        yield f"postgresql://probe:{PASSWORD}@127.0.0.1:{port}/postgres"
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        shutil.rmtree(root, ignore_errors=True)


def test_the_right_password_passes_and_a_wrong_one_is_one_line(postgres):
    from orchestrator.tracking.probes import ProbeError, check_database

    check_database(postgres, "--storage")
    wrong = postgres.replace(PASSWORD, "not-it")
    t0 = time.perf_counter()
    with pytest.raises(ProbeError) as info:
        check_database(wrong, "--storage")
    message = str(info.value)
    assert time.perf_counter() - t0 < 10
    assert "password authentication failed" in message and "not-it" not in message and "\n" not in message


def test_the_search_refuses_a_storage_it_cannot_log_in_to(postgres, tmp_path, monkeypatch, capsys):
    from orchestrator.search import main

    monkeypatch.chdir(tmp_path)
    wrong = postgres.replace(PASSWORD, "not-it")
    t0 = time.perf_counter()
    rc = main(["--storage", wrong, "--output-dir", str(tmp_path / "searches"),
               "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}"])
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert rc == 2 and len(lines) == 1 and lines[0].startswith("error: --storage postgresql://probe@127.0.0.1"), lines
    assert "password authentication failed" in lines[0] and "not-it" not in lines[0]
    assert time.perf_counter() - t0 < 10
    assert list(tmp_path.iterdir()) == []
