"""``python -m orchestrator.search``: a multi-objective budget search over IncreLoRA (or a baseline).

The command line: its flags (:func:`orchestrator.running.settings.build_parser`), its exit codes and its last
words; the search itself, new or ``--resume``, is :mod:`orchestrator.running.driver`'s story.
"""

from __future__ import annotations

import sys
from typing import Optional, Sequence

from increlora.cli import parse_args
from orchestrator.reporting.console import err
from orchestrator.running.driver import LAST_WORDS, run_search
from orchestrator.running.settings import SearchError, build_parser
from orchestrator.tracking.mlflow_runs import redact


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of ``python -m orchestrator.search``; returns the exit code."""
    args = parse_args(build_parser(), argv)
    if isinstance(args, int):  # --help (0) or a usage error (2, already printed)
        return args
    argv_list = list(sys.argv[1:] if argv is None else argv)
    try:
        return run_search(args, argv_list)
    except SearchError as exc:
        err(redact(str(exc)))
        return 2
    except KeyboardInterrupt:
        err("interrupted")
        return 130
    finally:
        while LAST_WORDS:
            err(LAST_WORDS.pop(0))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
