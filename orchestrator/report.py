"""``python -m orchestrator.report --search NAME_OR_DIR``: one page that compares a search's allocations.

The HTML report is a single self-contained file (every image is a base64 ``data:`` URI, the CSS is
inline, nothing is fetched from anywhere) that holds:

- the Pareto front as a static PNG (always) and, when plotly is installed, as an interactive plot
  with plotly.js inlined; the preset picks are starred, pruned trials are grey crosses, and the
  LoRA/AdaLoRA trials of other searches in the same MLflow experiment are reference markers;
- the allocation heatmaps of the front's trials side by side, small budget to large, on one
  colour scale (0 to the largest rank of the search: the scale of the heatmaps in MLflow), and
  the rank per module type / per layer of each front trial as stacked bars;
- the growth timeline of the preset trials (or ``--trial N``): which module gained rank at which
  step, from the trainer's ``growth_events`` in ``trials/tNNN/result.json`` (or the trial run's
  ``result.json`` artifact);
- the table of every trial (number, state, score, adapter params, total rank, searched knobs).

By default it is written to ``<search folder>/report.html`` and logged to the search's MLflow
parent run as ``report.html``. ``--format markdown`` prints a terminal version instead (front,
trials, rank per module type). Everything comes from ``search.json``, the Optuna study and the
trial folders; MLflow is only read for the reference points and a missing result file. Errors
(unknown search, missing study) are one line on stderr, exit code 2.
"""

from __future__ import annotations

import argparse
import base64
import datetime as _dt
import html
import json
import math
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

from increlora.naming import MODULE_TYPE_LABELS, MODULE_TYPES

REPORT_HTML = "report.html"
MAX_GALLERY = 48  # heatmaps of the trials off the front, smallest first
MAX_BARS = 16  # bars of the allocation profile


class ReportError(RuntimeError):
    """The search cannot be found or read; the one-line message says why."""


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors and exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        print(f"error: {' '.join(message.split())} (see --help)", file=sys.stderr)
        raise SystemExit(2)


# ----------------------------------------------------------------------------------------------
# What the report shows
# ----------------------------------------------------------------------------------------------


@dataclass
class ReportData:
    summary: dict[str, Any]
    search_dir: Path
    records: list[dict[str, Any]]  # every Optuna trial (orchestrator.export.trial_records)
    done: list[dict[str, Any]]  # COMPLETE trials by number
    front_idx: list[int]  # indices into done
    picks: dict[str, int]  # label -> index into done
    front_rows: list[dict[str, Any]]  # deduplicated front, by adapter params (presets.front_table)
    vmax: float
    reference: dict[str, list[tuple[float, float]]] = field(default_factory=dict)
    timelines: dict[int, dict[str, Any]] = field(default_factory=dict)  # trial number -> result record
    notes: list[str] = field(default_factory=list)

    def record(self, number: int) -> dict[str, Any]:
        return next(r for r in self.records if r["number"] == number)


def _check_storage(summary: dict[str, Any]) -> None:
    from orchestrator.tracking import sqlite_path

    storage = summary.get("storage")
    if not storage or not summary.get("study_name"):
        raise ReportError("search.json names no Optuna storage/study")
    path = sqlite_path(storage)
    if path is not None and not path.is_file():
        raise ReportError(f"the search's Optuna storage {path} is missing")


def _result_record(data_summary: dict[str, Any], search_dir: Path, rec: dict[str, Any]) -> Optional[dict[str, Any]]:
    """The trainer's result of a trial: ``trials/tNNN/result.json``, else the run's artifact."""
    number = int(rec["number"])
    path = search_dir / "trials" / (f"t{number:03d}" if number >= 0 else "t-manual") / "result.json"
    try:
        if path.is_file():
            return json.loads(path.read_text())
    except (OSError, ValueError):
        pass
    run_id, uri = rec.get("mlflow_run_id"), data_summary.get("tracking_uri")
    if not run_id or not uri or not _mlflow_readable(uri):
        return None
    try:
        from mlflow import artifacts

        with tempfile.TemporaryDirectory(prefix="increlora-report-") as tmp:
            local = artifacts.download_artifacts(run_id=run_id, artifact_path="result.json", dst_path=tmp,
                                                 tracking_uri=uri)
            return json.loads(Path(local).read_text())
    except Exception:
        return None


