"""MLflow for the search: the experiment, the parent run, nested trial runs, allocations, closing runs.

Layout: one experiment per task (``increlora-<task>``) with an explicit, absolute artifact
location; one parent run per search; one child run per trial (tag ``mlflow.parentRunId``),
created inside the Ray worker (:class:`orchestrator.tracking.trial_run.ChildRun`).

Child runs never stay RUNNING: the worker ends its run FINISHED (or FAILED on an exception); a
trial that the scheduler stops is killed inside ``tune.report``, so the driver-side callback
(:mod:`orchestrator.running.callbacks`) logs its last allocation and ends the run KILLED, and
:func:`close_dangling_runs` sweeps whatever is left when the search ends or is interrupted.
This module talks to MLflow only: no Ray, no plotting (heatmaps are drawn in
:mod:`orchestrator.reporting.heatmaps`).

Reference points: :func:`reference_points` reads the LoRA/AdaLoRA searches (parent runs tagged
``method``) of the same experiment and their finished trials' (score, adapter params), which the
Pareto plots draw next to a search's own trials.
"""

from __future__ import annotations

import json
import math
import re
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, Sequence
from urllib.parse import urlparse

from increlora.methods import METHODS  # noqa: F401  (imported for its registrations)
from increlora.naming import parse_key, rank_metric_name, type_key
from increlora.registry import REGISTRY
from orchestrator.tracking.probes import ProbeError, check_database, redact  # noqa: F401  (redact: part of this module's API)
from increlora.cli import UsageError, check_writable_dir
from orchestrator.tracking.lock import store_lock

if TYPE_CHECKING:  # pragma: no cover
    from mlflow import MlflowClient

PARENT_TAG = "mlflow.parentRunId"
NOTE_TAG = "mlflow.note.content"
HEATMAP_ARTIFACT = "allocation_heatmap.png"
ALLOCATION_ARTIFACT = "allocation.json"
HEATMAP_VMAX_TAG = "heatmap_vmax"
_MAX_PARAM_LEN = 6000
_MAX_BATCH = 100


class TrackingError(RuntimeError):
    """The tracking server or store cannot be used; the one-line message says why."""


@dataclass(frozen=True)
class TrackingInfo:
    """What a trial needs to log into the search's MLflow tree (picklable, sent to workers)."""

    uri: str
    experiment_id: str
    experiment_name: str
    parent_run_id: str


# ----------------------------------------------------------------------------------------------
# URIs and the experiment
# ----------------------------------------------------------------------------------------------


def default_tracking_uri(cwd: Path) -> str:
    """``sqlite:///<cwd>/mlflow.db`` (an absolute path, so workers in other folders agree)."""
    return f"sqlite:///{Path(cwd).resolve() / 'mlflow.db'}"


def absolute_uri(uri: str, cwd: Path) -> str:
    """``sqlite:///relative.db`` -> ``sqlite:////<cwd>/relative.db`` (Ray workers may run elsewhere)."""
    path = sqlite_path(uri)
    if path is not None and not path.is_absolute():
        query = uri.split("?", 1)[1] if "?" in uri else ""
        return f"sqlite:///{(Path(cwd) / path).resolve()}" + (f"?{query}" if query else "")
    return uri


def is_remote(uri: str) -> bool:
    return urlparse(uri).scheme in ("http", "https", "databricks")


def sqlite_path(uri: str) -> Optional[Path]:
    """The database file of a ``sqlite:///`` URI, else None."""
    if not uri.startswith("sqlite:///"):
        return None
    rest = uri[len("sqlite:///") :]
    return Path(rest.split("?", 1)[0]) if rest and rest != ":memory:" else None


def default_artifact_root(uri: str, cwd: Path) -> Optional[str]:
    """Absolute artifact root for a database store: ``<cwd>/mlartifacts`` (None for a server)."""
    if is_remote(uri):
        return None
    return str(Path(cwd).resolve() / "mlartifacts")


def check_tracking_uri(uri: str, *, timeout: float = 5.0) -> None:
    """Fail fast when the store cannot work: an http(s) server must answer ``/health`` within
    ``timeout`` seconds; a sqlite file's folder must exist; a database server must answer and let us
    in within ``timeout`` seconds (:func:`orchestrator.tracking.probes.check_database`); the file store is refused."""
    parsed = urlparse(uri)
    if parsed.scheme in ("http", "https"):
        url = uri.rstrip("/") + "/health"
        try:
            with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 - user-given URI
                if resp.status >= 400:
                    raise TrackingError(f"MLflow server {uri} answered HTTP {resp.status} on /health (--tracking-uri)")
        except urllib.error.HTTPError as exc:
            raise TrackingError(f"MLflow server {uri} answered HTTP {exc.code} on /health (--tracking-uri)") from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise TrackingError(f"MLflow tracking server {uri} is unreachable ({reason}); start it or pass another --tracking-uri") from None
        return
    if parsed.scheme in ("", "file"):
        raise TrackingError(
            f"--tracking-uri {uri}: MLflow's file store is in maintenance mode; use sqlite:///ABS/PATH/mlflow.db or an http server"
        )
    path = sqlite_path(uri)
    if uri.startswith("sqlite:") and path is None:
        raise TrackingError(f"--tracking-uri {uri}: use an absolute file, sqlite:////abs/path/mlflow.db")
    if path is not None:
        check_sqlite_file(path, "--tracking-uri")
    elif parsed.scheme not in ("databricks",):  # a database server: answers and lets us in, within the timeout
        try:
            check_database(uri, "--tracking-uri", timeout)
        except ProbeError as exc:
            raise TrackingError(str(exc)) from None


