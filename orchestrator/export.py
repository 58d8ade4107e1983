"""Results of a search: the Pareto front, plots, presets, the parent run's record, ``search.json``.

``python -m orchestrator.export --search NAME_OR_DIR --out DIR`` writes the presets (best,
smallest within ``--tolerance`` points of the best, knee) of a finished or interrupted search
into DIR. The search is found through its ``search.json`` (a folder, or a name under
``--output-dir``); everything else comes from its Optuna study, so the export works without
Ray or MLflow.

:func:`finalize` is what ``orchestrator.search`` runs at the end of a search: it reads the study,
writes ``pareto_front.csv`` (Optuna's ``study.best_trials``: COMPLETE trials only, so
scheduler-pruned trials never enter it), ``pareto.png``, ``hypervolume.png``, the presets, puts
them on the MLflow parent run with the hypervolume and a description, redraws the allocation
heatmaps on the search-wide colour scale and updates ``search.json``.
"""

from __future__ import annotations

import argparse
import csv
import datetime as _dt
import json
import math
import sys
from pathlib import Path
from typing import Any, Optional, Sequence

from increlora.atomic import write_json_atomic

SEARCH_FILE = "search.json"
FRONT_CSV = "pareto_front.csv"
PARETO_PNG = "pareto.png"
HYPERVOLUME_PNG = "hypervolume.png"
PRESETS_DIR = "presets"


class ExportError(RuntimeError):
    """The search cannot be found or read; the one-line message says why."""


# ----------------------------------------------------------------------------------------------
# search.json
# ----------------------------------------------------------------------------------------------


def find_search(name_or_dir: str, output_dir: str = "searches") -> Path:
    """The folder of a search: ``name_or_dir`` itself, or ``<output_dir>/<name_or_dir>``."""
    for candidate in (Path(name_or_dir), Path(output_dir) / name_or_dir):
        if (candidate / SEARCH_FILE).is_file():
            return candidate.resolve()
    raise ExportError(f"no search {name_or_dir!r}: neither {name_or_dir}/ nor {output_dir}/{name_or_dir}/ holds {SEARCH_FILE}")


def read_summary(search_dir: Path) -> dict[str, Any]:
    path = Path(search_dir) / SEARCH_FILE
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ExportError(f"cannot read {path}: {exc}") from None


def write_summary(search_dir: Path, summary: dict[str, Any]) -> Path:
    """Write ``search.json`` atomically."""
    return write_json_atomic(Path(search_dir) / SEARCH_FILE, summary)


# ----------------------------------------------------------------------------------------------
# The study as trial records
# ----------------------------------------------------------------------------------------------


def load_study(summary: dict[str, Any]) -> Any:
    import optuna

    from orchestrator.searcher import make_storage

    try:
        return optuna.load_study(study_name=summary["study_name"], storage=make_storage(summary["storage"]))
    except KeyError as exc:
        raise ExportError(f"Optuna study {summary.get('study_name')!r} not found in {summary.get('storage')}: {exc}") from None


def full_config(summary: dict[str, Any], knobs: dict[str, Any]) -> dict[str, Any]:
    """A trial's complete flat configuration: the search's base knobs plus the trial's."""
    from increlora.config import ConfigError, build_run_config

    method = summary["method"]
    merged = {**summary.get("base", {}), **knobs, "method": method}
    try:
        return build_run_config(merged).flat()
    except ConfigError:
        return merged


def trial_records(study: Any, summary: dict[str, Any]) -> list[dict[str, Any]]:
    """Every Optuna trial as ``{number, config, score, adapter_params, allocation, mlflow_run_id,
    state, run_name, params}`` (the record ``orchestrator.presets`` reads)."""
    records = []
    for t in study.get_trials(deepcopy=False):
        attrs = t.user_attrs
        complete = t.state.name == "COMPLETE" and t.values is not None
        score = t.values[0] if complete else attrs.get("last_glue_score")
        params = t.values[1] if complete else attrs.get("last_adapter_params")
        knobs = dict(attrs.get("config") or {})
        records.append(
            {
                "number": t.number,
                "state": t.state.name,
                "score": score,
                "adapter_params": params,
                "config": full_config(summary, knobs) if knobs else {"method": summary["method"]},
                "params": dict(t.params),
                "allocation": attrs.get("allocation") or {},
                "mlflow_run_id": attrs.get("mlflow_run_id"),
                "run_name": attrs.get("run_name"),
                "preset": attrs.get("preset"),
            }
        )
    return records


def _points(records: Sequence[dict[str, Any]]) -> list[tuple[float, float]]:
    return [(float(r["score"]), float(r["adapter_params"])) for r in records]


