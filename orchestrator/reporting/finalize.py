"""The end of a search: the front as a CSV, the plots, the presets, and the parent run's record.

:func:`finalize` reads the search's results (:mod:`orchestrator.records.results`), writes
``pareto_front.csv`` (the COMPLETE trials on the front, sorted by adapter params), ``pareto.png``,
``hypervolume.png`` and ``presets/``, puts them on the MLflow parent run with the hypervolume and a
description, redraws the allocation heatmaps on the search-wide colour scale, and returns the
:class:`~orchestrator.records.record.FrontSummary` that completes ``search.json``.
"""

from __future__ import annotations

import csv
import datetime as _dt
import json
import shlex
import sys
from pathlib import Path
from typing import Any, Optional, Sequence

from increlora.naming import allocation_summary
from increlora.budget import above_chance
from orchestrator.records.pareto import hypervolume_text
from orchestrator.reporting.console import (SHARED_VIEW_PREFIX, front_run_ids, front_view_key, front_view_state,
                                            not_learned_text, plural, search_links)
from orchestrator.records.record import SEARCH_FILE, FrontSummary, SearchRecord
from orchestrator.records.results import SearchResults, load_results
from orchestrator.records.seed_stats import distinguishable_text
from orchestrator.records.trial_record import ConfigurationRecord
from orchestrator.records.trial_files import one_line
from orchestrator.tracking.trial_run import replay_spools
from increlora.naming import MODULE_TYPES, MODULE_TYPE_LABELS
from orchestrator.reporting import plots
from orchestrator.tracking import mlflow_runs
from orchestrator.records.presets import export_presets
from orchestrator.records.results import load_study
from orchestrator.records.seed_stats import pooled_sd
from orchestrator.records.importance import Importance, knob_importance
from orchestrator.reporting.allocation_plots import heatmap_grid
from orchestrator.reporting.heatmaps import rerender_heatmaps
from orchestrator.reporting.plots import format_count

FRONT_CSV = "pareto_front.csv"
PARETO_PNG = "pareto.png"
HYPERVOLUME_PNG = "hypervolume.png"
PRESETS_DIR = "presets"
ALLOCATIONS_PNG = "allocations.png"
IMPORTANCE_PNG = "importance.png"
MAX_PANELS = 48  # heatmaps in allocations.png, smallest budget first


def write_front_csv(results: SearchResults, path: Path) -> list[dict[str, Any]]:
    """``pareto_front.csv``: one row per front trial, sorted by adapter params; returns the rows."""
    labels = results.labels()
    front = sorted((results.pool[i] for i in results.front),
                   key=lambda c: (float(c.adapter_params), -float(c.score), c.number))
    param_names = sorted({k for c in front for k in c.params})
    rows = []
    for c in front:
        row = {
            "trial": c.number,
            "glue_score": c.score,
            "n": int(c.n or 1),
            "sd": _csv_num(c.sd),
            "ci_low": _csv_num(c.ci_low),
            "ci_high": _csv_num(c.ci_high),
            "single_score": c.single_score,
            "seed_scores": ";".join(f"{k}:{float(v):.4f}" for k, v in sorted(c.seed_scores.items())),
            "adapter_params": int(c.adapter_params),
            "total_rank": c.total_rank if c.allocation else "",
            "labels": ",".join(labels.get(c.number, [])),
            "run_name": c.run_name or "",
            "mlflow_run_id": c.mlflow_run_id or "",
        }
        row.update({k: c.params.get(k, "") for k in param_names})
        rows.append(row)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as fh:
        fieldnames = ["trial", "glue_score", "n", "sd", "ci_low", "ci_high", "single_score", "seed_scores", "adapter_params",
                      "total_rank", "labels", "run_name", "mlflow_run_id", *param_names]
        writer = csv.DictWriter(fh, fieldnames=fieldnames)
        writer.writeheader()
        writer.writerows(rows)
    return rows


def _csv_num(value: Any) -> Any:
    return "" if value is None else float(value)