def check_sqlite_file(path: Path, flag: str) -> None:
    """A sqlite database file can be created or opened: its folder exists and is writable."""
    if not path.parent.is_dir():
        raise TrackingError(f"{flag} sqlite:///{path}: folder {path.parent} does not exist")
    if path.exists() and not path.is_file():
        raise TrackingError(f"{flag} sqlite:///{path}: {path} is not a file")
    try:
        check_writable_dir(path.parent, flag)
    except UsageError as exc:
        raise TrackingError(str(exc)) from None


_READY_STORES: set[str] = set()  # sqlite URIs this process has opened once (under the store lock)


def client(uri: str) -> "MlflowClient":
    """An MLflow client of ``uri``. The first client of a SQLite store in a process is made under the
    store's file lock (:func:`orchestrator.tracking.lock.store_lock`): making it creates or migrates the store's
    tables, which two processes must not do at once."""
    from mlflow import MlflowClient

    path = sqlite_path(uri)
    if path is None or uri in _READY_STORES:
        return MlflowClient(tracking_uri=uri)

    with store_lock(path):
        c = MlflowClient(tracking_uri=uri)  # MLflow opens (creating or migrating) the store here
    _READY_STORES.add(uri)
    return c


def ensure_experiment(uri: str, name: str, artifact_root: Optional[str]) -> str:
    """The id of experiment ``name``, created with ``artifact_location=<artifact_root>/<name>``."""
    c = client(uri)
    exp = c.get_experiment_by_name(name)
    if exp is not None:
        if exp.lifecycle_stage == "deleted":
            raise TrackingError(f"MLflow experiment {name!r} is deleted; restore it or pass another --experiment")
        return exp.experiment_id
    location = None if artifact_root is None else str(Path(artifact_root) / name)
    try:
        return c.create_experiment(name, artifact_location=location)
    except Exception:  # created concurrently by another search
        exp = c.get_experiment_by_name(name)
        if exp is None:
            raise
        return exp.experiment_id


# ----------------------------------------------------------------------------------------------
# Small helpers
# ----------------------------------------------------------------------------------------------


def param_value(value: Any) -> str:
    text = json.dumps(value) if isinstance(value, (list, dict)) else str(value)
    return text if len(text) <= _MAX_PARAM_LEN else text[: _MAX_PARAM_LEN - 3] + "..."


def log_params(c: "MlflowClient", run_id: str, params: dict[str, Any]) -> None:
    """Log ``params`` in batches of 100, values as strings (truncated to MLflow's 6000 chars)."""
    from mlflow.entities import Param

    items = [Param(str(k)[:250], param_value(v)) for k, v in params.items()]
    for i in range(0, len(items), _MAX_BATCH):
        c.log_batch(run_id, params=items[i : i + _MAX_BATCH])


def log_metrics(c: "MlflowClient", run_id: str, metrics: dict[str, Any], *, step: int = 0,
                timestamp: Optional[int] = None) -> None:
    """Log the finite numeric entries of ``metrics`` at ``step`` (``timestamp`` in ms, default now), batched."""
    from mlflow.entities import Metric

    now = int(time.time() * 1000) if timestamp is None else int(timestamp)
    items = []
    for k, v in metrics.items():
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            continue
        if math.isfinite(float(v)):
            items.append(Metric(str(k)[:250], float(v), now, int(step)))
    for i in range(0, len(items), 1000):
        c.log_batch(run_id, metrics=items[i : i + 1000])


def log_json_artifact(c: "MlflowClient", run_id: str, payload: Any, name: str, artifact_path: Optional[str] = None) -> None:
    with tempfile.TemporaryDirectory(prefix="increlora-mlflow-") as tmp:
        path = Path(tmp) / name
        path.write_text(json.dumps(payload, indent=2, sort_keys=True, default=str))
        c.log_artifact(run_id, str(path), artifact_path)


def run_status(c: "MlflowClient", run_id: str) -> Optional[str]:
    try:
        return c.get_run(run_id).info.status
    except Exception:
        return None


def terminate_if_running(c: "MlflowClient", run_id: str, status: str) -> bool:
    """End ``run_id`` with ``status`` if it is still RUNNING; True if it was ended here."""
    if run_status(c, run_id) == "RUNNING":
        c.set_terminated(run_id, status)
        return True
    return False


