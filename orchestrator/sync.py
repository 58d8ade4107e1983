"""``python -m orchestrator.sync --search NAME_OR_DIR``: send a search's records to MLflow after an outage.

While the tracking server is unreachable, each trial appends its MLflow calls to its folder
(``trials/tNNN/mlflow_spool.jsonl``, see :mod:`orchestrator.tracking.trial_run`) and a search that ends
during the outage keeps its front, plots and presets on disk only, with its parent run still RUNNING.
Once the server answers again, this command replays every spool in order (creating the runs that never
were), logs the parent run's record (front, presets, plots, description), as the search would have, and,
when the search's session is over, ends the child runs left RUNNING (KILLED) and the parent run with the
status the search would have given it (FINISHED for a finished search). It holds the search folder's lock
(:mod:`orchestrator.tracking.lock`) meanwhile, so it never runs beside the search itself or a ``--resume``.
"""

from __future__ import annotations

import argparse
import sys
from typing import Optional, Sequence

from increlora.cli import OneLineParser, parse_args, prog_name
from orchestrator.tracking import mlflow_runs
from orchestrator.reporting.finalize import finalize, parent_run_status
from orchestrator.tracking.lock import SearchLock, SearchLocked
from orchestrator.records.record import RecordError, SearchRecord, find_search
from orchestrator.records.results import check_study_exists, load_results
from orchestrator.records.trial_files import one_line


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog=prog_name("orchestrator.sync", "increlora-sync"),
                      description="Replay a search's spooled MLflow records and log its parent run once the server is back.")
    p.add_argument("--search", required=True, help="the search: its folder, or its name under --output-dir")
    p.add_argument("--output-dir", default="searches", help="where searches live (default: %(default)s)")
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(build_parser(), argv)
    if isinstance(args, int):
        return args
    try:
        record = SearchRecord.load(find_search(args.search, args.output_dir))
        mlflow_runs.check_tracking_uri(record.tracking_uri, timeout=5.0)
        check_study_exists(record)
    except (RecordError, mlflow_runs.TrackingError) as exc:
        print(f"error: {mlflow_runs.redact(str(exc))}", file=sys.stderr)
        return 2
    try:
        lock = SearchLock.acquire(record.dir, record.name)
    except SearchLocked as exc:
        print(f"error: sync: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"error: sync: cannot lock search {record.name} ({record.dir}: {exc.strerror or exc})", file=sys.stderr)
        return 2
    with lock:
        return _sync(record)


def _sync(record) -> int:  # noqa: ANN001 - a SearchRecord

    summary = finalize(record, quiet=True)
    if "mlflow" in summary.outputs:
        print(f"error: MLflow {mlflow_runs.redact(summary.outputs['mlflow'])}", file=sys.stderr)
        return 1
    status = parent_run_status(record, len(load_results(record).complete))
    closed = ""
    if status is not None and record.parent_run_id:
        try:
            mlflow_runs.close_dangling_runs(record.tracking_uri, record.experiment_id, record.parent_run_id, "KILLED")
            if mlflow_runs.run_status(mlflow_runs.client(record.tracking_uri), record.parent_run_id) != status:
                mlflow_runs.client(record.tracking_uri).set_terminated(record.parent_run_id, status)
        except Exception as exc:
            print(f"error: MLflow: the parent run {record.parent_run_id} of {record.name} could not be closed "
                  f"({mlflow_runs.redact(one_line(exc))}); run this command again", file=sys.stderr)
            return 1
        closed = f", closed {status}"
    print(f"{record.name}: MLflow records sent ({len(summary.front)} front trials, parent run {record.parent_run_id}{closed})")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