def _mlflow_readable(uri: str) -> bool:
    from orchestrator import tracking

    path = tracking.sqlite_path(uri)
    if path is not None:
        return path.is_file()
    try:
        tracking.check_tracking_uri(uri, timeout=3.0)
    except tracking.TrackingError:
        return False
    return True


def collect(search: str, *, output_dir: str = "searches", trials: Sequence[int] = (), use_mlflow: bool = True) -> ReportData:
    """Read a search (its folder or name) into a :class:`ReportData`; raises ReportError."""
    from orchestrator.export import ExportError, complete_records, find_search, load_study, read_summary, trial_records
    from orchestrator.pareto import pareto_front, select_presets
    from orchestrator.presets import front_table

    try:
        search_dir = find_search(search, output_dir)
        summary = read_summary(search_dir)
        if not isinstance(summary, dict):
            raise ReportError(f"{search_dir / 'search.json'} is not a search summary")
        _check_storage(summary)
        study = load_study(summary)
        records = trial_records(study, summary)
    except ExportError as exc:
        raise ReportError(str(exc)) from None
    except KeyError as exc:
        raise ReportError(f"{search_dir / 'search.json'} lacks {exc}") from None
    except ReportError:
        raise
    except Exception as exc:  # an unreachable or broken study storage
        raise ReportError(f"cannot read the Optuna study of {search}: {type(exc).__name__}: {exc}") from None
    done = complete_records(records)
    tolerance = float(summary.get("tolerance", 1.0))
    points = [(float(r["score"]), float(r["adapter_params"])) for r in done]
    front_idx = pareto_front(points)
    picks = select_presets(points, front_idx, tolerance=tolerance) if front_idx else {}
    vmax = float(max([max(r["allocation"].values()) for r in records if r["allocation"]] or [1]))
    data = ReportData(summary=summary, search_dir=search_dir, records=records, done=done, front_idx=front_idx,
                      picks=picks, front_rows=front_table(records, tolerance=tolerance), vmax=vmax)
    if use_mlflow and summary.get("tracking_uri") and _mlflow_readable(summary["tracking_uri"]):
        from orchestrator.export import baseline_reference

        data.reference = baseline_reference(summary)
    numbers = list(trials)
    known = {r["number"] for r in records}
    for n in numbers:
        if n not in known:
            raise ReportError(f"--trial {n}: the search has no trial {n} (trials: {', '.join(map(str, sorted(known)))})")
    if not numbers:
        for label in ("best", "knee", "smallest"):
            if label in picks and done[picks[label]]["number"] not in numbers:
                numbers.append(done[picks[label]]["number"])
    for n in numbers:
        result = _result_record(summary if use_mlflow else {}, search_dir, data.record(n))
        if result is None:
            data.notes.append(f"trial {n}: no result.json (trials/t{n:03d}/ or its MLflow run), so no growth timeline")
        else:
            data.timelines[n] = result
    return data


# ----------------------------------------------------------------------------------------------
# Small formatting helpers
# ----------------------------------------------------------------------------------------------


def _num(value: Any, digits: int = 2) -> str:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return "-"
    return f"{v:.{digits}f}" if math.isfinite(v) else "-"


