"""``python -m orchestrator.export --search NAME_OR_DIR --out DIR``: re-export a search's presets.

Writes the presets (best, smallest within ``--tolerance`` points of the best, knee) of a finished
or interrupted search into DIR, each with its trial's trained adapter next to it
(``<task>-<label>-adapter/``: a plain peft folder with its model card, when the search saved adapters).
The search is found through its ``search.json`` (a folder, or a name under ``--output-dir``);
everything else comes from its Optuna study and trial folders, so the export works without Ray or MLflow.
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import sys
from pathlib import Path
from typing import Optional, Sequence

from increlora.cli import OneLineParser, UsageError, check_writable_dir, parse_args, prog_name
from increlora.domains import real
from increlora.presets import load_preset
from orchestrator.reporting.finalize import write_presets
from orchestrator.records.record import RecordError, SearchRecord, find_search
from orchestrator.records.results import check_study_exists, load_results
from orchestrator.records.trial_files import trial_dir


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
        adapter = copy_adapter(path, record.search_dir)
        print(f"  adapter: {adapter}" if adapter else "  adapter: none (the search ran with --no-save-adapters)")
    return 0


def copy_adapter(preset_path: Path, search_dir: str) -> Optional[Path]:
    """Copy the preset's trial's adapter folder next to the preset (``<preset stem>-adapter/``); None when
    the trial saved none."""
    trial = (load_preset(preset_path).provenance or {}).get("trial")
    source = trial_dir(search_dir, int(trial)) / "adapter" if trial is not None else None
    if source is None or not (source / "adapter_config.json").is_file():
        return None
    target = Path(preset_path).with_name(Path(preset_path).stem + "-adapter")
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(source, target)
    return target


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