def read_front_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def write_presets(results: SearchResults, out_dir: Path, *, tolerance: Optional[float] = None) -> list[Path]:
    """The best / smallest / knee presets of the COMPLETE trials, as YAML files in ``out_dir``."""
    r = results.record
    return export_presets(results.pool, out_dir, task=r.task, model=r.model, search_name=r.name,
                          package_version=r.package_version or "unknown", train_size=r.train_size,
                          tolerance=float(r.tolerance if tolerance is None else tolerance),
                          chance_score=float(r.chance_score), evaluated_on=r.evaluated_on, eval_rows=r.eval_size or None,
                          data=r.data_fingerprint or None)


def allocations_grid(results: SearchResults, path: Path) -> Optional[Path]:
    """``allocations.png``: the heatmaps of the COMPLETE trials side by side, smallest budget first, on the
    search's colour scale (front trials marked); None when no trial has an allocation."""
    labels, front = results.labels(), results.front_numbers()
    trials = sorted((t for t in results.complete if t.allocation),
                    key=lambda t: (float(t.adapter_params), t.number))[:MAX_PANELS]
    if not trials:
        return None
    panels = [(f"t{t.number:03d}{' *' if t.number in front else ''} {format_count(float(t.adapter_params))}"
               f"\nscore {float(t.score):.2f}" + (f" ({'/'.join(labels[t.number])})" if t.number in labels else ""),
               t.allocation) for t in trials]
    try:
        return heatmap_grid(panels, path, vmin=0.0, vmax=results.vmax,
                            title=f"{results.record.name}: final rank per module (* on the front)")
    except ValueError:
        return None


def front_type_table(results: SearchResults) -> str:
    """The front's trials as a Markdown table of the rank per module type (the parent run's description)."""
    rows = [results.trial(int(r["trial"])) for r in results.front_rows()]
    if not rows:
        return ""
    head = f"| trial | {results.record.score_name} | adapter params | " + " | ".join(MODULE_TYPE_LABELS[t] for t in MODULE_TYPES) + " | total rank |"
    lines = [head, "|---|---:|---:|" + "---:|" * (len(MODULE_TYPES) + 1)]
    for t in rows:
        by_type = allocation_summary(t.allocation).get("rank_by_type", {})
        lines.append(f"| {t.run_name or t.number} | {float(t.score):.2f} | {int(t.adapter_params):,} | "
                     + " | ".join(str(by_type.get(m, 0)) for m in MODULE_TYPES) + f" | {sum(by_type.values())} |")
    return "\n".join(lines)


def note_text(record: SearchRecord, counts: dict[str, int], front_rows: Sequence[dict[str, Any]], hv: Optional[float],
              picks: dict[str, ConfigurationRecord]) -> str:
    """The parent run's description (Markdown)."""
    lines = [
        f"**{record.name}**: {record.method} on {record.task} "
        f"({record.model or 'packaged all-MiniLM-L6-v2'}), {plural(record.trials, 'trial')} requested; "
        + ", ".join(f"{v} {k.lower()}" for k, v in sorted(counts.items())) + ".",
        f"Sampler {record.sampler} (seed {record.seed}), scheduler {record.scheduler}, "
        f"objectives: {record.score_name} ({record.objective} evaluation, max) and adapter parameters (min); "
        f"{record.train_size} training rows, {record.total_steps} steps per trial, scored on {record.scored_on}.",
        f"Space: {record.space_text}",
        f"Pareto front: {plural(len(front_rows), 'trial')}"
        + (f"; hypervolume {hypervolume_text(hv, record.results.outputs.get('hypervolume_reference') if record.results else None)}."
           if hv is not None else "."),
    ]
    for label, rec in picks.items():
        score = (f"mean score {float(rec.score):.2f} [{float(rec.ci_low):.2f}, {float(rec.ci_high):.2f}] over "
                 f"{rec.n} seeds" if rec.has_interval else f"score {float(rec.score):.2f}")
        lines.append(f"- {label}: trial {rec.number} ({rec.run_name}), {score}, "
                     f"{int(rec.adapter_params):,} adapter params")
    if record.results is not None:
        lines.append(distinguishable_text(record.results.distinguishable, record.results.confirmed))
        if record.results.importance:
            lines.append("Which knobs matter: " + Importance(**record.results.importance).sentence() + ".")
    links = search_links(record)
    if links:
        lines.append("Open in MLflow (with the server of the closing lines): "
                     + " · ".join(f"[{text}]({links[key]})" for key, text in (
                         ("parent", "this search"),
                         ("front", f"the front's trials: {record.score_name}, size and rank per module type"),
                         ("compare", "the front's trials side by side"))
                                  if key in links))
    best = max((float(r.score) for r in picks.values()), default=None)
    if best is not None and not above_chance(best, record.chance_score):
        lines.append(f"**Not above chance:** {not_learned_text(best, record.chance_score)}")
    return "\n".join(lines)


