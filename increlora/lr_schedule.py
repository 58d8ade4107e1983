"""Linear warm-up / linear decay, one schedule per optimizer parameter group (spec section 1.5).

Each group carries ``base_lr`` and ``start_step``. At global step ``t`` a group's factor is
``(t - s) / w`` during its warm-up and then falls linearly to 0 at the end of training ``T``.
Groups added during training (IncreLoRA's reserves and growth rounds) thus restart their warm-up.
With ``constant_new_groups`` (the official ``multi_lr=False``), the groups IncreLoRA adds (marked
``added``: the step-0 reserves and every growth round) keep the full learning rate for the whole run,
while the main groups warm up and decay as usual.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


def linear_factor(step: int, *, start: int, warmup: int, total: int) -> float:
    """LR multiplier of a group that started at ``start`` (0 at its first step when warmup > 0)."""
    t = step - start
    if t < 0:
        return 0.0
    if warmup > 0 and t < warmup:
        return t / warmup
    decay = total - start - warmup
    if decay <= 0:
        return 0.0 if warmup > 0 else 1.0
    return max(0.0, (total - step) / decay)


@dataclass
class GroupLinearSchedule:
    """Sets every group's LR before each optimizer step."""

    warmup_steps: int
    total_steps: int
    constant_new_groups: bool = False

    def factor(self, group: dict, step: int) -> float:
        start = int(group.get("start_step", 0))
        if self.constant_new_groups and (group.get("added") or start > 0):
            return 1.0
        return linear_factor(step, start=start, warmup=self.warmup_steps, total=self.total_steps)

    def apply(self, optimizer: torch.optim.Optimizer, step: int) -> None:
        for group in optimizer.param_groups:
            self.apply_group(group, step)

    def apply_group(self, group: dict, step: int) -> None:
        """Set one group's LR for ``step``."""
        if group.get("full_lr_once"):
            # Quirk 4.5: the group's very first update runs at the full learning rate.
            group["lr"] = group["base_lr"]
            group["full_lr_once"] = False
            return
        group["lr"] = group["base_lr"] * self.factor(group, step)