def complete_records(records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    from orchestrator.presets import complete_trials

    return sorted(complete_trials(list(records)), key=lambda r: r["number"])


def write_front_csv(study: Any, records: Sequence[dict[str, Any]], path: Path, labels: dict[int, list[str]]) -> list[dict[str, Any]]:
    """``pareto_front.csv``: one row per trial of ``study.best_trials``, sorted by adapter params."""
    by_number = {r["number"]: r for r in records}
    front = sorted(study.best_trials, key=lambda t: (t.values[1], -t.values[0], t.number))
    param_names = sorted({k for t in front for k in t.params})
    rows = []
    for t in front:
        rec = by_number.get(t.number, {})
        alloc = rec.get("allocation") or {}
        row = {
            "trial": t.number,
            "glue_score": t.values[0],
            "adapter_params": int(t.values[1]),
            "total_rank": sum(int(v) for v in alloc.values()) if alloc else "",
            "labels": ",".join(labels.get(t.number, [])),
            "run_name": rec.get("run_name") or "",
            "mlflow_run_id": rec.get("mlflow_run_id") or "",
        }
        row.update({k: t.params.get(k, "") for k in param_names})
        rows.append(row)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as fh:
        fieldnames = ["trial", "glue_score", "adapter_params", "total_rank", "labels", "run_name", "mlflow_run_id", *param_names]
        writer = csv.DictWriter(fh, fieldnames=fieldnames)
        writer.writeheader()
        writer.writerows(rows)
    return rows


def read_front_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


# ----------------------------------------------------------------------------------------------
# Finalize a search
# ----------------------------------------------------------------------------------------------


def _counts(records: Sequence[dict[str, Any]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for r in records:
        out[r["state"]] = out.get(r["state"], 0) + 1
    return out


def _picks(done: Sequence[dict[str, Any]], tolerance: float) -> tuple[list[int], dict[str, int]]:
    from orchestrator.pareto import pareto_front, select_presets

    points = _points(done)
    front = pareto_front(points)
    return front, (select_presets(points, front, tolerance=tolerance) if front else {})


def write_presets(summary: dict[str, Any], records: Sequence[dict[str, Any]], out_dir: Path) -> list[Path]:
    """The best / smallest / knee presets of the COMPLETE trials, as YAML files in ``out_dir``."""
    from orchestrator.presets import export_presets

    return export_presets(
        list(records),
        out_dir,
        task=summary["task"],
        model=summary.get("model"),
        search_name=summary["name"],
        package_version=summary.get("package_version", "unknown"),
        train_size=summary.get("train_size"),
        tolerance=float(summary.get("tolerance", 1.0)),
    )


def note_text(summary: dict[str, Any], counts: dict[str, int], front_rows: Sequence[dict[str, Any]], hv: Optional[float],
              picks: dict[str, dict[str, Any]]) -> str:
    """The parent run's description (Markdown)."""
    lines = [
        f"**{summary['name']}**: {summary['method']} on {summary['task']} "
        f"({summary.get('model') or 'packaged all-MiniLM-L6-v2'}), {summary['trials']} trials requested; "
        + ", ".join(f"{v} {k.lower()}" for k, v in sorted(counts.items())) + ".",
        f"Sampler {summary['sampler']} (seed {summary['seed']}), scheduler {summary['scheduler']}, "
        f"objectives: GLUE score ({summary.get('objective', 'final')} evaluation, max) and adapter parameters (min); "
        f"{summary.get('train_size')} training rows, {summary.get('total_steps')} steps per trial.",
        f"Space: {summary.get('space_text', '')}",
        f"Pareto front: {len(front_rows)} trials" + (f"; hypervolume {hv:.6g}." if hv is not None else "."),
    ]
    for label, rec in picks.items():
        lines.append(f"- {label}: trial {rec['number']} ({rec.get('run_name')}), score {float(rec['score']):.2f}, "
                     f"{int(rec['adapter_params']):,} adapter params")
    return "\n".join(lines)


def baseline_reference(summary: dict[str, Any]) -> dict[str, list[tuple[float, float]]]:
    """LoRA / AdaLoRA points of the other searches in this search's MLflow experiment (the
    Pareto plot's reference markers); empty when there are none or MLflow cannot be read."""
    from orchestrator import tracking

    if not summary.get("tracking_uri") or not summary.get("experiment_id"):
        return {}
    try:
        methods = [m for m in tracking.BASELINE_METHODS if m != summary.get("method")]
        return tracking.reference_points(summary["tracking_uri"], summary["experiment_id"],
                                         exclude_parent=summary.get("parent_run_id"), methods=methods)
    except Exception:  # the plot is still useful without its reference points
        return {}


def finalize(summary: dict[str, Any], *, search_dir: Path, mlflow: bool = True) -> dict[str, Any]:
    """Write the front, plots and presets of a search; log them on its parent run; return the
    updated summary (also written to ``search.json``)."""
    from orchestrator import plots
    from orchestrator.pareto import default_reference, hypervolume, hypervolume_curve

    search_dir = Path(search_dir)
    study = load_study(summary)
    records = trial_records(study, summary)
    done = complete_records(records)
    counts = _counts(records)
    front_idx, picks = _picks(done, float(summary.get("tolerance", 1.0)))
    labels: dict[int, list[str]] = {}
    for label, i in picks.items():
        labels.setdefault(done[i]["number"], []).append(label)
    front_rows = write_front_csv(study, records, search_dir / FRONT_CSV, labels)
    outputs: dict[str, Any] = {"front_csv": str(search_dir / FRONT_CSV)}
    hv = None
    preset_paths: list[Path] = []
    if done:
        points = _points(done)
        ref = default_reference(float(summary.get("chance_score", 0.0)), max(p[1] for p in points))
        hv = hypervolume(points, ref)
        pruned = [
            (float(r["score"]), float(r["adapter_params"]))
            for r in records
            if r["state"] == "PRUNED" and r["score"] is not None and r["adapter_params"] is not None
        ]
        title = f"{summary['task']} {summary['method']}: {summary['name']}"
        reference = baseline_reference(summary) if mlflow else {}
        outputs["pareto_png"] = str(plots.pareto_plot(points, front_idx, search_dir / PARETO_PNG, title=title,
                                                      highlight=picks, pruned=pruned, reference=reference))
        if reference:
            outputs["reference_points"] = {k: len(v) for k, v in reference.items()}
        curve = hypervolume_curve(points, ref)
        outputs["hypervolume_png"] = str(plots.hypervolume_plot({summary["sampler"]: curve}, search_dir / HYPERVOLUME_PNG,
                                                                title=f"hypervolume: {summary['name']}"))
        preset_paths = write_presets(summary, records, search_dir / PRESETS_DIR)
        outputs["hypervolume_reference"] = list(ref)
    outputs["presets"] = [str(p) for p in preset_paths]
    vmax = max([max(r["allocation"].values()) for r in records if r["allocation"]] or [1])
    summary.update(
        {
            "counts": counts,
            "front": front_rows,
            "picks": {k: done[i]["number"] for k, i in picks.items()},
            "hypervolume": hv,
            "heatmap_vmax": vmax,
            "outputs": outputs,
            "updated": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        }
    )
    if mlflow and summary.get("parent_run_id"):
        _log_parent(summary, search_dir, records, counts, front_rows, hv, {k: done[i] for k, i in picks.items()}, vmax)
    write_summary(search_dir, summary)
    return summary


def _log_parent(summary: dict[str, Any], search_dir: Path, records: Sequence[dict[str, Any]], counts: dict[str, int],
                front_rows: Sequence[dict[str, Any]], hv: Optional[float], picks: dict[str, dict[str, Any]], vmax: float) -> None:
    from orchestrator import tracking

    uri, parent = summary["tracking_uri"], summary["parent_run_id"]
    c = tracking.client(uri)
    items = [
        (r["mlflow_run_id"], r["allocation"], f"{r.get('run_name') or r['number']}: final ranks")
        for r in records
        if r["mlflow_run_id"] and r["allocation"]
    ]
    tracking.rerender_heatmaps(uri, items, float(vmax))
    metrics = {f"trials_{k.lower()}": v for k, v in counts.items()}
    metrics["front_size"] = len(front_rows)
    if hv is not None:
        metrics["hypervolume"] = hv
    for label, rec in picks.items():
        metrics[f"{label}_glue_score"] = float(rec["score"])
        metrics[f"{label}_adapter_params"] = float(rec["adapter_params"])
    tracking.log_metrics(c, parent, metrics)
    for name in (FRONT_CSV, PARETO_PNG, HYPERVOLUME_PNG, "space.yaml"):
        if (search_dir / name).is_file():
            c.log_artifact(parent, str(search_dir / name))
    if (search_dir / PRESETS_DIR).is_dir():
        c.log_artifacts(parent, str(search_dir / PRESETS_DIR), PRESETS_DIR)
    c.set_tag(parent, tracking.NOTE_TAG, note_text(summary, counts, front_rows, hv, picks))
    tracking.log_json_artifact(c, parent, {k: v for k, v in summary.items()}, SEARCH_FILE)


# ----------------------------------------------------------------------------------------------
# CLI
# ----------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m orchestrator.export",
        description="Write the best / smallest / knee presets of a search as YAML files.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--search", required=True, help="the search: its folder, or its name under --output-dir")
    p.add_argument("--out", required=True, help="folder for the preset files")
    p.add_argument("--output-dir", default="searches", help="where searches live (as in orchestrator.search)")
    p.add_argument("--tolerance", type=float, default=None,
                   help="'smallest' = fewest parameters within this many score points of the best (default: the search's, 1.0)")
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        search_dir = find_search(args.search, args.output_dir)
        summary = read_summary(search_dir)
        if args.tolerance is not None:
            if not args.tolerance >= 0 or math.isinf(args.tolerance):
                raise ExportError(f"--tolerance must be >= 0, got {args.tolerance}")
            summary["tolerance"] = args.tolerance
        records = trial_records(load_study(summary), summary)
        if not complete_records(records):
            raise ExportError(f"search {summary.get('name')} has no COMPLETE trial yet; nothing to export")
        paths = write_presets(summary, records, Path(args.out))
    except ExportError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for path in paths:
        print(path)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
