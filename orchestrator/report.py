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
import sys
import tempfile
from pathlib import Path
from typing import Optional, Sequence

from increlora.cli import OneLineParser, UsageError, check_writable_dir, parse_args, prog_name
from increlora.domains import whole
from orchestrator.reporting.report_data import ReportData, ReportError, collect, mlflow_readable
from increlora.atomic import write_text_atomic
from orchestrator.tracking import mlflow_runs
from orchestrator.reporting.report_html import render_html
from orchestrator.reporting.report_markdown import render_markdown

REPORT_HTML = "report.html"


def log_to_mlflow(data: ReportData, path: Path) -> Optional[str]:
    """Log the HTML report on the search's parent run as ``report.html``; returns None on
    success, else why it was not logged."""
    uri, parent = data.summary.get("tracking_uri"), data.summary.get("parent_run_id")
    if not uri or not parent:
        return "the search has no MLflow parent run"
    if not mlflow_readable(uri):
        return f"MLflow store {uri} cannot be reached"
    try:
        with tempfile.TemporaryDirectory(prefix="increlora-report-") as tmp:
            target = Path(tmp) / REPORT_HTML
            target.write_bytes(Path(path).read_bytes())
            mlflow_runs.client(uri).log_artifact(parent, str(target))
    except Exception as exc:
        return f"{type(exc).__name__}: {' '.join(str(exc).split())[:200]}"
    return None


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(
        prog=prog_name("orchestrator.report", "increlora-report"),
        description="Compare the allocations of a search: one self-contained HTML page (Pareto front, heatmaps of "
                    "the front on one colour scale, growth timelines, trials) or a Markdown summary.",
    )
    p.add_argument("--search", required=True, help="the search: its folder, or its name under --output-dir")
    p.add_argument("--output-dir", default="searches", help="where searches live (default: %(default)s)")
    p.add_argument("--format", choices=("html", "markdown"), default="html", help="report format (default: %(default)s)")
    p.add_argument("--output", default=None,
                   help="file to write (default: html: <search folder>/report.html; markdown: standard output)")
    p.add_argument("--trial", type=whole(ge=0).parser(), action="append", default=[], metavar="N",
                   help="draw the growth timeline of trial N (repeatable; default: the preset picks' trials)")
    p.add_argument("--interactive", action=argparse.BooleanOptionalAction, default=None,
                   help="embed an interactive Pareto plot with plotly.js inlined, ~5 MB (default: when plotly is installed)")
    p.add_argument("--mlflow", action=argparse.BooleanOptionalAction, default=True,
                   help="read reference points from MLflow and log the HTML report on the parent run (default: on)")
    return p


def _write(path: Path, text: str) -> Path:
    return write_text_atomic(path, text)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(build_parser(), argv)
    if isinstance(args, int):
        return args

    try:
        if args.output:
            target = Path(args.output).expanduser()
            if target.is_dir():
                raise UsageError(f"--output {target}: is a folder; pass a file name (e.g. {target / REPORT_HTML})")
            check_writable_dir(target.parent, "--output")
        data = collect(args.search, output_dir=args.output_dir, trials=args.trial, use_mlflow=args.mlflow)
        if not args.output and args.format == "html":
            check_writable_dir(data.search_dir, "--search (the report goes into its folder; or pass --output)")

        if args.format == "markdown":
            text = render_markdown(data)
            if args.output:
                print(_write(Path(args.output).expanduser(), text))
            else:
                sys.stdout.write(text)
            return 0
        page = render_html(data, interactive=args.interactive)
        path = _write(Path(args.output).expanduser() if args.output else data.search_dir / REPORT_HTML, page).resolve()
    except (ReportError, UsageError) as exc:
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
