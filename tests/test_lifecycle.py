"""A search's edges with the real components: the start-up window, a new MLflow store shared from its first
use, a tracking server gone at the end, and what stopping a search leaves behind.

Every search here is a real ``python -m orchestrator.search`` process (a local Ray runtime, an Optuna study
on disk, MLflow in sqlite or a real ``mlflow server`` on 127.0.0.1) training a tiny random BERT on real
SST-2 rows. The start-up window lasts tens of milliseconds, so the searches are held at named instants
(:mod:`orchestrator.running.pause`, ``INCRELORA_PAUSE_AT``) and killed there with SIGKILL by their own PID.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

optuna = pytest.importorskip("optuna")
mlflow = pytest.importorskip("mlflow")
psutil = pytest.importorskip("psutil")

from test_reliability import free_port, start_mlflow_server, stop_server  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def env(**extra: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("INCRELORA_PAUSE")}
    return {**base, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
            **extra}


def search_cmd(tiny_model_dir: str, glue_dir: Path, out: Path, name: str, tracking: str, *extra: str) -> list[str]:
    return [sys.executable, "-m", "orchestrator.search", "--task", "sst2", "--model", tiny_model_dir,
            "--data-dir", str(glue_dir), "--train-samples", "48", "--eval-samples", "32", "--max-steps", "8",
            "--batch-size", "16", "--evaluations", "2", "--name", name, "--output-dir", str(out / "searches"),
            "--tracking-uri", tracking, "--seed", "5", "--num-cpus", "2", "--confirm", "0", *extra]


def resume_cmd(out: Path, name: str) -> list[str]:
    return [sys.executable, "-m", "orchestrator.search", "--resume", "--name", name, "--output-dir", str(out / "searches")]


def launch(cmd: list[str], cwd: Path, log: Path, **extra_env: str) -> subprocess.Popen:
    return subprocess.Popen(cmd, cwd=cwd, env=env(**extra_env), stdout=open(log, "w"), stderr=subprocess.STDOUT,
                            start_new_session=True)


def wait_for_text(proc: subprocess.Popen, log: Path, text: str, timeout: float = 240) -> None:
    t0 = time.time()
    while time.time() - t0 < timeout:
        if text in log.read_text():
            return
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    raise AssertionError(f"no {text!r} (exit {proc.poll()}):\n{log.read_text()[-3000:]}")


def kill_at(point: str, cmd: list[str], cwd: Path, log: Path) -> None:
    """Run ``cmd`` until it reaches the pause point, then SIGKILL the search process alone."""
    proc = launch(cmd, cwd, log, INCRELORA_PAUSE_AT=point)
    try:
        wait_for_text(proc, log, f"pause point {point} (process {proc.pid})")
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)


def record(search_dir: Path) -> dict:
    return json.loads((search_dir / "search.json").read_text())


def parent_runs(uri: str, name: str) -> list:
    c = mlflow.MlflowClient(tracking_uri=uri)
    exp = c.get_experiment_by_name("increlora-sst2")
    if exp is None:
        return []
    return [r for r in c.search_runs([exp.experiment_id], filter_string=f"tags.search = '{name}'")
            if "mlflow.parentRunId" not in r.data.tags]


def children(uri: str, summary: dict) -> list:
    c = mlflow.MlflowClient(tracking_uri=uri)
    return c.search_runs([summary["experiment_id"]],
                         filter_string=f"tags.`mlflow.parentRunId` = '{summary['parent_run_id']}'")


# ----------------------------------------------------------------------------------------------
# 1. The start-up window
# ----------------------------------------------------------------------------------------------


@pytest.mark.slow  # several search processes in a row: 1.5-2.5 min on 2 busy cores
def test_a_kill_anywhere_in_the_start_up_window_resumes(tiny_model_dir, glue_dir, tmp_path):
    """SIGKILL at each instant of the start-up: with only its folder (the name is free again), with
    ``search.json`` and no parent run, with a parent run its record does not name yet, with the parent run
    and no study, with the study and no trial; each time ``--resume`` (or the same command) goes on, and
    the search ends with its trials, one parent run FINISHED, nothing RUNNING."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    cmd = search_cmd(tiny_model_dir, glue_dir, tmp_path, "w", uri, "--trials", "2", "--max-concurrent", "2")
    folder, log = tmp_path / "searches" / "w", tmp_path / "search.log"

    kill_at("folder", cmd, tmp_path, log)  # the folder exists, nothing in it but the lock
    assert folder.is_dir() and not (folder / "search.json").exists()

    kill_at("record", cmd, tmp_path, log)  # the same command again: the name is not stuck
    assert record(folder)["status"] == "created" and not record(folder)["parent_run_id"]

    kill_at("tracking", resume_cmd(tmp_path, "w"), tmp_path, log)  # parent run made, not yet in search.json
    assert not record(folder)["parent_run_id"]
    orphan = parent_runs(uri, "w")
    assert [r.info.status for r in orphan] == ["RUNNING"]

    kill_at("parent", resume_cmd(tmp_path, "w"), tmp_path, log)  # the orphan is adopted, no study yet
    assert record(folder)["parent_run_id"] == orphan[0].info.run_id
    assert record(folder)["status"] == "created"
    assert not (folder / "optuna.db").exists()

    kill_at("study", resume_cmd(tmp_path, "w"), tmp_path, log)  # the study exists, no trial has started
    study = optuna.load_study(study_name="w", storage=f"sqlite:///{folder / 'optuna.db'}")
    assert not [t for t in study.get_trials() if t.state.name != "WAITING"]

    proc = subprocess.run(resume_cmd(tmp_path, "w"), cwd=tmp_path, env=env(), capture_output=True, text=True,
                          timeout=400)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "stopped while starting" in proc.stdout
    summary = record(folder)
    assert summary["status"] == "finished" and summary["counts"] == {"COMPLETE": 2}
    parents = parent_runs(uri, "w")
    assert [(r.info.run_id, r.info.status) for r in parents] == [(summary["parent_run_id"], "FINISHED")]
    runs = children(uri, summary)
    assert sorted(r.info.status for r in runs) == ["FINISHED", "FINISHED"]
    assert (folder / "pareto_front.csv").is_file()


