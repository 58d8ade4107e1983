"""Reliability with the real components: killed and interrupted searches resume exactly, failing trials
say why, a tracking outage loses no record.

Every search here is a real ``python -m orchestrator.search`` process (a local Ray runtime, an Optuna
study on disk, MLflow in sqlite or a real ``mlflow server`` on 127.0.0.1) training a tiny random BERT on
real SST-2 rows; processes are stopped by their own PID.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Optional

import pytest

optuna = pytest.importorskip("optuna")
mlflow = pytest.importorskip("mlflow")

REPO = Path(__file__).resolve().parents[1]


def env() -> dict[str, str]:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}


def search_args(tiny_model_dir: str, glue_dir: Path, out: Path, name: str, tracking: str, *extra: str) -> list[str]:
    return [sys.executable, "-m", "orchestrator.search", "--task", "sst2", "--model", tiny_model_dir,
            "--data-dir", str(glue_dir), "--train-samples", "64", "--eval-samples", "32", "--max-steps", "16",
            "--batch-size", "16", "--name", name, "--output-dir", str(out / "searches"), "--tracking-uri", tracking,
            "--seed", "3", "--max-concurrent", "2", "--confirm", "0", *extra]


def start(cmd: list[str], cwd: Path, log: Path) -> subprocess.Popen:
    return subprocess.Popen(cmd, cwd=cwd, env=env(), stdout=open(log, "a"), stderr=subprocess.STDOUT,
                            start_new_session=True)


def wait_for(proc: subprocess.Popen, ready: Callable[[], bool], timeout: float = 240) -> bool:
    """Poll until ``ready()`` (True) or the process ends / time runs out (False)."""
    t0 = time.time()
    while time.time() - t0 < timeout:
        if ready():
            return True
        if proc.poll() is not None:
            return False
        time.sleep(0.3)
    return False


def results_written(search_dir: Path) -> int:
    return len(list((search_dir / "trials").glob("t*/result.json")))


def stop(proc: subprocess.Popen, sig: int) -> None:
    """Send ``sig`` to the search process itself (as a user's kill would), then wait for it."""
    if proc.poll() is None:
        os.kill(proc.pid, sig)
    try:
        proc.wait(timeout=120)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)


def study_trials(summary: dict) -> list:
    return optuna.load_study(study_name=summary["study_name"], storage=summary["storage"]).get_trials(deepcopy=False)


def child_runs(summary: dict) -> list:
    c = mlflow.MlflowClient(tracking_uri=summary["tracking_uri"])
    return c.search_runs([summary["experiment_id"]], filter_string=f"tags.`mlflow.parentRunId` = '{summary['parent_run_id']}'",
                         max_results=1000)


def check_consistent(search_dir: Path, requested: int) -> dict:
    """Optuna, MLflow, the trial folders, search.json and the front agree; returns figures for the note."""
    summary = json.loads((search_dir / "search.json").read_text())
    trials = study_trials(summary)
    states = {t.number: t.state.name for t in trials}
    complete = [t for t in trials if t.state.name == "COMPLETE"]
    assert len(complete) == requested, states
    assert not [n for n, s in states.items() if s in ("RUNNING", "WAITING")], states
    interrupted = [t for t in trials if t.state.name == "FAIL"]
    assert all(t.user_attrs.get("state_reason") == "interrupted" for t in interrupted), states
    reruns = [t.user_attrs.get("rerun_of") for t in trials if t.user_attrs.get("rerun_of") is not None]
    assert sorted(reruns) == sorted(t.number for t in interrupted)  # each interrupted trial re-run exactly once
    configs = [json.dumps(t.params, sort_keys=True) for t in complete]
    assert len(set(configs)) == len(configs), "a configuration was trained to completion twice"
    # every training that finished is a COMPLETE trial: nothing trained twice, nothing lost
    finished_trainings = {int(p.parent.name[1:]) for p in (search_dir / "trials").glob("t*/result.json")}
    assert finished_trainings == {t.number for t in complete}
    runs = child_runs(summary)
    by_trial: dict[int, list] = {}
    for run in runs:
        by_trial.setdefault(int(run.data.tags["trial"]), []).append(run.info.status)
    assert all(s != "RUNNING" for v in by_trial.values() for s in v), by_trial
    for t in complete:
        assert by_trial.get(t.number) == ["FINISHED"], (t.number, by_trial)
    for t in interrupted:
        assert set(by_trial.get(t.number, ["KILLED"])) <= {"KILLED", "FAILED"}, (t.number, by_trial)
    assert summary["status"] == "finished" and summary["counts"]["COMPLETE"] == requested
    assert "RUNNING" not in summary["counts"]
    front = [row["trial"] for row in summary["front"]]
    assert len(front) == len(set(front)) and set(front) <= {t.number for t in complete}
    return {"requested": requested, "completed": len(complete), "interrupted": len(interrupted),
            "duplicated": len(configs) - len(set(configs)), "lost": len(finished_trainings - {t.number for t in complete})}


