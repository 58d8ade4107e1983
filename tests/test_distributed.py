"""A search across a two-node Ray cluster, with the Optuna study in PostgreSQL and an MLflow server backed
by PostgreSQL: every engine real, on 127.0.0.1, started here and stopped by its own PID.

The cluster: a PostgreSQL server in a temporary folder (databases ``optuna`` and ``mlflow``, a password),
``mlflow server`` on it with a local artifact root, a Ray head (``ray start --head``, 1 CPU) and a second
Ray node (``ray start --address``, 1 CPU and a ``node2`` resource). Then:

- a 4-trial search runs on both nodes; PostgreSQL and the MLflow server hold every trial once, the
  artifacts come back through the server, and no password appears in logs, params, tags or search.json;
- the driver is killed mid-search and ``--resume`` (given the URIs with their password again) finishes it
  with the same guarantees as on one machine;
- the second node is stopped in the middle of a trial: that trial is recorded as failed with the reason
  and the search finishes on the head.

Skipped when PostgreSQL's server programs (``initdb``, ``postgres``) or ``psycopg`` are missing.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional

import pytest

pytestmark = pytest.mark.slow
psycopg = pytest.importorskip("psycopg", reason="pip install -e '.[cluster]' (psycopg)")

REPO = Path(__file__).resolve().parents[1]
PASSWORD = "s3cret-pw-77"
USER = "increlora"


def _pg_bin(name: str) -> Optional[str]:
    found = shutil.which(name)
    if found:
        return found
    for candidate in sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"), reverse=True):
        return str(candidate)
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(**extra: str) -> dict[str, str]:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0",
            "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""), **extra}


def _wait_port(port: int, proc: Optional[subprocess.Popen], timeout: float, what: str, log: Path) -> None:
    t0 = time.time()
    while time.time() - t0 < timeout:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what} exited: {log.read_text()[-2000:] if log.exists() else ''}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError(f"{what} did not answer on port {port}: {log.read_text()[-2000:] if log.exists() else ''}")


def _stop(proc: Optional[subprocess.Popen], sig: int = signal.SIGTERM, timeout: float = 60) -> None:
    """Stop a process we started, by its PID (its process group too: the engines' own children)."""
    if proc is None or proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=20)


