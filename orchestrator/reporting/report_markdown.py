"""The search report as Markdown, for the terminal (``--format markdown``). See :mod:`orchestrator.report`."""

from __future__ import annotations

from typing import Any, Sequence

from orchestrator.reporting.console import plural
from orchestrator.reporting.report_data import (ReportData, count, front_score_cells, front_score_headers, overview,
                                                trial_rows, type_rows)
from increlora.naming import short_key


def _md_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    def cell(v: Any) -> str:
        return str(v).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(cell(h) for h in headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def render_markdown(data: ReportData) -> str:
    s = data.summary
    out = [f"# Search {s['name']}: {s.get('method')} on {s.get('task')}", ""]
    out += [f"- {k}: {v}" for k, v in overview(data)]
    confirmed = data.results.confirmed
    out += ["", "## Confirmed Pareto front (means over seeds)" if confirmed else "## Pareto front", ""]
    if data.front_rows:
        rows = [[row["trial"], *front_score_cells(row, confirmed), count(row["adapter_params"]), row["total_rank"],
                 row["labels"], row["also_trials"], data.record(int(row["trial"])).run_name or ""]
                for row in data.front_rows]
        out.append(_md_table(["trial", *front_score_headers(confirmed, data.score_name), "adapter params", "total rank", "presets",
                              "same result as", "run"], rows))
        if data.reference:
            out += ["", "Reference points in the experiment: "
                    + ", ".join(f"{k}: " + ", ".join(f"{p[0]:.2f} @ {count(p[1])}" for p in sorted(v, key=lambda p: p[1]))
                                for k, v in sorted(data.reference.items()))]
    else:
        out.append("No COMPLETE trial yet: no front.")
    out += ["", "## Trials", ""]
    headers, rows, _ = trial_rows(data)
    out.append(_md_table(headers, rows))
    if data.front_rows:
        out += ["", "## Rank per module type (front trials)", ""]
        headers, rows = type_rows(data)
        out.append(_md_table(headers, rows))
    for n, result in data.timelines.items():
        events = result.get("growth_events") or []
        steps = sorted({int(e["step"]) for e in events if "step" in e})
        grown: dict[str, int] = {}
        for e in events:
            grown[str(e.get("module"))] = grown.get(str(e.get("module")), 0) + int(e.get("added", 0))

        top = sorted(grown.items(), key=lambda kv: (-kv[1], kv[0]))[:6]
        out += ["", f"## Growth of trial {n}", ""]
        if steps:
            out.append(f"{plural(len(events), 'grant')} in {plural(len(steps), 'round')}, steps {steps[0]}..{steps[-1]}; "
                       "most grown: " + ", ".join(f"{short_key(m)} +{a}" for m, a in top))
        else:
            out.append("No growth events.")
    for note in data.notes:
        out += ["", f"Note: {note}"]
    return "\n".join(out) + "\n"