def _count(value: Any) -> str:
    try:
        return f"{int(value):,}"
    except (TypeError, ValueError):
        return "-"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _knob(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _labels_of(data: ReportData) -> dict[int, list[str]]:
    out: dict[int, list[str]] = {}
    for label in ("best", "smallest", "knee"):
        if label in data.picks:
            out.setdefault(data.done[data.picks[label]]["number"], []).append(label)
    return out


def _front_numbers(data: ReportData) -> set[int]:
    return {data.done[i]["number"] for i in data.front_idx}


def _rank_by_type(allocation: dict[str, int]) -> dict[str, int]:
    from orchestrator.presets import allocation_summary

    return dict(allocation_summary(allocation).get("rank_by_type", {}))


def _knob_names(data: ReportData) -> list[str]:
    return sorted({k for r in data.records for k in (r.get("params") or {})})


def _front_records(data: ReportData) -> list[dict[str, Any]]:
    """The front's trials, one per distinct (score, params), small budget first."""
    return [data.record(int(row["trial"])) for row in data.front_rows]


def _short_params(n: Any) -> str:
    from orchestrator.plots import format_count

    try:
        return format_count(float(n))
    except (TypeError, ValueError):
        return "-"


# ----------------------------------------------------------------------------------------------
# Figures
# ----------------------------------------------------------------------------------------------


def _data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode("ascii")


def _figures(data: ReportData, tmp: Path) -> dict[str, Any]:
    """Draw every PNG of the report into ``tmp``; returns name -> path (lists for per-trial ones)."""
    from orchestrator import plots

    s = data.summary
    out: dict[str, Any] = {"timelines": []}
    if data.done:
        points = [(float(r["score"]), float(r["adapter_params"])) for r in data.done]
        pruned = [(float(r["score"]), float(r["adapter_params"])) for r in data.records
                  if r["state"] == "PRUNED" and r["score"] is not None and r["adapter_params"] is not None]
        out["pareto"] = plots.pareto_plot(points, data.front_idx, tmp / "pareto.png",
                                          title=f"{s['task']} {s['method']}: {s['name']}", highlight=data.picks,
                                          pruned=pruned, reference=data.reference)
    labels = _labels_of(data)
    front = [r for r in _front_records(data) if r["allocation"]]

    def panel(r: dict[str, Any]) -> str:
        tags = "/".join(labels.get(r["number"], []))
        return (f"t{r['number']:03d} {_short_params(r['adapter_params'])} params\nscore {_num(r['score'])}"
                + (f" ({tags})" if tags else ""))

    if front:
        try:
            out["front_heatmaps"] = plots.heatmap_grid([(panel(r), r["allocation"]) for r in front],
                                                       tmp / "front_heatmaps.png", vmin=0.0, vmax=data.vmax)
        except ValueError:
            pass
    front_numbers = {r["number"] for r in front}
    others = sorted((r for r in data.records if r["allocation"] and r["number"] not in front_numbers),
                    key=lambda r: (float(r["adapter_params"]) if r["adapter_params"] is not None else math.inf, r["number"]))
    if others:
        try:
            out["other_heatmaps"] = plots.heatmap_grid(
                [(panel(r) + ("" if r["state"] == "COMPLETE" else f" {r['state'].lower()}"), r["allocation"])
                 for r in others[:MAX_GALLERY]], tmp / "other_heatmaps.png", vmin=0.0, vmax=data.vmax)
            out["other_count"] = min(len(others), MAX_GALLERY)
        except ValueError:
            pass
    bars = front if len(front) >= 2 else [r for r in data.done if r["allocation"]]
    bars = sorted(bars, key=lambda r: (float(r["adapter_params"]), r["number"]))
    if len(bars) > MAX_BARS:
        step = (len(bars) - 1) / (MAX_BARS - 1)
        bars = [bars[round(i * step)] for i in range(MAX_BARS)]
    if bars:
        star = front_numbers if len(front) < 2 else set()
        try:
            out["profile"] = plots.allocation_profile(
                [(f"t{r['number']:03d}{'*' if r['number'] in star else ''}\n{_short_params(r['adapter_params'])}",
                  r["allocation"]) for r in bars],
                tmp / "profile.png",
                title="rank per module type and per layer, " + ("front trials" if len(front) >= 2 else "trials (* front)")
                      + " by adapter params")
            out["profile_front"] = len(front) >= 2
        except ValueError:
            pass
    for n, result in data.timelines.items():
        rec = data.record(n)
        alloc = result.get("allocation") or rec.get("allocation") or {}
        steps = (result.get("schedule") or {}).get("total_steps") or result.get("steps")
        try:
            path = plots.growth_timeline(result.get("growth_events") or [], alloc, tmp / f"growth_t{n:03d}.png",
                                         title=f"growth of t{n:03d} ({rec.get('run_name') or ''})",
                                         total_steps=int(steps) if steps else None)
        except ValueError:
            continue
        out["timelines"].append((rec, path, result))
    hv = Path(data.search_dir) / "hypervolume.png"
    if hv.is_file():
        out["hypervolume"] = hv
    return out


def _plotly_front(data: ReportData) -> Optional[str]:
    """An interactive Pareto plot (plotly.js inlined), or None without plotly or trials."""
    try:
        import plotly.graph_objects as go
    except ImportError:
        return None
    if not data.done:
        return None
    knobs = _knob_names(data)

    def hover(r: dict[str, Any]) -> str:
        lines = [f"<b>trial {r['number']}</b> {html.escape(r.get('run_name') or '')}",
                 f"score {_num(r['score'])}", f"{_count(r['adapter_params'])} adapter params",
                 f"total rank {sum((r.get('allocation') or {}).values())}"]
        lines += [f"{k} = {_knob(r['params'][k])}" for k in knobs if k in (r.get("params") or {})]
        return "<br>".join(lines)

    fig = go.Figure()
    front_set = set(data.front_idx)
    others = [r for i, r in enumerate(data.done) if i not in front_set]
    if others:
        fig.add_trace(go.Scatter(x=[r["adapter_params"] for r in others], y=[r["score"] for r in others], mode="markers",
                                 name="trials", marker=dict(color="#8fb3d9", size=8), hovertext=[hover(r) for r in others],
                                 hoverinfo="text"))
    front = sorted((data.done[i] for i in data.front_idx), key=lambda r: (r["adapter_params"], -r["score"]))
    if front:
        fig.add_trace(go.Scatter(x=[r["adapter_params"] for r in front], y=[r["score"] for r in front],
                                 mode="lines+markers", line=dict(shape="hv", color="#1f4e8c"), name="Pareto front",
                                 marker=dict(size=9), hovertext=[hover(r) for r in front], hoverinfo="text"))
    pruned = [r for r in data.records if r["state"] == "PRUNED" and r["score"] is not None and r["adapter_params"] is not None]
    if pruned:
        fig.add_trace(go.Scatter(x=[r["adapter_params"] for r in pruned], y=[r["score"] for r in pruned], mode="markers",
                                 name="pruned", marker=dict(symbol="x", color="#b0b0b0", size=8),
                                 hovertext=[hover(r) for r in pruned], hoverinfo="text"))
    symbols = ("square-open", "triangle-up-open", "diamond-open", "circle-open")
    for k, (name, pts) in enumerate(sorted(data.reference.items())):
        fig.add_trace(go.Scatter(x=[p[1] for p in pts], y=[p[0] for p in pts], mode="markers", name=name,
                                 marker=dict(symbol=symbols[k % len(symbols)], size=10, line=dict(width=2)),
                                 hovertemplate=f"{name}<br>score %{{y:.2f}}<br>%{{x:,}} adapter params<extra></extra>"))
    labels = _labels_of(data)
    stars = [data.record(n) for n in labels]
    if stars:
        fig.add_trace(go.Scatter(x=[r["adapter_params"] for r in stars], y=[r["score"] for r in stars],
                                 mode="markers+text", name="presets", text=[" / ".join(labels[r["number"]]) for r in stars],
                                 textposition="top right", marker=dict(symbol="star", size=16, color="#e8a100",
                                                                       line=dict(width=1, color="black")),
                                 hovertext=[hover(r) for r in stars], hoverinfo="text"))
    xs = [float(r["adapter_params"]) for r in data.done] + [p[1] for pts in data.reference.values() for p in pts]
    positive = [x for x in xs if x > 0]
    log_x = bool(positive) and max(positive) / min(positive) > 10
    s = data.summary
    fig.update_layout(title=f"{s['task']} {s['method']}: {s['name']}", xaxis_title="adapter parameters",
                      yaxis_title="GLUE score", template="plotly_white", height=480, margin=dict(l=60, r=20, t=50, b=50),
                      legend=dict(orientation="h", y=-0.18))
    if log_x:
        fig.update_xaxes(type="log")
    return fig.to_html(full_html=False, include_plotlyjs=True, div_id="pareto-interactive",
                       config={"displaylogo": False, "responsive": True})


# ----------------------------------------------------------------------------------------------
# HTML
# ----------------------------------------------------------------------------------------------

_CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:24px;color:#1d1d1f;max-width:1500px}
h1{font-size:22px;margin-bottom:4px} h2{font-size:18px;margin-top:32px;border-bottom:1px solid #ddd;padding-bottom:4px}
.sub{color:#555;margin-top:0} table{border-collapse:collapse;font-size:13px;margin:8px 0}
th,td{border:1px solid #ddd;padding:3px 8px;text-align:right} th{background:#f3f5f8}
td.l,th.l{text-align:left} tr.front td{background:#f4f8ff} code{background:#f3f3f3;padding:1px 4px}
.grid{display:flex;flex-wrap:wrap;gap:12px;align-items:flex-start}
figure{margin:0;border:1px solid #e3e3e3;padding:6px;background:#fff} figcaption{font-size:12px;color:#444;max-width:520px}
img{max-width:100%} .grid img{max-width:680px} dl{display:grid;grid-template-columns:max-content auto;gap:2px 14px;font-size:14px}
dt{color:#555} dd{margin:0} .note{color:#8a5a00;font-size:13px}
"""


def _img(path: Path, alt: str, *, cls: str = "", id_: str = "") -> str:
    attrs = (f' id="{id_}"' if id_ else "") + (f' class="{cls}"' if cls else "")
    return f'<img{attrs} alt="{html.escape(alt)}" src="{_data_uri(path)}">'


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]], *, left: Sequence[int] = (), row_classes: Sequence[str] = (),
           id_: str = "") -> str:
    head = "".join(f'<th class="{"l" if i in left else ""}">{html.escape(str(h))}</th>' for i, h in enumerate(headers))
    body = []
    for k, row in enumerate(rows):
        cls = row_classes[k] if k < len(row_classes) else ""
        cells = "".join(f'<td class="{"l" if i in left else ""}">{html.escape(str(v))}</td>' for i, v in enumerate(row))
        body.append(f'<tr class="{cls}">{cells}</tr>')
    id_attr = f' id="{id_}"' if id_ else ""
    return f"<table{id_attr}><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _overview(data: ReportData) -> list[tuple[str, str]]:
    s = data.summary
    counts: dict[str, int] = {}
    for r in data.records:
        counts[r["state"]] = counts.get(r["state"], 0) + 1
    uri = s.get("tracking_uri") or ""
    from orchestrator.tracking import is_remote

    ui = uri if is_remote(uri) else f"mlflow ui --backend-store-uri {uri}"
    items = [
        ("task / method", f"{s.get('task')} / {s.get('method')}"),
        ("model", str(s.get("model") or "packaged all-MiniLM-L6-v2")),
        ("status", f"{s.get('status')}: {len(data.records)} of {s.get('trials')} trials "
                   f"({', '.join(f'{v} {k.lower()}' for k, v in sorted(counts.items())) or 'none yet'})"),
        ("sampler", f"{s.get('sampler')} (seed {s.get('seed')}), scheduler {s.get('scheduler')}, "
                    f"objective {s.get('objective', 'final')} score"),
        ("training", f"{s.get('train_size')} rows, {s.get('eval_size')} eval rows, {s.get('total_steps')} steps per trial"),
        ("space", str(s.get("space_text") or "")),
        ("hypervolume", f"{float(s['hypervolume']):.6g}" if s.get("hypervolume") is not None else "-"),
        ("heatmap scale", f"rank 0 to {data.vmax:g} (the largest rank of the search) for every heatmap"),
        ("MLflow", f"{ui}  (experiment {s.get('experiment_name')}, parent run {s.get('parent_run_id')})"),
        ("Optuna", f"optuna-dashboard {s.get('storage')}  (study {s.get('study_name')})"),
        ("folder", str(data.search_dir)),
        ("created", f"{s.get('created', '-')}, finished {s.get('finished', '-')}"),
    ]
    return items


def _trial_rows(data: ReportData) -> tuple[list[str], list[list[Any]], list[str]]:
    knobs = _knob_names(data)
    labels = _labels_of(data)
    front = _front_numbers(data)
    headers = ["trial", "state", "GLUE score", "adapter params", "total rank", "front", "presets", "run", *knobs]
    rows, classes = [], []
    for r in sorted(data.records, key=lambda r: r["number"]):
        alloc = r.get("allocation") or {}
        rows.append([r["number"], r["state"], _num(r["score"]), _count(r["adapter_params"]),
                     sum(alloc.values()) if alloc else "-", "yes" if r["number"] in front else "",
                     ",".join(labels.get(r["number"], [])), r.get("run_name") or "",
                     *[_knob(r["params"][k]) if k in (r.get("params") or {}) else "" for k in knobs]])
        classes.append("front" if r["number"] in front else "")
    return headers, rows, classes


def _type_rows(data: ReportData) -> tuple[list[str], list[list[Any]]]:
    front = _front_records(data)
    types = [t for t in MODULE_TYPES if any(t in _rank_by_type(r["allocation"]) for r in front)]
    headers = ["trial", "adapter params", *[MODULE_TYPE_LABELS[t] for t in types], "total rank"]
    rows = []
    for r in front:
        by = _rank_by_type(r["allocation"])
        rows.append([r["number"], _count(r["adapter_params"]), *[by.get(t, 0) for t in types], sum(by.values())])
    return headers, rows


def render_html(data: ReportData, *, interactive: Optional[bool] = None) -> str:
    """The report page as one string (images embedded)."""
    s = data.summary
    esc = html.escape
    with tempfile.TemporaryDirectory(prefix="increlora-report-") as tmp:
        figs = _figures(data, Path(tmp))
        parts = [
            "<!DOCTYPE html>",
            '<html lang="en"><head><meta charset="utf-8">',
            f"<title>{esc(s['name'])}: allocation report</title>",
            f"<style>{_CSS}</style></head><body>",
            f"<h1>Search {esc(s['name'])}</h1>",
            f'<p class="sub">{esc(s.get("method", ""))} on {esc(s.get("task", ""))}: GLUE score against adapter parameters; '
            f"report written {_dt.datetime.now(_dt.timezone.utc).isoformat(timespec='seconds')}</p>",
            "<dl>" + "".join(f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>" for k, v in _overview(data)) + "</dl>",
        ]
        parts.append('<h2 id="front">Pareto front</h2>')
        if not data.done:
            parts.append('<p class="note">No COMPLETE trial yet: no front.</p>')
        else:
            ref = ", ".join(f"{k} ({len(v)} trials)" for k, v in sorted(data.reference.items()))
            parts.append(f"<p>{_plural(len(data.front_rows), 'distinct trial')} on the front; stars mark the preset picks "
                         "(best, smallest within tolerance of the best, knee)"
                         + (f"; reference points from other searches of the experiment: {esc(ref)}" if ref else "")
                         + ".</p>")
            plot = _plotly_front(data) if interactive is not False else None
            if interactive and plot is None:
                data.notes.append("plotly is not installed: the interactive Pareto plot is left out")
            if plot:
                parts.append(f'<div class="interactive">{plot}</div>')
            parts.append('<div class="grid">')
            parts.append("<figure>" + _img(figs["pareto"], "Pareto front", id_="pareto-static")
                         + "<figcaption>Pareto front (static image)</figcaption></figure>")
            if "hypervolume" in figs:
                parts.append("<figure>" + _img(figs["hypervolume"], "hypervolume", id_="hypervolume")
                             + "<figcaption>hypervolume after each trial</figcaption></figure>")
            parts.append("</div>")
            rows = [[row["trial"], _num(row["score"]), _count(row["adapter_params"]), row["total_rank"],
                     row["labels"], row["also_trials"], data.record(int(row["trial"])).get("run_name") or "",
                     row.get("mlflow_run_id") or ""] for row in data.front_rows]
            parts.append(_table(["trial", "GLUE score", "adapter params", "total rank", "presets", "same result as",
                                 "run", "MLflow run id"], rows, left=(4, 5, 6, 7), id_="front-table"))
        parts.append('<h2 id="allocations">Allocations on the front</h2>')
        if "front_heatmaps" in figs:
            parts.append(f"<p>Final rank of every adapted module (rows: layers, columns: q k v o f1 f2), the front's "
                         f"trials from the smallest to the largest budget, on one colour scale (rank 0 to {data.vmax:g}, "
                         "the scale of the heatmaps on the MLflow trial runs).</p>")
            parts.append('<figure class="heatmaps">' + _img(figs["front_heatmaps"], "heatmaps of the front's trials",
                                                             cls="heatmap", id_="front-heatmaps")
                         + "<figcaption>front trials, one colour scale</figcaption></figure>")
            if "profile" in figs:
                what = "the front's trials" if figs.get("profile_front") else "the trials (* on the front)"
                parts.append("<figure>" + _img(figs["profile"], "rank per module type and layer", id_="profile")
                             + f"<figcaption>where the rank went in {what}: total rank per module type and per layer"
                             "</figcaption></figure>")
            headers, rows = _type_rows(data)
            parts.append("<h3>Rank per module type (front)</h3>" + _table(headers, rows, id_="type-table"))
            if "other_heatmaps" in figs:
                parts.append(f'<details id="other-trials"><summary>Heatmaps of {figs["other_count"]} trials off the front '
                             "(same colour scale, smallest budget first)</summary>"
                             + _img(figs["other_heatmaps"], "heatmaps of the other trials", cls="heatmap",
                                    id_="other-heatmaps") + "</details>")
        else:
            parts.append('<p class="note">No allocation recorded for the front\'s trials.</p>')
        parts.append('<h2 id="growth">Growth timeline</h2>')
        if figs["timelines"]:
            parts.append("<p>Which module gained rank at which step (marker size: ranks added; top: total rank).</p>")
            parts.append('<div class="grid" id="timelines">')
            for rec, path, result in figs["timelines"]:
                events = result.get("growth_events") or []
                rounds = len({e.get("step") for e in events})
                cap = (f"trial {rec['number']} {rec.get('run_name') or ''}: {_plural(len(events), 'grant')} in "
                       f"{_plural(rounds, 'growth round')}")
                parts.append('<figure class="timeline">' + _img(path, f"growth timeline of trial {rec['number']}",
                                                                cls="timeline")
                             + f"<figcaption>{esc(cap)}</figcaption></figure>")
            parts.append("</div>")
        else:
            parts.append('<p class="note">No growth timeline (no result file for the chosen trials).</p>')
        parts.append('<h2 id="trials">Trials</h2>')
        headers, rows, classes = _trial_rows(data)
        parts.append(_table(headers, rows, left=(1, 5, 6, 7), row_classes=classes, id_="trials-table"))
        for note in data.notes:
            parts.append(f'<p class="note">{esc(note)}</p>')
        parts.append("</body></html>")
    return "\n".join(parts)


# ----------------------------------------------------------------------------------------------
# Markdown
# ----------------------------------------------------------------------------------------------


def _md_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    def cell(v: Any) -> str:
        return str(v).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(cell(h) for h in headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def render_markdown(data: ReportData) -> str:
    s = data.summary
    out = [f"# Search {s['name']}: {s.get('method')} on {s.get('task')}", ""]
    out += [f"- {k}: {v}" for k, v in _overview(data)]
    out += ["", "## Pareto front", ""]
    if data.front_rows:
        rows = [[row["trial"], _num(row["score"]), _count(row["adapter_params"]), row["total_rank"], row["labels"],
                 row["also_trials"], data.record(int(row["trial"])).get("run_name") or ""] for row in data.front_rows]
        out.append(_md_table(["trial", "GLUE score", "adapter params", "total rank", "presets", "same result as", "run"], rows))
        if data.reference:
            out += ["", "Reference points in the experiment: "
                    + ", ".join(f"{k}: " + ", ".join(f"{p[0]:.2f} @ {_count(p[1])}" for p in sorted(v, key=lambda p: p[1]))
                                for k, v in sorted(data.reference.items()))]
    else:
        out.append("No COMPLETE trial yet: no front.")
    out += ["", "## Trials", ""]
    headers, rows, _ = _trial_rows(data)
    out.append(_md_table(headers, rows))
    if data.front_rows:
        out += ["", "## Rank per module type (front trials)", ""]
        headers, rows = _type_rows(data)
        out.append(_md_table(headers, rows))
    for n, result in data.timelines.items():
        events = result.get("growth_events") or []
        steps = sorted({int(e["step"]) for e in events if "step" in e})
        grown: dict[str, int] = {}
        for e in events:
            grown[str(e.get("module"))] = grown.get(str(e.get("module")), 0) + int(e.get("added", 0))
        from increlora.naming import short_key

        top = sorted(grown.items(), key=lambda kv: (-kv[1], kv[0]))[:6]
        out += ["", f"## Growth of trial {n}", ""]
        if steps:
            out.append(f"{_plural(len(events), 'grant')} in {_plural(len(steps), 'round')}, steps {steps[0]}..{steps[-1]}; "
                       "most grown: " + ", ".join(f"{short_key(m)} +{a}" for m, a in top))
        else:
            out.append("No growth events.")
    for note in data.notes:
        out += ["", f"Note: {note}"]
    return "\n".join(out) + "\n"


# ----------------------------------------------------------------------------------------------
# CLI
# ----------------------------------------------------------------------------------------------


def log_to_mlflow(data: ReportData, path: Path) -> Optional[str]:
    """Log the HTML report on the search's parent run as ``report.html``; returns None on
    success, else why it was not logged."""
    from orchestrator import tracking

    uri, parent = data.summary.get("tracking_uri"), data.summary.get("parent_run_id")
    if not uri or not parent:
        return "the search has no MLflow parent run"
    if not _mlflow_readable(uri):
        return f"MLflow store {uri} cannot be reached"
    try:
        with tempfile.TemporaryDirectory(prefix="increlora-report-") as tmp:
            target = Path(tmp) / REPORT_HTML
            target.write_bytes(Path(path).read_bytes())
            tracking.client(uri).log_artifact(parent, str(target))
    except Exception as exc:
        return f"{type(exc).__name__}: {' '.join(str(exc).split())[:200]}"
    return None


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="python -m orchestrator.report",
        description="Compare the allocations of a search: one self-contained HTML page (Pareto front, heatmaps of "
                    "the front on one colour scale, growth timelines, trials) or a Markdown summary.",
    )
    p.add_argument("--search", required=True, help="the search: its folder, or its name under --output-dir")
    p.add_argument("--output-dir", default="searches", help="where searches live (default: %(default)s)")
    p.add_argument("--format", choices=("html", "markdown"), default="html", help="report format (default: %(default)s)")
    p.add_argument("--output", default=None,
                   help="file to write (default: html: <search folder>/report.html; markdown: standard output)")
    p.add_argument("--trial", type=int, action="append", default=[], metavar="N",
                   help="draw the growth timeline of trial N (repeatable; default: the preset picks' trials)")
    p.add_argument("--interactive", action=argparse.BooleanOptionalAction, default=None,
                   help="embed an interactive Pareto plot with plotly.js inlined, ~5 MB (default: when plotly is installed)")
    p.add_argument("--mlflow", action=argparse.BooleanOptionalAction, default=True,
                   help="read reference points from MLflow and log the HTML report on the parent run (default: on)")
    return p


def _write(path: Path, text: str) -> Path:
    from increlora.atomic import write_text_atomic

    return write_text_atomic(path, text)


def main(argv: Optional[Sequence[str]] = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    try:
        data = collect(args.search, output_dir=args.output_dir, trials=args.trial, use_mlflow=args.mlflow)
        if args.format == "markdown":
            text = render_markdown(data)
            if args.output:
                print(_write(Path(args.output).expanduser(), text))
            else:
                sys.stdout.write(text)
            return 0
        page = render_html(data, interactive=args.interactive)
        path = _write(Path(args.output).expanduser() if args.output else data.search_dir / REPORT_HTML, page).resolve()
    except ReportError as exc:
        print(f"error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"error: {type(exc).__name__}: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    print(path)
    if args.mlflow:
        why = log_to_mlflow(data, path)
        if why is None:
            print(f"logged to MLflow run {data.summary['parent_run_id']} as {REPORT_HTML}")
        else:
            print(f"warning: report not logged to MLflow ({why})", file=sys.stderr)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