def test_three_sigkills_and_a_sigint_then_resume_end_exactly(tiny_model_dir, glue_dir, tmp_path):
    requested = 6
    tracking = f"sqlite:///{tmp_path / 'mlflow.db'}"
    cmd = search_args(tiny_model_dir, glue_dir, tmp_path, "k", tracking, "--trials", str(requested))
    resume = [sys.executable, "-m", "orchestrator.search", "--resume", "--name", "k", "--output-dir", str(tmp_path / "searches")]
    search_dir, log = tmp_path / "searches" / "k", tmp_path / "search.log"
    # (command, when to stop it: more result files than at its start / the restart printed, signal)
    sessions = [
        (cmd, 1, signal.SIGKILL),  # mid-run, trials in flight
        (resume, 2, signal.SIGKILL),  # mid-run again
        (resume, 0, signal.SIGKILL),  # during the restart (recovery, Ray start)
        (resume, 1, signal.SIGINT),  # Ctrl-C mid-run
    ]
    kills = 0
    for args, more, sig in sessions:
        base, size = results_written(search_dir), log.stat().st_size if log.exists() else 0
        proc = start(args, tmp_path, log)
        if more:
            ready = lambda: results_written(search_dir) >= base + more  # noqa: E731
        else:
            ready = lambda: "Resuming search" in log.read_text()[size:]  # noqa: E731
        if wait_for(proc, ready):
            stop(proc, sig)
            kills += 1
        else:
            proc.wait(timeout=60)
    proc = start(resume, tmp_path, log)
    assert proc.wait(timeout=400) == 0, log.read_text()[-3000:]
    assert kills >= 3, log.read_text()[-3000:]
    figures = check_consistent(search_dir, requested)
    assert figures["duplicated"] == 0 and figures["lost"] == 0
    print(f"\nkills {kills}, {figures}")


def failing_preset(path: Path, **config) -> Path:
    from increlora.presets import Preset, save_preset

    return save_preset(Preset(preset_version=1, method="increlora", task="sst2", config=config, name="fault"), path)


