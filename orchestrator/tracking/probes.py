"""Connections probed with a short timeout before any work starts (no Ray, no MLflow, no Optuna).

A wrong address must cost seconds, not the minutes the clients spend retrying: Ray's ``ray.init`` waits
150 s and more for something at ``--address`` that is not Ray, psycopg waits for the operating system's
TCP timeout (two minutes) and MLflow retries on top. Here:

- :func:`check_ray` opens a TCP connection to ``host:port`` and starts an HTTP/2 conversation (the
  client preface and an empty SETTINGS frame): a Ray GCS or Ray Client server is gRPC and answers with
  its own SETTINGS frame at once, an HTTP/1 server, a database or a silent socket does not;
- :func:`check_database` refuses a database that cannot outlive the process (``sqlite://``,
  ``sqlite:///:memory:``), opens a TCP connection to a server database's host and port, then logs in
  through SQLAlchemy with the driver's connect timeout, so a silent port, a wrong password or a
  missing driver are one line each.

Every failure is a :class:`ProbeError` whose message names the flag and the address (without its
password), said in one line.
"""

from __future__ import annotations

import re
import socket
from typing import Optional

TIMEOUT_S = 5.0
_DEFAULT_PORTS = {"postgresql": 5432, "postgres": 5432, "mysql": 3306, "mariadb": 3306, "mssql": 1433, "oracle": 1521}
_H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"  # + empty SETTINGS
_H2_SETTINGS = 0x04


class ProbeError(RuntimeError):
    """Something at an address cannot be used; the one-line message says what and where."""


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


def _why(exc: OSError, timeout: float) -> str:
    if isinstance(exc, socket.timeout):
        return f"nothing answered within {timeout:g} s"
    return _one_line(exc.strerror or exc)


def _redact(uri: str) -> str:
    return redact(uri)


_CREDENTIALS_RE = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<user>[^:/@\s]*):[^@/\s]*@")


def redact(text: str) -> str:
    """``text`` with the password of every URI in it left out (``postgresql://u:pw@h/db`` ->
    ``postgresql://u@h/db``): records, params, tags and logs never hold credentials. PostgreSQL then
    takes the password from ``PGPASSWORD`` or ``~/.pgpass``, MLflow from ``MLFLOW_TRACKING_PASSWORD``."""
    return _CREDENTIALS_RE.sub(lambda m: f"{m.group('scheme')}{m.group('user')}@", text)


def tcp_connect(host: str, port: int, timeout: float = TIMEOUT_S) -> socket.socket:
    """A connected socket (the caller closes it); OSError when nothing accepts within ``timeout``."""
    return socket.create_connection((host, int(port)), timeout=timeout)


def speaks_http2(host: str, port: int, timeout: float = TIMEOUT_S) -> Optional[str]:
    """None when the server at ``host:port`` answers an HTTP/2 client preface with a SETTINGS frame
    (every gRPC server does, before any authentication), else why not."""
    try:
        with tcp_connect(host, port, timeout) as sock:
            sock.settimeout(timeout)
            sock.sendall(_H2_PREFACE)
            head = b""
            while len(head) < 9:
                chunk = sock.recv(9 - len(head))
                if not chunk:
                    return "it closed the connection"
                head += chunk
    except socket.timeout:
        return f"it accepted the connection but did not answer within {timeout:g} s"
    except OSError as exc:
        return _why(exc, timeout)
    if head[3] != _H2_SETTINGS:
        shown = head.decode("latin-1").split("\r")[0].strip() or head.hex()
        return f"it answered {shown!r}, not HTTP/2"
    return None


def split_host_port(address: str) -> tuple[str, int]:
    """``ray://host:10001`` / ``host:6379`` / ``[::1]:6379`` -> (host, port); ValueError when it is not one."""
    target = address.split("://", 1)[-1].rstrip("/")
    host, _, port = target.rpartition(":")
    host = host.strip("[]")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(address)
    return host, int(port)


def check_ray(address: str, timeout: float = TIMEOUT_S) -> None:
    """A Ray cluster (GCS ``host:port``, or a Ray Client server ``ray://host:port``) answers at ``address``."""
    try:
        host, port = split_host_port(address)
    except ValueError:
        raise ProbeError(f"--address {address}: expected HOST:PORT (or ray://HOST:PORT, or auto)") from None
    try:
        tcp_connect(host, port, timeout).close()
    except OSError as exc:
        raise ProbeError(f"--address {address}: no Ray cluster answers there ({_why(exc, timeout)})") from None
    why = speaks_http2(host, port, timeout)
    if why is not None:
        raise ProbeError(f"--address {address}: not a Ray cluster ({why}); pass the head node's GCS address "
                         "(HOST:6379) or ray://HOST:10001")


def in_memory(uri: str) -> bool:
    """A SQLite database that lives in the process only (``sqlite://``, ``sqlite:///:memory:``, ``mode=memory``)."""
    if not uri.startswith("sqlite:"):
        return False
    rest = uri[len("sqlite:"):].lstrip("/")
    path = rest.split("?", 1)[0]
    return path in ("", ":memory:") or "mode=memory" in uri or path.startswith("file::memory:")


def check_database(uri: str, flag: str, timeout: float = TIMEOUT_S) -> None:
    """A SQLAlchemy database URL that outlives the process and, for a server database, answers and
    lets us in within ``timeout`` seconds. SQLite files are checked elsewhere (their folder, their file)."""
    if in_memory(uri):
        raise ProbeError(f"{flag} {uri}: an in-memory database ends with this process, and --resume, export and "
                         "report could not find the study again; use sqlite:////ABS/PATH/optuna.db or a server")
    if uri.startswith("sqlite:"):
        return
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        url = make_url(uri)
    except (ArgumentError, ValueError) as exc:
        raise ProbeError(f"{flag} {_redact(uri)}: not a database URL ({_one_line(exc)})") from None
    backend = url.get_backend_name()
    if url.host:
        port = url.port or _DEFAULT_PORTS.get(backend)
        if port is not None:
            try:
                tcp_connect(url.host, port, timeout).close()
            except OSError as exc:
                raise ProbeError(f"{flag} {_redact(uri)}: no database answers at {url.host}:{port} ({_why(exc, timeout)})") from None
    _login(uri, flag, backend, timeout)


def _login(uri: str, flag: str, backend: str, timeout: float) -> None:
    """Connect once through SQLAlchemy with the driver's connect timeout (a silent server, a refused login)."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.pool import NullPool

    connect_args = {"connect_timeout": max(1, int(timeout))} if backend in ("postgresql", "mysql", "mariadb") else {}
    try:
        engine = create_engine(uri, connect_args=connect_args, poolclass=NullPool)
    except ModuleNotFoundError as exc:
        raise ProbeError(f"{flag} {_redact(uri)}: its database driver is not installed (no module {exc.name}; "
                         "for PostgreSQL: pip install 'psycopg[binary]')") from None
    except Exception as exc:
        raise ProbeError(f"{flag} {_redact(uri)}: cannot use it ({type(exc).__name__}: {_one_line(exc)})") from None
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:
        why = _one_line(getattr(exc, "orig", None) or exc)
        raise ProbeError(f"{flag} {_redact(uri)}: cannot connect ({_redact(why)[:300]})") from None
    finally:
        engine.dispose()
