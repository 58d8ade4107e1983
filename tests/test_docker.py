"""The Docker stack, checked as far as a machine without a Docker engine allows: the compose file says
what ``docker/README.md`` documents (services, ports bound to 127.0.0.1 by default, volumes, health
checks, commands), every command the stack runs is one our CLIs accept, and the images install the
project the way the README does."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import yaml

DOCKER = Path(__file__).resolve().parents[1] / "docker"
README = (DOCKER.parent / "README.md").read_text()
DOCKER_README = (DOCKER / "README.md").read_text()
SERVICES = {"postgres", "mlflow", "ray-head", "ray-worker", "search"}


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((DOCKER / "docker-compose.yml").read_text())


def _default(text: str) -> str:
    """Compose's ``${VAR:-default}`` with the default filled in."""
    return re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", str(text))


def _command(value) -> list[str]:
    return [_default(v) for v in value] if isinstance(value, list) else shlex.split(_default(value))


def test_services_and_their_published_ports_are_the_documented_ones(compose):
    services = compose["services"]
    assert set(services) == SERVICES
    table = {m.group(1): m.group(2) for m in re.finditer(r"^\| `([a-z-]+)` \|.*\| ([^|]*) \|$", DOCKER_README, re.M)}
    assert set(table) == SERVICES  # the README's service table lists exactly these
    for name, service in services.items():
        ports = [_default(p) for p in service.get("ports", [])]
        for port in ports:
            assert port.startswith("127.0.0.1:"), (name, port)  # loopback unless BIND_ADDRESS says otherwise
        documented = table[name]
        if ports:
            for port in ports:
                host = ":".join(port.split(":")[:2])
                assert host in documented, (name, host, documented)
        else:
            assert "not published" in documented, (name, documented)


def test_volumes_and_health_checks(compose):
    services = compose["services"]
    assert {"pgdata", "mlartifacts"} <= set(compose["volumes"])
    pg_volumes = [_default(v) for v in services["postgres"]["volumes"]]
    assert any(v.startswith("pgdata:") for v in pg_volumes)
    init = next(v for v in pg_volumes if "postgres-init.sql" in v)
    assert "CREATE DATABASE optuna" in (DOCKER / init.split(":")[0].removeprefix("./")).read_text()
    assert any(_default(v).startswith("mlartifacts:") for v in services["mlflow"]["volumes"])
    assert "pg_isready" in " ".join(services["postgres"]["healthcheck"]["test"])
    assert "/health" in " ".join(services["mlflow"]["healthcheck"]["test"])
    for name in ("ray-head", "ray-worker", "search"):  # the GLUE files reach every project container, read-only
        assert any(_default(v).endswith(":/data/glue:ro") for v in services[name]["volumes"]), name
    assert services["search"]["depends_on"]["mlflow"]["condition"] == "service_healthy"
    assert services["search"]["depends_on"]["postgres"]["condition"] == "service_healthy"


def test_commands_are_the_documented_ones_and_our_cli_accepts_them(compose):
    from orchestrator.running.settings import build_parser

    services = compose["services"]
    head = _command(services["ray-head"]["command"])
    assert head[:3] == ["ray", "start", "--head"] and "--block" in head and head[head.index("--port") + 1] == "6379"
    worker = _command(services["ray-worker"]["command"])
    assert worker[:4] == ["ray", "start", "--address", "ray-head:6379"] and "--block" in worker
    mlflow = _command(services["mlflow"]["command"])
    assert mlflow[:2] == ["mlflow", "server"]
    assert mlflow[mlflow.index("--backend-store-uri") + 1].startswith("postgresql://increlora:")
    assert mlflow[mlflow.index("--backend-store-uri") + 1].endswith("@postgres:5432/mlflow")
    assert mlflow[mlflow.index("--port") + 1] == "5000" and "--artifacts-destination" in mlflow
    driver = _command(services["search"]["entrypoint"]) + _command(services["search"]["command"])
    assert driver[:3] == ["python", "-m", "orchestrator.search"]
    args = build_parser().parse_args(driver[3:])  # a flag the CLI does not know would exit here
    assert args.address == "ray-head:6379" and args.tracking_uri == "http://mlflow:5000"
    assert args.storage.endswith("@postgres:5432/optuna") and args.data_dir == "/data/glue"
    for text in ("--address ray-head:6379", "--tracking-uri http://mlflow:5000", "--data-dir /data/glue"):
        assert text in DOCKER_README.replace("\n", " "), text


def test_images_install_the_project_as_the_readme_does():
    torch_pin = re.search(r"pip install (torch==[\d.]+)", README).group(1)
    assert 'pip install -e ".[cluster]"' in README or "pip install -e \".[test,cluster]\"" in README
    for name in ("Dockerfile", "Dockerfile.gpu"):
        text = (DOCKER / name).read_text()
        assert f"pip install {torch_pin}" in text, name  # the same torch, pinned first
        assert 'pip install ".[cluster]"' in text, name  # the project with the cluster extra (psycopg)
        assert text.index(torch_pin) < text.index('".[cluster]"'), name
    mlflow_pin = re.search(r'"mlflow==([\d.]+)"', (DOCKER / "mlflow.Dockerfile").read_text()).group(1)
    pyproject = (DOCKER.parent / "pyproject.toml").read_text()
    upper = re.search(r'"mlflow>=[\d.]+,<([\d.]+)"', pyproject).group(1)
    assert tuple(map(int, mlflow_pin.split("."))) < tuple(map(int, upper.split(".")))
    assert "psycopg[binary]" in (DOCKER / "mlflow.Dockerfile").read_text()


def test_the_wheel_the_images_install_holds_every_package(tmp_path):
    """The images run a non-editable ``pip install .``: every folder with an ``__init__.py`` must be in its wheel."""
    import shutil
    import subprocess
    import sys
    import zipfile

    root = DOCKER.parent
    src = tmp_path / "src"  # a clean copy: no stale build/ folder can fill in what the configuration leaves out
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(root / name, src / name)
    for top in ("increlora", "search_spaces", "orchestrator"):
        shutil.copytree(root / top, src / top, ignore=shutil.ignore_patterns("__pycache__"))
    res = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path), str(src)],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    wheel = next(tmp_path.glob("*.whl"))
    inside = {n.rsplit("/", 1)[0] for n in zipfile.ZipFile(wheel).namelist() if n.endswith("/__init__.py")}
    packages = {str(p.parent.relative_to(root)) for top in ("increlora", "search_spaces", "orchestrator")
                for p in (root / top).rglob("__init__.py") if "__pycache__" not in p.parts}
    assert packages and packages <= inside, f"missing from the wheel: {sorted(packages - inside)}"
    assert any(n.startswith("search_spaces/") and n.endswith(".yaml") for n in zipfile.ZipFile(wheel).namelist())