def test_failing_and_diverging_trials_say_why_and_the_search_completes(tiny_model_dir, glue_dir, tmp_path):
    diverge = failing_preset(tmp_path / "diverge.yaml", learning_rate=1e6, target_rank=2.0)
    raises = failing_preset(tmp_path / "raise.yaml", budget_params=1)  # below the initial adapters: raises in the trial
    tracking = f"sqlite:///{tmp_path / 'mlflow.db'}"
    cmd = search_args(tiny_model_dir, glue_dir, tmp_path, "faults", tracking, "--trials", "8",
                      "--preset", str(diverge), "--preset", str(raises))
    proc = subprocess.run(cmd, cwd=tmp_path, env=env(), capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    summary = json.loads((tmp_path / "searches" / "faults" / "search.json").read_text())
    assert summary["counts"] == {"COMPLETE": 6, "FAIL": 2}
    failed = {t.number: t.user_attrs["fail_reason"] for t in study_trials(summary) if t.state.name == "FAIL"}
    assert any("training diverged" in r and "lower the learning rate" in r for r in failed.values()), failed
    assert any("ConfigError" in r and "budget" in r for r in failed.values()), failed
    runs = {int(r.data.tags["trial"]): r for r in child_runs(summary)}
    for number, reason in failed.items():
        assert runs[number].info.status == "FAILED" and runs[number].data.tags["error"] == reason
        assert f"reason: {reason}" in proc.stdout
    assert "2 of 8 trials failed" in proc.stdout
    # --max-failures 1: the first failure ends the search, with the reason
    cmd = search_args(tiny_model_dir, glue_dir, tmp_path, "stop", tracking, "--trials", "6", "--max-concurrent", "1",
                      "--preset", str(raises), "--max-failures", "1")
    proc = subprocess.run(cmd, cwd=tmp_path, env=env(), capture_output=True, text=True, timeout=400)
    assert proc.returncode == 1
    last = proc.stderr.strip().splitlines()[-1]
    assert "stopped after 1 failed trials (--max-failures 1)" in last and "budget" in last
    summary = json.loads((tmp_path / "searches" / "stop" / "search.json").read_text())
    assert summary["status"] in ("stopped", "failed") and summary["counts"].get("COMPLETE", 0) < 6


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_mlflow_server(tmp_path: Path, port: int) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}",
         "--artifacts-destination", str(tmp_path / "artifacts"), "--host", "127.0.0.1", "--port", str(port),
         "--workers", "1"],
        cwd=tmp_path, env={**env(), "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
        stdout=open(tmp_path / "mlflow-server.log", "a"), stderr=subprocess.STDOUT, start_new_session=True)
    t0 = time.time()
    while time.time() - t0 < 90:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return proc
        except OSError:
            time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGKILL)
    raise RuntimeError("mlflow server did not start: " + (tmp_path / "mlflow-server.log").read_text()[-2000:])


def stop_server(proc: Optional[subprocess.Popen]) -> None:
    if proc is not None and proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


def test_a_tracking_outage_loses_no_trial_record(tiny_model_dir, glue_dir, tmp_path):
    port = free_port()
    server = start_mlflow_server(tmp_path, port)
    search = None
    try:
        uri = f"http://127.0.0.1:{port}"
        log = tmp_path / "search.log"
        search = start(search_args(tiny_model_dir, glue_dir, tmp_path, "outage", uri, "--trials", "6"), tmp_path, log)
        assert wait_for(search, lambda: "Search outage" in log.read_text(), timeout=120), log.read_text()[-2000:]
        stop_server(server)  # the server goes away before the first trial logs anything
        search_dir = tmp_path / "searches" / "outage"
        assert wait_for(search, lambda: results_written(search_dir) >= 3), log.read_text()[-2000:]
        spooled = len(list((search_dir / "trials").glob("t*/mlflow_spool.jsonl")))
        server = start_mlflow_server(tmp_path, port)  # back, with the same store
        assert search.wait(timeout=400) == 0, log.read_text()[-3000:]
        search = None
        assert spooled >= 3
        summary = json.loads((search_dir / "search.json").read_text())
        runs = child_runs(summary)
        finished = {int(r.data.tags["trial"]) for r in runs if r.info.status == "FINISHED"}
        assert len(runs) == 6 and finished == set(range(6))
        c = mlflow.MlflowClient(tracking_uri=uri)
        for run in runs:
            assert "final_glue_score" in run.data.metrics and any(k.startswith("rank/") for k in run.data.metrics)
            assert len(c.get_metric_history(run.info.run_id, "glue_score")) == summary["max_evaluations"]
            assert "result.json" in {a.path for a in c.list_artifacts(run.info.run_id)}
        assert not list((search_dir / "trials").glob("t*/mlflow_spool.jsonl"))  # every spool replayed
        assert "mlflow" not in summary["outputs"]
    finally:
        if search is not None and search.poll() is None:
            os.killpg(search.pid, signal.SIGKILL)
        stop_server(server)
