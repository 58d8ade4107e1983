"""``python -m orchestrator.sync --search NAME_OR_DIR``: send a search's records to MLflow after an outage.

While the tracking server is unreachable, each trial appends its MLflow calls to its folder
(``trials/tNNN/mlflow_spool.jsonl``, see :mod:`orchestrator.trial_run`) and a search that ends
during the outage keeps its front, plots and presets on disk only. Once the server answers again,
this command replays every spool in order (creating the runs that never were) and logs the
parent run's record (front, presets, plots, description), as the search would have.
"""

from __future__ import annotations

import argparse
import sys
from typing import Optional, Sequence

from increlora.cli import OneLineParser, parse_args, prog_name


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog=prog_name("orchestrator.sync", "increlora-sync"),
                      description="Replay a search's spooled MLflow records and log its parent run once the server is back.")
    p.add_argument("--search", required=True, help="the search: its folder, or its name under --output-dir")
    p.add_argument("--output-dir", default="searches", help="where searches live (default: %(default)s)")
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    from orchestrator import tracking
    from orchestrator.finalize import finalize
    from orchestrator.record import RecordError, SearchRecord, find_search
    from orchestrator.results import check_study_exists

    args = parse_args(build_parser(), argv)
    if isinstance(args, int):
        return args
    try:
        record = SearchRecord.load(find_search(args.search, args.output_dir))
        tracking.check_tracking_uri(record.tracking_uri, timeout=5.0)
        check_study_exists(record)
    except (RecordError, tracking.TrackingError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    summary = finalize(record)
    if "mlflow" in summary.outputs:
        print(f"error: MLflow {summary.outputs['mlflow']}", file=sys.stderr)
        return 1
    print(f"{record.name}: MLflow records sent ({len(summary.front)} front trials, parent run {record.parent_run_id})")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
