"""Per-task hyperparameters of the official IncreLoRA GLUE scripts (spec section 2.2, average rank 2).

They are the base every trial of a search starts from (command-line flags win over them, sampled
knobs win over both) and the centre of the learning-rate range when the rate is searched. Step
counts (warm-up steps, init_warmup, incre_interval) and run lengths are deliberately not copied:
the scripts' values belong to 25-epoch DeBERTa runs, so spaces search schedule *fractions* instead.
WNLI has no official script; it gets RTE's values (both are small sentence-pair tasks).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class TaskDefaults:
    """One row of the spec's table (section 2.2, average target rank 2)."""

    learning_rate: float
    top_h: int
    lora_alpha: float
    lora_dropout: float
    orth_reg_weight: float
    classifier_dropout: float
    weight_decay: float


TASK_DEFAULTS: dict[str, TaskDefaults] = {
    "cola": TaskDefaults(8e-4, 3, 32.0, 0.0, 0.1, 0.10, 0.0),
    "sst2": TaskDefaults(8e-4, 5, 16.0, 0.1, 0.1, 0.0, 0.01),
    "mrpc": TaskDefaults(1e-3, 6, 32.0, 0.3, 0.1, 0.0, 0.01),
    "qqp": TaskDefaults(4e-4, 3, 16.0, 0.0, 0.1, 0.15, 0.01),
    "stsb": TaskDefaults(2.2e-3, 4, 32.0, 0.0, 0.3, 0.2, 0.1),
    "mnli": TaskDefaults(3.5e-4, 2, 16.0, 0.2, 0.1, 0.15, 0.0),
    "qnli": TaskDefaults(7e-4, 12, 32.0, 0.0, 0.1, 0.1, 0.01),
    "rte": TaskDefaults(1.2e-3, 5, 32.0, 0.0, 0.3, 0.20, 0.01),
    "wnli": TaskDefaults(1.2e-3, 5, 32.0, 0.0, 0.3, 0.20, 0.01),
}

# Knobs that only some methods have.
_METHOD_ONLY = {"top_h": ("increlora",), "orth_reg_weight": ("increlora", "adalora")}


def task_row(task: str) -> TaskDefaults:
    """The table row of a normalised task name (``cola``, ``sst2``...); unknown names raise KeyError."""
    return TASK_DEFAULTS[task]


def task_defaults(task: str, method: str) -> dict[str, Any]:
    """The row as flat knob overrides valid for ``method`` (``top_h`` only for IncreLoRA, ...)."""
    row = asdict(task_row(task))
    return {k: v for k, v in row.items() if method in _METHOD_ONLY.get(k, (method,))}
