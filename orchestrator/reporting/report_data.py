"""What the search report shows, collected once: the search's results (:mod:`orchestrator.records.results`),
reference points from MLflow, growth timelines, and the rows both renderers print.

:func:`collect` reads a search into :class:`ReportData`; :mod:`orchestrator.reporting.report_html` and
:mod:`orchestrator.reporting.report_markdown` render it; :mod:`orchestrator.report` is the CLI.
"""

from __future__ import annotations

import json
import math
import shlex
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

from increlora.naming import allocation_summary
from increlora.naming import MODULE_TYPE_LABELS, MODULE_TYPES
from orchestrator.records.pareto import hypervolume_text
from orchestrator.records.results import SearchResults
from orchestrator.records.seed_stats import distinguishable_text
from orchestrator.records.trial_record import ConfigurationRecord, TrialRecord
from orchestrator.tracking import mlflow_runs
from orchestrator.reporting.console import mlflow_ui_command
from orchestrator.reporting.finalize import baseline_reference
from orchestrator.records.record import RecordError, SearchRecord, find_search
from orchestrator.records.results import load_results
from orchestrator.records.importance import Importance
from orchestrator.reporting.plots import format_count


class ReportError(RuntimeError):
    """The search cannot be found or read; the one-line message says why."""


@dataclass
class ReportData:
    results: SearchResults
    reference: dict[str, list[tuple[float, float]]] = field(default_factory=dict)
    timelines: dict[int, dict[str, Any]] = field(default_factory=dict)  # trial number -> result record
    notes: list[str] = field(default_factory=list)

    @property
    def summary(self) -> dict[str, Any]:
        return self.results.record.to_dict()

    @property
    def search_dir(self) -> Path:
        return self.results.record.dir

    @property
    def score_name(self) -> str:
        """``GLUE score``, or own data's metric (``accuracy``, ``F1``...)."""
        return self.results.record.score_name

    @property
    def records(self) -> list[TrialRecord]:
        return self.results.trials

    @property
    def done(self) -> list[ConfigurationRecord]:
        """The configurations the front ranks (:attr:`orchestrator.records.results.SearchResults.pool`; with the
        confirmation stage, means over seeds); ``front_idx`` and ``picks`` index these."""
        return self.results.pool

    @property
    def front_idx(self) -> list[int]:
        return self.results.front

    @property
    def picks(self) -> dict[str, int]:
        return self.results.picks

    @property
    def vmax(self) -> float:
        return self.results.vmax

    @property
    def front_rows(self) -> list[dict[str, Any]]:
        return self.results.front_rows()

    def record(self, number: int) -> TrialRecord:
        return self.results.trial(number)


def _result_record(uri: Optional[str], search_dir: Path, rec: TrialRecord) -> Optional[dict[str, Any]]:
    """The trainer's result of a trial: ``trials/tNNN/result.json``, else the run's artifact."""
    number = int(rec.number)
    path = search_dir / "trials" / (f"t{number:03d}" if number >= 0 else "t-manual") / "result.json"
    try:
        if path.is_file():
            return json.loads(path.read_text())
    except (OSError, ValueError):
        pass
    run_id = rec.mlflow_run_id
    if not run_id or not uri or not mlflow_readable(uri):
        return None
    try:
        from mlflow import artifacts

        with tempfile.TemporaryDirectory(prefix="increlora-report-") as tmp:
            local = artifacts.download_artifacts(run_id=run_id, artifact_path="result.json", dst_path=tmp,
                                                 tracking_uri=uri)
            return json.loads(Path(local).read_text())
    except Exception:
        return None


def mlflow_readable(uri: str) -> bool:
    path = mlflow_runs.sqlite_path(uri)
    if path is not None:
        return path.is_file()
    try:
        mlflow_runs.check_tracking_uri(uri, timeout=3.0)
    except mlflow_runs.TrackingError:
        return False
    return True