class Cluster:
    """The engines of the module's tests and how to reach them."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.procs: dict[str, subprocess.Popen] = {}
        self.pg_port, self.mlflow_port, self.ray_port = _free_port(), _free_port(), _free_port()

    def uri(self, db: str, password: bool = True) -> str:
        auth = f"{USER}:{PASSWORD}" if password else USER
        return f"postgresql://{auth}@127.0.0.1:{self.pg_port}/{db}"

    @property
    def tracking(self) -> str:
        return f"http://127.0.0.1:{self.mlflow_port}"

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.ray_port}"

    # PostgreSQL runs as the 'postgres' system user (it refuses root) in a folder of its own.
    def start_postgres(self) -> None:
        # its own folder outside pytest's (which only root may enter), owned by the server's user
        self.pg_root = Path(tempfile.mkdtemp(prefix="increlora-pg-"))
        data, sock, pwfile, log = (self.pg_root / "data", self.pg_root / "sock", self.pg_root / "pwfile",
                                   self.pg_root / "postgres.log")
        sock.mkdir()
        pwfile.write_text(PASSWORD + "\n")
        log.touch()
        run_as = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if os.geteuid() == 0:
            for path in (self.pg_root, sock, pwfile, log):
                shutil.chown(path, "postgres")
        init = subprocess.run(run_as + [_pg_bin("initdb"), "-D", str(data), "-U", USER, "--auth=scram-sha-256",
                                        f"--pwfile={pwfile}"], capture_output=True, text=True, timeout=120)
        assert init.returncode == 0, init.stdout + init.stderr
        self.procs["postgres"] = subprocess.Popen(
            run_as + [_pg_bin("postgres"), "-D", str(data), "-p", str(self.pg_port), "-k", str(sock),
                      "-c", "listen_addresses=127.0.0.1"],
            stdout=open(log, "a"), stderr=subprocess.STDOUT, start_new_session=True)
        _wait_port(self.pg_port, self.procs["postgres"], 60, "postgres", log)
        for _ in range(60):  # the port answers a little before the server accepts logins
            try:
                conn = psycopg.connect(host="127.0.0.1", port=self.pg_port, user=USER, password=PASSWORD, dbname="postgres")
                break
            except psycopg.OperationalError:
                time.sleep(0.5)
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("CREATE DATABASE optuna")
            cur.execute("CREATE DATABASE mlflow")
        conn.close()

    def start_mlflow(self) -> None:
        log = self.root / "mlflow.log"
        self.procs["mlflow"] = subprocess.Popen(
            [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", self.uri("mlflow"),
             "--artifacts-destination", str(self.root / "artifacts"), "--host", "127.0.0.1",
             "--port", str(self.mlflow_port), "--workers", "1"],
            cwd=self.root, env=_env(MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false"), stdout=open(log, "a"),
            stderr=subprocess.STDOUT, start_new_session=True)
        _wait_port(self.mlflow_port, self.procs["mlflow"], 120, "mlflow server", log)

    def start_ray(self, which: str) -> None:
        ray = str(Path(sys.executable).parent / "ray")
        common = ["--num-cpus", "1", "--object-store-memory", "150000000", "--block", "--disable-usage-stats"]
        if which == "head":
            cmd = [ray, "start", "--head", "--port", str(self.ray_port), "--include-dashboard", "false", *common]
        else:
            cmd = [ray, "start", "--address", self.address, "--resources", '{"node2": 1}', *common]
        log = self.root / f"ray-{which}.log"
        self.procs[f"ray-{which}"] = subprocess.Popen(cmd, cwd=self.root, env=_env(), stdout=open(log, "a"),
                                                      stderr=subprocess.STDOUT, start_new_session=True)
        if which == "head":
            _wait_port(self.ray_port, self.procs["ray-head"], 120, "ray head", log)
        else:
            self.wait_cpus(2, log)

    def wait_cpus(self, n: int, log: Path, timeout: float = 120) -> None:
        ray = str(Path(sys.executable).parent / "ray")
        t0 = time.time()
        while time.time() - t0 < timeout:
            out = subprocess.run([ray, "status", "--address", self.address], capture_output=True, text=True, env=_env())
            if f"/{n}.0 CPU" in out.stdout:
                return
            time.sleep(1)
        raise RuntimeError(f"the cluster never reached {n} CPUs: {log.read_text()[-2000:]}")

    def stop(self) -> None:
        for name in ("ray-node2", "ray-head", "mlflow", "postgres"):
            # `ray start --block` takes 15+ s to honour SIGTERM; its process group is killed after 5 s
            _stop(self.procs.pop(name, None), signal.SIGINT if name == "postgres" else signal.SIGTERM,
                  timeout=5 if name.startswith("ray") else 30)
        if getattr(self, "pg_root", None) is not None:
            shutil.rmtree(self.pg_root, ignore_errors=True)
        # `ray start --head` names itself in /tmp/ray/ray_current_cluster and a killed head leaves the
        # file behind; remove it when it is ours so later `ray.init()` calls do not try to join it.
        current = Path(tempfile.gettempdir()) / "ray" / "ray_current_cluster"
        if current.exists() and current.read_text().strip().endswith(f":{self.ray_port}"):
            current.unlink()

    def search(self, name: str, *extra: str, storage_password: bool = True) -> list[str]:
        return [sys.executable, "-m", "orchestrator.search", "--task", "sst2", "--model", str(self.model),
                "--data-dir", str(self.glue), "--train-samples", "64", "--eval-samples", "32", "--batch-size", "16",
                "--name", name, "--output-dir", str(self.root / "searches"), "--address", self.address,
                "--storage", self.uri("optuna", storage_password), "--tracking-uri", self.tracking, "--seed", "5",
                "--confirm", "0", *extra]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, tiny_model_dir, glue_dir):
    if not _pg_bin("initdb") or not _pg_bin("postgres"):
        pytest.skip("PostgreSQL's server programs are missing (apt-get install -y postgresql)")
    root = tmp_path_factory.mktemp("cluster")
    os.chmod(root, 0o755)
    c = Cluster(root)
    c.model, c.glue = tiny_model_dir, glue_dir
    try:
        c.start_postgres()
        c.start_mlflow()
        c.start_ray("head")
        c.start_ray("node2")
        yield c
    finally:
        c.stop()


def _nodes(address: str) -> dict[str, dict]:
    """Node id -> its resources, asked of the cluster from a short-lived driver process."""
    code = "import json, ray; ray.init(address=%r, logging_level='error'); print(json.dumps({n['NodeID']: n['Resources'] for n in ray.nodes() if n['Alive']}))"
    out = subprocess.run([sys.executable, "-c", code % address], capture_output=True, text=True, env=_env(), timeout=120)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _children(tracking: str, summary: dict) -> list:
    import mlflow

    c = mlflow.MlflowClient(tracking_uri=tracking)
    return c.search_runs([summary["experiment_id"]], filter_string=f"tags.`mlflow.parentRunId` = '{summary['parent_run_id']}'",
                         max_results=1000)


def _study(cluster: Cluster, name: str) -> list:
    import optuna

    return optuna.load_study(study_name=name, storage=cluster.uri("optuna")).get_trials(deepcopy=False)


def test_a_search_runs_on_both_nodes_with_postgresql_and_an_mlflow_server(cluster, tmp_path):
    import mlflow

    log = tmp_path / "search.log"
    proc = subprocess.run(cluster.search("two-nodes", "--trials", "4", "--max-steps", "12"), cwd=tmp_path, env=_env(),
                          capture_output=True, text=True, timeout=600)
    log.write_text(proc.stdout + proc.stderr)
    assert proc.returncode == 0, log.read_text()[-3000:]
    search_dir = cluster.root / "searches" / "two-nodes"
    summary = json.loads((search_dir / "search.json").read_text())
    # the study in PostgreSQL and the runs on the MLflow server: every trial once
    trials = _study(cluster, "two-nodes")
    assert sorted(t.number for t in trials) == [0, 1, 2, 3] and all(t.state.name == "COMPLETE" for t in trials)
    runs = _children(cluster.tracking, summary)
    assert sorted(int(r.data.tags["trial"]) for r in runs) == [0, 1, 2, 3]
    assert all(r.info.status == "FINISHED" for r in runs)
    # trials ran on both nodes, recorded on the MLflow run and in search.json
    nodes = _nodes(cluster.address)
    node2 = next(n for n, res in nodes.items() if "node2" in res)
    used = {r.data.tags["node"] for r in runs}
    assert used == set(nodes) and node2 in used, (used, nodes)
    assert {summary["nodes"][str(r.data.tags["trial"])] for r in runs} == used
    # artifacts come back through the server: a trial's heatmap, the parent's front plot and presets
    trial = runs[0]
    for run_id, path in ((trial.info.run_id, "allocation_heatmap.png"), (summary["parent_run_id"], "pareto.png"),
                         (summary["parent_run_id"], "presets")):
        local = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=path, dst_path=str(tmp_path / "dl"),
                                                    tracking_uri=cluster.tracking)
        assert Path(local).exists() and (Path(local).is_dir() and any(Path(local).iterdir()) or Path(local).stat().st_size > 1000)
    # no password anywhere we write or print
    parent = mlflow.MlflowClient(cluster.tracking).get_run(summary["parent_run_id"])
    texts = [log.read_text(), (search_dir / "search.json").read_text(), json.dumps(parent.data.params),
             json.dumps(parent.data.tags)] + [json.dumps(r.data.params) + json.dumps(r.data.tags) for r in runs]
    texts += [p.read_text(errors="replace") for p in search_dir.rglob("*") if p.is_file() and p.suffix in (".json", ".yaml", ".txt", ".csv")]
    assert not [t for t in texts if PASSWORD in t]
    assert summary["storage"] == cluster.uri("optuna", password=False)


def test_a_killed_driver_resumes_against_the_same_study_and_server(cluster, tmp_path):
    log = tmp_path / "search.log"
    search_dir = cluster.root / "searches" / "killed"
    proc = subprocess.Popen(cluster.search("killed", "--trials", "4", "--max-steps", "24"), cwd=tmp_path, env=_env(),
                            stdout=open(log, "a"), stderr=subprocess.STDOUT, start_new_session=True)
    t0 = time.time()
    while time.time() - t0 < 300 and proc.poll() is None:
        if len(list((search_dir / "trials").glob("t*/result.json"))) >= 1:
            break
        time.sleep(0.3)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    resume = [sys.executable, "-m", "orchestrator.search", "--resume", "--name", "killed", "--output-dir",
              str(cluster.root / "searches"), "--address", cluster.address, "--storage", cluster.uri("optuna")]
    done = subprocess.run(resume, cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, (log.read_text() + done.stdout + done.stderr)[-3000:]
    summary = json.loads((search_dir / "search.json").read_text())
    trials = _study(cluster, "killed")
    complete = [t for t in trials if t.state.name == "COMPLETE"]
    assert len(complete) == 4 and not [t for t in trials if t.state.name in ("RUNNING", "WAITING")]
    assert all(t.user_attrs.get("state_reason") == "interrupted" for t in trials if t.state.name == "FAIL")
    runs = _children(cluster.tracking, summary)
    by_trial: dict[int, list[str]] = {}
    for run in runs:
        by_trial.setdefault(int(run.data.tags["trial"]), []).append(run.info.status)
    assert all(by_trial[t.number] == ["FINISHED"] for t in complete), by_trial
    assert "RUNNING" not in {s for v in by_trial.values() for s in v}
    assert summary["status"] == "finished" and PASSWORD not in done.stdout + done.stderr


def test_a_node_that_stops_mid_trial_fails_that_trial_with_the_reason(cluster, tmp_path):
    log = tmp_path / "search.log"
    search_dir = cluster.root / "searches" / "node-lost"
    proc = subprocess.Popen(cluster.search("node-lost", "--trials", "4", "--max-steps", "60"), cwd=tmp_path, env=_env(),
                            stdout=open(log, "a"), stderr=subprocess.STDOUT, start_new_session=True)
    node2 = next(n for n, res in _nodes(cluster.address).items() if "node2" in res)
    # wait until a trial is running on node2 (its MLflow run carries the node from the start)
    import mlflow

    c = mlflow.MlflowClient(cluster.tracking)
    on_node2 = None
    t0 = time.time()
    while time.time() - t0 < 300 and on_node2 is None and proc.poll() is None:
        exp = c.get_experiment_by_name("increlora-sst2")
        if exp is not None:
            running = c.search_runs([exp.experiment_id], filter_string="tags.search = 'node-lost' and attributes.status = 'RUNNING'")
            on_node2 = next((r for r in running if r.data.tags.get("node") == node2 and "mlflow.parentRunId" in r.data.tags), None)
        time.sleep(0.5)
    assert on_node2 is not None, log.read_text()[-3000:]
    _stop(cluster.procs.pop("ray-node2"), signal.SIGKILL)  # the node goes away with its trial
    assert proc.wait(timeout=600) == 0, log.read_text()[-3000:]
    summary = json.loads((search_dir / "search.json").read_text())
    trials = {t.number: t for t in _study(cluster, "node-lost")}
    lost = trials[int(on_node2.data.tags["trial"])]
    assert lost.state.name == "FAIL" and lost.user_attrs.get("fail_reason"), lost.user_attrs
    assert summary["status"] == "finished" and summary["counts"]["COMPLETE"] == 3 and summary["counts"]["FAIL"] == 1
    assert "reason:" in log.read_text()