def parent_note(record: SearchRecord, results: SearchResults, front_rows: Sequence[dict[str, Any]], hv: Optional[float]) -> str:
    """The parent run's description: the search in a few lines, then the front's allocations by module
    type (the heatmaps of every trial are the run's ``allocations.png``)."""
    text = note_text(record, results.counts(), front_rows, hv, results.pick_records())
    table = front_type_table(results)
    if table:
        text += ("\n\nRank per module type on the front (every trial's heatmap: artifact `allocations.png`):\n\n" + table)
    return text


def baseline_reference(record: SearchRecord) -> dict[str, list[tuple[float, float]]]:
    """LoRA / AdaLoRA points of the other searches in this search's MLflow experiment (the
    Pareto plot's reference markers); empty when there are none or MLflow cannot be read."""
    if not record.tracking_uri or not record.experiment_id:
        return {}
    try:
        methods = [m for m in mlflow_runs.baseline_methods() if m != record.method]
        return mlflow_runs.reference_points(record.tracking_uri, record.experiment_id,
                                            exclude_parent=record.parent_run_id or None, methods=methods)
    except Exception:  # the plot is still useful without its reference points
        return {}


def finalize(record: SearchRecord, *, mlflow: bool = True, mlflow_problem: Optional[BaseException] = None,
             quiet: bool = False) -> FrontSummary:
    """Write the front, plots and presets of a search; log them on its parent run; return the summary
    (also stored in ``record.results`` and written to ``search.json``). The local files are written whatever
    MLflow does: when it cannot be reached (or ``mlflow_problem`` says it could not a moment ago), nothing
    more is sent to it and ``outputs["mlflow"]`` says how to send it later (:mod:`orchestrator.sync`), also
    printed as a warning unless ``quiet``."""
    search_dir = record.dir
    if mlflow and record.parent_run_id and mlflow_problem is None:
        try:
            replay_spools(record)  # trial records a tracking outage kept in the trial folders
        except Exception as exc:
            mlflow_problem = exc
    results = load_results(record)
    counts = results.counts()
    front_rows = write_front_csv(results, search_dir / FRONT_CSV)
    outputs: dict[str, Any] = {"front_csv": str(search_dir / FRONT_CSV)}
    hv = results.hypervolume()
    preset_paths: list[Path] = []
    if results.complete:
        title = f"{record.task} {record.method}: {record.name}"
        reference = baseline_reference(record) if mlflow and mlflow_problem is None else {}
        intervals = [(c.ci_low, c.ci_high) if c.has_interval else None for c in results.pool]
        outputs["pareto_png"] = str(plots.pareto_plot(
            results.points(), results.front, search_dir / PARETO_PNG,
            title=title + (" (confirmed: means over seeds)" if results.confirmed else ""), highlight=results.picks,
            pruned=results.pruned_points(), reference=reference, intervals=intervals,
            single_runs=results.single_points() if results.confirmed else None,
            ylabel=record.score_name + (" (mean over seeds)" if results.confirmed else "")))
        if reference:
            outputs["reference_points"] = {k: len(v) for k, v in reference.items()}
        outputs["hypervolume_png"] = str(plots.hypervolume_plot(
            {record.sampler: results.hypervolume_curve()}, search_dir / HYPERVOLUME_PNG, title=f"hypervolume: {record.name}",
            numbers={record.sampler: [t.number for t in results.complete]}))
        preset_paths = write_presets(results, search_dir / PRESETS_DIR)
        outputs["hypervolume_reference"] = list(results.reference_point())
        grid = allocations_grid(results, search_dir / ALLOCATIONS_PNG)
        if grid is not None:
            outputs["allocations_png"] = str(grid)
    outputs["presets"] = [str(p) for p in preset_paths]
    noise = pooled_noise(results)
    importance = compute_importance(record, noise)
    if importance is not None and importance.score:
        outputs["importance_png"] = str(plots.importance_plot(
            importance.score, importance.params, search_dir / IMPORTANCE_PNG, seed_share=importance.seed_share,
            title=f"which knobs matter: {record.name} ({importance.evaluator}, {importance.trials} trials)"))
    vmax = results.vmax
    record.results = FrontSummary(
        counts=counts,
        front=front_rows,
        picks=results.pick_numbers(),
        hypervolume=hv,
        heatmap_vmax=int(vmax) if float(vmax).is_integer() else vmax,
        outputs=outputs,
        updated=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        nodes={str(t.number): t.node for t in results.trials if t.node},
        chance_score=float(record.chance_score),
        above_chance=results.above_chance(),
        confirmed=results.confirmed,
        confirmed_hypervolume=results.confirmed_hypervolume(),
        confirmed_configurations=sum(1 for c in results.pool if int(c.n or 1) >= 2),
        noise_sd=noise,
        distinguishable=distinguishable_rows(results),
        importance=importance.to_dict() if importance is not None else {},
    )
    if mlflow and record.parent_run_id and mlflow_problem is None:
        try:
            _log_parent(record, results, front_rows, hv, vmax)
        except Exception as exc:
            mlflow_problem = exc
    if mlflow and mlflow_problem is not None:
        outputs["mlflow"] = (f"not logged ({one_line(mlflow_problem)}); when the tracking server is back: "
                             f"{sync_command(record)}")
        if not quiet:
            print(f"warning: MLflow {outputs['mlflow']}", file=sys.stderr)
    record.save()
    return record.results