@pytest.mark.parametrize("status", ["running", "finalizing", "interrupted", "finished", "failed", "stopped"])
@pytest.mark.parametrize("study_file", ["missing", "empty"])
def test_a_missing_or_empty_study_is_refused_unless_the_search_never_started(status, study_file, tmp_path, capsys,
                                                                              monkeypatch):
    """Only a search stopped in its start-up window (status ``created``) may have no study; in every other
    state a missing or 0-byte ``optuna.db`` is refused with one line, and nothing is created."""
    from orchestrator import search
    from orchestrator.records.record import SCHEMA_VERSION, SearchChoices, SearchRecord
    from orchestrator.running import driver

    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "searches" / "s"
    folder.mkdir(parents=True)
    choices = SearchChoices(task="sst2", method="increlora", model=None, data_dir=None, trials=1, sampler="tpe",
                            population_size=16, seed=0, scheduler="none", asha_grace=1, asha_reduction_factor=2.0,
                            objective="final", evaluations=1, tolerance=1.0, storage=f"sqlite:///{folder / 'optuna.db'}",
                            tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}", artifact_root=None,
                            experiment_name="increlora-sst2", save_adapters=False, cpus_per_trial=1, argv=[])
    SearchRecord(version=SCHEMA_VERSION, name="s", search_dir=str(folder), status=status, choices=choices,
                 study_name="s", ray_path=str(folder / "ray" / "s")).save()
    if study_file == "empty":
        (folder / "optuna.db").write_bytes(b"")
    before = sorted((p.name, p.stat().st_size) for p in tmp_path.rglob("*"))
    rc = search.main(["--resume", "--name", "s", "--output-dir", str(tmp_path / "searches")])
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert rc == 2 and len(lines) == 1 and lines[0].startswith("error:"), lines
    assert ("does not exist" if study_file == "missing" else "is empty (0 bytes)") in lines[0]
    assert sorted((p.name, p.stat().st_size) for p in tmp_path.rglob("*")) == before

    # the same search stopped in its start-up window passes the checks (its study is made when it goes on)
    data = record(folder)
    data["status"] = "created"
    (folder / "search.json").write_text(json.dumps(data))
    args = search.build_parser().parse_args(["--resume", "--name", "s", "--output-dir", str(tmp_path / "searches")])
    assert driver.load_for_resume(args).status == "created"
    assert not (tmp_path / "mlflow.db").exists()
    assert (folder / "optuna.db").exists() == (study_file == "empty")


# ----------------------------------------------------------------------------------------------
# 2. A new MLflow store, shared from its first use
# ----------------------------------------------------------------------------------------------

_FIRST_USE = r"""
import sys, time
from orchestrator.tracking import mlflow_runs
from orchestrator.records.storage import make_storage
start, mlflow_uri, optuna_uri = float(sys.argv[1]), sys.argv[2], sys.argv[3]
while time.time() < start:
    time.sleep(0.001)
mlflow_runs.client(mlflow_uri).search_experiments()
make_storage(optuna_uri).get_all_studies()
"""


