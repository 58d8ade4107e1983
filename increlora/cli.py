"""Command-line helpers shared by every CLI of the project: one-line usage errors, number parsers."""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
from pathlib import Path
from typing import Optional, Sequence, Union


class OneLineParser(argparse.ArgumentParser):
    """argparse whose usage errors are one line on stderr (``error: ... (see --help)``), exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        print(f"error: {' '.join(message.split())} (see --help)", file=sys.stderr)
        raise SystemExit(2)


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value >= 0 or math.isinf(value):
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def parse_args(parser: argparse.ArgumentParser, argv: Optional[Sequence[str]]) -> Union[argparse.Namespace, int]:
    """Parsed arguments, or the exit code argparse chose (0 after ``--help``, 2 after a usage error, already
    printed), so that ``main(argv)`` functions return codes instead of raising SystemExit."""
    try:
        return parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)


class UsageError(ValueError):
    """Bad input found before any work: the one-line message says what to fix."""


def check_writable_dir(path: Union[str, "os.PathLike[str]"], flag: str) -> Path:
    """``path`` as an absolute folder that exists or can be created, and that can be written to.

    Probed by creating (and removing) a temporary entry: in ``path`` when it exists, else in its
    nearest existing parent, so a file in the way, a read-only place or a missing permission is
    found before any work starts and nothing is left behind. UsageError names ``flag``.
    """
    p = Path(path).expanduser().resolve()
    if p.exists() and not p.is_dir():
        raise UsageError(f"{flag} {p}: is a file, not a folder; pass a folder")
    probe_in = p
    while not probe_in.exists():
        probe_in = probe_in.parent
    if not probe_in.is_dir():
        raise UsageError(f"{flag} {p}: {probe_in} is a file, not a folder; pass another {flag}")
    try:
        tempfile.TemporaryDirectory(dir=probe_in, prefix=".write-probe-").cleanup()
    except OSError as exc:
        raise UsageError(f"{flag} {p}: cannot write in {probe_in} ({exc.strerror or exc}); pass a writable folder") from None
    return p


def prog_name(module: str, script: str) -> str:
    """The program name usage lines show: the console script (``increlora-search``) when run as one,
    else ``python -m <module>``."""
    return script if Path(sys.argv[0]).name == script else f"python -m {module}"