def pooled_noise(results: SearchResults) -> Optional[float]:
    """The seed standard deviation pooled over the pool's configurations with at least 2 seeds."""
    return pooled_sd([results.seed_stats(c) for c in results.pool])


def compute_importance(record: SearchRecord, noise: Optional[float]) -> Any:
    """:class:`orchestrator.records.importance.Importance` of the search's study (None when it cannot be computed)."""
    try:
        return knob_importance(load_study(record), seed_sd=noise)
    except Exception as exc:  # importance is a reading aid; a study it cannot digest must not stop the finalisation
        print(f"warning: knob importance not computed ({one_line(exc)})", file=sys.stderr)
        return None


def distinguishable_rows(results: SearchResults) -> list[dict[str, Any]]:
    """Neighbouring front configurations (fewer parameters first) and their paired score difference."""
    out = []
    for row in results.distinguishable():
        d = row["difference"]
        out.append({"smaller": row["smaller"], "larger": row["larger"],
                    "difference": None if d is None else round(d.mean, 4),
                    "ci_low": None if d is None or d.interval is None else round(d.interval[0], 4),
                    "ci_high": None if d is None or d.interval is None else round(d.interval[1], 4),
                    "n": 0 if d is None else d.n, "separable": bool(d is not None and d.separable)})
    return out


def sync_command(record: SearchRecord) -> str:
    """The command that sends a search's MLflow records once the tracking server is back."""
    return f"python -m orchestrator.sync --search {shlex.quote(str(record.search_dir))}"


ENDED = ("finished", "failed", "stopped", "interrupted")  # statuses of a search whose session is over


def parent_run_status(record: SearchRecord, complete: int) -> Optional[str]:
    """The status the parent run ends with once the search's session is over (None while it is not: a
    running or killed search keeps its parent RUNNING for ``--resume``): FINISHED for a finished search,
    KILLED for an interrupted or stopped one, FAILED when no trial completed (``complete`` COMPLETE trials)."""
    if record.status not in ENDED:
        return None
    if complete == 0 and record.status != "interrupted":
        return "FAILED"
    return {"finished": "FINISHED", "failed": "FAILED"}.get(record.status, "KILLED")


