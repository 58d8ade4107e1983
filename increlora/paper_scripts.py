"""The official GLUE scripts' settings for DeBERTaV3-base (spec section 2.2), as data.

One row per task for average target rank 2, and the differences at average target rank 8. The shared
training recipe (:mod:`increlora.task_defaults`) and IncreLoRA's own defaults
(:mod:`increlora.methods.increlora.defaults`) both read them from here.
"""

from __future__ import annotations

from typing import NamedTuple, Optional


class PaperRow(NamedTuple):
    """One task's rank-2 script."""

    learning_rate: float
    epochs: int
    max_length: int
    init_warmup: int  # = incre_interval in every script
    top_h: int
    lora_alpha: float
    lora_dropout: float
    orth_reg_weight: float
    warmup_steps: int
    classifier_dropout: float
    weight_decay: float
    eval_steps: int


class PaperRank8(NamedTuple):
    """Where a task's rank-8 script differs from its rank-2 script."""

    learning_rate: float
    epochs: int
    top_h: int
    n_add: int
    lora_dropout: Optional[float]  # None: as at rank 2


PAPER_R2: dict[str, PaperRow] = {
    "cola": PaperRow(8e-4, 25, 64, 100, 3, 32, 0.0, 0.1, 100, 0.10, 0.0, 100),
    "sst2": PaperRow(8e-4, 24, 128, 1000, 5, 16, 0.1, 0.1, 1000, 0.0, 0.01, 1000),
    "mrpc": PaperRow(1e-3, 30, 320, 100, 6, 32, 0.3, 0.1, 100, 0.0, 0.01, 100),
    "qqp": PaperRow(4e-4, 7, 320, 1000, 3, 16, 0.0, 0.1, 1000, 0.15, 0.01, 1000),
    "stsb": PaperRow(2.2e-3, 25, 128, 100, 4, 32, 0.0, 0.3, 100, 0.2, 0.1, 100),
    "mnli": PaperRow(3.5e-4, 9, 256, 1000, 2, 16, 0.2, 0.1, 1000, 0.15, 0.0, 1000),
    "qnli": PaperRow(7e-4, 5, 512, 500, 12, 32, 0.0, 0.1, 500, 0.1, 0.01, 500),
    "rte": PaperRow(1.2e-3, 50, 320, 100, 5, 32, 0.0, 0.3, 100, 0.20, 0.01, 100),
    # WNLI is not in the official scripts; RTE's settings are the closest task.
    "wnli": PaperRow(1.2e-3, 50, 128, 100, 5, 32, 0.0, 0.3, 100, 0.20, 0.01, 100),
}
PAPER_R8: dict[str, PaperRank8] = {
    "cola": PaperRank8(1e-3, 25, 3, 4, None),
    "sst2": PaperRank8(8e-4, 24, 6, 4, 0.3),
    "mrpc": PaperRank8(1e-3, 30, 10, 4, None),
    "qqp": PaperRank8(6e-4, 7, 3, 4, None),
    "mnli": PaperRank8(5e-4, 7, 18, 1, 0.0),
    "qnli": PaperRank8(9e-4, 5, 22, 4, None),
    "rte": PaperRank8(1.2e-3, 50, 9, 4, None),
}
PAIR_TASKS = frozenset({"mrpc", "qqp", "stsb", "mnli", "qnli", "rte", "wnli"})


def paper_row(task: str) -> PaperRow:
    return PAPER_R2[task]


def paper_rank8(task: str, target_rank: float) -> Optional[PaperRank8]:
    """The rank-8 differences when ``target_rank`` >= 8 and the task has a rank-8 script, else None."""
    return PAPER_R8.get(task) if target_rank >= 8 else None
