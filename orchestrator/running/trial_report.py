"""What a trial reports to Ray Tune, as one type shared by every reader.

The trainable sends a :class:`TrialReport` after every evaluation (``final=False``) and one closing
report after training and logging finished (``final=True``). The searcher (Optuna), the MLflow
callback and the console read Ray's result dicts back with :meth:`TrialReport.from_result`, so the
key names live here only.

Ray's result keys: ``glue_score`` and ``adapter_params`` (the two objectives, in every report, as
OptunaSearch requires), ``evaluation`` (ASHA's time attribute), ``final``, ``trial_number`` and the
rest of the fields below; the allocation travels as a JSON string (Ray flattens dicts).
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from typing import Any, Optional

SCORE = "glue_score"
PARAMS = "adapter_params"
METRICS = (SCORE, PARAMS)
MODES = ("max", "min")
FINAL_KEY = "final"
TRIAL_NUMBER_KEY = "trial_number"
TIME_ATTR = "evaluation"


@dataclass
class TrialReport:
    """One report of a trial (an evaluation, or the closing report with ``final=True``)."""

    glue_score: float  # objective 1 (the final or the best evaluation's score, as the search asks)
    adapter_params: int  # objective 2: active adapter parameters
    evaluation: int  # evaluations so far (ASHA's time); max_evaluations + 1 in the closing report
    step: int  # optimizer steps so far
    epoch: float
    best_glue_score: float  # best evaluation so far
    trainable_params: int  # trainable now (reserves and head included)
    allocation: dict[str, int] = field(default_factory=dict)
    mlflow_run_id: Optional[str] = None
    run_name: str = ""
    trial_number: int = -1
    final: bool = False
    node: Optional[str] = None  # the Ray node the trial runs on
    train_loss: Optional[float] = None  # evaluations only
    peak_trainable_params: Optional[int] = None  # closing report only
    head_params: Optional[int] = None  # closing report only
    wall_time_s: Optional[float] = None  # closing report only

    def to_result(self) -> dict[str, Any]:
        """The dict for ``tune.report`` (fields left unset are left out)."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value is None and f.name in ("train_loss", "peak_trainable_params", "head_params", "wall_time_s", "node"):
                continue
            out[f.name] = json.dumps(value, sort_keys=True) if f.name == "allocation" else value
        return out

    @classmethod
    def from_result(cls, result: Optional[dict[str, Any]]) -> Optional["TrialReport"]:
        """Parse a Ray result dict; None when it is not a trial report (no objectives)."""
        if not result or SCORE not in result or PARAMS not in result:
            return None
        names = {f.name for f in dataclasses.fields(cls)}
        kwargs = {k: v for k, v in result.items() if k in names}
        kwargs["allocation"] = parse_allocation(result.get("allocation"))
        kwargs.setdefault("evaluation", 0)
        kwargs.setdefault("step", 0)
        kwargs.setdefault("epoch", 0.0)
        kwargs.setdefault("best_glue_score", float("nan"))
        kwargs.setdefault("trainable_params", 0)
        kwargs["final"] = bool(result.get(FINAL_KEY))
        kwargs["trial_number"] = int(result.get(TRIAL_NUMBER_KEY, -1))
        kwargs["mlflow_run_id"] = result.get("mlflow_run_id") or None
        return cls(**kwargs)

    @property
    def objectives(self) -> list[Any]:
        return [self.glue_score, self.adapter_params]

    def finite(self) -> bool:
        """Both objectives are finite numbers."""
        try:
            return all(v is not None and math.isfinite(float(v)) for v in self.objectives)
        except (TypeError, ValueError):
            return False


def parse_allocation(raw: Any) -> dict[str, int]:
    """An allocation from a report: a JSON string or a dict; {} when absent or unreadable."""
    if isinstance(raw, str) and raw:
        try:
            raw = json.loads(raw)
        except ValueError:
            return {}
    if isinstance(raw, dict):
        try:
            return {str(k): int(v) for k, v in raw.items()}
        except (TypeError, ValueError):
            return {}
    return {}
