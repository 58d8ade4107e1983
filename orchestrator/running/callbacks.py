"""Ray Tune callbacks of the driver: MLflow bookkeeping of finished trials, the failure limit (the
progress display is :mod:`orchestrator.running.progress`).

Both are pickled into Ray's experiment state (for ``--resume``), so they hold only plain values.
"""

from __future__ import annotations

import warnings
from typing import Any, Optional

from ray import tune

from orchestrator.tracking import mlflow_runs
from orchestrator.reporting.heatmaps import log_heatmap
from orchestrator.records.trial_files import one_line
from orchestrator.running.trial_report import TRIAL_NUMBER_KEY, TrialReport


class TrialRunCloser(tune.Callback):
    """Draw each finished trial's heatmap; end the runs a worker could not end.

    A completed trial's worker has already ended its run FINISHED. A trial stopped by the
    scheduler (no ``final`` report) gets its last reported allocation logged and its run ended
    KILLED; an errored trial's run is ended FAILED.
    """

    def __init__(self, uri: str) -> None:
        self.uri = uri
        self.vmax = 1.0

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        try:
            self._close(trial)
        except Exception as exc:  # a tracking outage must not stop the search; finalize/sync catch up
            warnings.warn(f"MLflow: could not close the run of a finished trial ({one_line(exc)})", stacklevel=1)

    def _close(self, trial: Any) -> None:
        report = TrialReport.from_result(trial.last_result)
        if report is None or not report.mlflow_run_id:
            return
        c = mlflow_runs.client(self.uri)
        run_id, allocation = report.mlflow_run_id, report.allocation
        if not report.final and allocation:
            mlflow_runs.log_allocation(c, run_id, allocation, step=int(report.step or 0))
        if allocation:
            self.vmax = max(self.vmax, float(max(allocation.values())))
            log_heatmap(c, run_id, allocation, title=f"{report.run_name or run_id}: final ranks", vmax=self.vmax)
        mlflow_runs.terminate_if_running(c, run_id, "FINISHED" if report.final else "KILLED")

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        run_id = (trial.last_result or {}).get("mlflow_run_id")
        if run_id:
            try:
                mlflow_runs.terminate_if_running(mlflow_runs.client(self.uri), run_id, "FAILED")
            except Exception as exc:
                warnings.warn(f"MLflow: could not end the run of a failed trial ({one_line(exc)})", stacklevel=1)


class FailureLimit(tune.Callback):
    """``--max-failures K``: after the K-th failed trial the search stops (through :meth:`stopper`)."""

    def __init__(self, max_failures: Optional[int], search_dir: str) -> None:
        self.max_failures = max_failures
        self.search_dir = search_dir
        self.failed: list[int] = []

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.failed.append(int((trial.config or {}).get(TRIAL_NUMBER_KEY, -1)))

    @property
    def reached(self) -> bool:
        return self.max_failures is not None and len(self.failed) >= self.max_failures

    def stopper(self) -> Any:
        limit = self

        class _Stop(tune.stopper.Stopper):
            def __call__(self, trial_id: str, result: dict) -> bool:
                return False

            def stop_all(self) -> bool:
                return limit.reached

        return _Stop()