def allocation_metrics(allocation: dict[str, int]) -> dict[str, int]:
    """``{module: rank}`` -> the rank per module type (``alloc/1q`` ... ``alloc/6f2``, ``alloc/total``), per
    layer (``alloc_layer/L03``) and per module (``rank/L03.1q``): three groups of charts in MLflow. The totals
    sort right after ``adapter_params`` in MLflow's alphabetical lists, so the compare view of a few trials
    shows how each spread its rank in its first rows."""
    out: dict[str, int] = {}
    for name, r in allocation.items():
        layer, mtype = parse_key(name)
        out[rank_metric_name(name)] = int(r)
        if mtype is not None:
            key = f"alloc/{type_key(mtype)}"
            out[key] = out.get(key, 0) + int(r)
        if layer is not None:
            key = f"alloc_layer/L{layer:02d}"
            out[key] = out.get(key, 0) + int(r)
    out["alloc/total"] = int(sum(allocation.values()))
    return out


def log_allocation(c: "MlflowClient", run_id: str, allocation: dict[str, int], *, step: int = 0) -> None:
    """The final rank allocation: the ``alloc/``, ``alloc_layer/`` and ``rank/`` metrics and ``allocation.json``."""
    if not allocation:
        return
    log_metrics(c, run_id, allocation_metrics(allocation), step=step)
    log_json_artifact(c, run_id, {k: int(v) for k, v in allocation.items()}, ALLOCATION_ARTIFACT)


# ----------------------------------------------------------------------------------------------
# Runs
# ----------------------------------------------------------------------------------------------


def start_parent_run(uri: str, experiment_id: str, *, name: str, tags: dict[str, str]) -> str:
    """Create the search's parent run (RUNNING) and return its id."""
    run = client(uri).create_run(experiment_id, run_name=name, tags={"search": name, **tags})
    return run.info.run_id


def find_parent_run(uri: str, experiment_id: str, *, name: str, search_dir: str, since: float) -> str:
    """The parent run made for the search folder ``search_dir`` at or after ``since`` (Unix seconds) and
    not yet named by its record (a stop between the two), else ``""``; the latest when there are several."""
    c = client(uri)
    runs = c.search_runs([experiment_id], filter_string=f"tags.search = '{name}'", max_results=100,
                         order_by=["attributes.start_time DESC"])
    for run in runs:
        tags = run.data.tags
        if (tags.get("search_dir") == search_dir and PARENT_TAG not in tags
                and run.info.start_time >= int(since * 1000) - 2000):
            return run.info.run_id
    return ""


def reopen_run(uri: str, run_id: str) -> None:
    """Mark a resumed search's parent run RUNNING again."""
    client(uri).update_run(run_id, status="RUNNING")


def child_runs(uri: str, experiment_id: str, parent_run_id: str) -> list[Any]:
    """All runs nested under ``parent_run_id``."""
    c = client(uri)
    runs, token = [], None
    while True:
        page = c.search_runs(
            [experiment_id], filter_string=f"tags.`{PARENT_TAG}` = '{parent_run_id}'", max_results=500, page_token=token
        )
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def close_dangling_runs(uri: str, experiment_id: str, parent_run_id: str, status: str = "KILLED") -> int:
    """End every child of ``parent_run_id`` still RUNNING with ``status``; returns how many."""
    c = client(uri)
    n = 0
    for run in child_runs(uri, experiment_id, parent_run_id):
        if run.info.status == "RUNNING":
            c.set_terminated(run.info.run_id, status)
            n += 1
    return n


def baseline_methods() -> tuple[str, ...]:
    """The registered reference methods (LoRA, AdaLoRA, DoRA, ...), drawn next to a searched method's front."""
    return tuple(name for name, spec in REGISTRY.items() if spec.baseline)


def reference_points(
    uri: str,
    experiment_id: str,
    *,
    exclude_parent: Optional[str] = None,
    methods: Optional[Sequence[str]] = None,
) -> dict[str, list[tuple[float, float]]]:
    """Baseline points for the Pareto plot: ``{"LoRA": [(score, adapter_params), ...], ...}``.

    Reads every other search (parent run, tag ``method`` in ``methods``) of the experiment and
    the FINISHED trials nested under it; the score is the trial's ``final_glue_score`` (its
    ``best_glue_score`` when that search's objective was ``best``). Empty when there are none.
    """
    c = client(uri)
    out: dict[str, list[tuple[float, float]]] = {}
    for method in baseline_methods() if methods is None else methods:
        parents = c.search_runs([experiment_id], filter_string=f"tags.method = '{method}'", max_results=500)
        for parent in parents:
            if parent.info.run_id == exclude_parent or PARENT_TAG in parent.data.tags:
                continue
            key = "best_glue_score" if parent.data.params.get("objective") == "best" else "final_glue_score"
            for run in child_runs(uri, experiment_id, parent.info.run_id):
                m = run.data.metrics
                if run.info.status != "FINISHED" or key not in m or "adapter_params" not in m:
                    continue
                score, params = float(m[key]), float(m["adapter_params"])
                if math.isfinite(score) and math.isfinite(params):
                    out.setdefault(REGISTRY[method].label if method in REGISTRY else method, []).append((score, params))
    return out
