"""Live progress of a search, from its first second: trials done / running / failed, the best score so
far, elapsed time and an estimate of what is left.

On a terminal :class:`SearchProgress` keeps a live panel (rich) with one row per running trial; when the
output is a file or a pipe it prints a status line at the start, one line per finished trial (a failed
trial's with its reason) and a status line at most every ``interval`` seconds, so logs stay short.
"""

from __future__ import annotations

import sys
import time
from typing import Any, Optional

from ray import tune

from orchestrator.reporting.console import say
from orchestrator.records.seed_runs import CONFIRM_OF_KEY, SEED_INDEX_KEY
from orchestrator.records.trial_files import read_error
from orchestrator.running.trial_report import TRIAL_NUMBER_KEY, TrialReport


def _clock(seconds: float) -> str:
    seconds = int(max(0, seconds))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


class SearchProgress(tune.Callback):
    """See the module docstring. ``total``: trials of this session; ``max_evaluations``: per trial."""

    def __init__(self, total: int, max_evaluations: int, search_dir: Optional[str] = None, *,
                 live: Optional[bool] = None, interval: float = 60.0) -> None:
        self.total = total
        self.max_evaluations = max(1, int(max_evaluations))
        self.search_dir = search_dir
        self.live_wanted = sys.stdout.isatty() if live is None else live
        self.interval = interval
        self.started = time.time()
        self.last_status = 0.0
        self.states: dict[str, int] = {"COMPLETE": 0, "PRUNED": 0, "FAILED": 0}
        self.running: dict[str, dict[str, Any]] = {}  # ray trial id -> {number, name, evals, score, since}
        self.best: Optional[tuple[float, int, int]] = None  # (score, params, trial number)
        self._live: Any = None

    def __getstate__(self) -> dict[str, Any]:  # Ray pickles callbacks with its experiment state
        state = dict(self.__dict__)
        state["_live"] = None
        return state

    # ------------------------------------------------------------------ figures
    @property
    def done(self) -> int:
        return sum(self.states.values())

    def eta(self) -> Optional[float]:
        """Seconds left: elapsed time per trial-equivalent (finished trials plus the running ones' share of
        their evaluations) times what is left; None before any evaluation."""
        progress = self.done + sum(min(1.0, r["evals"] / self.max_evaluations) for r in self.running.values())
        if progress <= 0:
            return None
        return (time.time() - self.started) * (self.total - progress) / progress

    def status(self) -> str:
        s = self.states
        eta = self.eta()
        best = f"best {self.best[0]:.2f} @ {self.best[1]:,} params (t{self.best[2]:03d})" if self.best else "no score yet"
        return (f"{self.done}/{self.total} trials done ({s['COMPLETE']} complete, {s['PRUNED']} pruned, {s['FAILED']} failed), "
                f"{len(self.running)} running; {best}; elapsed {_clock(time.time() - self.started)}, "
                f"ETA {_clock(eta) if eta is not None else '-'}")

    def _panel(self) -> Any:
        from rich.markup import escape
        from rich.table import Table

        table = Table(title=escape(self.status()), title_justify="left", expand=False)
        for col in ("trial", "run", "evaluations", "last score", "running for"):
            table.add_column(col, justify="left" if col == "run" else "right")
        for r in sorted(self.running.values(), key=lambda r: r["number"]):
            table.add_row(str(r["number"]), escape(str(r["name"])), f"{r['evals']}/{self.max_evaluations}",
                          "-" if r["score"] is None else f"{r['score']:.2f}", _clock(time.time() - r["since"]))
        return table

    def _show(self, force: bool = False) -> None:
        if self._live is not None:
            self._live.update(self._panel())
        elif force or time.time() - self.last_status >= self.interval:
            self.last_status = time.time()
            say(f"[progress] {self.status()}")

    # ------------------------------------------------------------------ Ray Tune hooks
    def setup(self, **info: Any) -> None:
        self.started = time.time()
        if self.live_wanted:
            from rich.live import Live

            self._live = Live(self._panel(), refresh_per_second=1, transient=False, redirect_stdout=True,
                              redirect_stderr=False)
            self._live.start()
        else:
            self._show(force=True)

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        number = int((trial.config or {}).get(TRIAL_NUMBER_KEY, -1))
        self.running[trial.trial_id] = {"number": number, "name": f"t{number:03d}", "evals": 0, "score": None,
                                        "since": time.time()}
        self._show()

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        report = TrialReport.from_result(result)
        row = self.running.get(trial.trial_id)
        if report is None or row is None:
            return
        row.update(evals=min(report.evaluation, self.max_evaluations), score=report.glue_score,
                   name=report.run_name or row["name"])
        self._show()

    def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
        self._show()

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        report = TrialReport.from_result(trial.last_result)
        state = "COMPLETE" if report and report.final else "PRUNED"
        if report and report.final and report.finite():
            candidate = (float(report.glue_score), int(report.adapter_params), report.trial_number)
            if self.best is None or (candidate[0], -candidate[1]) > (self.best[0], -self.best[1]):
                self.best = candidate
        self._finish(trial, state, report)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._finish(trial, "FAILED", TrialReport.from_result(trial.last_result))

    def _finish(self, trial: Any, state: str, report: Optional[TrialReport]) -> None:
        self.running.pop(trial.trial_id, None)
        self.states[state] += 1
        number = int((trial.config or {}).get(TRIAL_NUMBER_KEY, -1))
        score = f"{report.glue_score:6.2f}" if report else "     -"
        params = f"{int(report.adapter_params):>10,}" if report else "         -"
        line = (f"[{self.done:>3}/{self.total}] trial {number:>3} {state:<8} score {score}  params {params}  "
                f"{report.run_name if report else ''}  ({(time.time() - self.started) / 60:.1f} min)")
        if state == "FAILED":
            reason = read_error(self.search_dir, number, trial.trial_id) if self.search_dir else None
            line += f"\n      reason: {reason or 'see ' + str(getattr(trial, 'path', None) or 'the Ray trial folder')}"
        if self._live is not None:
            self._live.console.print(line, markup=False, highlight=False)  # a reason may hold [brackets]
        else:
            say(line)
        self._show(force=self._live is None and self.done == self.total)

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        if self._live is not None:
            self._live.update(self._panel())
            self._live.stop()
            self._live = None


class ConfirmProgress(tune.Callback):
    """The confirmation stage's progress: one line per finished run,
    ``  confirm t007 seed 2: score 8.31 (3/12, 0:04:10)``. ``configs``: the stage's job configs."""

    def __init__(self, total: int, configs: list[dict[str, Any]]) -> None:
        self.total = total
        self.configs = configs
        self.done = 0
        self.started = time.time()

    def _line(self, trial: Any, text: str) -> None:
        self.done += 1
        job = self.configs[int((trial.config or {}).get("job", 0))]
        say(f"  confirm t{int(job[CONFIRM_OF_KEY]):03d} seed {int(job[SEED_INDEX_KEY])}: {text} "
            f"({self.done}/{self.total}, {_clock(time.time() - self.started)})")

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        report = TrialReport.from_result(trial.last_result)
        self._line(trial, f"score {report.glue_score:.2f}" if report is not None and report.final else "stopped")

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._line(trial, "failed")