def collect(search: str, *, output_dir: str = "searches", trials: Sequence[int] = (), use_mlflow: bool = True) -> ReportData:
    """Read a search (its folder or name) into a :class:`ReportData`; raises ReportError."""
    try:
        record = SearchRecord.load(find_search(search, output_dir))
        results = load_results(record)
    except RecordError as exc:
        raise ReportError(str(exc)) from None
    except ReportError:
        raise
    except Exception as exc:  # an unreachable or broken study storage
        raise ReportError(f"cannot read the Optuna study of {search}: {type(exc).__name__}: {exc}") from None
    data = ReportData(results=results)
    uri = record.tracking_uri if use_mlflow else None
    if uri and mlflow_readable(uri):
        data.reference = baseline_reference(record)
    numbers = list(trials)
    known = {r.number for r in results.trials}
    for n in numbers:
        if n not in known:
            raise ReportError(f"--trial {n}: the search has no trial {n} (trials: {', '.join(map(str, sorted(known)))})")
    if not numbers:
        for label in ("best", "knee", "smallest"):
            if label in results.picks and results.pool[results.picks[label]].number not in numbers:
                numbers.append(results.pool[results.picks[label]].number)
    for n in numbers:
        result = _result_record(uri, record.dir, results.trial(n))
        if result is None:
            data.notes.append(f"trial {n}: no result.json (trials/t{n:03d}/ or its MLflow run), so no growth timeline")
        else:
            data.timelines[n] = result
    return data


# ----------------------------------------------------------------------------------------------
# Formatting helpers and the rows both renderers show
# ----------------------------------------------------------------------------------------------


def num(value: Any, digits: int = 2) -> str:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return "-"
    return f"{v:.{digits}f}" if math.isfinite(v) else "-"


def count(value: Any) -> str:
    try:
        return f"{int(value):,}"
    except (TypeError, ValueError):
        return "-"


