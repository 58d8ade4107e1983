"""What a search prints: one-line messages and errors, and the closing summary (front, where to look)."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from orchestrator.record import SearchRecord


def say(message: str) -> None:
    print(message, flush=True)


def err(message: Any) -> None:
    """``error: <message>`` on one line of stderr."""
    print(f"error: {' '.join(str(message).split())}", file=sys.stderr)


def print_summary(record: "SearchRecord") -> None:
    """The Pareto front as a table and where to look next."""
    from rich.console import Console
    from rich.table import Table

    from orchestrator import tracking

    console = Console(highlight=False, width=max(100, shutil.get_terminal_size((140, 24)).columns))
    results = record.results
    counts = results.counts if results else {}
    table = Table(title=f"Pareto front of {record.name} ({', '.join(f'{v} {k.lower()}' for k, v in sorted(counts.items()))})")
    for col in ("trial", "GLUE score", "adapter params", "total rank", "preset", "run"):
        table.add_column(col, justify="right" if col in ("trial", "GLUE score", "adapter params", "total rank") else "left")
    for row in results.front if results else []:
        table.add_row(str(row["trial"]), f"{float(row['glue_score']):.2f}", f"{int(row['adapter_params']):,}",
                      str(row["total_rank"]), row["labels"], row["run_name"])
    console.print(table)
    uri = record.tracking_uri
    ui = f"open {uri}" if tracking.is_remote(uri) else f"mlflow ui --backend-store-uri {uri}"
    outputs = results.outputs if results else {}
    console.print(f"MLflow:   {ui}   (experiment {record.experiment_name}, parent run {record.parent_run_id})")
    console.print(f"Optuna:   optuna-dashboard {record.storage}   (study {record.study_name})")
    for path in outputs.get("presets", []):
        console.print(f"Preset:   {path}")
    for key in ("front_csv", "pareto_png", "hypervolume_png"):
        if outputs.get(key):
            console.print(f"Output:   {outputs[key]}")
    console.print(f"Summary:  {Path(record.search_dir) / 'search.json'}")
    console.print(f"Export:   python -m orchestrator.export --search {record.search_dir} --out presets/")
    console.print(f"Report:   python -m orchestrator.report --search {record.search_dir}")
