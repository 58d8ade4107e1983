"""The search report as one self-contained HTML page (images inlined as data URIs, CSS inline;
optionally an interactive Pareto plot with plotly.js inlined). See :mod:`orchestrator.report`."""

from __future__ import annotations

import base64
import datetime as _dt
import html
import math
import tempfile
from pathlib import Path
from typing import Any, Optional, Sequence

from orchestrator.reporting.console import plural
from orchestrator.records.trial_record import TrialRecord
from orchestrator.reporting.report_data import (
    ReportData,
    front_score_cells,
    front_score_headers,
    count,
    front_records,
    knob,
    knob_names,
    labels_of,
    num,
    overview,
    short_params,
    trial_rows,
    type_rows,
)
from orchestrator.reporting import allocation_plots, plots

MAX_GALLERY = 48  # heatmaps of the trials off the front, smallest first
MAX_BARS = 16  # bars of the allocation profile


def _data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode("ascii")


def _figures(data: ReportData, tmp: Path) -> dict[str, Any]:
    """Draw every PNG of the report into ``tmp``; returns name -> path (lists for per-trial ones)."""
    s = data.summary
    out: dict[str, Any] = {"timelines": []}
    if data.done:
        points = data.results.points()
        pruned = data.results.pruned_points()
        intervals = [(c.ci_low, c.ci_high) if c.has_interval else None for c in data.done]
        out["pareto"] = plots.pareto_plot(points, data.front_idx, tmp / "pareto.png",
                                          title=f"{s['task']} {s['method']}: {s['name']}", highlight=data.picks,
                                          pruned=pruned, reference=data.reference, intervals=intervals,
                                          single_runs=data.results.single_points() if data.results.confirmed else None,
                                          ylabel=data.score_name)
    labels = labels_of(data)
    front = [r for r in front_records(data) if r.allocation]

    def panel(r: TrialRecord) -> str:
        tags = "/".join(labels.get(r.number, []))
        return (f"t{r.number:03d} {short_params(r.adapter_params)} params\nscore {num(r.score)}"
                + (f" ({tags})" if tags else ""))

    if front:
        try:
            out["front_heatmaps"] = allocation_plots.heatmap_grid([(panel(r), r.allocation) for r in front],
                                                       tmp / "front_heatmaps.png", vmin=0.0, vmax=data.vmax)
        except ValueError:
            pass
    front_numbers = {r.number for r in front}
    others = sorted((r for r in data.records if r.allocation and r.number not in front_numbers),
                    key=lambda r: (float(r.adapter_params) if r.adapter_params is not None else math.inf, r.number))
    if others:
        try:
            out["other_heatmaps"] = allocation_plots.heatmap_grid(
                [(panel(r) + ("" if r.state == "COMPLETE" else f" {r.state.lower()}"), r.allocation)
                 for r in others[:MAX_GALLERY]], tmp / "other_heatmaps.png", vmin=0.0, vmax=data.vmax)
            out["other_count"] = min(len(others), MAX_GALLERY)
        except ValueError:
            pass
    bars: list[TrialRecord] = front if len(front) >= 2 else [r for r in data.done if r.allocation]
    bars = sorted(bars, key=lambda r: (float(r.adapter_params), r.number))
    if len(bars) > MAX_BARS:
        step = (len(bars) - 1) / (MAX_BARS - 1)
        bars = [bars[round(i * step)] for i in range(MAX_BARS)]
    if bars:
        star = front_numbers if len(front) < 2 else set()
        try:
            out["profile"] = allocation_plots.allocation_profile(
                [(f"t{r.number:03d}{'*' if r.number in star else ''}\n{short_params(r.adapter_params)}",
                  r.allocation) for r in bars],
                tmp / "profile.png",
                title="rank per module type and per layer, " + ("front trials" if len(front) >= 2 else "trials (* front)")
                      + " by adapter params")
            out["profile_front"] = len(front) >= 2
        except ValueError:
            pass
    for n, result in data.timelines.items():
        rec = data.record(n)
        alloc = result.get("allocation") or rec.allocation
        steps = (result.get("schedule") or {}).get("total_steps") or result.get("steps")
        try:
            path = allocation_plots.growth_timeline(result.get("growth_events") or [], alloc, tmp / f"growth_t{n:03d}.png",
                                         title=f"growth of t{n:03d} ({rec.run_name or ''})",
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
    knobs = knob_names(data)

    def hover(r: TrialRecord) -> str:
        lines = [f"<b>trial {r.number}</b> {html.escape(r.run_name or '')}",
                 f"score {num(r.score)}", f"{count(r.adapter_params)} adapter params",
                 f"total rank {r.total_rank}"]
        lines += [f"{k} = {knob(r.params[k])}" for k in knobs if k in r.params]
        return "<br>".join(lines)

    fig = go.Figure()
    front_set = set(data.front_idx)
    others = [r for i, r in enumerate(data.done) if i not in front_set]
    if others:
        fig.add_trace(go.Scatter(x=[r.adapter_params for r in others], y=[r.score for r in others], mode="markers",
                                 name="trials", marker=dict(color="#8fb3d9", size=8), hovertext=[hover(r) for r in others],
                                 hoverinfo="text"))
    front = sorted((data.done[i] for i in data.front_idx), key=lambda r: (r.adapter_params, -r.score))
    if front:
        fig.add_trace(go.Scatter(x=[r.adapter_params for r in front], y=[r.score for r in front],
                                 mode="lines+markers", line=dict(shape="hv", color="#1f4e8c"), name="Pareto front",
                                 marker=dict(size=9), hovertext=[hover(r) for r in front], hoverinfo="text"))
    pruned = [r for r in data.records if r.state == "PRUNED" and r.score is not None and r.adapter_params is not None]
    if pruned:
        fig.add_trace(go.Scatter(x=[r.adapter_params for r in pruned], y=[r.score for r in pruned], mode="markers",
                                 name="pruned", marker=dict(symbol="x", color="#b0b0b0", size=8),
                                 hovertext=[hover(r) for r in pruned], hoverinfo="text"))
    symbols = ("square-open", "triangle-up-open", "diamond-open", "circle-open")
    for k, (name, pts) in enumerate(sorted(data.reference.items())):
        fig.add_trace(go.Scatter(x=[p[1] for p in pts], y=[p[0] for p in pts], mode="markers", name=name,
                                 marker=dict(symbol=symbols[k % len(symbols)], size=10, line=dict(width=2)),
                                 hovertemplate=f"{name}<br>score %{{y:.2f}}<br>%{{x:,}} adapter params<extra></extra>"))
    labels = labels_of(data)
    stars = [data.record(n) for n in labels]
    if stars:
        fig.add_trace(go.Scatter(x=[r.adapter_params for r in stars], y=[r.score for r in stars],
                                 mode="markers+text", name="presets", text=[" / ".join(labels[r.number]) for r in stars],
                                 textposition="top right", marker=dict(symbol="star", size=16, color="#e8a100",
                                                                       line=dict(width=1, color="black")),
                                 hovertext=[hover(r) for r in stars], hoverinfo="text"))
    xs = [float(r.adapter_params) for r in data.done] + [p[1] for pts in data.reference.values() for p in pts]
    positive = [x for x in xs if x > 0]
    log_x = bool(positive) and max(positive) / min(positive) > 10
    s = data.summary
    fig.update_layout(title=f"{s['task']} {s['method']}: {s['name']}", xaxis_title="adapter parameters",
                      yaxis_title=data.score_name, template="plotly_white", height=480, margin=dict(l=60, r=20, t=50, b=50),
                      legend=dict(orientation="h", y=-0.18))
    if log_x:
        fig.update_xaxes(type="log")
    return fig.to_html(full_html=False, include_plotlyjs=True, div_id="pareto-interactive",
                       config={"displaylogo": False, "responsive": True})



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
            f'<p class="sub">{esc(s.get("method", ""))} on {esc(s.get("task", ""))}: {esc(data.score_name)} against adapter parameters; '
            f"report written {_dt.datetime.now(_dt.timezone.utc).isoformat(timespec='seconds')}</p>",
            "<dl>" + "".join(f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>" for k, v in overview(data)) + "</dl>",
        ]
        parts.append('<h2 id="front">Pareto front</h2>')
        if not data.done:
            parts.append('<p class="note">No COMPLETE trial yet: no front.</p>')
        else:
            ref = ", ".join(f"{k} ({len(v)} trials)" for k, v in sorted(data.reference.items()))
            parts.append(f"<p>{plural(len(data.front_rows), 'distinct trial')} on the front; stars mark the preset picks "
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
            confirmed = data.results.confirmed
            rows = [[row["trial"], *front_score_cells(row, confirmed), count(row["adapter_params"]), row["total_rank"],
                     row["labels"], row["also_trials"], data.record(int(row["trial"])).run_name or "",
                     row.get("mlflow_run_id") or ""] for row in data.front_rows]
            extra = 2 if confirmed else 0
            parts.append(_table(["trial", *front_score_headers(confirmed, data.score_name), "adapter params", "total rank", "presets",
                                 "same result as", "run", "MLflow run id"], rows,
                                left=tuple(i + extra for i in (4, 5, 6, 7)), id_="front-table"))
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
            headers, rows = type_rows(data)
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
                cap = (f"trial {rec.number} {rec.run_name or ''}: {plural(len(events), 'grant')} in "
                       f"{plural(rounds, 'growth round')}")
                parts.append('<figure class="timeline">' + _img(path, f"growth timeline of trial {rec.number}",
                                                                cls="timeline")
                             + f"<figcaption>{esc(cap)}</figcaption></figure>")
            parts.append("</div>")
        else:
            parts.append('<p class="note">No growth timeline (no result file for the chosen trials).</p>')
        parts.append('<h2 id="trials">Trials</h2>')
        headers, rows, classes = trial_rows(data)
        parts.append(_table(headers, rows, left=(1, 5, 6, 7), row_classes=classes, id_="trials-table"))
        for note in data.notes:
            parts.append(f'<p class="note">{esc(note)}</p>')
        parts.append("</body></html>")
    return "\n".join(parts)
