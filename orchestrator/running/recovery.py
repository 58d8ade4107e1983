"""Exact resume: settle a stopped search from its own records before it continues.

A search can stop at any moment: SIGKILL, SIGINT, a lost node. Its state lives in three places - the
Optuna study (one trial per suggestion, told when the trial ended), the search folder (each trial's
``result.json``, written by the trainer the moment training finished) and MLflow (one run per trial).
Ray's experiment snapshot is not trusted. :func:`recover` makes them agree:

- a trial still RUNNING in the study whose ``result.json`` exists finished training: it is told
  COMPLETE with the objectives of that file (taken as is), its MLflow run gets the final record if it
  lacks it and ends FINISHED;
- a trial still RUNNING without a result was cut off: it is told FAIL (``state_reason: interrupted``),
  its MLflow run ends KILLED, and its configuration is enqueued once more (``rerun_of``), so it is
  trained again exactly once;
- an interrupted trial whose re-run is missing (a stop during a previous recovery) gets one.

Every step is idempotent, so a kill during recovery is recovered by the next ``--resume``. The search
then needs ``requested - finished`` more trials (:meth:`orchestrator.records.results.SearchResults.finished`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Optional

from orchestrator.records.record import SearchRecord
from increlora.naming import compact_allocation
from orchestrator.tracking import mlflow_runs
from orchestrator.records.results import load_results, load_study
from orchestrator.records.trial_files import read_result
from orchestrator.tracking.trial_run import ChildRun
from search_spaces import PRESET_CONFIG_ATTR, PRESET_NAME_ATTR, PROTOCOL_KNOBS

INTERRUPTED = "interrupted"
RECOVERED = "recovered"


@dataclass
class Recovery:
    """What :func:`recover` did, and how many trials the search still needs."""

    recovered: list[int] = field(default_factory=list)  # RUNNING -> COMPLETE from result.json
    interrupted: list[int] = field(default_factory=list)  # RUNNING -> FAIL (interrupted)
    reruns: list[int] = field(default_factory=list)  # interrupted trials enqueued again
    closed_runs: int = 0  # MLflow runs ended KILLED
    finished: int = 0
    remaining: int = 0

    def describe(self) -> str:
        parts = [f"{self.finished} trials finished"]
        if self.recovered:
            parts.append(f"{len(self.recovered)} recovered from their result files ({_numbers(self.recovered)})")
        if self.interrupted:
            parts.append(f"{len(self.interrupted)} interrupted ({_numbers(self.interrupted)})")
        if self.reruns:
            parts.append(f"{len(self.reruns)} to train again ({_numbers(self.reruns)})")
        return "; ".join(parts) + f"; {self.remaining} to run"


def _numbers(numbers: list[int]) -> str:
    return ", ".join(f"t{n:03d}" for n in numbers)


def recover(record: SearchRecord) -> Recovery:
    """Settle the study, the trial folders and MLflow (see the module docstring)."""
    import optuna
    from optuna.trial import TrialState


    out = Recovery()
    study = load_study(record)
    runs = _trial_runs(record)
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        result = read_result(record.search_dir, t.number)
        values = _objectives(record, result) if result else None
        handle = optuna.trial.Trial(study, t._trial_id)
        if values is not None:
            _complete_from_result(record, handle, t, result, runs.get(t.number))
            study.tell(t.number, values, state=TrialState.COMPLETE)
            out.recovered.append(t.number)
        else:
            handle.set_user_attr("state_reason", INTERRUPTED)
            study.tell(t.number, None, state=TrialState.FAIL)
            out.interrupted.append(t.number)
    rerun_of = {t.user_attrs.get("rerun_of") for t in study.get_trials(deepcopy=False)}
    for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL,)):
        if t.user_attrs.get("state_reason") == INTERRUPTED and t.number not in rerun_of:
            study.enqueue_trial(dict(t.params), user_attrs=_rerun_attrs(t), skip_if_exists=False)
            out.reruns.append(t.number)
    if record.parent_run_id and record.experiment_id:
        out.closed_runs = mlflow_runs.close_dangling_runs(record.tracking_uri, record.experiment_id, record.parent_run_id,
                                                          "KILLED")
    results = load_results(record)
    out.finished = results.finished()
    out.remaining = max(0, int(record.trials) - out.finished)
    return out


def _objectives(record: SearchRecord, result: dict[str, Any]) -> Optional[list[float]]:
    score = result.get("glue_score" if record.objective == "final" else "best_glue_score")
    try:
        values = [float(score), float(result["adapter_params"])]
    except (TypeError, ValueError, KeyError):
        return None
    return values if all(math.isfinite(v) for v in values) else None


def _rerun_attrs(t: Any) -> dict[str, Any]:
    """The interrupted trial's knobs (all of them, as a preset's) and where the re-run comes from."""
    config = {k: v for k, v in (t.user_attrs.get("config") or {}).items() if k not in PROTOCOL_KNOBS}
    attrs: dict[str, Any] = {PRESET_CONFIG_ATTR: config, "rerun_of": t.number}
    if t.user_attrs.get(PRESET_NAME_ATTR):
        attrs[PRESET_NAME_ATTR] = t.user_attrs[PRESET_NAME_ATTR]
    return attrs


def _trial_runs(record: SearchRecord) -> dict[int, Any]:
    """Trial number -> its MLflow run (the latest when a number has several); {} without MLflow."""
    if not record.parent_run_id or not record.experiment_id:
        return {}
    out: dict[int, Any] = {}
    for run in mlflow_runs.child_runs(record.tracking_uri, record.experiment_id, record.parent_run_id):
        try:
            number = int(run.data.tags.get("trial", ""))
        except ValueError:
            continue
        if number not in out or run.info.start_time > out[number].info.start_time:
            out[number] = run
    return out


def _complete_from_result(record: SearchRecord, handle: Any, t: Any, result: dict[str, Any], run: Any) -> None:
    """Record a trial that finished training before the stop, as the searcher would have."""
    from orchestrator.running.trainable import run_name

    name = run_name(record.task, record.method, t.number, dict(t.user_attrs.get("config") or {}))
    attrs = {
        "state_reason": RECOVERED,
        "run_name": name,
        "last_glue_score": result.get("glue_score"),
        "last_adapter_params": result.get("adapter_params"),
        "best_glue_score": result.get("best_glue_score"),
        "step": result.get("steps"),
        "peak_trainable_params": result.get("peak_trainable_params"),
        "head_params": result.get("head_params"),
        "wall_time_s": result.get("wall_time_s"),
        "allocation": compact_allocation(result.get("allocation") or {}),
    }
    if run is not None:
        attrs["mlflow_run_id"] = run.info.run_id
        _finish_run(record, run, result)
    for key, value in attrs.items():
        if value is not None and not (isinstance(value, float) and not math.isfinite(value)):
            handle.set_user_attr(key, value)


def _finish_run(record: SearchRecord, run: Any, result: dict[str, Any]) -> None:
    """Give a recovered trial's MLflow run its final record (unless it has it) and end it FINISHED."""
    from orchestrator.running.trainable import log_result

    child = ChildRun(mlflow_runs.TrackingInfo(record.tracking_uri, record.experiment_id, record.experiment_name,
                                              record.parent_run_id), run.info.run_id)
    if "final_glue_score" not in run.data.metrics:
        log_result(child, result, float(result.get("wall_time_s") or 0.0))
    mlflow_runs.client(record.tracking_uri).set_terminated(run.info.run_id, "FINISHED")
