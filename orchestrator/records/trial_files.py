"""A trial's folder in the search folder: ``trials/tNNN/`` with ``result.json`` (the trainer's record,
written when training finished), the adapter, and ``error.txt`` (one line: why the trial failed)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional, Union

from increlora.atomic import write_text_atomic

RESULT_FILE = "result.json"
ERROR_FILE = "error.txt"


def trial_label(number: int) -> str:
    """``t007``: the short name of Optuna trial 7 (folders and run names)."""
    return f"t{number:03d}" if number >= 0 else "t-manual"


def trial_dir(search_dir: Union[str, Path], number: int) -> Path:
    return Path(search_dir) / "trials" / trial_label(number)


def one_line(exc: BaseException) -> str:
    """``TypeName: message`` on one line, at most 500 characters."""
    text = " ".join(str(exc).split()) or "(no message)"
    out = f"{type(exc).__name__}: {text}"
    return out if len(out) <= 500 else out[:497] + "..."


def write_error(search_dir: Union[str, Path], number: int, reason: str) -> None:
    path = trial_dir(search_dir, number) / ERROR_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, reason + "\n")


def read_error(search_dir: Union[str, Path], number: int, ray_trial_id: Optional[str] = None) -> Optional[str]:
    """Why a trial failed: the line its trainable wrote, else (the worker died: a lost node, an
    out-of-memory kill) the last line of Ray's ``error.txt`` for that Ray trial."""
    try:
        text = (trial_dir(search_dir, number) / ERROR_FILE).read_text().strip()
    except OSError:
        text = ""
    if text or not ray_trial_id:
        return text or None
    for path in sorted(Path(search_dir).glob(f"ray/*/*_{ray_trial_id}/{ERROR_FILE}")):
        lines = [ln.strip() for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
        if lines:
            return " ".join(lines[-1].split())[:500]
    return None


def read_result(search_dir: Union[str, Path], number: int) -> Optional[dict[str, Any]]:
    """The trainer's ``result.json`` of a trial, if it finished training (None otherwise)."""
    try:
        data = json.loads((trial_dir(search_dir, number) / RESULT_FILE).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and "glue_score" in data and "adapter_params" in data else None