def test_four_processes_open_a_new_sqlite_store_at_once(tmp_path):
    """Four processes make their first MLflow client (and Optuna storage) of one new SQLite file at the
    same instant: all succeed (without the store lock, plain MlflowClients die in MLflow's migration)."""
    mlflow_uri, optuna_uri = f"sqlite:///{tmp_path / 'mlflow.db'}", f"sqlite:///{tmp_path / 'optuna.db'}"
    start = time.time() + 6  # every interpreter is up and has imported MLflow by then
    procs = [subprocess.Popen([sys.executable, "-c", _FIRST_USE, str(start), mlflow_uri, optuna_uri], env=env(),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(4)]
    outs = [p.communicate(timeout=180) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0, 0], [e[-1500:] for _, e in outs]
    assert time.time() > start
    assert mlflow.MlflowClient(tracking_uri=mlflow_uri).search_experiments()


@pytest.mark.slow  # several search processes in a row: 1.5-2.5 min on 2 busy cores
def test_two_searches_started_at_once_on_a_new_mlflow_db_both_finish(tiny_model_dir, glue_dir, tmp_path):
    """Two searches held just before their first MLflow call, then let go together on a ``mlflow.db`` that
    does not exist yet: both finish with exit 0 and each has its parent run in the one store."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    go = tmp_path / "go"
    procs, logs = [], []
    for name in ("a", "b"):
        log = tmp_path / f"{name}.log"
        cmd = search_cmd(tiny_model_dir, glue_dir, tmp_path, name, uri, "--trials", "1", "--max-concurrent", "1",
                         "--num-cpus", "1")
        procs.append(launch(cmd, tmp_path, log, INCRELORA_PAUSE_AT="record", INCRELORA_PAUSE_UNTIL=str(go)))
        logs.append(log)
    try:
        for proc, log in zip(procs, logs):
            wait_for_text(proc, log, "pause point record")
        assert not (tmp_path / "mlflow.db").exists()
        go.touch()
        codes = [p.wait(timeout=400) for p in procs]
        assert codes == [0, 0], [log.read_text()[-3000:] for log in logs]
    finally:
        for p in procs:
            if p.poll() is None:
                os.kill(p.pid, signal.SIGKILL)
    assert [r.info.status for r in parent_runs(uri, "a")] == ["FINISHED"]
    assert [r.info.status for r in parent_runs(uri, "b")] == ["FINISHED"]


# ----------------------------------------------------------------------------------------------
# 3. The tracking server gone at the end
# ----------------------------------------------------------------------------------------------


@pytest.mark.slow  # several search processes in a row: 1.5-2.5 min on 2 busy cores
def test_a_search_whose_tracking_server_is_gone_at_the_end_writes_its_files_and_sync_closes_it(
        tiny_model_dir, glue_dir, tmp_path):
    """The server goes away as the trials start and is still away when the search ends: the trials spool
    their records, the search writes its front, plots and presets, says ``search.json`` is finished and
    exits 1 with one line naming ``orchestrator.sync``; once the server is back, sync replays every spool
    and ends the parent run FINISHED (a second sync changes nothing)."""
    port = free_port()
    server = start_mlflow_server(tmp_path, port)
    search = None
    try:
        uri = f"http://127.0.0.1:{port}"
        log = tmp_path / "search.log"
        folder = tmp_path / "searches" / "gone"
        search = launch(search_cmd(tiny_model_dir, glue_dir, tmp_path, "gone", uri, "--trials", "3", "--max-concurrent", "2"),
                        tmp_path, log)
        wait_for_text(search, log, "Search gone:")
        stop_server(server)  # before the first trial logs anything, and not back before the end
        server = None
        rc = search.wait(timeout=400)
        out = log.read_text()
        search = None
        last = [ln for ln in out.splitlines() if ln.strip()][-1]
        assert rc == 1, out[-3000:]
        assert last.startswith("error: MLflow at") and f"python -m orchestrator.sync --search {folder}" in last, last
        assert "Traceback" not in out
        summary = record(folder)
        assert summary["status"] == "finished" and summary["counts"] == {"COMPLETE": 3}
        assert "mlflow" in summary["outputs"]
        for name in ("pareto_front.csv", "pareto.png", "hypervolume.png"):
            assert (folder / name).is_file(), name
        assert list((folder / "presets").glob("*.yaml"))
        assert len(list((folder / "trials").glob("t*/mlflow_spool.jsonl"))) == 3

        server = start_mlflow_server(tmp_path, port)  # back, with the same store
        c = mlflow.MlflowClient(tracking_uri=uri)
        assert c.get_run(summary["parent_run_id"]).info.status == "RUNNING"
        sync = subprocess.run([sys.executable, "-m", "orchestrator.sync", "--search", str(folder)], cwd=tmp_path,
                              env=env(), capture_output=True, text=True, timeout=300)
        assert sync.returncode == 0, sync.stdout + sync.stderr
        assert "closed FINISHED" in sync.stdout
        summary = record(folder)
        assert "mlflow" not in summary["outputs"]
        assert c.get_run(summary["parent_run_id"]).info.status == "FINISHED"
        assert "pareto_front.csv" in {a.path for a in c.list_artifacts(summary["parent_run_id"])}
        runs = children(uri, summary)
        assert sorted(r.info.status for r in runs) == ["FINISHED"] * 3
        assert all("final_glue_score" in r.data.metrics for r in runs)
        assert not list((folder / "trials").glob("t*/mlflow_spool.jsonl"))  # every spool replayed
        again = subprocess.run([sys.executable, "-m", "orchestrator.sync", "--search", str(folder)], cwd=tmp_path,
                               env=env(), capture_output=True, text=True, timeout=300)
        assert again.returncode == 0, again.stderr
        assert len(children(uri, summary)) == 3
    finally:
        if search is not None and search.poll() is None:
            os.kill(search.pid, signal.SIGKILL)
        stop_server(server)


# ----------------------------------------------------------------------------------------------
# 4. Stopping a search leaves no Ray process behind
# ----------------------------------------------------------------------------------------------


def _session_of(tree: list) -> str:
    for p in tree:
        try:
            m = re.search(r"(/tmp/ray/session_[0-9_\-]+)", " ".join(p.cmdline()))
        except psutil.Error:
            continue
        if m:
            return m.group(1)
    raise AssertionError("no Ray session folder in the search's process tree")


def _left(session: str, tree: list) -> list[str]:
    """The processes of that Ray runtime still alive: one of the noted tree, or naming its session folder."""
    pids = {p.pid: p for p in tree}
    out = []
    for p in psutil.process_iter(["cmdline"]):
        try:
            if p.status() == psutil.STATUS_ZOMBIE:
                continue
            noted = p.pid in pids and p.create_time() == pids[p.pid].create_time()
            if noted or session in " ".join(p.info["cmdline"] or []):
                out.append(f"{p.pid} {p.name()}")
        except psutil.Error:
            continue
    return out


@pytest.mark.parametrize("how", ["SIGINT", "SIGTERM", "SIGKILL the search", "SIGKILL its process group"])
def test_stopping_a_search_leaves_no_ray_process(how, tiny_model_dir, glue_dir, tmp_path):
    cmd = search_cmd(tiny_model_dir, glue_dir, tmp_path, "stop", f"sqlite:///{tmp_path / 'mlflow.db'}",
                     "--trials", "2", "--max-concurrent", "2")
    cmd[cmd.index("--max-steps") + 1] = "100000"
    log = tmp_path / "search.log"
    proc = launch(cmd, tmp_path, log)
    tree: list = []
    try:
        wait_for_text(proc, log, "Search stop:")
        t0 = time.time()  # both trials' workers are up (and the agents, and the reaper)
        while time.time() - t0 < 60:
            tree = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
            if sum("ImplicitFunc" in p.name() for p in tree if p.is_running()) >= 2:
                break
            time.sleep(0.3)
        session = _session_of(tree)
        assert {"raylet", "gcs_server"} <= {p.name() for p in tree}
        assert any("orchestrator.running.reaper" in " ".join(p.cmdline()) for p in tree)
        if how == "SIGKILL its process group":
            os.killpg(proc.pid, signal.SIGKILL)
        else:
            os.kill(proc.pid, {"SIGINT": signal.SIGINT, "SIGTERM": signal.SIGTERM}.get(how, signal.SIGKILL))
        rc = proc.wait(timeout=180)
        gone = time.time()
        left = _left(session, tree)
        while left and time.time() - gone < 5:
            time.sleep(0.2)
            left = _left(session, tree)
        assert not left, (how, left)
        print(f"\n{how}: exit {rc}, nothing left {time.time() - gone:.1f} s after the search ended")
        if how in ("SIGINT", "SIGTERM"):
            assert rc == 130, log.read_text()[-3000:]
            assert record(tmp_path / "searches" / "stop")["status"] == "interrupted"
            assert "Traceback" not in log.read_text()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        for p in tree:
            try:
                p.kill()
            except psutil.Error:
                pass