def parent_metrics(results: SearchResults, front_rows: Sequence[dict[str, Any]], hv: Optional[float]) -> dict[str, float]:
    """The parent run's summary metrics, all under ``search/`` so that none reads like a trial's own metric:
    trial counts, the front's size, the hypervolume (raw and as a % of the box from the reference point to a
    perfect score at 0 parameters) and each preset pick's score and size (``search/pick_best_glue_score``...)."""
    metrics: dict[str, float] = {f"search/trials_{k.lower()}": v for k, v in results.counts().items()}
    metrics["search/front_size"] = len(front_rows)
    if hv is not None:
        metrics["search/hypervolume"] = float(hv)
        ref = results.reference_point()
        box = (100.0 - float(ref[0])) * float(ref[1]) if ref is not None else 0.0
        if box > 0:
            metrics["search/hypervolume_pct"] = 100.0 * float(hv) / box
    for label, rec in results.pick_records().items():
        metrics[f"search/pick_{label}_glue_score"] = float(rec.score)
        metrics[f"search/pick_{label}_adapter_params"] = float(rec.adapter_params)
        if rec.has_interval:
            metrics[f"search/pick_{label}_ci_low"] = float(rec.ci_low)
            metrics[f"search/pick_{label}_ci_high"] = float(rec.ci_high)
            metrics[f"search/pick_{label}_seeds"] = float(rec.n)
    summary = results.record.results
    if results.confirmed:
        chv = results.confirmed_hypervolume()
        ref = results.reference_point()
        if chv is not None and ref is not None and (100.0 - float(ref[0])) * float(ref[1]) > 0:
            metrics["search/confirmed_hypervolume_pct"] = 100.0 * float(chv) / ((100.0 - float(ref[0])) * float(ref[1]))
    if summary is not None:
        if summary.noise_sd is not None:
            metrics["search/seed_sd"] = float(summary.noise_sd)
        imp = summary.importance or {}
        for objective in ("score", "params"):
            for knob, value in (imp.get(objective) or {}).items():
                metrics[f"importance/{objective}/{knob}"] = float(value)
        if imp.get("seed_share") is not None:
            metrics["importance/score/seed"] = float(imp["seed_share"])
    return metrics


def write_front_view(record: SearchRecord, c: Any) -> Optional[str]:
    """Store the shared view of the front's trials in the search's experiment (MLflow's runs table: only those
    trials, best score first, score, size and rank per module type as the first columns) and record its key in
    ``outputs["front_view"]`` for :func:`orchestrator.reporting.console.search_links`. None (and no link) without a
    front, or when MLflow refuses the tag (a front too large for one tag value)."""
    ids = front_run_ids(record)
    if not ids or record.results is None:
        return None
    key = front_view_key(record.parent_run_id)
    try:
        c.set_experiment_tag(record.experiment_id, SHARED_VIEW_PREFIX + key, json.dumps(front_view_state(ids)))
    except Exception as exc:  # the search's records stand without the view; the compare link remains
        print(f"warning: MLflow: no shared view of the front ({one_line(exc)})", file=sys.stderr)
        record.results.outputs.pop("front_view", None)
        return None
    record.results.outputs["front_view"] = key
    return key


def _log_parent(record: SearchRecord, results: SearchResults, front_rows: Sequence[dict[str, Any]], hv: Optional[float],
                vmax: float) -> None:
    uri, parent, search_dir = record.tracking_uri, record.parent_run_id, record.dir
    c = mlflow_runs.client(uri)
    items = [(t.mlflow_run_id, t.allocation, f"{t.run_name or t.number}: final ranks")
             for t in results.trials if t.mlflow_run_id and t.allocation]
    rerender_heatmaps(uri, items, float(vmax))
    mlflow_runs.log_metrics(c, parent, parent_metrics(results, front_rows, hv))
    for name in (FRONT_CSV, PARETO_PNG, HYPERVOLUME_PNG, ALLOCATIONS_PNG, IMPORTANCE_PNG, "space.yaml"):
        if (search_dir / name).is_file():
            c.log_artifact(parent, str(search_dir / name))
    if (search_dir / PRESETS_DIR).is_dir():
        c.log_artifacts(parent, str(search_dir / PRESETS_DIR), PRESETS_DIR)
    write_front_view(record, c)
    c.set_tag(parent, mlflow_runs.NOTE_TAG, parent_note(record, results, front_rows, hv))
    if results.above_chance() is not None:
        c.set_tag(parent, "above_chance", str(results.above_chance()).lower())
    mlflow_runs.log_json_artifact(c, parent, record.to_dict(), SEARCH_FILE)
