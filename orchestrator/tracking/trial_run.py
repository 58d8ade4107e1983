"""A trial's MLflow run, driven from the Ray worker, that never loses a record.

:class:`ChildRun` logs through an explicit ``MlflowClient`` (no fluent global state, so reused actors
never mix runs). When the tracking server cannot be reached - at the start of the trial or at any
later call - the call and every later one of that trial are appended to the trial's spool,
``trials/tNNN/mlflow_spool.jsonl``, and training goes on. :func:`replay_spools` sends the spooled
calls to MLflow in order (creating the run if it never was): the search does it when it finalises,
and ``python -m orchestrator.sync --search NAME`` does it later, once the server is back. The run's
id is kept in ``trials/tNNN/mlflow_run_id.txt`` as soon as the run exists.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, Optional

from orchestrator.tracking import mlflow_runs
from orchestrator.tracking.mlflow_runs import PARENT_TAG, TrackingInfo

SPOOL_FILE = "mlflow_spool.jsonl"
RUN_ID_FILE = "mlflow_run_id.txt"
# A worker gives a missing tracking server a few seconds, not MLflow's default minutes of retries.
MLFLOW_RETRY_ENV = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_TIMEOUT": "20"}


class ChildRun:
    """A trial's nested run (see the module docstring); ``run_id`` is None while it exists only in the spool."""

    def __init__(self, info: TrackingInfo, run_id: Optional[str], folder: Optional[Path] = None) -> None:
        self.info = info
        self.run_id = run_id
        self.folder = Path(folder) if folder is not None else None
        self._client = mlflow_runs.client(info.uri)
        self.spooling = False

    @classmethod
    def start(cls, info: TrackingInfo, *, run_name: str, tags: Optional[dict[str, str]] = None,
              folder: Optional[Path] = None) -> "ChildRun":
        tags = {PARENT_TAG: info.parent_run_id, **(tags or {})}
        run = cls(info, None, folder)
        try:
            run.run_id = run._client.create_run(info.experiment_id, run_name=run_name, tags=tags).info.run_id
            run._keep_run_id()
        except Exception:
            if folder is None:
                raise
            run._spool({"op": "create", "run_name": run_name, "tags": tags})
        return run

    # ------------------------------------------------------------------ calls
    def log_params(self, params: dict[str, Any]) -> None:
        self._call({"op": "params", "params": {str(k): mlflow_runs.param_value(v) for k, v in params.items()}})

    def log_metrics(self, metrics: dict[str, Any], *, step: int = 0) -> None:
        self._call({"op": "metrics", "metrics": dict(metrics), "step": int(step), "timestamp": int(time.time() * 1000)})

    def log_allocation(self, allocation: dict[str, int], *, step: int = 0) -> None:
        self._call({"op": "allocation", "allocation": dict(allocation), "step": int(step)})

    def log_json(self, payload: Any, name: str, artifact_path: Optional[str] = None) -> None:
        self._call({"op": "json", "payload": payload, "name": name, "artifact_path": artifact_path})

    def log_artifacts(self, local_dir: str, artifact_path: str) -> None:
        self._call({"op": "artifacts", "local_dir": str(local_dir), "artifact_path": artifact_path})

    def set_tags(self, tags: dict[str, Any]) -> None:
        self._call({"op": "tags", "tags": {k: str(v) for k, v in tags.items()}})

    def finish(self, status: str = "FINISHED") -> bool:
        """End the run with ``status`` unless the driver already ended it (an interrupted search
        marks its runs KILLED, and a worker finishing late must not turn them FINISHED)."""
        return bool(self._call({"op": "finish", "status": status}))

    # ------------------------------------------------------------------ plumbing
    def _call(self, op: dict[str, Any]) -> Any:
        if self.spooling or self.run_id is None:
            self._spool(op)
            return None
        try:
            return apply(self._client, self.run_id, op)
        except Exception:
            if self.folder is None:
                raise
            self._spool({"op": "run", "run_id": self.run_id})
            self._spool(op)
            return None

    def _spool(self, op: dict[str, Any]) -> None:
        self.spooling = True
        assert self.folder is not None
        self.folder.mkdir(parents=True, exist_ok=True)
        with open(self.folder / SPOOL_FILE, "a") as fh:
            fh.write(json.dumps(op, default=str) + "\n")
            fh.flush()
            os.fsync(fh.fileno())

    def _keep_run_id(self) -> None:
        if self.folder is not None and self.run_id:
            self.folder.mkdir(parents=True, exist_ok=True)
            (self.folder / RUN_ID_FILE).write_text(self.run_id + "\n")


def apply(c: Any, run_id: str, op: dict[str, Any]) -> Any:
    """Send one (live or spooled) call to MLflow."""
    kind = op["op"]
    if kind == "params":
        mlflow_runs.log_params(c, run_id, op["params"])
    elif kind == "metrics":
        mlflow_runs.log_metrics(c, run_id, op["metrics"], step=op["step"], timestamp=op.get("timestamp"))
    elif kind == "allocation":
        mlflow_runs.log_allocation(c, run_id, op["allocation"], step=op["step"])
    elif kind == "json":
        mlflow_runs.log_json_artifact(c, run_id, op["payload"], op["name"], op.get("artifact_path"))
    elif kind == "artifacts":
        if Path(op["local_dir"]).is_dir():
            c.log_artifacts(run_id, op["local_dir"], op["artifact_path"])
    elif kind == "tags":
        for k, v in op["tags"].items():
            c.set_tag(run_id, k, v)
    elif kind == "finish":
        return mlflow_runs.terminate_if_running(c, run_id, op["status"])
    return None


def read_run_id(folder: Path) -> Optional[str]:
    try:
        return (Path(folder) / RUN_ID_FILE).read_text().strip() or None
    except OSError:
        return None


def replay_spool(info: TrackingInfo, folder: Path) -> Optional[str]:
    """Send a trial's spooled calls to MLflow in order; returns the run id (None: nothing spooled).
    The spool is renamed ``*.replayed`` once every call went through."""
    path = Path(folder) / SPOOL_FILE
    if not path.is_file():
        return None
    c = mlflow_runs.client(info.uri)
    run_id = read_run_id(folder)
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        op = json.loads(line)
        if op["op"] == "create":
            if run_id is None:
                run_id = c.create_run(info.experiment_id, run_name=op["run_name"], tags=op["tags"]).info.run_id
                (Path(folder) / RUN_ID_FILE).write_text(run_id + "\n")
        elif op["op"] == "run":
            run_id = run_id or op["run_id"]
        elif run_id is not None:
            apply(c, run_id, op)
    path.rename(path.with_name(SPOOL_FILE + ".replayed"))
    return run_id


def replay_spools(record: Any) -> int:
    """Replay every trial spool of a search; returns how many trials had one."""
    info = TrackingInfo(record.tracking_uri, record.experiment_id, record.experiment_name, record.parent_run_id)
    n = 0
    for folder in sorted((Path(record.search_dir) / "trials").glob("t*")):
        if (folder / SPOOL_FILE).is_file():
            replay_spool(info, folder)
            n += 1
    return n
