"""AdaLoRA's per-task defaults."""

from __future__ import annotations

from typing import Any

from increlora.paper_scripts import paper_row


def adalora_defaults(task: str, profile: str, target_rank: float) -> dict[str, Any]:
    """AdaLoRA's orthogonal weight: the task's gamma, as in the official scripts."""
    return {"orth_reg_weight": paper_row(task).orth_reg_weight}