def knob(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def labels_of(data: ReportData) -> dict[int, list[str]]:
    out: dict[int, list[str]] = {}
    for label in ("best", "smallest", "knee"):
        if label in data.picks:
            out.setdefault(data.done[data.picks[label]].number, []).append(label)
    return out


def front_numbers(data: ReportData) -> set[int]:
    return {data.done[i].number for i in data.front_idx}


def rank_by_type(allocation: dict[str, int]) -> dict[str, int]:

    return dict(allocation_summary(allocation).get("rank_by_type", {}))


def knob_names(data: ReportData) -> list[str]:
    return sorted({k for r in data.records for k in r.params})


def front_records(data: ReportData) -> list[TrialRecord]:
    """The front's trials, one per distinct (score, params), small budget first."""
    return [data.record(int(row["trial"])) for row in data.front_rows]


def short_params(n: Any) -> str:
    try:
        return format_count(float(n))
    except (TypeError, ValueError):
        return "-"



def chance_text(summary: dict[str, Any]) -> str:
    """The search's verdict against the majority-class score (search.json ``above_chance``)."""
    verdict, chance = summary.get("above_chance"), summary.get("chance_score")
    if verdict is None or chance is None:
        return "-"
    best = max((float(r["glue_score"]) for r in summary.get("front") or []), default=float("nan"))
    if verdict:
        return f"yes: best score {best:.2f}, majority class {float(chance):.2f}"
    return (f"NO: best score {best:.2f} is not above the majority class ({float(chance):.2f}) by more than 1 point; "
            "the front ranks noise and its presets are marked above_chance: false")


def confirmation_text(summary: dict[str, Any]) -> str:
    """The confirmation stage in one line, then whether the front's differences are separable."""
    if not int(summary.get("confirm") or 0):
        return "off (--confirm 0): the front ranks single runs"
    if "confirmed" not in summary:
        return "not run yet"
    noise = f", seed sd {float(summary['noise_sd']):.2f}" if summary.get("noise_sd") is not None else ""
    return (f"{summary.get('confirm')} new seeds per front configuration{noise}; "
            + distinguishable_text(summary.get("distinguishable") or [], bool(summary.get("confirmed"))))


def importance_text(summary: dict[str, Any]) -> str:
    imp = summary.get("importance") or {}
    return Importance(**imp).sentence() if imp else "-"


def front_score_cells(row: dict[str, Any], confirmed: bool) -> list[str]:
    """The score cells of a front row: the score, and with confirmation its 95 % interval and seed count."""
    if not confirmed:
        return [num(row["score"])]
    ci = f"[{num(row['ci_low'])}, {num(row['ci_high'])}]" if row.get("ci_low") is not None else "-"
    return [num(row["score"]), ci, str(row.get("n") or 1)]


def front_score_headers(confirmed: bool, score_name: str = "GLUE score") -> list[str]:
    return [f"mean {score_name}", "95 % interval", "seeds"] if confirmed else [score_name]


def overview(data: ReportData) -> list[tuple[str, str]]:
    s = data.summary

    counts = data.results.counts()
    ui = mlflow_ui_command(s.get("tracking_uri") or "")
    items = [
        ("task / method", f"{s.get('task')} / {s.get('method')}"),
        ("model", str(s.get("model") or "packaged all-MiniLM-L6-v2")),
        ("status", f"{s.get('status')}: {len(data.records)} of {s.get('trials')} trials "
                   f"({', '.join(f'{v} {k.lower()}' for k, v in sorted(counts.items())) or 'none yet'})"),
        ("sampler", f"{s.get('sampler')} (seed {s.get('seed')}), scheduler {s.get('scheduler')}, "
                    f"objective {s.get('objective', 'final')} score"),
        ("training", f"{s.get('train_size')} rows, {s.get('eval_size')} "
                     f"{'held-out training' if (s.get('base') or {}).get('holdout_samples') else 'dev'} rows scored, "
                     f"{s.get('total_steps')} steps per trial"),
        ("space", str(s.get("space_text") or "")),
        ("hypervolume", hypervolume_text(s.get("hypervolume"), (s.get("outputs") or {}).get("hypervolume_reference"))),
        ("above chance", chance_text(s)),
        ("confirmation", confirmation_text(s)),
        ("which knobs matter", importance_text(s)),
        ("heatmap scale", f"rank 0 to {data.vmax:g} (the largest rank of the search) for every heatmap"),
        ("MLflow", f"{ui}  (experiment {s.get('experiment_name')}, parent run {s.get('parent_run_id')})"),
        ("Optuna", f"optuna-dashboard {shlex.quote(str(s.get('storage')))}  (study {s.get('study_name')})"),
        ("folder", str(data.search_dir)),
        ("created", f"{s.get('created', '-')}, finished {s.get('finished', '-')}"),
    ]
    return items


def trial_rows(data: ReportData) -> tuple[list[str], list[list[Any]], list[str]]:
    knobs = knob_names(data)
    labels = labels_of(data)
    front = front_numbers(data)
    headers = ["trial", "state", data.score_name, "adapter params", "total rank", "front", "presets", "run", *knobs]
    rows, classes = [], []
    for r in sorted(data.records, key=lambda r: r.number):
        rows.append([r.number, r.state, num(r.score), count(r.adapter_params),
                     r.total_rank if r.allocation else "-", "yes" if r.number in front else "",
                     ",".join(labels.get(r.number, [])), r.run_name or "",
                     *[knob(r.params[k]) if k in r.params else "" for k in knobs]])
        classes.append("front" if r.number in front else "")
    return headers, rows, classes


def type_rows(data: ReportData) -> tuple[list[str], list[list[Any]]]:
    front = front_records(data)
    types = [t for t in MODULE_TYPES if any(t in rank_by_type(r.allocation) for r in front)]
    headers = ["trial", "adapter params", *[MODULE_TYPE_LABELS[t] for t in types], "total rank"]
    rows = []
    for r in front:
        by = rank_by_type(r.allocation)
        rows.append([r.number, count(r.adapter_params), *[by.get(t, 0) for t in types], sum(by.values())])
    return headers, rows
