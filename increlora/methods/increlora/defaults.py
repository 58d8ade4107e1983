"""IncreLoRA's per-task defaults: the official scripts' schedule, or the cpu profile's scaled to the run."""

from __future__ import annotations

from typing import Any

from increlora.paper_scripts import paper_rank8, paper_row


def increlora_defaults(task: str, profile: str, target_rank: float) -> dict[str, Any]:
    """IncreLoRA's knobs: the paper's scripts (warm-up = interval, top_h, n_add at rank 8, gamma), or the
    cpu profile's schedule as fractions of the run with top_h chosen so growth ends at 40 %."""
    row = paper_row(task)
    if profile == "paper":
        inc: dict[str, Any] = {"init_warmup": row.init_warmup, "incre_interval": row.init_warmup, "top_h": row.top_h,
                               "orth_reg_weight": row.orth_reg_weight}
        r8 = paper_rank8(task, target_rank)
        if r8 is not None:
            inc.update(top_h=r8.top_h, n_add=r8.n_add)
        return inc
    return {
        "init_warmup_frac": 0.05,
        "incre_interval_frac": 0.03,
        "top_h": None,  # as many modules a round as growth needs to end at 40 % of the run
        "orth_reg_weight": row.orth_reg_weight,
    }
