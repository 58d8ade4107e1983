"""The files and keys of seed runs: a confirmation run's folder and Optuna attribute, the keys a replicate or a
confirmation job carries in its Ray config, and reading the finished confirmation runs back.

The bottom of the seed machinery (:mod:`orchestrator.running.confirmation` runs the stage,
:mod:`orchestrator.running.searcher` makes replicates, :mod:`orchestrator.records.results` counts both): it imports
none of them.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Optional, Union

from orchestrator.records.record import SearchRecord
from orchestrator.records.trial_files import RESULT_FILE, trial_dir
from orchestrator.tracking.trial_run import read_run_id

CONFIRM_OF_KEY = "confirm_of"  # a confirmation job's config: the trial it confirms
SEED_INDEX_KEY = "seed_index"  # ... and its seed index (also on a replicate's config)
STUDY_ATTR_PREFIX = "confirm:"


def confirm_dir(search_dir: Union[str, Path], number: int, index: int) -> Path:
    """``trials/tNNN/seed-J``: the folder of trial NNN's confirmation run on seed index J."""
    return trial_dir(search_dir, number) / f"seed-{int(index)}"


def _score_of(record: SearchRecord, result: dict[str, Any]) -> Optional[float]:
    value = result.get("glue_score" if record.objective == "final" else "best_glue_score")
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def read_confirmations(record: SearchRecord, study: Any = None) -> dict[int, dict[int, dict[str, Any]]]:
    """trial number -> seed index -> ``{"score", "adapter_params", "seed", "mlflow_run_id"}`` of its finished
    confirmation runs: the result files, and the study's ``confirm:`` user attributes for what the files lack."""
    out: dict[int, dict[int, dict[str, Any]]] = {}
    for path in sorted(Path(record.search_dir).glob(f"trials/t*/seed-*/{RESULT_FILE}")):
        try:
            number = int(path.parent.parent.name[1:])
            index = int(path.parent.name.split("-", 1)[1])
            result = json.loads(path.read_text())
            score = _score_of(record, result)
            params = float(result["adapter_params"])
        except (ValueError, KeyError, TypeError, OSError):
            continue
        if score is None or index < 1:
            continue
        out.setdefault(number, {})[index] = {"score": score, "adapter_params": params, "seed": (result.get("config") or {}).get("seed"),
                                             "mlflow_run_id": _run_id(path.parent)}
    if study is not None:
        for key, value in (study.user_attrs or {}).items():
            if not key.startswith(STUDY_ATTR_PREFIX) or not isinstance(value, dict):
                continue
            try:
                _, trial, seed = key.split(":")
                number, index = int(trial[1:]), int(seed[1:])
                run = {"score": float(value["score"]), "adapter_params": float(value["adapter_params"]),
                       "seed": value.get("seed"), "mlflow_run_id": value.get("mlflow_run_id")}
            except (ValueError, KeyError, TypeError):
                continue
            out.setdefault(number, {}).setdefault(index, run)
    return out


def _run_id(folder: Path) -> Optional[str]:
    try:
        return read_run_id(folder)
    except Exception:
        return None
