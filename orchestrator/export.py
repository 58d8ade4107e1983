"""``python -m orchestrator.export --search NAME_OR_DIR --out DIR``: re-export a search's presets.

Writes the presets (best, smallest within ``--tolerance`` points of the best, knee) of a finished
or interrupted search into DIR. The search is found through its ``search.json`` (a folder, or a
name under ``--output-dir``); everything else comes from its Optuna study, so the export works
without Ray or MLflow.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from typing import Optional, Sequence

from increlora.cli import OneLineParser, UsageError, check_writable_dir, parse_args, prog_name
from increlora.domains import real


class ExportError(RuntimeError):
    """The search cannot be exported; the one-line message says why."""


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(
        prog=prog_name("orchestrator.export", "increlora-export"),
        description="Write the best / smallest / knee presets of a search as YAML files.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--search", required=True, help="the search: its folder, or its name under --output-dir")
    p.add_argument("--out", required=True, help="folder for the preset files")
    p.add_argument("--output-dir", default="searches", help="where searches live (as in orchestrator.search)")
    p.add_argument("--tolerance", type=real(ge=0).parser(), default=None,
                   help="'smallest' = fewest parameters within this many score points of the best (default: the search's, 1.0)")
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    from orchestrator.finalize import write_presets
    from orchestrator.record import RecordError, SearchRecord, find_search
    from orchestrator.results import check_study_exists, load_results

    args = parse_args(build_parser(), argv)
    if isinstance(args, int):
        return args
    try:
        out = check_writable_dir(args.out, "--out")
        record = SearchRecord.load(find_search(args.search, args.output_dir))
        check_study_exists(record)
        if args.tolerance is not None:  # checked by argparse against its domain (increlora.domains)
            record.choices = dataclasses.replace(record.choices, tolerance=args.tolerance)
        results = load_results(record)
        if not results.complete:
            raise ExportError(f"search {record.name} has no COMPLETE trial yet; nothing to export")
        paths = write_presets(results, out)
    except (ExportError, RecordError, UsageError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for path in paths:
        print(path)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
